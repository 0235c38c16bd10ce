"""The one config reader: unknown keys, types, ranges, nested sections and defaults, each error naming the key."""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Literal, Optional, Tuple

import pytest
import yaml

from s3prl_ekd.config.reader import from_mapping, setting, to_dict
from s3prl_ekd.config.values import ConfigValueError


@dataclass(frozen=True)
class Noise:
    prob: float = setting(0.0, low=0.0, high=1.0)
    snr_db: Tuple[float, float] = (5.0, 20.0)


@dataclass(frozen=True)
class Section:
    name: str  # required
    steps: int = setting(10, low=1, high=1000)
    lr: float = setting(1e-3, low=0.0, low_open=True)
    enabled: bool = False
    mode: Literal["fast", "exact"] = "exact"
    folder: Optional[str] = None
    layers: Optional[Tuple[int, ...]] = setting(None, low=0, nonempty=True)
    weights: Dict[str, float] = setting(factory=dict, low=0.0)
    noise: Noise = field(default_factory=Noise)
    extra: List[Noise] = field(default_factory=list)
    free: Any = None

    def __post_init__(self):
        if self.enabled and self.folder is None:
            raise ConfigValueError("`run.enabled` needs `run.folder`")


class MyError(ValueError):
    pass


def test_defaults_filled_and_values_typed():
    s = from_mapping(Section, {"name": "a"}, "run")
    assert s == Section(name="a")
    assert (s.steps, s.lr, s.enabled, s.mode, s.layers, s.weights, s.noise) == (10, 1e-3, False, "exact", None, {}, Noise())
    s = from_mapping(Section, yaml.safe_load("""
        name: b
        steps: 1000
        lr: 2            # an int where a float is asked: taken as 2.0
        enabled: true
        folder: /tmp
        layers: [4, 8, 12]
        weights: {hubert: 1, wavlm: 0.5}
        noise: {prob: 0.25}
        extra: [{prob: 1.0, snr_db: [0, 5]}]
        free: {anything: [1, 2]}
    """), "run")
    assert s.lr == 2.0 and isinstance(s.lr, float)
    assert s.layers == (4, 8, 12) and s.weights == {"hubert": 1.0, "wavlm": 0.5}
    assert s.noise == Noise(prob=0.25, snr_db=(5.0, 20.0))  # the nested section's other key keeps its default
    assert s.extra == [Noise(prob=1.0, snr_db=(0.0, 5.0))] and s.free == {"anything": [1, 2]}
    # an empty YAML section (null) is the nested section's defaults
    assert from_mapping(Section, {"name": "c", "noise": None}).noise == Noise()
    # back to plain data: tuples as lists, as YAML and checkpoints store them
    d = to_dict(s)
    assert d["layers"] == [4, 8, 12] and d["noise"] == {"prob": 0.25, "snr_db": [5.0, 20.0]}
    assert from_mapping(Section, d, "run") == s


def test_unknown_key_named_with_its_section_and_the_allowed_keys():
    with pytest.raises(MyError, match=r"^unknown key\(s\) run\.stpes: valid are \['name', 'steps', 'lr', "):
        from_mapping(Section, {"name": "a", "stpes": 3}, "run", MyError)
    with pytest.raises(ConfigValueError, match=r"^unknown key\(s\) run\.noise\.snr: valid are \['prob', 'snr_db'\]$"):
        from_mapping(Section, {"name": "a", "noise": {"snr": [1, 2]}}, "run")
    with pytest.raises(ConfigValueError, match=r"unknown key\(s\) run\.extra\[0\]\.p: valid are \['prob', 'snr_db'\]"):
        from_mapping(Section, {"name": "a", "extra": [{"p": 1}]}, "run")
    with pytest.raises(ConfigValueError, match=r"^unknown key\(s\) \['x'\]: valid are"):  # the root: no section
        from_mapping(Section, {"name": "a", "x": 1})


