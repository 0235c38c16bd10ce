"""Every change s3prl-ekd makes to s3prl 0.4.18's behaviour, in one place; none on import.

Installed s3prl files are never edited or copied. Each change below is applied explicitly:
:func:`apply` (through :func:`s3prl_ekd.register`, and so ``run/run_downstream.py``) makes the
lasting ones; the temporary ones are context managers, undone when the run they wrap ends.

Lasting, once per process (1-3 by :func:`apply`; 4 when a pretraining run starts; 5 by
:func:`s3prl_ekd.register`):

1. **Runner checkpoints load weights-only** (:mod:`.checkpoints`). s3prl's runners store their
   ``argparse.Namespace`` in ``states-*.ckpt`` and reload them with a bare ``torch.load``, which
   torch >= 2.6 makes ``weights_only=True``: ``-m evaluate -e``, ``-i`` and resuming failed with
   "Unsupported global: argparse.Namespace". That one class is allowed; nothing else.
2. **The missing ``ctc/corpus`` package** (:mod:`.downstream`). The 0.4.18 wheel lacks
   ``s3prl/downstream/ctc/corpus/``, so ``-d ctc`` could not import its dataset;
   :mod:`s3prl_ekd.superb.libriphone` is registered under that name (kept when s3prl ships its own).
3. **VoxCeleb1's file-list cache** (:mod:`.downstream`). s3prl caches each split's file list in
   ``site-packages`` keyed by the split name only (a second corpus reused the first one's list);
   it caches in a per-process temporary folder instead, removed at exit.
4. **Our optimizer and scheduler** (:func:`.pretrain_runner.register_optimizers`):
   ``EKDAdamW`` and ``EKDLinearWarmup`` added to ``s3prl.optimizers`` / ``s3prl.schedulers``, since
   s3prl's ``AdamW_with_schedule`` pickles an object ``weights_only`` refuses.
5. **Our upstreams** (:func:`s3prl_ekd.register`): the ``ekd_student*`` entries set on ``s3prl.hub``.

Temporary, undone after the run:

6. **Quiet imports** (:mod:`.imports`, :func:`quiet_s3prl_import`): torchaudio's
   ``set_audio_backend`` deprecation warnings and "ESPnet is not installed" hidden while s3prl
   imports; warning filters and the logger's level restored after.
7. **run_pretrain outside its folder** (:mod:`.pretrain_runner`, :func:`pretrain_runner.patched`):
   s3prl's ``run_pretrain.py`` imports ``pretrain.runner``, ``utility.helper``, ``optimizers`` and
   ``schedulers`` as top-level modules and its Runner imports ``pretrain.<u>.pretrain_expert``:
   those names are aliased in ``sys.modules`` (``pretrain.ekd`` to our expert) and the aliases it
   added removed after. Its ``os.listdir('pretrain/')`` (the ``-u`` choices) lists ``ekd``; its
   Runner checks the runner config for unknown keys first; the Runner module's ``torch.save`` is
   atomic and its ``os.remove`` of old ``states-*.ckpt`` waits until the new one is complete (a
   crash never leaves a truncated or no checkpoint). The module attributes are restored after.
8. **In-process run_downstream** (:mod:`.downstream`, :func:`downstream.in_process_run`):
   ``sys.argv`` set for the run, and ``builtins.isinstance`` restored after, since s3prl's
   ``main()`` wraps it (``hack_isinstance``) on every call.
9. **Checked ``torch.load``** (:mod:`s3prl_ekd.io.load_guard`, left there): while s3prl code runs,
   every ``torch.load`` is our weights-only reader, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` refused.

:func:`check_version` warns when the installed s3prl is not :data:`S3PRL_VERSION`, the version
these changes were made against (``strict=True`` raises instead). Tests: ``tests/test_compat.py``,
``tests/test_pretrain_launch.py``.
"""

from __future__ import annotations

import warnings

from s3prl_ekd.s3prl_compat.imports import quiet_s3prl_import

S3PRL_VERSION = "0.4.18"

_APPLIED = set()


class S3prlVersionError(RuntimeError):
    """The installed s3prl is not the version s3prl-ekd's changes were made for."""


def version_message(installed: str) -> str:
    """What a mismatching s3prl version means and what to do."""
    return (f"s3prl-ekd's changes to s3prl (s3prl_ekd/s3prl_compat) were made for s3prl {S3PRL_VERSION}, "
            f"but s3prl {installed} is installed: install s3prl=={S3PRL_VERSION} "
            "(pip install 's3prl==0.4.18'), or check each change listed in s3prl_ekd.s3prl_compat against it")


def check_version(strict: bool = False) -> str:
    """The installed s3prl version; warns (``strict``: raises :class:`S3prlVersionError`) unless 0.4.18."""
    import s3prl

    installed = str(getattr(s3prl, "__version__", "unknown"))
    if installed != S3PRL_VERSION:
        if strict:
            raise S3prlVersionError(version_message(installed))
        warnings.warn(version_message(installed), RuntimeWarning, stacklevel=2)
    return installed


def apply() -> None:
    """Make the lasting changes 1-3 above, each once per process, after checking s3prl's version."""
    from s3prl_ekd.s3prl_compat import checkpoints, downstream

    if not _APPLIED:
        check_version()
    for fix in (checkpoints.allow_runner_checkpoints, downstream.provide_ctc_corpus, downstream.isolate_voxceleb_cache):
        if fix.__name__ not in _APPLIED:
            fix()
            _APPLIED.add(fix.__name__)


__all__ = ["S3PRL_VERSION", "S3prlVersionError", "apply", "check_version", "quiet_s3prl_import", "version_message"]
