"""Strict typed config loading: TOML, overrides, errors that list valid keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from clipdenoise.config import (
    apply_overrides,
    dumps_json,
    dumps_toml,
    from_dict,
    load_toml,
    to_dict,
)
from clipdenoise.errors import ConfigError
from clipdenoise.model import ModelConfig


@dataclass(frozen=True)
class Inner:
    lr: float = 3e-4
    steps: int = 10
    mode: Literal["cosine", "restart"] = "cosine"
    periods: tuple[int, ...] = (92_000, 208_000)


@dataclass(frozen=True)
class Outer:
    name: str = "run"
    root: Path | None = None
    enabled: bool = True
    train: Inner = field(default_factory=Inner)
    model: ModelConfig = field(default_factory=ModelConfig)


def test_from_dict_converts_types():
    config = from_dict(Outer, {"root": "data", "train": {"lr": "1e-4", "periods": [1, 2]}})
    assert config.root == Path("data")
    assert config.train.lr == 1e-4
    assert config.train.periods == (1, 2)
    assert config.model == ModelConfig()


def test_unknown_key_lists_valid_ones():
    with pytest.raises(
        ConfigError,
        match=r"train: unknown key\(s\) 'lrr'; valid keys are: lr, mode, periods, steps",
    ):
        from_dict(Outer, {"train": {"lrr": 1}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"steps": "many"}}, "train.steps: expected an integer"),
        ({"train": {"mode": "linear"}}, "train.mode: 'linear' is not one of 'cosine', 'restart'"),
        ({"enabled": "maybe"}, "enabled: expected true or false"),
        ({"model": {"arch": "RN18"}}, "model.arch: unknown 'RN18'"),
    ],
)
def test_bad_values_are_clear(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_toml_round_trip_and_overrides(tmp_path):
    config = Outer(root=Path("x"), train=Inner(lr=1e-3), model=ModelConfig(layers=(1, 1, 1, 1)))
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(config))
    assert load_toml(Outer, path) == config
    changed = apply_overrides(
        config, ["train.lr=5e-5", "train.mode=restart", "model.use_f5=true", "name=abc"]
    )
    assert changed.train.lr == 5e-5 and changed.train.mode == "restart"
    assert changed.model.use_f5 is True and changed.name == "abc"
    assert '"use_f5": true' in dumps_json(changed)
    assert to_dict(changed)["train"]["periods"] == [92_000, 208_000]


def test_none_survives_json_and_toml(tmp_path):
    import json

    config = Outer(model=ModelConfig(encoder_weights=None))
    assert from_dict(Outer, json.loads(dumps_json(config))) == config
    assert 'encoder_weights = "random"' in dumps_toml(config)
    path = tmp_path / "c.toml"
    path.write_text(dumps_toml(config))
    assert load_toml(Outer, path).model.encoder_weights is None


def test_override_errors(tmp_path):
    with pytest.raises(ConfigError, match="not of the form section.key=value"):
        apply_overrides(Outer(), ["train.lr"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'nope'"):
        apply_overrides(Outer(), ["train.nope=1"])
    bad = tmp_path / "bad.toml"
    bad.write_text("train = [")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_toml(Outer, bad)
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found"):
        load_toml(Outer, tmp_path / "missing.toml")
