"""Our libriphone dataset (the one s3prl's ctc task imports) on the tiny corpus."""

import pytest
from s3prl.downstream.ctc.text import load_text_encoder

from s3prl_ekd.superb.libriphone import LibriPhoneDataset, read_lexicon


def _tokenizer(root_dir):
    return load_text_encoder("word", f"{root_dir}/downstream_configs/vocab/phoneme.txt")


def test_phones_are_the_lexicon_of_the_transcript(tiny_corpus, root_dir):
    tok = _tokenizer(root_dir)
    lexicon = read_lexicon([tiny_corpus.lexicon], tok)
    ds = LibriPhoneDataset(["test-clean"], tok, 1, tiny_corpus.librispeech, [tiny_corpus.lexicon])
    assert len(ds) == 4
    lengths = [len(t) for t in ds.text]
    assert lengths == sorted(lengths, reverse=True)  # longest label first, as s3prl's
    for path, ids in (ds[i] for i in range(len(ds))):
        spk, chap, _ = path.stem.split("-")
        with open(path.parent / f"{spk}-{chap}.trans.txt") as f:
            text = dict(line.rstrip("\n").split(" ", 1) for line in f)[path.stem]
        want = [p for w in text.split() for p in lexicon[w]]
        assert ids[-1] == tok.eos_idx and tok.decode(ids) == " ".join(want)
    buckets = LibriPhoneDataset(["train-clean-100"], tok, 4, tiny_corpus.librispeech, [tiny_corpus.lexicon])
    assert all(len(buckets[i]) == 4 for i in range(len(buckets)))


def test_errors_name_the_file(tiny_corpus, root_dir, tmp_path):
    tok = _tokenizer(root_dir)
    bad = tmp_path / "lex.txt"
    bad.write_text("HELLO HH AH0 L OW1\nWORLD W ER1 L D XX\n")
    with pytest.raises(ValueError, match=r"lex.txt:2: phones \['XX'\]"):
        read_lexicon([str(bad)], tok)
    with pytest.raises(FileNotFoundError, match="no .flac files under"):
        LibriPhoneDataset(["train-other-500"], tok, 1, tiny_corpus.librispeech, [tiny_corpus.lexicon])
