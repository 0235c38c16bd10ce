"""s3prl's downstream harness: the wheel's missing ``ctc/corpus``, VoxCeleb1's cache folder, and
what its ``run_downstream.main()`` changes in the process when called in process."""

from __future__ import annotations

import atexit
import builtins
import contextlib
import shutil
import sys
import tempfile
import types
from typing import Iterator, List


def provide_ctc_corpus() -> None:
    """Make ``s3prl.downstream.ctc.corpus.libriphone`` importable (our LibriPhoneDataset)."""
    import s3prl.downstream.ctc as ctc

    from s3prl_ekd.superb import libriphone

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
def in_process_run(flags: List[str]) -> Iterator[None]:
    """``sys.argv`` as ``run_downstream.py FLAGS`` for the block; ``sys.argv`` and
    ``builtins.isinstance`` (which s3prl's ``main()`` wraps on every call: in-process runs would
    stack wrappers and slow every isinstance() of the process) restored after."""
    argv, isinstance_before = sys.argv, builtins.isinstance
    sys.argv = ["run_downstream.py"] + list(flags)
    try:
        yield
    finally:
        builtins.isinstance = isinstance_before
        sys.argv = argv
