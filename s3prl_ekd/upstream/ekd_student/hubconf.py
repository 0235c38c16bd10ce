"""s3prl hub entries for the ensemble-distilled student (made known to s3prl by ``register()``)."""

from __future__ import annotations

import os
import re
from typing import Optional

from s3prl_ekd.distill.student_checkpoint import check_student_state
from s3prl_ekd.io.checkpoint import CheckpointError, safe_load
from s3prl_ekd.teachers.target_cache import file_sha256
from s3prl_ekd.upstream.ekd_student.expert import UpstreamExpert as _UpstreamExpert


def ekd_student_local(ckpt: str = None, *args, **kwargs):
    """The student from a local checkpoint file written by s3prl-ekd, or a transformers HuBERT folder."""
    if ckpt is None:
        raise ValueError("ekd_student_local needs a checkpoint: pass -k PATH (or ckpt=PATH)")
    if not os.path.exists(ckpt):
        raise FileNotFoundError(f"ekd_student checkpoint {ckpt} does not exist: check the path given with -k")
    return _UpstreamExpert(ckpt, *args, **kwargs)


def ekd_student_url(ckpt: str = None, refresh: bool = False, *args, sha256: Optional[str] = None, **kwargs):
    """The student from a URL: downloaded to s3prl's cache, then checked to be a student checkpoint."""
    if ckpt is None:
        raise ValueError("ekd_student_url needs a checkpoint URL: pass -k URL (or ckpt=URL)")
    from s3prl.util.download import _urls_to_filepaths

    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", str(sha256)):
        raise ValueError(
            f"ekd_student_url: sha256 must be the full digest, 64 hex digits (as `sha256sum` prints it), got {sha256!r}"
        )
    path = _urls_to_filepaths(ckpt, refresh=refresh)
    verify_download(path, ckpt, sha256)
    return ekd_student_local(path, *args, **kwargs)


def verify_download(path: str, url: str, sha256: Optional[str] = None) -> None:
    """Refuse a downloaded file that is not a safe, complete student checkpoint; drop it from the cache.

    A cut connection or an error page must not stay in s3prl's cache, where the next run would
    pick it up again without downloading.
    """
    try:
        if sha256 is not None:
            digest = file_sha256(path)
            if digest != sha256.lower():
                raise CheckpointError(f"{path}: sha256 is {digest}, expected {sha256}")
        check_student_state(safe_load(path), path)
    except CheckpointError as e:
        try:
            os.remove(path)
        except OSError:
            pass
        raise CheckpointError(
            f"the file downloaded from {url} was refused and removed from the cache: {e}. "
            "Check the URL (it must point at a student checkpoint written by s3prl-ekd), then run again"
        ) from None



def ekd_student(ckpt: str = None, refresh: bool = False, *args, **kwargs):
    """The student from a local path or a URL, whichever ``ckpt`` is."""
    if ckpt is None:
        raise ValueError(
            "ekd_student needs a student checkpoint: pass -k PATH_OR_URL to run_downstream.py "
            "(or path_or_url=... to S3PRLUpstream)"
        )
    if str(ckpt).startswith(("http://", "https://")):
        return ekd_student_url(ckpt, refresh, *args, **kwargs)
    return ekd_student_local(ckpt, *args, **kwargs)


ENTRIES = {
    "ekd_student": ekd_student,
    "ekd_student_local": ekd_student_local,
    "ekd_student_url": ekd_student_url,
}
