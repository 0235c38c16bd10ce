"""export-hf: the student as a transformers HubertModel folder, loaded without s3prl-ekd, and back."""

import json
import os
import subprocess
import sys

import pytest
import torch

from s3prl_ekd import cli
from s3prl_ekd.distill.student import EKDStudent
from s3prl_ekd.distill.student_checkpoint import save_student
from s3prl_ekd.distill.targets import TargetPlan
from s3prl_ekd.export.hf import FILES, export_hf
from s3prl_ekd.export.hf_format import HFFormatError, hubert_config, student_config_from_hubert
from s3prl_ekd.io.checkpoint import CheckpointError
from s3prl_ekd.upstream.ekd_student.hubconf import ekd_student

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "export_probe.py")
LENGTHS = (16000, 9000, 12345)  # unequal; the first is the longest
# Another process (one thread there, the default here) sums in another order: float32 rounding
# of these ~1-scale features stays far below 1e-4.
TOL = dict(atol=1e-4, rtol=1e-4)


def _student(cfg, scheme="average"):
    student = EKDStudent(cfg, TargetPlan.from_scheme(scheme, {"a": 32, "b": 32}))
    with torch.no_grad():  # away from the init's ones and zeros, so every weight counts
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return student.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny student saved as a demo pretraining run saves it, and its export-hf folder."""
    from conftest import TINY_STUDENT

    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("hf")
    teachers = [  # as TeacherEnsemble.describe() writes them
        {"name": "a", "upstream": "hubert_local", "ckpt": "/t/hubert.pt", "dim": 32, "num_layers": 6, "weight": 1.0},
        {"name": "b", "upstream": "wavlm_local", "ckpt": "/t/wavlm.pt", "dim": 32, "num_layers": 6, "weight": 1.0},
    ]
    ckpt = save_student(_student(TINY_STUDENT), tmp / "student.ckpt", step=321, teachers=teachers)
    out = export_hf(ckpt, tmp / "ekd-hf")
    wavs = [torch.randn(n) for n in LENGTHS]
    waves = tmp / "waves.pt"
    torch.save(wavs, waves)
    return {"ckpt": str(ckpt), "out": out, "wavs": wavs, "waves": waves, "tmp": tmp}


def _probe(kind, path, waves, out, root):
    proc = subprocess.run([sys.executable, "-I", PROBE, kind, str(path), str(waves), str(out)],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def _features(upstream, wavs):
    with torch.no_grad():
        return upstream(wavs)["hidden_states"]


def test_transformers_alone_loads_the_folder_with_the_students_features(exported, root_dir):
    out = exported["out"]
    assert sorted(os.listdir(out)) == sorted(FILES)  # safetensors only: no pickle in the folder
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "hubert" and config["architectures"] == ["HubertModel"]
    assert config["num_hidden_layers"] == 2 and config["feat_proj_layer_norm"] is False
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["sampling_rate"] == 16000 and pre["do_normalize"] is False and pre["return_attention_mask"] is False

    res = _probe("hf", out, exported["waves"], exported["tmp"] / "hf_out.pt", root_dir)
    assert res["imported"] == []  # neither s3prl_ekd nor s3prl
    assert res["class"] == "HubertModel" and res["extractor"] == "Wav2Vec2FeatureExtractor"
    assert res["missing"] == [] and res["unexpected"] == [] and res["input_equal"]

    upstream = ekd_student(exported["ckpt"]).eval()
    student = upstream.student
    for wav, hf in zip(exported["wavs"], res["alone"]):
        ours = [h[0] for h in _features(upstream, [wav])]
        assert len(hf) == len(ours) == 3
        for layer in (1, 2):  # the transformer layers: equal
            torch.testing.assert_close(hf[layer], ours[layer], **TOL)
        # hidden state 0: transformers' is after the positional conv and layer norm, ours before
        x = ours[0][None]
        with torch.no_grad():
            after = student.encoder.layer_norm(x + student.encoder.pos_conv(x.transpose(1, 2)).transpose(1, 2))[0]
        torch.testing.assert_close(hf[0], after, **TOL)
        assert (hf[0] - ours[0]).abs().max() > 0.1

    # padded batches (what the card says): the longest keeps its features, the shorter ones
    # change, with the attention mask or without; ekd_student gives each its features alone
    assert res["batch_keys"] == ["input_values"]
    batch_ours = _features(upstream, exported["wavs"])
    for i, alone in enumerate(res["alone"]):
        t = alone[2].shape[0]
        torch.testing.assert_close(batch_ours[2][i, :t], alone[2], **TOL)
        for key in ("padded", "padded_mask"):
            diff = (res[key][2][i, :t] - alone[2]).abs().max()
            assert diff < 1e-4 if i == 0 else diff > 0.1, (key, i, diff)


def test_model_card_for_a_demo_student(exported, tmp_path):
    from s3prl_ekd.demo.report import markdown_table

    results = {  # the demo's results.json shape
        "tasks": ["PR", "SID"],
        "rows": [
            {"name": "fbank", "kind": "floor", "description": "log mel filterbank", "metrics": {"PR": 73.6, "SID": 18.1}},
            {"name": "average", "kind": "ensemble", "description": "EKD, layerwise average", "metrics": {"PR": 75.4, "SID": 44.4}},
        ],
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    rc = cli.main(["export-hf", exported["ckpt"], str(tmp_path / "card"), "--results", str(tmp_path / "results.json")])
    assert rc == 0
    card = (tmp_path / "card" / "README.md").read_text()
    n = ekd_student(exported["ckpt"]).student.num_parameters()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: transformers\n")
    for text in [
        f"**Parameters:** {n:,}",
        "**Prediction heads dropped:**",
        "**Teachers:** a (hubert_local, hubert.pt), b (wavlm_local, wavlm.pt)",
        "**Scheme:** average (3 prediction targets, below)",
        "| avg/L12 | mean | a layer 12, b layer 12 | 32 |",
        "**Pretraining steps:** 321",
        'AutoModel.from_pretrained("card")',
        "-u ekd_student -k card",
        "-u hf_hubert_custom -k card",
        "one at a time, or in batches of equal length",
        "`feature_grad_mult=0.1`",
        markdown_table(results),
        "## License",
        "**Identity projection:** this student has no projection",  # the tiny one: conv width = hidden size
        f"({32 * 32 + 32:,} parameters, not counted above",
    ]:
        assert text in card, text
    # collect-results --json rows work as well; anything else is refused naming the file
    rows = [{"upstream": "ekd_student", "upstream_ckpt": "s.ckpt", "task": "pr", "value": 75.4, "chance": None}]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    export_hf(exported["ckpt"], tmp_path / "card2", results=tmp_path / "rows.json")
    assert "| ekd_student (s.ckpt) | 75.40 |" in (tmp_path / "card2" / "README.md").read_text()
    (tmp_path / "bad.json").write_text('{"x": 1}')
    assert cli.main(["export-hf", exported["ckpt"], str(tmp_path / "card3"), "--results", str(tmp_path / "bad.json")]) == 1


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("layer_norm_first", True, "layer_norm_first=True has no transformers HubertConfig equivalent"),
        ("activation_fn", "relu_squared", "activation_fn='relu_squared' has no transformers HubertConfig equivalent"),
    ],
)
def test_options_the_format_cannot_express_are_refused_by_name(option, value, message, tiny_student_config):
    with pytest.raises(HFFormatError, match=message):
        hubert_config({**tiny_student_config, option: value})


def test_export_of_an_inexpressible_student_fails_naming_the_option(tmp_path, tiny_student_config, capsys):
    ckpt = save_student(_student({**tiny_student_config, "layer_norm_first": True}), tmp_path / "s.ckpt")
    assert cli.main(["export-hf", str(ckpt), str(tmp_path / "out")]) == 1
    assert "export-hf FAILED: student config option layer_norm_first=True" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ekd_student_reads_the_folder_back_with_the_same_features(exported):
    original = ekd_student(exported["ckpt"]).eval()
    back = ekd_student(str(exported["out"])).eval()
    assert back.student.plan.targets == [] and back.student.config["exact_padding"]
    # same process, same s3prl modules and the same weights: equal up to nothing but rounding
    for wavs in ([exported["wavs"][1]], exported["wavs"]):
        for a, b in zip(_features(original, wavs), _features(back, wavs)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # vanilla s3prl's transformers expert reads the folder too (its own hidden state 0)
    from s3prl.upstream.hf_hubert.expert import UpstreamExpert

    vanilla = UpstreamExpert(str(exported["out"])).eval()
    wav = [exported["wavs"][2]]
    with torch.no_grad():
        theirs = vanilla(wav)["hidden_states"]
    for layer in (1, 2):
        torch.testing.assert_close(theirs[layer], _features(original, wav)[layer], atol=1e-5, rtol=1e-5)


def test_ekd_student_reads_a_distilhubert_shaped_transformers_checkpoint(tmp_path):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(1)
    config = HubertConfig(  # DistilHuBERT's shape in miniature; transformers' defaults otherwise
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=[48] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_proj_layer_norm=False,
    )
    model = HubertModel(config).eval()  # mask_time_prob 0.05: it has a masked_spec_embed
    model.save_pretrained(tmp_path / "st")
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)  # read with weights_only
    wav = torch.randn(1, 11111)
    with torch.no_grad():
        ref = model(wav, output_hidden_states=True).hidden_states
    for folder in ("st", "bin"):
        ours = _features(ekd_student(str(tmp_path / folder)).eval(), [wav[0]])
        for layer in (1, 2):
            torch.testing.assert_close(ours[layer], ref[layer], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "field, value",
    [("feat_proj_layer_norm", True), ("conv_bias", True), ("do_stable_layer_norm", True), ("feat_extract_activation", "relu")],
)
def test_transformers_checkpoints_the_student_cannot_express_are_refused_by_name(field, value):
    from transformers import HubertConfig

    with pytest.raises(HFFormatError, match=rf"x/config.json: {field}={value!r} cannot be expressed"):
        student_config_from_hubert(HubertConfig(**{"feat_proj_layer_norm": False, field: value}), "x/config.json")


def test_folders_that_are_not_transformers_hubert_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is a folder without config.json"):
        ekd_student(str(tmp_path / "empty"))
    (tmp_path / "w2v").mkdir()
    (tmp_path / "w2v" / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(HFFormatError, match="model_type='wav2vec2'"):
        ekd_student(str(tmp_path / "w2v"))


def test_an_incomplete_or_damaged_folder_is_refused_naming_it(exported, tmp_path):
    import shutil

    folder = tmp_path / "cut"
    folder.mkdir()
    shutil.copyfile(exported["out"] / "config.json", folder / "config.json")
    with pytest.raises(CheckpointError, match=r"cut: transformers cannot load its weights \(OSError"):
        ekd_student(str(folder))
    data = (exported["out"] / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut: transformers cannot load its weights.*damaged"):
        ekd_student(str(folder))


def test_the_paper_student_is_distilhuberts_size_in_transformers():
    from s3prl_ekd.export.hf_format import to_hubert_model

    student = EKDStudent({}, TargetPlan.from_scheme("single", {"hubert_base": 768}))
    assert to_hubert_model(student).num_parameters() == student.num_parameters() == 23_491_200


def test_a_layer_norm_extractor_student_batches_with_the_attention_mask(tmp_path, tiny_student_config):
    """What the card says of a layer-norm conv extractor: pass the mask the feature extractor returns."""
    from transformers import AutoFeatureExtractor, AutoModel

    ckpt = save_student(_student({**tiny_student_config, "extractor_mode": "layer_norm"}), tmp_path / "s.ckpt")
    out = export_hf(ckpt, tmp_path / "ln")
    assert "when the\n`attention_mask` is passed" in (out / "README.md").read_text()
    model = AutoModel.from_pretrained(out).eval()
    extractor = AutoFeatureExtractor.from_pretrained(out)
    wavs = [torch.randn(16000).numpy(), torch.randn(9000).numpy()]
    batch = extractor(wavs, sampling_rate=16000, return_tensors="pt", padding=True)
    assert sorted(batch.keys()) == ["attention_mask", "input_values"]
    upstream = ekd_student(str(ckpt)).eval()
    with torch.no_grad():
        padded = model(**batch, output_hidden_states=True).hidden_states
        for i, wav in enumerate(wavs):
            ours = upstream([torch.from_numpy(wav)])["hidden_states"]
            t = ours[2].shape[1]
            for layer in (1, 2):
                torch.testing.assert_close(padded[layer][i, :t], ours[layer][0], atol=1e-4, rtol=1e-4)
