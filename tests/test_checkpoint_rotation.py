import os
import signal
import subprocess
import sys
import textwrap

import torch

from s3prl_ekd.io.checkpoint import safe_load
from s3prl_ekd.pretrain.checkpoint_rotation import (
    is_complete,
    latest_complete,
    numbered_checkpoints,
    rotate,
    save_numbered,
)


def _names(folder):
    return sorted(os.listdir(folder))


def test_max_keep_keeps_the_newest_like_s3prl(tmp_path):
    for step in (10, 20, 30, 40, 50):
        save_numbered({"Step": step, "w": torch.full((4,), float(step))}, tmp_path, step, max_keep=2)
    assert _names(tmp_path) == ["states-40.ckpt", "states-50.ckpt"]
    assert [s for s, _ in numbered_checkpoints(tmp_path)] == [40, 50]
    assert safe_load(latest_complete(tmp_path))["Step"] == 50
    # max_keep None / 0: keep all, as s3prl does without the key
    save_numbered({"Step": 60}, tmp_path, 60, max_keep=None)
    assert len(_names(tmp_path)) == 3


def test_rotation_never_deletes_the_only_good_checkpoint(tmp_path, caplog):
    save_numbered({"Step": 1, "w": torch.ones(3)}, tmp_path, 1, max_keep=1)
    good = tmp_path / "states-1.ckpt"
    # two newer files cut short by a writer that is not atomic (s3prl's Runner writes in place)
    data = good.read_bytes()
    for step in (2, 3):
        (tmp_path / f"states-{step}.ckpt").write_bytes(data[: len(data) // 2])
    assert not is_complete(tmp_path / "states-3.ckpt") and is_complete(good)
    removed = rotate(tmp_path, max_keep=1)
    assert [p.name for p in removed] == ["states-2.ckpt"]
    assert _names(tmp_path) == ["states-1.ckpt", "states-3.ckpt"]
    assert "keeping states-1.ckpt" in caplog.text
    assert latest_complete(tmp_path) == good
    assert torch.equal(safe_load(good)["w"], torch.ones(3))


CRASHING_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    sys.path.insert(0, sys.argv[2])
    from s3prl_ekd.pretrain.checkpoint_rotation import save_numbered

    folder = sys.argv[1]
    save_numbered({"Step": 1, "w": torch.ones(1000)}, folder, 1, max_keep=1)

    def save_then_die(obj, f, *args, **kwargs):
        f.write(b"PK\\x03\\x04" + bytes(5000))  # part of the new checkpoint is on disk...
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the process is killed

    torch.save = save_then_die
    save_numbered({"Step": 2, "w": torch.ones(1000) * 2}, folder, 2, max_keep=1)
    """
)


def test_crash_while_writing_leaves_previous_checkpoint_loadable(tmp_path, root_dir):
    folder = tmp_path / "exp"
    proc = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(folder), root_dir], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    # the kill left a temp file, never a states-2.ckpt, and states-1.ckpt untouched
    assert [s for s, _ in numbered_checkpoints(folder)] == [1]
    assert any(n.endswith(".tmp") for n in os.listdir(folder))
    resume = latest_complete(folder)
    assert resume == folder / "states-1.ckpt"
    state = safe_load(resume)
    assert state["Step"] == 1 and torch.equal(state["w"], torch.ones(1000))
    # the next successful save clears the dead temp file and rotates
    save_numbered({"Step": 2}, folder, 2, max_keep=1)
    assert _names(folder) == ["states-2.ckpt"]


def test_a_write_killed_before_its_rename_is_recovered_and_leftovers_cleaned(tmp_path):
    from s3prl_ekd.io.atomic import atomic_save
    from s3prl_ekd.pretrain.checkpoint_rotation import recover_interrupted

    atomic_save({"Step": 3}, tmp_path / "states-3.ckpt")
    atomic_save({"Step": 6}, tmp_path / "done.ckpt")
    (tmp_path / "done.ckpt").rename(tmp_path / ".states-6.ckpt.k1ll3d.tmp")  # complete, not renamed
    (tmp_path / ".states-9.ckpt.cut.tmp").write_bytes((tmp_path / "states-3.ckpt").read_bytes()[:100])
    (tmp_path / ".states-3.ckpt.dup.tmp").write_bytes((tmp_path / "states-3.ckpt").read_bytes())  # target exists
    assert recover_interrupted(tmp_path) == [tmp_path / "states-6.ckpt"]
    assert safe_load(tmp_path / "states-6.ckpt") == {"Step": 6}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["states-3.ckpt", "states-6.ckpt"]


def test_resume_folder_of_the_command_line(tmp_path):
    from s3prl_ekd.pretrain.launch import resume_folder

    (tmp_path / "exp").mkdir()
    assert resume_folder(["-e", str(tmp_path / "exp")]) == str(tmp_path / "exp")
    assert resume_folder(["-e", str(tmp_path / "exp" / "states-3.ckpt")]) == str(tmp_path / "exp")
    assert resume_folder(["-a", "-n", "x", "-u", "ekd"]) == "result/pretrain/x"
    assert resume_folder(["-a", "-p", "/runs/y"]) == "/runs/y"
    assert resume_folder(["-u", "ekd", "-n", "x"]) is None
