"""``s3prl-ekd downstream`` / ``run/run_downstream.py``: s3prl's own ``run_downstream.py`` with our
upstreams (``ekd_student``, ``ekd_student_local``, ``ekd_student_url``) registered, and every
checkpoint it reads read by our checked reader (:mod:`s3prl_ekd.io.load_guard`).

Same flags, same runner. Two additions, so that it works from an installed wheel as from the
checkout: ``-c`` also takes a shipped task config's name (``-c pr``, ``-c asr_mini``), and file
paths inside a config that name shipped files (``downstream_configs/vocab/phoneme.txt``) are made
absolute when they do not exist as given (the run then gets a resolved copy of the config).
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import yaml

from s3prl_ekd.config.resources import DOWNSTREAM, resolve_config_flags, resolve_shipped_paths
from s3prl_ekd.io.load_guard import run_guarded
from s3prl_ekd.s3prl_compat import quiet_s3prl_import


def resolve_task_config(argv: List[str]) -> List[str]:
    """``argv`` with its ``-c`` / ``--config`` made a path whose shipped file paths resolve."""
    return resolve_config_flags(argv, {"-c": DOWNSTREAM, "--config": DOWNSTREAM}, "run_downstream.py", _with_shipped_paths)


def _with_shipped_paths(path: Path) -> Path:
    """``path``, or a temporary copy of it whose shipped file paths are absolute (removed at exit)."""
    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    resolved = resolve_shipped_paths(config)
    if resolved == config:
        return path
    folder = tempfile.mkdtemp(prefix="s3prl-ekd-config-")
    atexit.register(shutil.rmtree, folder, True)
    copy = Path(folder) / path.name
    with open(copy, "w", encoding="utf-8") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)
    return copy


def main(argv: Optional[List[str]] = None) -> int:
    """Run s3prl's ``run_downstream.main()`` with ``argv`` (default: the command line's)."""
    from s3prl_ekd import register

    argv = sys.argv[1:] if argv is None else list(argv)
    register()
    from s3prl import run_downstream

    saved = sys.argv
    sys.argv = ["run_downstream.py"] + resolve_task_config(argv)
    try:
        with quiet_s3prl_import():  # its main() calls torchaudio.set_audio_backend first thing
            # every file s3prl reads (-k of any upstream, -e) goes through our checked reader
            run_guarded(run_downstream.main, "run_downstream.py")
    finally:
        sys.argv = saved
    return 0
