import os
import subprocess
import sys
import textwrap

import pytest
import torch

from s3prl_ekd.io.checkpoint import CheckpointError, safe_load
from s3prl_ekd.teachers.fairseq_import import (
    CONVERTED_KEYS,
    convert_fairseq_hubert,
    fairseq_to_s3prl,
    is_fairseq_checkpoint,
    load_fairseq_checkpoint,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wavs():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(16000, generator=g), torch.randn(11000, generator=g)]


def _hidden(expert):
    expert.eval().requires_grad_(False)
    with torch.no_grad():
        return expert(_wavs())["hidden_states"]


@pytest.fixture(scope="module")
def fairseq_reference(fairseq_hubert):
    """Hidden states of the checkpoint as REAL fairseq loads it (s3prl's legacy expert, same hooks)."""
    import fairseq.data.dictionary
    from s3prl.upstream.hubert.expert import LegacyUpstreamExpert

    # fairseq's own loader under torch 2.8 needs its Dictionary allowlisted (test only)
    torch.serialization.add_safe_globals([fairseq.data.dictionary.Dictionary])
    return _hidden(LegacyUpstreamExpert(fairseq_hubert["paths"]["cfg"]))


def test_reader_gives_plain_data_and_s3prls_converted_format(fairseq_hubert):
    for vintage, path in fairseq_hubert["paths"].items():
        assert is_fairseq_checkpoint(path), vintage
        state = load_fairseq_checkpoint(path)
        conv = fairseq_to_s3prl(state, path)
        assert sorted(conv) == sorted(CONVERTED_KEYS)
        assert conv["dictionaries_symbols"] == [["<s>", "<pad>", "</s>", "<unk>"] + [str(i) for i in range(10)]]
        assert conv["model_cfg"]["encoder_layers"] == 3 and conv["model_cfg"]["extractor_mode"] == "default"
        assert conv["task_cfg"]["labels"] == ["km"] and conv["task_cfg"]["normalize"] is False
        want = fairseq_hubert["model"].state_dict()
        assert conv["model_weight"].keys() == want.keys()
        assert all(torch.equal(conv["model_weight"][k], want[k]) for k in want)


def test_converted_hubert_equals_real_fairseq_and_s3prls_conversion(fairseq_hubert, fairseq_reference, tmp_path):
    from s3prl.upstream.hubert.convert import load_and_convert_fairseq_ckpt
    from s3prl.upstream.hubert.expert import UpstreamExpert

    s3prl_converted = tmp_path / "s3prl_converted.pt"
    load_and_convert_fairseq_ckpt(fairseq_hubert["paths"]["cfg"], str(s3prl_converted))  # uses fairseq
    theirs = _hidden(UpstreamExpert(str(s3prl_converted)))
    assert len(fairseq_reference) == 4  # layer 0 + 3 blocks
    for vintage, path in fairseq_hubert["paths"].items():
        ours = _hidden(UpstreamExpert(str(convert_fairseq_hubert(path, output=tmp_path / f"{vintage}.pt"))))
        for o, f, t in zip(ours, fairseq_reference, theirs):
            assert torch.equal(o, f), vintage
            assert torch.equal(o, t), vintage


@pytest.fixture(scope="module")
def fairseq_reference_alone(fairseq_hubert):
    """The same, each utterance on its own (our teachers' padded batch gives each its features alone)."""
    from s3prl.upstream.hubert.expert import LegacyUpstreamExpert

    expert = LegacyUpstreamExpert(fairseq_hubert["paths"]["cfg"]).eval().requires_grad_(False)
    with torch.no_grad():
        return [expert([w])["hidden_states"] for w in _wavs()]


def test_teacher_specs_take_fairseq_files(fairseq_hubert, fairseq_reference_alone, tmp_path):
    import shutil

    from s3prl_ekd.teachers.ensemble import TeacherEnsemble

    src = tmp_path / "checkpoint_best.pt"
    shutil.copy(fairseq_hubert["paths"]["args"], src)
    ens = TeacherEnsemble(
        [
            {"name": "explicit", "upstream": "fairseq", "ckpt": str(src)},
            {"name": "detected", "upstream": "hubert_local", "ckpt": str(src)},  # found to be fairseq's
        ]
    )
    (converted,) = tmp_path.glob("checkpoint_best.*.converted.pt")  # cached next to it, keyed by its content
    assert set(safe_load(converted)) == set(CONVERTED_KEYS)
    hidden = ens(_wavs())
    for name in ("explicit", "detected"):
        for layer, got in enumerate(hidden[name]):
            for i, alone in enumerate(fairseq_reference_alone):  # masked vs fused group norm: ~1e-6
                want = alone[layer][0]
                torch.testing.assert_close(got[i, : want.shape[0]], want, rtol=0, atol=1e-5)


