"""The ``libriphone`` dataset of s3prl's ``ctc`` task (PR), which the s3prl 0.4.18 wheel lacks.

s3prl's ``downstream/ctc/data.py`` imports ``.corpus.libriphone.LibriPhoneDataset``, but the
wheel ships no ``ctc/corpus/`` folder, so ``-d ctc`` cannot start. :mod:`s3prl_ekd.s3prl_compat`
makes this module importable under that name. Its interface and behaviour are those of s3prl's
class (our code): LibriSpeech ``*.flac`` + ``*.trans.txt`` under ``path/<split>``, words mapped
to phones by the ``lexicon`` files (first pronunciation wins), phones encoded by the task's
tokenizer, items sorted longest label first, and buckets of ``bucket_size`` for training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence

from torch.utils.data import Dataset


def read_lexicon(files: Sequence[str], tokenizer) -> Dict[str, List[str]]:
    """WORD -> phones from ``WORD PH1 PH2 ...`` lines; every phone must be in the vocabulary."""
    vocab = set(getattr(tokenizer, "_vocab2idx", {}))
    lexicon: Dict[str, List[str]] = {}
    for path in files:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                word, *phones = line.split()
                unknown = [p for p in phones if vocab and p not in vocab]
                if unknown:
                    raise ValueError(f"{path}:{n}: phones {unknown} of {word!r} are not in the "
                                     "task's vocab_file: use a lexicon in the same phone set")
                lexicon.setdefault(word, phones)  # s3prl takes the first pronunciation
    return lexicon


def read_transcripts(chapter_dir: str) -> Dict[str, str]:
    """utterance id -> transcript, from the chapter's ``<spk>-<chap>.trans.txt``."""
    out: Dict[str, str] = {}
    for name in os.listdir(chapter_dir):
        if name.endswith(".trans.txt"):
            with open(os.path.join(chapter_dir, name), encoding="utf-8") as f:
                for line in f:
                    uid, _, text = line.rstrip("\n").partition(" ")
                    out[uid] = text
    return out


class LibriPhoneDataset(Dataset):
    """(flac path, phone ids) pairs of LibriSpeech splits; buckets of them when training."""

    def __init__(self, split, tokenizer, bucket_size, path, lexicon, ascending=False, **kwargs):
        self.path = path
        self.bucket_size = bucket_size
        word2phones = read_lexicon(lexicon, tokenizer)
        items = []
        for subset in split:
            files = sorted(Path(path, subset).rglob("*.flac"))
            if not files:
                raise FileNotFoundError(f"no .flac files under {os.path.join(path, subset)}: "
                                        "check corpus.path and the split names in the config")
            transcripts: Dict[str, Dict[str, str]] = {}
            for f in files:
                folder = str(f.parent)
                if folder not in transcripts:
                    transcripts[folder] = read_transcripts(folder)
                text = transcripts[folder].get(f.stem)
                if text is None:
                    raise KeyError(f"{f}: no line for {f.stem!r} in the chapter's .trans.txt")
                missing = [w for w in text.split() if w not in word2phones]
                if missing:
                    raise KeyError(f"{f}: words {missing[:5]} are not in the lexicon {list(lexicon)}")
                phones = [p for w in text.split() for p in word2phones[w]]
                items.append((f, tokenizer.encode(" ".join(phones))))
        items.sort(key=lambda item: len(item[1]), reverse=not ascending)
        self.file_list = tuple(f for f, _ in items)
        self.text = tuple(t for _, t in items)

    def __getitem__(self, index):
        if self.bucket_size > 1:
            index = min(len(self.file_list) - self.bucket_size, index)
            end = index + self.bucket_size
            return list(zip(self.file_list[index:end], self.text[index:end]))
        return self.file_list[index], self.text[index]

    def __len__(self):
        return len(self.file_list)
