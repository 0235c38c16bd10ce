"""The on-disk teacher-target cache: values, no teacher calls when warm, fingerprints, damage, losses.

Tolerance of cached against fresh targets: entries are fp16, so every value is the fp32 target
rounded to the nearest fp16, off by at most half an fp16 ulp: 2**-11 of its magnitude (normal
numbers); we allow that relative error plus 1e-6 absolute (fp16 subnormals below 6e-5 have a
fixed 2**-25 step, and two fp32 teacher calls on the same audio may differ in the last bits).
A step uses the fp16-rounded targets whether computed or read, so cold and warm runs are equal.
"""

import logging
import shutil

import pytest
import torch
from pretrain_helpers import tiny_runner_config, tiny_upstream_config

from s3prl_ekd.pretrain.ekd.config import PretrainConfigError, make_upstream_config
from s3prl_ekd.pretrain.ekd.dataset import WaveBatch
from s3prl_ekd.pretrain.ekd.pretrain_expert import UpstreamPretrainExpert
from s3prl_ekd.teachers.target_cache import FORMAT, FORMAT_VERSION
from s3prl_ekd.teachers.tiny import write_tiny_hubert

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` leaves it out

FP16_REL = 2.0**-11  # half an fp16 ulp, relative
ABS = 1e-6


def teachers_of(tiny_teachers, hubert_ckpt=None):
    return [
        {"name": "hubert", "upstream": "hubert_local", "ckpt": hubert_ckpt or tiny_teachers["hubert"]},
        {"name": "wavlm", "upstream": "wavlm_local", "ckpt": tiny_teachers["wavlm"]},
    ]


def make_expert(data, teachers, cache=None, layers=(2, 4), speedups=None, seed=0):
    """The multihead expert on the tiny corpus, whole utterances (sequence_length 0: no crops)."""
    cfg = tiny_upstream_config(teachers, "multihead")
    cfg["targets"]["layers"] = list(layers)
    cfg["task"]["sequence_length"] = 0
    cfg["teacher_speedups"] = speedups if speedups is not None else {"padded_batch": False}
    if cache is not None:
        cfg["target_cache"] = {"path": str(cache)}
    datarc = tiny_runner_config(data)["pretrain_expert"]["datarc"]
    torch.manual_seed(seed)  # the same student init in every expert
    return UpstreamPretrainExpert(datarc, cfg, device="cpu")


class CountCalls:
    """Counts teacher forwards by wrapping each teacher's ``forward``."""

    def __init__(self, expert):
        self.calls = 0
        for teacher in expert.teachers.teachers.values():
            teacher.forward = self._wrap(teacher.forward)

    def _wrap(self, forward):
        def counted(wavs):
            self.calls += 1
            return forward(wavs)

        return counted


def epoch(expert):
    """One epoch of the expert's own loader (each iteration of it is the next epoch)."""
    if not hasattr(expert, "_loader"):
        expert._loader = expert.get_train_dataloader()
    return list(expert._loader)


def assert_fp16_close(got, fresh):
    for g, f in zip(got, fresh):
        assert g.shape == f.shape and g.dtype == torch.float32
        assert ((g - f).abs() <= FP16_REL * f.abs() + ABS).all(), float((g - f).abs().max())


def test_config_block_and_errors(tiny_teachers, tmp_path):
    base = tiny_upstream_config(teachers_of(tiny_teachers))
    assert make_upstream_config(base)["target_cache"] is None  # off by default
    assert make_upstream_config(dict(base, target_cache={"path": str(tmp_path)}))["target_cache"] == {"path": str(tmp_path)}
    with pytest.raises(PretrainConfigError, match=r"target_cache\.dtype"):
        make_upstream_config(dict(base, target_cache={"path": str(tmp_path), "dtype": "fp16"}))
    with pytest.raises(PretrainConfigError, match=r"key `target_cache\.path` is missing"):
        make_upstream_config(dict(base, target_cache={}))
    with pytest.raises(PretrainConfigError, match=r"`target_cache\.path` must be a folder"):
        make_upstream_config(dict(base, target_cache={"path": " "}))


def test_cached_targets_equal_fresh_ones_and_a_warm_epoch_calls_no_teacher(tiny_librispeech, tiny_teachers, tmp_path):
    teachers = teachers_of(tiny_teachers)
    reference = make_expert(tiny_librispeech, teachers)  # no cache, exact per-length targets
    cached = make_expert(tiny_librispeech, teachers, cache=tmp_path / "cache")
    counter = CountCalls(cached)

    cold_batches = epoch(cached)
    assert all(b.keys is not None and len(b.keys) == len(b.lengths) for b in cold_batches)
    assert not any(k.cropped for b in cold_batches for k in b.keys)
    cold = [cached.teacher_targets(b) for b in cold_batches]
    for batch, got in zip(cold_batches, cold):
        assert_fp16_close(got, reference.teacher_targets(batch))
        # each row's own frames, then zeros: the same padding as the per-length teacher calls
        assert got[0].shape[1] == max((n - 400) // 320 + 1 for n in batch.lengths.tolist())
    # the two lengths of every batch: one call per teacher per length
    assert counter.calls == 2 * 2 * len(cold_batches)
    assert cached.target_cache.counts["misses"] == cached.target_cache.counts["written"] == 8
    assert len(list(cached.target_cache.folder.glob("*/*.pt"))) == 8

    counter.calls = 0
    warm_batches = epoch(cached)  # the next epoch: same utterances, another order
    assert sorted(k for b in warm_batches for k in b.keys) == sorted(k for b in cold_batches for k in b.keys)
    first = {tuple(b.keys): t for b, t in zip(cold_batches, cold)}
    for batch in warm_batches:
        warm = cached.teacher_targets(batch)
        assert all(torch.equal(a, b) for a, b in zip(warm, first[tuple(batch.keys)]))
    assert counter.calls == 0 and cached.target_cache.counts["hits"] == 8

    # a training step on a fully cached batch: no teacher forward, hit rate 1 in the records
    loss, records = cached(warm_batches[0], records=None, global_step=1)
    assert counter.calls == 0 and float(records["target_cache/hit_rate"][0]) == 1.0 and torch.isfinite(loss)


def test_entries_are_the_utterances_own_frames_in_fp16(tiny_librispeech, tiny_teachers, tmp_path):
    expert = make_expert(tiny_librispeech, teachers_of(tiny_teachers), cache=tmp_path)
    batch = epoch(expert)[0]
    targets = expert.teacher_targets(batch)
    for row, (key, n) in enumerate(zip(batch.keys, batch.lengths.tolist())):
        stored = expert.target_cache.get(key)
        frames = (n - 400) // 320 + 1
        assert len(stored) == len(expert.plan) and all(t.dtype == torch.float16 and t.shape == (frames, 32) for t in stored)
        assert all(torch.equal(s.float(), t[row, :frames]) for s, t in zip(stored, targets))
        assert all((t[row, frames:] == 0).all() for t in targets)
        # no padding, no shared storage: 4 targets x frames x 32 x 2 bytes plus a small overhead
        size = expert.target_cache.entry_path(key).stat().st_size
        assert 4 * frames * 32 * 2 < size < 4 * frames * 32 * 2 + 4096


def test_changed_plan_teacher_or_autocast_get_another_folder(tiny_librispeech, tiny_teachers, tmp_path):
    hubert = tmp_path / "hubert.pt"
    shutil.copy(tiny_teachers["hubert"], hubert)
    teachers = teachers_of(tiny_teachers, str(hubert))
    cache = tmp_path / "cache"
    base = make_expert(tiny_librispeech, teachers, cache=cache)
    batch = epoch(base)[0]
    base.teacher_targets(batch)

    same = make_expert(tiny_librispeech, teachers, cache=cache, speedups={"padded_batch": True, "truncate_layers": False})
    assert same.target_cache.folder == base.target_cache.folder  # exact switches change no target
    same.teacher_targets(batch)
    assert same.target_cache.counts["hits"] == 2

    other_plan = make_expert(tiny_librispeech, teachers, cache=cache, layers=(1, 4))
    bf16 = make_expert(tiny_librispeech, teachers, cache=cache, speedups={"padded_batch": False, "autocast": "bf16"})
    write_tiny_hubert(hubert, seed=11)  # the same path, other weights
    retrained = make_expert(tiny_librispeech, teachers, cache=cache)
    folders = {e.target_cache.folder for e in (base, other_plan, bf16, retrained)}
    assert len(folders) == 4 and {f.parent for f in folders} == {cache}
    assert all((f / "fingerprint.json").is_file() for f in folders)
    retrained.teacher_targets(batch)  # no stale read: the new teacher's targets are computed
    assert retrained.target_cache.counts["hits"] == 0 and retrained.target_cache.counts["misses"] == 2


def test_a_damaged_entry_is_recomputed_and_rewritten_with_a_warning(tiny_librispeech, tiny_teachers, tmp_path, caplog):
    expert = make_expert(tiny_librispeech, teachers_of(tiny_teachers), cache=tmp_path)
    batch = epoch(expert)[0]
    first = expert.teacher_targets(batch)
    cache = expert.target_cache
    truncated, tampered = (cache.entry_path(k) for k in batch.keys)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # a crash mid-write on a file system without rename
    entry = torch.load(tampered, weights_only=True)
    entry["targets"][0] = entry["targets"][0] + 1  # silent damage: the checksum no longer matches
    torch.save(entry, tampered)

    counter = CountCalls(expert)
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.teachers.target_cache"):
        again = expert.teacher_targets(batch)
    assert str(truncated) in caplog.text and str(tampered) in caplog.text and "checksum" in caplog.text
    assert cache.counts["corrupt"] == 2 and counter.calls == 2 * 2  # both rows recomputed, per length
    assert all(torch.equal(a, b) for a, b in zip(again, first))
    assert all(cache.get(k) is not None for k in batch.keys)  # rewritten whole
    assert entry["format"] == FORMAT and entry["format_version"] == FORMAT_VERSION
    assert not list(tmp_path.rglob("*.tmp"))  # no temp file left behind


def test_hand_made_batches_without_keys_are_refused(tiny_librispeech, tiny_teachers, tmp_path):
    expert = make_expert(tiny_librispeech, teachers_of(tiny_teachers), cache=tmp_path)
    with pytest.raises(ValueError, match="WaveBatch.keys is None.*pretraining loader"):
        expert.teacher_targets(WaveBatch(torch.randn(2, 8000), torch.tensor([8000, 8000])))


def test_random_crops_are_computed_but_not_stored(tiny_librispeech, tiny_teachers, tmp_path):
    cfg_expert = make_expert(tiny_librispeech, teachers_of(tiny_teachers), cache=tmp_path)
    cfg_expert.upstream_config["task"]["sequence_length"] = 16000  # crop the longer utterances at 1 s
    batches = epoch(cfg_expert)
    crops = [k for b in batches for k in b.keys if k.cropped]
    assert len(crops) == 5  # 1.1 to 2.0 s
    for b in batches:
        cfg_expert.teacher_targets(b)
    counts = cfg_expert.target_cache.counts
    assert counts["uncached"] == 5 and counts["written"] == 3 and cfg_expert.target_cache.hit_rate() == 0


def run_losses(expert, steps=8):
    """``steps`` updates (AdamW, lr 2e-3) on the expert's loader, as the runner makes them."""
    expert.train()
    optimizer = torch.optim.AdamW(expert.student.parameters(), lr=2e-3)
    out = []
    while len(out) < steps:
        for batch in epoch(expert):
            if len(out) == steps:
                break
            loss, _ = expert(batch, records=None, global_step=len(out) + 1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(expert.student.parameters(), 5.0)
            optimizer.step()
            optimizer.zero_grad()
            out.append(float(loss.detach()))
    return out


def test_short_run_with_the_cache_cold_then_warm_matches_a_run_without(tiny_librispeech, tiny_teachers, tmp_path):
    """8 updates (two epochs of the tiny corpus): cold and warm cache runs give the same losses,
    and stay within 1e-4 (relative) of the run without a cache, whose targets are not rounded to
    fp16. Each target moves by at most 2**-11 (5e-4) relative, but the roundings have both signs
    and average out in the loss's means: measured 3e-6 at most, so 1e-4 leaves a wide margin."""
    teachers = teachers_of(tiny_teachers)
    plain = run_losses(make_expert(tiny_librispeech, teachers))
    cold_expert = make_expert(tiny_librispeech, teachers, cache=tmp_path)
    cold = run_losses(cold_expert)
    warm_expert = make_expert(tiny_librispeech, teachers, cache=tmp_path)
    counter = CountCalls(warm_expert)
    warm = run_losses(warm_expert)
    assert counter.calls == 0 and warm_expert.target_cache.counts["hits"] == 16
    assert cold_expert.target_cache.counts["hits"] == 8  # its second epoch read what the first wrote
    assert warm == cold
    assert plain[-1] < plain[0]  # it trains
    for a, b in zip(cold, plain):
        assert abs(a - b) <= 1e-4 * abs(b), (cold, plain)


@pytest.mark.parametrize("distributed", [False, True], ids=["s3prl_runner", "ddp_runner"])
def test_runners_train_with_the_cache_and_log_its_hit_rate(distributed, tiny_librispeech, tiny_teachers, tmp_path):
    """``run/run_pretrain.py`` (s3prl's Runner, or our DDP runner as torchrun's one process of world
    size 1, in this process) for two epochs of the tiny corpus: the first fills the cache, the
    second reads every utterance from it."""
    from pretrain_helpers import read_scalars, run_in_process, write_yaml

    upstream = tiny_upstream_config(teachers_of(tiny_teachers), "multihead",
                                    target_cache={"path": str(tmp_path / "cache")})
    upstream["task"]["sequence_length"] = 0
    runner = tiny_runner_config(tiny_librispeech, total_steps=8, save_step=4)
    args = ["-u", "ekd", "-c", write_yaml(runner, tmp_path / "runner.yaml"),
            "-g", write_yaml(upstream, tmp_path / "upstream.yaml"), "-n", "exp"]
    run_in_process(args, str(tmp_path), distributed=distributed)
    scalars = read_scalars(str(tmp_path / "result" / "pretrain" / "exp"))
    hit_rate = dict(scalars["ekd/train-target_cache/hit_rate"])
    assert [hit_rate[s] for s in range(1, 9)] == [0.0] * 4 + [1.0] * 4
    assert len(list((tmp_path / "cache").glob("*/*/*.pt"))) == 8


def test_loader_workers_read_the_cache_ahead(tiny_librispeech, tiny_teachers, tmp_path, monkeypatch):
    """With loader workers, a warm epoch's entries are read in the worker processes and travel
    with the batch: the training process reads no entry itself and runs no teacher."""
    from s3prl_ekd.teachers.target_cache import TargetCache

    expert = make_expert(tiny_librispeech, teachers_of(tiny_teachers), cache=tmp_path / "cache")
    expert.datarc = dict(expert.datarc, num_workers=1)
    cold = list(expert.get_train_dataloader())
    assert all(row is None for b in cold for row in b.cached)  # nothing stored yet
    for batch in cold:
        expert.teacher_targets(batch)  # fills the cache
    warm = list(expert.get_train_dataloader())  # read by the worker process
    assert all(row is not None for b in warm for row in b.cached)
    stored = {k: expert.target_cache.get(k) for b in warm for k in b.keys}
    for batch in warm:
        for key, row in zip(batch.keys, batch.cached):
            assert all(torch.equal(a, b) for a, b in zip(row, stored[key]))

    def no_read(self, key):
        raise AssertionError(f"the training process read {key} itself")

    monkeypatch.setattr(TargetCache, "get", no_read)
    counter = CountCalls(expert)
    hits = expert.target_cache.counts["hits"]
    for batch in warm:
        loss, _ = expert(batch, records=None, global_step=1)
        assert torch.isfinite(loss)
    assert counter.calls == 0 and expert.target_cache.counts["hits"] - hits == 8


def _bare_cache(tmp_path):
    from types import SimpleNamespace

    from s3prl_ekd.distill.targets import TargetPlan
    from s3prl_ekd.teachers.target_cache import TargetCache

    cache = TargetCache(tmp_path / "cache", TargetPlan.from_scheme("single", {"a": 4}, [1]), {"test": 1})
    keys = [SimpleNamespace(path=f"u{i}.flac", start=0, length=16000, file_bytes=100, cropped=False) for i in range(3)]
    return cache, keys, [torch.zeros(5, 4, dtype=torch.float16)]


def test_full_disk_never_ends_the_run_warns_once_and_counts(tmp_path, monkeypatch, caplog):
    import errno

    import s3prl_ekd.teachers.target_cache as tc

    cache, keys, targets = _bare_cache(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tc.torch, "save", full)
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.teachers.target_cache"):
        for key in keys:
            cache.put(key, targets)  # no exception
    assert cache.counts["not_stored"] == 3 and cache.counts["written"] == 0
    warnings = [r for r in caplog.records if "cannot store" in r.getMessage()]
    assert len(warnings) == 1 and "disk is full" in warnings[0].getMessage()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_folder_in_an_entrys_place_is_skipped_and_counted(tmp_path, caplog):
    cache, keys, targets = _bare_cache(tmp_path)
    cache.entry_path(keys[0]).mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="s3prl_ekd.teachers.target_cache"):
        assert cache.get(keys[0]) is None
        for key in keys:
            cache.put(key, targets)
    assert cache.counts["not_stored"] == 1 and cache.counts["written"] == 2  # the others are stored
    assert cache.get(keys[1]) is not None
    assert sum("cannot store" in r.getMessage() for r in caplog.records) == 1