def test_conversion_is_cached_and_redone_when_the_checkpoint_changes(fairseq_hubert, tmp_path):
    import shutil

    src = tmp_path / "run.pt"
    shutil.copy(fairseq_hubert["paths"]["cfg"], src)
    from s3prl_ekd.teachers.target_cache import file_sha256

    first = convert_fairseq_hubert(src)
    assert first == tmp_path / f"run.{file_sha256(src)[:16]}.converted.pt"
    stamp = first.stat().st_mtime_ns
    assert convert_fairseq_hubert(src) == first and first.stat().st_mtime_ns == stamp  # reused
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))  # touched, same bytes: still reused
    assert convert_fairseq_hubert(src) == first and first.stat().st_mtime_ns == stamp
    # replaced by another checkpoint with an OLDER modification time: converted again, by content
    shutil.copy(fairseq_hubert["paths"]["args"], src)
    os.utime(src, ns=(stamp - 10**10, stamp - 10**10))
    second = convert_fairseq_hubert(src)
    assert second != first and second.name == f"run.{file_sha256(src)[:16]}.converted.pt"
    assert safe_load(second)["model_cfg"] == fairseq_to_s3prl(load_fairseq_checkpoint(src))["model_cfg"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic: no leftovers


def test_loader_never_imports_fairseq(fairseq_hubert, fairseq_reference, tmp_path):
    """A Python where fairseq cannot be imported converts and loads the checkpoint all the same."""
    out = tmp_path / "hidden.pt"
    script = textwrap.dedent(
        f"""
        import sys
        class NoFairseq:
            def find_spec(self, name, path=None, target=None):
                if name == "fairseq" or name.startswith("fairseq."):
                    raise ImportError("fairseq is blocked in this test")
        sys.meta_path.insert(0, NoFairseq())
        sys.path.insert(0, {ROOT!r})
        import torch
        from s3prl_ekd.teachers.fairseq_import import convert_fairseq_hubert
        from s3prl.upstream.hubert.expert import UpstreamExpert
        up = UpstreamExpert(str(convert_fairseq_hubert({fairseq_hubert["paths"]["dictconfig"]!r}, output={str(tmp_path / "c.pt")!r})))
        up.eval().requires_grad_(False)
        g = torch.Generator().manual_seed(1)
        wavs = [torch.randn(16000, generator=g), torch.randn(11000, generator=g)]
        with torch.no_grad():
            hs = up(wavs)["hidden_states"]
        torch.save([h.clone() for h in hs], {str(out)!r})
        assert not [m for m in sys.modules if m.split(".")[0] == "fairseq"], "fairseq was imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for got, want in zip(torch.load(out, weights_only=True), fairseq_reference):
        assert torch.equal(got, want)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_other_classes_are_refused_unread(tmp_path):
    import datetime

    for obj, name in ((_Evil(), "system"), (datetime.date(2020, 1, 1), "datetime.date")):
        path = tmp_path / "bad.pt"
        torch.save({"model": {}, "cfg": {}, "x": obj}, path)
        with pytest.raises(CheckpointError, match=rf"names the class \S*{name}.*refused unread"):
            load_fairseq_checkpoint(path)
        assert not is_fairseq_checkpoint(path)


def test_not_hubert_files_are_explained(tmp_path, tiny_teachers):
    wavlm = load_fairseq_checkpoint(tiny_teachers["wavlm"])  # {"cfg", "model"}: WavLM's own format
    with pytest.raises(CheckpointError, match="wavlm_local"):
        fairseq_to_s3prl(wavlm, "wavlm.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_fairseq_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="truncated or damaged|cannot be read"):
        load_fairseq_checkpoint(tmp_path / "cut.pt")
    assert not is_fairseq_checkpoint(tiny_teachers["hubert"])  # s3prl's converted format
