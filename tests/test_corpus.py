"""The corpus generator: sizes, determinism, caching, and each layout's files read back."""

import filecmp
import json
import os
from collections import Counter

import pytest
import soundfile as sf

from s3prl_ekd import cli
from s3prl_ekd.corpus import CorpusError, make_corpus, read_manifest
from s3prl_ekd.corpus.phones import phone_set
from s3prl_ekd.corpus.plan import IEMOCAP_LABELS, SIZES, make_plan, resolve_size

TINY = SIZES["tiny"]


def _files(root, ext):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs if f.endswith(ext))


def test_counts_and_audio_format(tiny_corpus):
    flacs = _files(tiny_corpus.librispeech, ".flac")
    n_libri = (TINY.libri_train_speakers * TINY.libri_train_chapters * TINY.libri_train_utts
               + 2 * TINY.libri_eval_speakers * TINY.libri_eval_utts)
    assert len(flacs) == n_libri
    vox = _files(tiny_corpus.voxceleb1, ".wav")
    assert len(vox) == TINY.vox_speakers * (TINY.vox_train + TINY.vox_dev + TINY.vox_test)
    emo = _files(tiny_corpus.iemocap, ".wav")
    assert len(emo) == 5 * TINY.iemocap_dialogs * 2 * 4 * TINY.iemocap_utts
    for path in (os.path.join(tiny_corpus.librispeech, flacs[0]),
                 os.path.join(tiny_corpus.voxceleb1, vox[0]), os.path.join(tiny_corpus.iemocap, emo[0])):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.5 < info.duration < 10
    manifest = read_manifest(tiny_corpus.root)
    assert manifest["counts"] == {"librispeech": n_libri, "voxceleb1": len(vox), "iemocap": len(emo)}


def test_librispeech_tables_match_audio_and_lexicon_covers_transcripts(tiny_corpus):
    lexicon = {}
    with open(tiny_corpus.lexicon) as f:
        for line in f:
            word, *phones = line.split()
            lexicon[word] = phones
    vocab = set(phone_set())
    assert all(p in vocab for ph in lexicon.values() for p in ph)
    assert lexicon["BETTER"] == ["B", "EH1", "T", "ER0"]  # eSpeak's flap is LibriSpeech's T
    for split in ("train-clean-100", "dev-clean", "test-clean"):
        with open(os.path.join(tiny_corpus.len_for_bucket, f"{split}.csv")) as f:
            header, *rows = [line.rstrip("\n").split(",") for line in f]
        assert header == ["", "file_path", "length", "label"]
        lengths = [int(r[2]) for r in rows]
        assert lengths == sorted(lengths, reverse=True)
        for _, rel, n, _ in rows:
            assert rel.startswith(split + "/")
            assert sf.info(os.path.join(tiny_corpus.librispeech, rel)).frames == int(n)
            spk, chap, _ = os.path.basename(rel)[:-5].split("-")
            trans = os.path.join(tiny_corpus.librispeech, split, spk, chap, f"{spk}-{chap}.trans.txt")
            with open(trans) as f:
                lines = dict(line.rstrip("\n").split(" ", 1) for line in f)
            words = lines[os.path.basename(rel)[:-5]].split()
            assert words and all(w in lexicon and w.isupper() for w in words)
    # train, dev and test speakers are disjoint, as in LibriSpeech
    spk = {s: set(os.listdir(os.path.join(tiny_corpus.librispeech, s)))
           for s in ("train-clean-100", "dev-clean", "test-clean")}
    assert not (spk["train-clean-100"] & spk["dev-clean"]) and not (spk["dev-clean"] & spk["test-clean"])


def test_voxceleb_split_and_iemocap_folds(tiny_corpus):
    with open(tiny_corpus.iden_split) as f:
        entries = [line.split() for line in f]
    by_split = Counter(s for s, _ in entries)
    assert by_split == {"1": TINY.vox_speakers * TINY.vox_train, "2": TINY.vox_speakers * TINY.vox_dev,
                        "3": TINY.vox_speakers * TINY.vox_test}
    for _, rel in entries:
        assert os.path.isfile(os.path.join(tiny_corpus.voxceleb1, "dev", "wav", rel))
    for s in range(1, 6):
        with open(os.path.join(tiny_corpus.iemocap_meta_data, f"Session{s}", "test_meta_data.json")) as f:
            test = json.load(f)
        with open(os.path.join(tiny_corpus.iemocap_meta_data, f"Session{s}", "train_meta_data.json")) as f:
            train = json.load(f)
        assert test["labels"] == train["labels"] == IEMOCAP_LABELS
        assert {m["path"].split("/")[0] for m in test["meta_data"]} == {f"Session{s}"}
        assert f"Session{s}" not in {m["path"].split("/")[0] for m in train["meta_data"]}
        assert Counter(m["label"] for m in test["meta_data"]) == {e: 2 * TINY.iemocap_utts for e in IEMOCAP_LABELS}
        for m in test["meta_data"]:
            assert os.path.isfile(os.path.join(tiny_corpus.iemocap, m["path"]))
            assert m["speaker"] == os.path.basename(m["path"]).split("_")[0]
    emo_eval = os.path.join(tiny_corpus.iemocap, "Session1", "dialog", "EmoEvaluation")
    with open(os.path.join(emo_eval, os.listdir(emo_eval)[0])) as f:
        turns = [line.split("\t") for line in f if line.startswith("[")]
    assert {t[2] for t in turns} == set(IEMOCAP_LABELS)


