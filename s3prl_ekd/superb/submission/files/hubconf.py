"""Hub entry of this submission (``torch.hub.load(FOLDER, "ekd_student_submission", source="local")``)."""

import os

dependencies = ["torch", "s3prl"]

try:  # imported as a package (an s3prl upstream folder)
    from .expert import UpstreamExpert as _UpstreamExpert
except ImportError:  # imported top-level (torch.hub puts this folder on sys.path)
    from expert import UpstreamExpert as _UpstreamExpert


def ekd_student_submission(ckpt: str = None, *args, **kwargs):
    """The exported student; ``ckpt`` defaults to this folder's model.pt."""
    ckpt = ckpt or os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pt")
    return _UpstreamExpert(ckpt, *args, **kwargs)
