"""Length tables, length buckets, deterministic crops and the resumable sampler."""

import csv
import os

import pytest
import soundfile as sf
import torch
from conftest import UTTERANCE_SECONDS

from s3prl_ekd.cli import main as cli_main
from s3prl_ekd.pretrain.ekd.dataset import (
    BucketedWaveDataset,
    DataConfigError,
    ResumableBucketSampler,
    make_train_loader,
    read_length_table,
)


def test_prepare_lengths_writes_s3prl_tables(tiny_librispeech):
    path = f"{tiny_librispeech['file_path']}/train-clean-100.csv"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["", "file_path", "length", "label"]  # s3prl's pandas-written header
    lengths = [int(r[2]) for r in rows[1:]]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(lengths) == [int(s * 16000) for s in UTTERANCE_SECONDS]
    for _, rel, length, label in rows[1:]:
        assert rel.startswith("train-clean-100/") and label == ""
        assert sf.info(f"{tiny_librispeech['libri_root']}/{rel}").frames == int(length)
    assert read_length_table(path)[0] == (rows[1][1], lengths[0])


def test_prepare_lengths_errors(tmp_path):
    with pytest.raises(SystemExit, match="no LibriSpeech subset"):
        cli_main(["prepare-lengths", str(tmp_path)])
    with pytest.raises(SystemExit, match="is not a folder"):
        cli_main(["prepare-lengths", str(tmp_path / "missing")])


def make_dataset(data, **kw):
    args = dict(libri_root=data["libri_root"], file_path=data["file_path"], sets=["train-clean-100"],
                bucket_size=2, sequence_length=16000, seed=3)
    args.update(kw)
    return BucketedWaveDataset(**args)


def test_buckets_group_similar_lengths_and_crop(tiny_librispeech):
    ds = make_dataset(tiny_librispeech)
    assert len(ds) == 4 and ds.num_samples == 8
    batch = ds.collate_fn([ds[(0, 0)]])  # the two longest: 2.0 s and 1.8 s, both cropped to 1 s
    assert batch.lengths.tolist() == [16000, 16000]
    batch = ds.collate_fn([ds[(0, 3)]])  # the two shortest: 0.7 s and 0.5 s, kept whole, padded
    assert batch.lengths.tolist() == [11200, 8000]
    assert batch.wavs.shape == (2, 11200) and batch.wavs[1, 8000:].abs().sum() == 0
    assert torch.equal(batch.as_list()[1], batch.wavs[1, :8000])


def test_bucketing_off_gives_random_batches_with_more_padding(tiny_librispeech):
    def padding(ds):
        batches = [ds.collate_fn([ds[(0, i)]]) for i in range(len(ds))]
        return sum(b.wavs.numel() - int(b.lengths.sum()) for b in batches)

    bucketed = make_dataset(tiny_librispeech, sequence_length=0)
    shuffled = make_dataset(tiny_librispeech, sequence_length=0, bucketing=False)
    assert sorted(p for b in shuffled.buckets for p in b) == sorted(p for b in bucketed.buckets for p in b)
    assert shuffled.buckets != bucketed.buckets
    assert padding(shuffled) > padding(bucketed)
    loader = make_train_loader(dict(tiny_librispeech, sets=["train-clean-100"], train_batch_size=2, num_workers=0,
                                    pin_memory=True, bucketing=False), 0, seed=3)
    assert loader.dataset.buckets == shuffled.buckets and not loader.pin_memory  # pinning only for a GPU


def test_crops_depend_on_seed_epoch_and_bucket_only(tiny_librispeech):
    ds = make_dataset(tiny_librispeech)
    again = make_dataset(tiny_librispeech)
    assert all(torch.equal(a, b) for a, b in zip(ds[(2, 0)], again[(2, 0)]))
    crops = {tuple(ds[(epoch, 0)][0][:5].tolist()) for epoch in range(6)}
    assert len(crops) > 1  # a new window each epoch
    whole = make_dataset(tiny_librispeech, sequence_length=0)[(0, 0)]
    assert [len(w) for w in whole] == [32000, 28800]


def test_max_timestep_filters_like_s3prl(tiny_librispeech):
    assert make_dataset(tiny_librispeech, max_timestep=20000).num_samples == 4  # < 20000 samples
    assert make_dataset(tiny_librispeech, max_timestep=-20000).num_samples == 4  # > 20000 samples


def test_missing_table_error_names_file_and_command(tiny_librispeech, tmp_path):
    with pytest.raises(DataConfigError, match="train-other-500.csv does not exist.*prepare-lengths"):
        make_dataset(tiny_librispeech, sets=["train-other-500"])
    with pytest.raises(DataConfigError, match="libri_root"):
        make_dataset(tiny_librispeech, libri_root=str(tmp_path / "nowhere"))


