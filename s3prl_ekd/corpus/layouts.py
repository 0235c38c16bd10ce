"""The text files of each layout, written as the original corpora and s3prl's preprocessing do.

* LibriSpeech: ``<spk>-<chap>.trans.txt`` per chapter, and the ``len_for_bucket/<split>.csv``
  tables s3prl's ``asr`` dataset reads (``preprocess/generate_len_for_bucket.py``'s columns).
* libriphone: ``lexicon/librispeech-lexicon.txt`` (``WORD PH1 PH2 ...``, ARPAbet from eSpeak NG).
* VoxCeleb1: ``iden_split.txt`` (``<1|2|3> idXXXXX/<video>/<nnnnn>.wav``).
* IEMOCAP: ``SessionN/dialog/EmoEvaluation/<dialog>.txt`` and ``meta_data/SessionN/{train,test}_
  meta_data.json`` (what s3prl's ``emotion/IEMOCAP_preprocess.py`` makes: fold N tests SessionN).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Dict, List

from s3prl_ekd.corpus.plan import IEMOCAP_LABELS, IEMOCAP_SESSIONS, LIBRI_SPLITS
from s3prl_ekd.io import SAMPLE_RATE
from s3prl_ekd.io.atomic import atomic_write_text
from s3prl_ekd.pretrain.ekd.dataset import write_length_table


def write_librispeech(root: str, utts: List[Dict], lengths: List[int]) -> None:
    """Transcripts per chapter and the per-split length tables (longest first)."""
    chapters: Dict[str, List[Dict]] = defaultdict(list)
    tables: Dict[str, List] = defaultdict(list)
    for utt, n in zip(utts, lengths):
        m = utt["meta"]
        chapters[os.path.dirname(utt["path"])].append(utt)
        tables[m["split"]].append((utt["path"][len("LibriSpeech/"):], n))
    for folder, items in chapters.items():
        m = items[0]["meta"]
        lines = "".join(f"{u['meta']['id']} {u['text']}\n" for u in sorted(items, key=lambda u: u["meta"]["id"]))
        atomic_write_text(os.path.join(root, folder, f"{m['speaker']}-{m['chapter']}.trans.txt"), lines)
    for split in LIBRI_SPLITS:  # the tables pretraining's prepare-lengths writes, same code
        write_length_table(tables[split], os.path.join(root, "len_for_bucket", f"{split}.csv"))


def write_lexicon(root: str, lexicon: Dict[str, List[str]]) -> None:
    """``WORD PH1 PH2 ...`` a line, sorted."""
    lines = "".join(f"{w} {' '.join(p)}\n" for w, p in sorted(lexicon.items()))
    atomic_write_text(os.path.join(root, "lexicon", "librispeech-lexicon.txt"), lines)


def write_voxceleb1(root: str, utts: List[Dict]) -> None:
    """``iden_split.txt``: 1 = train, 2 = dev, 3 = test."""
    lines = "".join(f"{u['meta']['split']} {u['meta']['rel']}\n" for u in utts)
    atomic_write_text(os.path.join(root, "VoxCeleb1", "iden_split.txt"), lines)


def write_iemocap(root: str, utts: List[Dict], lengths: List[int]) -> None:
    """EmoEvaluation files (turn times, label, V/A/D) and the five folds' meta-data JSON."""
    by_dialog: Dict[str, List] = defaultdict(list)
    for utt, n in zip(utts, lengths):
        by_dialog[utt["meta"]["dialog"]].append((utt, n))
    for dialog, items in by_dialog.items():
        t, lines = 0.0, ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"]
        for utt, n in items:
            end = t + n / SAMPLE_RATE
            lines.append(f"[{t:.4f} - {end:.4f}]\t{utt['meta']['name']}\t{utt['meta']['label']}\t"
                         "[2.5000, 2.5000, 2.5000]\n\n")
            t = end + 0.5
        session = items[0][0]["meta"]["session"]
        atomic_write_text(os.path.join(root, "IEMOCAP", f"Session{session}", "dialog", "EmoEvaluation",
                            f"{dialog}.txt"), "".join(lines))

    def entries(sessions):
        return [{"path": u["path"][len("IEMOCAP/"):], "label": u["meta"]["label"],
                 "speaker": u["meta"]["dialog"].split("_")[0]}
                for u in utts if u["meta"]["session"] in sessions]

    for s in range(1, IEMOCAP_SESSIONS + 1):
        others = [o for o in range(1, IEMOCAP_SESSIONS + 1) if o != s]
        for name, sessions in (("train", others), ("test", [s])):
            data = {"labels": dict(IEMOCAP_LABELS), "meta_data": entries(sessions)}
            atomic_write_text(os.path.join(root, "IEMOCAP", "meta_data", f"Session{s}", f"{name}_meta_data.json"),
                   json.dumps(data, indent=1) + "\n")
