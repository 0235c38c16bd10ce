"""Run s3prl 0.4.18's downstream harness on this stack, without editing installed s3prl files.

:func:`apply` (called by :func:`s3prl_ekd.register` and so by ``run/run_downstream.py``) fixes,
from our side:

1. **Runner checkpoints under torch >= 2.6.** s3prl's runner saves ``states-*.ckpt`` holding its
   ``argparse.Namespace`` of arguments, and loads them back with a bare ``torch.load`` (now
   ``weights_only=True``): ``-m evaluate -e states-N.ckpt``, ``-i`` and resuming failed with
   "Unsupported global: argparse.Namespace". We allow that one class for safe loading
   (``torch.serialization.add_safe_globals``); everything else stays weights-only.
2. **The missing ``ctc/corpus`` package.** The wheel lacks ``s3prl/downstream/ctc/corpus/``, so
   ``-d ctc`` (PR, libriphone) cannot import its dataset. We register
   :mod:`s3prl_ekd.libriphone` as ``s3prl.downstream.ctc.corpus.libriphone``.
3. **VoxCeleb1's file-list cache.** ``voxceleb1/dataset.py`` caches each split's file list in
   ``site-packages/s3prl/downstream/voxceleb1/.cache/<split>.pkl``, keyed by the split name only:
   a second corpus silently reuses the first one's list, and it writes into the installed package.
   We point ``CACHE_PATH`` at a fresh folder per process, removed at exit.

Each fix is idempotent and tested (``tests/test_compat.py``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import shutil
import sys
import tempfile
import types
import warnings

_APPLIED = set()


def allow_runner_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` read s3prl runner checkpoints (their ``Args``)."""
    import torch

    torch.serialization.add_safe_globals([argparse.Namespace])


def provide_ctc_corpus() -> None:
    """Make ``s3prl.downstream.ctc.corpus.libriphone`` importable (our LibriPhoneDataset)."""
    import s3prl.downstream.ctc as ctc

    from . import libriphone

    name = "s3prl.downstream.ctc.corpus"
    try:  # a later s3prl that ships the package keeps its own
        __import__(f"{name}.libriphone")
        return
    except ImportError:
        pass
    package = sys.modules.get(name) or types.ModuleType(name)
    package.__path__ = []  # a package, so `from .corpus.libriphone import ...` resolves
    package.libriphone = libriphone
    sys.modules[name] = package
    sys.modules[f"{name}.libriphone"] = libriphone
    ctc.corpus = package


def isolate_voxceleb_cache() -> None:
    """Give s3prl's VoxCeleb1 dataset a per-process cache folder instead of site-packages."""
    try:
        from s3prl.downstream.voxceleb1 import dataset
    except ImportError:  # librosa missing: the task cannot run anyway, s3prl says so itself
        return
    folder = tempfile.mkdtemp(prefix="s3prl-ekd-voxceleb1-cache-")
    atexit.register(shutil.rmtree, folder, True)
    dataset.CACHE_PATH = folder + "/"


@contextlib.contextmanager
def quiet_s3prl_import():
    """Import s3prl's modules without the noise it prints on every import: torchaudio's deprecation
    warnings for ``set_audio_backend`` (s3prl calls it) and "ESPnet is not installed" (an
    optional upstream). Warning filters and the logger's level are restored after."""
    logger = logging.getLogger("s3prl.upstream.espnet_hubert.expert")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"torchaudio\._backend\.set_audio_backend has been deprecated")
            yield
    finally:
        logger.setLevel(level)


def apply() -> None:
    """Apply every fix once per process."""
    for fix in (allow_runner_checkpoints, provide_ctc_corpus, isolate_voxceleb_cache):
        if fix.__name__ not in _APPLIED:
            fix()
            _APPLIED.add(fix.__name__)
