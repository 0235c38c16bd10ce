"""Import s3prl's modules without the noise it prints on every import."""

from __future__ import annotations

import contextlib
import logging
import warnings


@contextlib.contextmanager
def quiet_s3prl_import():
    """Hide torchaudio's ``set_audio_backend`` deprecation warnings (s3prl calls it) and "ESPnet is
    not installed" (an optional upstream); warning filters and the logger's level restored after."""
    logger = logging.getLogger("s3prl.upstream.espnet_hubert.expert")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"torchaudio\._backend\.set_audio_backend has been deprecated")
            yield
    finally:
        logger.setLevel(level)
