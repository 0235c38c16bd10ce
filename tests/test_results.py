"""collect-results: rows from superb_result.json files, the markdown table, the CLI."""

import json

import pytest

from s3prl_ekd import cli
from s3prl_ekd.superb.results import collect_results, results_markdown


def _result(folder, task, metric, value, chance=None, upstream="fbank", extra=None):
    folder.mkdir(parents=True)
    row = {"task": task, "metric": metric, "value": value, "chance": chance, "upstream": upstream,
           "upstream_ckpt": None, "extra": extra or {}}
    (folder / "superb_result.json").write_text(json.dumps(row))
    return row


def test_collect_and_table(tmp_path, capsys):
    _result(tmp_path / "fbank" / "asr", "asr", "wer", 99.5, extra={"cer": 75.587})
    _result(tmp_path / "fbank" / "sid", "sid", "acc", 80.25, chance=4.2)
    _result(tmp_path / "fbank" / "pr", "pr", "per", 61.0)
    rows = collect_results([str(tmp_path)])
    assert [r["task"] for r in rows] == ["pr", "sid", "asr"]  # SUPERB's order
    table = results_markdown(rows)
    assert table.splitlines()[0] == "| upstream | PR PER% ↓ | SID Acc% ↑ | ASR WER% ↓ |"
    assert table.splitlines()[2] == "| fbank | 61.00 | 80.25 (chance 4.2) | 99.50 (CER 75.59) |"
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert cli.main(["collect-results", str(tmp_path / "fbank"), "--json", str(out_json),
                     "--markdown", str(out_md)]) == 0
    assert capsys.readouterr().out == table == out_md.read_text()
    assert json.loads(out_json.read_text()) == rows


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(SystemExit, match="nowhere: no such experiment folder"):
        cli.main(["collect-results", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="no superb_result.json"):
        cli.main(["collect-results", str(tmp_path)])
