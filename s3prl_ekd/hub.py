"""s3prl hub entries for the ensemble-distilled student (made known to s3prl by ``register()``)."""

from __future__ import annotations

import os

from .expert import UpstreamExpert as _UpstreamExpert


def ekd_student_local(ckpt: str = None, *args, **kwargs):
    """The student from a local checkpoint file written by s3prl-ekd."""
    if ckpt is None:
        raise ValueError("ekd_student_local needs a checkpoint: pass -k PATH (or ckpt=PATH)")
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"ekd_student checkpoint {ckpt} does not exist: check the path given with -k")
    return _UpstreamExpert(ckpt, *args, **kwargs)


def ekd_student_url(ckpt: str = None, refresh: bool = False, *args, **kwargs):
    """The student from a URL: downloaded to s3prl's cache, then checked to be a student checkpoint."""
    if ckpt is None:
        raise ValueError("ekd_student_url needs a checkpoint URL: pass -k URL (or ckpt=URL)")
    from s3prl.util.download import _urls_to_filepaths

    return ekd_student_local(_urls_to_filepaths(ckpt, refresh=refresh), *args, **kwargs)


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