def test_same_seed_same_bytes_whatever_the_workers(tiny_corpus, tmp_path):
    again = make_corpus(str(tmp_path / "again"), size="tiny", seed=0, workers=1, progress=lambda m: None)
    cmp = filecmp.dircmp(tiny_corpus.root, again.root)
    files = _files(tiny_corpus.root, "")
    match, mismatch, errors = filecmp.cmpfiles(tiny_corpus.root, again.root, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    assert not cmp.left_only and not cmp.right_only


def test_cache_reuses_and_settings_change_remakes(tmp_path):
    messages = []
    one = dict(libri_train_speakers=1, libri_eval_speakers=1, vox_speakers=1, iemocap_utts=1)
    paths = make_corpus(str(tmp_path / "c"), size="tiny", seed=3, progress=messages.append, **one)
    stamp = os.path.getmtime(paths.manifest)
    make_corpus(str(tmp_path / "c"), size="tiny", seed=3, progress=messages.append, **one)
    assert "up to date" in messages[-1] and os.path.getmtime(paths.manifest) == stamp
    first = read_manifest(paths.root)["settings_hash"]
    make_corpus(str(tmp_path / "c"), size="tiny", seed=4, progress=messages.append, **one)
    assert read_manifest(paths.root)["settings_hash"] != first


def test_refuses_foreign_folder_and_bad_sizes(tmp_path):
    (tmp_path / "mine.txt").write_text("not a corpus")
    with pytest.raises(CorpusError, match="not an s3prl-ekd corpus"):
        make_corpus(str(tmp_path), size="tiny")
    with pytest.raises(ValueError, match="unknown corpus size 'huge'"):
        resolve_size("huge")
    with pytest.raises(ValueError, match="vox_speakers must be >= 1"):
        resolve_size("tiny", vox_speakers=0)


def test_plan_is_seeded_and_layouts_independent():
    a, b = make_plan(TINY, 0), make_plan(TINY, 0)
    assert [u.to_dict() for u in a] == [u.to_dict() for u in b]
    assert [u.text for u in make_plan(TINY, 1)] != [u.text for u in a]
    more_vox = make_plan(resolve_size("tiny", vox_speakers=6), 0)
    libri = lambda plan: [u.to_dict() for u in plan if u.meta["layout"] == "librispeech"]  # noqa: E731
    assert libri(more_vox) == libri(a)


def test_cli_make_corpus(tiny_corpus, capsys):
    assert cli.main(["make-corpus", tiny_corpus.root, "--size", "tiny"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["iden_split"] == tiny_corpus.iden_split
    with pytest.raises(SystemExit, match="FIELD=INTEGER"):
        cli.main(["make-corpus", tiny_corpus.root, "--set", "vox_speakers=many"])


def test_full_disk_while_writing_says_so_and_where(tmp_path, monkeypatch):
    """libsndfile reports a full disk as "System error."; make-corpus names the disk and the folder."""
    import shutil as shutil_module
    from collections import namedtuple

    import numpy as np
    import soundfile as sf

    from s3prl_ekd.corpus.synth import CorpusWriteError, _write_audio

    def full(file, *args, **kwargs):
        file.write(b"RIFF")  # what libsndfile leaves: a partial file
        raise sf.LibsndfileError(2, "Error opening {0!r}: ".format(file))

    monkeypatch.setattr(sf, "write", full)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda p: namedtuple("U", "total used free")(10, 10, 0))
    target = tmp_path / "LibriSpeech" / "a.flac"
    with pytest.raises(CorpusWriteError, match=rf"the disk holding {tmp_path / 'LibriSpeech'} is full \(0 bytes free\) while writing .*a\.flac"):
        _write_audio(str(target), np.zeros(16000, dtype=np.int16))
    assert not list(tmp_path.rglob("*.tmp"))