def consume(sampler, n):
    out, it = [], iter(sampler)
    while len(out) < n:
        try:
            out.append(next(it))
        except StopIteration:
            it = iter(sampler)  # s3prl's Runner re-iterates the same loader: the next epoch
    return out


def test_sampler_resumes_exactly_mid_epoch(tiny_librispeech):
    ds = make_dataset(tiny_librispeech)
    full = consume(ResumableBucketSampler(ds, seed=5), 11)
    assert [e for e, _ in full] == [0] * 4 + [1] * 4 + [2] * 3
    assert sorted(i for e, i in full if e == 1) == [0, 1, 2, 3]
    for done in (0, 3, 4, 6):
        resumed = ResumableBucketSampler(ds, seed=5)
        resumed.resume_at(done)
        assert consume(resumed, 11 - done) == full[done:]


def test_sampler_splits_buckets_between_ranks(tiny_librispeech):
    ds = make_dataset(tiny_librispeech)
    ranks = [list(ResumableBucketSampler(ds, num_replicas=2, rank=r, seed=5)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    assert sorted(i for r in ranks for _, i in r) == [0, 1, 2, 3]


def test_unreadable_files_are_skipped_and_missing_ones_dropped(tiny_librispeech, tmp_path):
    from s3prl_ekd.pretrain.ekd.dataset import write_length_table

    root = tiny_librispeech["libri_root"]
    (tmp_path / "bad.flac").write_bytes(b"not audio at all")
    import shutil

    shutil.copy(f"{root}/../len_for_bucket/train-clean-100.csv", tmp_path / "train-clean-100.csv")
    rows = read_length_table(tmp_path / "train-clean-100.csv")
    rel_bad = os.path.relpath(tmp_path / "bad.flac", root)
    write_length_table(rows + [(rel_bad, 40000), ("train-clean-100/gone.flac", 39000)], tmp_path / "train-clean-100.csv")
    ds = make_dataset(tiny_librispeech, file_path=str(tmp_path))
    assert ds.num_samples == 9  # the missing file is left out at start
    first = ds[(0, 0)]  # the unreadable file (longest) shares a bucket with the 2.0 s utterance
    assert len(first) == 1 and ds.stats.skipped == 1


def test_a_bucket_of_only_bad_files_is_replaced_by_the_next(tiny_librispeech, tmp_path):
    """Files that go bad mid-run (deleted, overwritten) never stop the run while any file is readable."""
    import shutil

    root = tmp_path / "LibriSpeech"
    shutil.copytree(tiny_librispeech["libri_root"], root)
    ds = make_dataset(tiny_librispeech, libri_root=str(root))
    expected_next = ds[(0, 1)]
    for rel in ds.buckets[0]:  # after the start-up check: both files of bucket 0 go bad
        (root / rel).write_bytes(b"")
    assert [w.shape for w in ds[(0, 0)]] == [w.shape for w in expected_next]
    assert ds.stats.counts["skipped/empty"] == 2
    for rel in (r for b in ds.buckets for r in b):
        (root / rel).unlink()
    with pytest.raises(DataConfigError, match="no file of the length tables .* can be read"):
        ds[(0, 2)]


def test_batches_say_which_utterance_and_window_each_row_is(tiny_librispeech):
    import os

    from s3prl_ekd.pretrain.ekd.dataset import UtteranceKey, WaveBatch

    ds = make_dataset(tiny_librispeech)
    short = ds.collate_fn([ds[(0, 3)]])  # 0.7 s and 0.5 s: whole files
    root = tiny_librispeech["libri_root"]
    assert short.keys == [
        UtteranceKey(rel, 0, n, os.path.getsize(os.path.join(root, rel)), False)
        for rel, n in zip(ds.buckets[3], [11200, 8000])
    ]
    long = [ds.collate_fn([ds[(e, 0)]]).keys for e in range(4)]  # 2.0 s and 1.8 s, cropped to 1 s
    assert all(k.cropped and k.length == 16000 and k.path in ds.buckets[0] for keys in long for k in keys)
    assert len({keys[0].start for keys in long}) > 1  # a new window each epoch: another key
    assert ds.collate_fn([ds[(0, 0)]]).keys == long[0]  # the same (seed, epoch, bucket): the same key
    assert ds.collate_fn([list(ds[(0, 3)])]).keys is None  # a plain list of waveforms: no keys
    pinned = WaveBatch(short.wavs, short.lengths, short.keys)
    if torch.cuda.is_available():
        pinned = pinned.pin_memory()
    assert pinned.keys == short.keys
    loader = make_train_loader(dict(tiny_librispeech, sets=["train-clean-100"], train_batch_size=2, num_workers=1,
                                    pin_memory=False), 0, seed=3)
    batches = list(loader)  # keys cross the worker process
    assert sorted(k.path for b in batches for k in b.keys) == sorted(p for b in ds.buckets for p in b)
