"""Any s3prl upstream by hub name or local file, read by our checked reader before s3prl's code runs;
raw fairseq HuBERT files are converted first (``fairseq_import``)."""

from __future__ import annotations

import difflib
import os
from typing import Optional

from torch import nn

from s3prl_ekd.io.checkpoint import CheckpointError, explain_load_error
from s3prl_ekd.io.load_guard import check_file_upstream, checked_load, guarded_torch_load, refuse_unsafe_torch_env
from s3prl_ekd.teachers.spec import FAIRSEQ_UPSTREAMS, TeacherError


def load_upstream(upstream: str, ckpt: Optional[str] = None, label: str = "teacher") -> nn.Module:
    """An s3prl upstream expert by hub name (``ckpt`` for ``*_local``/``*_url`` names).

    ``fairseq`` (or ``hubert_local`` given a raw fairseq file) converts the checkpoint to s3prl's
    format first, without fairseq, and loads it with ``hubert_local``.
    """
    import s3prl.hub as hub

    try:  # before anything is read: torch would honour this variable over weights_only
        refuse_unsafe_torch_env(ckpt or f"the weights of {upstream}")
    except CheckpointError as e:
        raise TeacherError(f"{label}: {e}") from None
    if ckpt is not None and not str(ckpt).startswith(("http://", "https://")) and not os.path.isfile(ckpt):
        raise TeacherError(f"{label}: checkpoint {ckpt} (key `ckpt`) does not exist: check the path")
    if upstream in FAIRSEQ_UPSTREAMS or (upstream == "hubert_local" and ckpt and _is_fairseq_file(ckpt)):
        if not ckpt:
            raise TeacherError(f"{label}: upstream {upstream!r} needs `ckpt`: the path of the fairseq checkpoint")
        from s3prl_ekd.teachers.fairseq_import import convert_fairseq_hubert

        ckpt = str(convert_fairseq_hubert(ckpt))
        upstream = "hubert_local"
    fn = getattr(hub, upstream, None)
    if fn is None or not callable(fn) or upstream.startswith("_"):
        close = difflib.get_close_matches(upstream, [n for n in dir(hub) if not n.startswith("_")], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise TeacherError(
            f"{label}: upstream {upstream!r} (key `upstream`) is not an s3prl hub name.{hint} "
            "Use a name from s3prl.hub (hubert_base, wavlm_base_plus, ...), or hubert_local / "
            "wavlm_local / fairseq with `ckpt`"
        )
    takes_path = upstream.endswith(("_local", "_url", "_custom"))
    if takes_path and not ckpt:
        raise TeacherError(f"{label}: upstream {upstream!r} loads a file: give its path with key `ckpt`")
    if ckpt and not takes_path:
        raise TeacherError(
            f"{label}: upstream {upstream!r} downloads its own weights, so `ckpt` ({ckpt}) is ignored by it: "
            "use hubert_local / wavlm_local / fairseq (or another *_local name) to load a file"
        )
    try:
        check_file_upstream(upstream)
        # every file s3prl reads is read by our reader (weights_only, eval()ed strings checked),
        # first here, so that a refusal names the teacher before any s3prl code runs
        preloaded = checked_load(ckpt) if ckpt and os.path.isfile(ckpt) else None
    except CheckpointError as e:
        raise TeacherError(f"{label}: {e}") from None
    try:
        with guarded_torch_load({ckpt: preloaded} if preloaded is not None else None):
            return fn(ckpt=ckpt) if ckpt else fn()
    except CheckpointError as e:
        raise TeacherError(f"{label}: {e}") from None
    except Exception as e:
        err = explain_load_error(ckpt, e) if ckpt else None
        if err is None:
            raise
        raise TeacherError(f"{label}: {err}") from None


def _is_fairseq_file(path: str) -> bool:
    from s3prl_ekd.teachers.fairseq_import import is_fairseq_checkpoint

    return is_fairseq_checkpoint(path)