@pytest.mark.parametrize("given, match", [
    ({"steps": 2.0}, r"`run\.steps` must be an integer in 1\.\.1000, got 2\.0"),
    ({"steps": True}, r"`run\.steps` must be an integer in 1\.\.1000, got True"),
    ({"lr": "1e-3"}, r"`run\.lr` must be a finite number > 0, got '1e-3'"),
    ({"lr": math.nan}, r"`run\.lr` must be a finite number > 0, got nan"),
    ({"enabled": "false"}, r"`run\.enabled` must be true or false \(unquoted\), got 'false'"),
    ({"enabled": 0}, r"`run\.enabled` must be true or false"),
    ({"name": 3}, r"`run\.name` must be a string, got 3"),
    ({"mode": "quick"}, r"`run\.mode` must be one of \['fast', 'exact'\], got 'quick'"),
    ({"layers": "4, 8"}, r"`run\.layers` must be a list, got '4, 8'"),
    ({"layers": [4, "8"]}, r"`run\.layers\[1\]` must be an integer >= 0, got '8'"),
    ({"weights": [1.0]}, r"`run\.weights` must be a mapping, got \[1\.0\]"),
    ({"weights": {"hubert": "x"}}, r"`run\.weights\.hubert` must be a finite number >= 0, got 'x'"),
    ({"noise": {"snr_db": [1.0]}}, r"`run\.noise\.snr_db` must be a list of 2 values, got \[1\.0\]"),
    ({"noise": {"snr_db": [1.0, "a"]}}, r"`run\.noise\.snr_db\[1\]` must be a finite number, got 'a'"),
    ({"noise": [0.5]}, r"`run\.noise` must be a mapping of keys, got \[0\.5\]"),
])
def test_wrong_type_named_with_the_key(given, match):
    with pytest.raises(MyError, match=match):
        from_mapping(Section, {"name": "a", **given}, "run", MyError)


@pytest.mark.parametrize("given, match", [
    ({"steps": 0}, r"`run\.steps` must be an integer in 1\.\.1000, got 0"),
    ({"steps": 1001}, r"`run\.steps` must be an integer in 1\.\.1000, got 1001"),
    ({"lr": 0.0}, r"`run\.lr` must be a finite number > 0, got 0\.0"),
    ({"layers": [4, -1]}, r"`run\.layers\[1\]` must be an integer >= 0, got -1"),
    ({"layers": []}, r"`run\.layers` must be a non-empty list, got \[\]"),
    ({"noise": {"prob": 1.5}}, r"`run\.noise\.prob` must be a finite number >= 0 and <= 1, got 1\.5"),
    ({"weights": {"w": -0.5}}, r"`run\.weights\.w` must be a finite number >= 0, got -0\.5"),
])
def test_range_violation_named_with_the_key_and_the_range(given, match):
    with pytest.raises(ConfigValueError, match=match):
        from_mapping(Section, {"name": "a", **given}, "run")
    # the bounds themselves are allowed
    assert from_mapping(Section, {"name": "a", "steps": 1000, "layers": [0], "noise": {"prob": 1}}).noise.prob == 1.0


def test_missing_required_key_and_cross_field_check_and_not_a_mapping():
    with pytest.raises(MyError, match=r"key `run\.name` is missing: it has no default"):
        from_mapping(Section, {}, "run", MyError)
    with pytest.raises(MyError, match=r"`run\.enabled` needs `run\.folder`"):  # __post_init__, raised as the caller's error
        from_mapping(Section, {"name": "a", "enabled": True}, "run", MyError)
    with pytest.raises(MyError, match=r"`run` must be a mapping of keys, got 'name: a'"):
        from_mapping(Section, "name: a", "run", MyError)
    with pytest.raises(MyError, match=r"`run\.folder` must be a string, got 5"):  # Optional: None or the type
        from_mapping(Section, {"name": "a", "folder": 5}, "run", MyError)


def test_union_goes_to_the_option_of_the_value_shape():
    @dataclass(frozen=True)
    class Layers:
        layers: "list[int] | dict[str, list[int]] | None" = setting(None, low=0)

    assert from_mapping(Layers, {"layers": [1, 2]}).layers == [1, 2]
    assert from_mapping(Layers, {"layers": {"a": [3]}}).layers == {"a": [3]}
    assert from_mapping(Layers, {"layers": None}).layers is None
    # a mapping is checked as the mapping option, so the message names the entry that is wrong
    with pytest.raises(ConfigValueError, match=r"`x\.layers\.a` must be a list, got '4'"):
        from_mapping(Layers, {"layers": {"a": "4"}}, "x")
    with pytest.raises(ConfigValueError, match=r"`x\.layers` must be a list or a mapping, got '4, 8'"):
        from_mapping(Layers, {"layers": "4, 8"}, "x")
