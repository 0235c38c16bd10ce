"""Teacher speed-ups: the config block, and targets that stay within the stated tolerance of fp32."""

import pytest
import torch

from s3prl_ekd.bench.models import TeacherSize, random_teacher, s3prl_upstream
from s3prl_ekd.teacher_speedups import SpeedupConfigError, TeacherSpeedups, call_per_length, target_agreement

TINY = TeacherSize(layers=3, dim=32, ffn=64, heads=4, conv_dim=32, conv_pos=16, conv_pos_groups=4)


def test_config_defaults_and_errors():
    s = TeacherSpeedups.from_config(None)
    assert s == TeacherSpeedups() and s.padded_batch and s.inference_mode and not s.compile
    assert s.autocast_dtype(torch.device("cpu")) is None  # auto: fp32 on CPU
    assert TeacherSpeedups.from_config({"autocast": "bf16"}).autocast_dtype(torch.device("cpu")) == torch.bfloat16
    assert TeacherSpeedups.from_config({"autocast": False}).autocast == "off"
    assert TeacherSpeedups().without("autocast").autocast == "off"
    assert not TeacherSpeedups().without("padded_batch").padded_batch
    with pytest.raises(SpeedupConfigError, match=r"teacher_speedups: unknown key\(s\) \['bf16'\]"):
        TeacherSpeedups.from_config({"bf16": True})
    with pytest.raises(SpeedupConfigError, match=r"teacher_speedups.autocast: 'fp8' is not one of"):
        TeacherSpeedups.from_config({"autocast": "fp8"})
    with pytest.raises(SpeedupConfigError, match=r"teacher_speedups.compile: expected true or false"):
        TeacherSpeedups.from_config({"compile": "yes"})


def test_per_length_calls_equal_single_utterance_calls():
    up = s3prl_upstream(random_teacher("hubert", TINY))
    wavs = [torch.randn(9000), torch.randn(12000), torch.randn(9000)]
    call = lambda ws: up(ws)["hidden_states"]
    with torch.no_grad():
        grouped = call_per_length(call, wavs)
        for i, w in enumerate(wavs):
            alone = call([w])
            for layer, h in zip(grouped, alone):
                torch.testing.assert_close(layer[i, : h.shape[1]], h[0], rtol=1e-5, atol=1e-5)
                assert layer[i, h.shape[1] :].abs().sum() == 0  # zero padding after the utterance


@pytest.mark.parametrize("arch", ["hubert", "wavlm"])
def test_bf16_autocast_targets_close_to_fp32(arch):
    up = s3prl_upstream(random_teacher(arch, TINY))
    wavs = [torch.randn(12000) * 0.1, torch.randn(12000) * 0.1]
    frames = torch.tensor([37, 37])
    with TeacherSpeedups.reference().context(torch.device("cpu")):
        ref = up(wavs)["hidden_states"]
    with TeacherSpeedups(autocast="bf16").context(torch.device("cpu")):
        fast = up(wavs)["hidden_states"]
    assert fast[-1].dtype == torch.bfloat16 or fast[-1].dtype == torch.float32
    agree = target_agreement(ref, fast, frames)
    assert agree["cos_min"] > 0.999, agree
    assert 0 < agree["max_rel_diff"] < 0.05
