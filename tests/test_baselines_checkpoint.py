"""The baselines' shared checkpoint loader and saver: formats, key renames, strictness, errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from clipdenoise.baselines import dncnn, restormer
from clipdenoise.baselines.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint
from clipdenoise.errors import WeightsMismatchError, WeightsNotFoundError


@dataclass(frozen=True)
class ToyConfig:
    features: int = 4


class Toy(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(3, config.features, 3)


def _infer(state: dict[str, torch.Tensor]) -> ToyConfig:
    return ToyConfig(features=state["conv.weight"].shape[0])


TOY = CheckpointFormat(
    kind="toy",
    label="Toy",
    model_class=Toy,
    config_class=ToyConfig,
    infer_config=_infer,
    key_renames=((r"^module\.", ""), (r"^net\.", "conv.")),
)


def _toy(features: int = 5) -> Toy:
    torch.manual_seed(0)
    return Toy(ToyConfig(features))


def test_safetensors_round_trip_keeps_config_and_metadata(tmp_path):
    from safetensors import safe_open

    model = _toy()
    path = save_checkpoint(model, tmp_path / "t.safetensors", TOY, metadata={"recipe": "r"})
    loaded = load_checkpoint(path, TOY)
    assert isinstance(loaded, Toy) and loaded.config == ToyConfig(5) and not loaded.training
    torch.testing.assert_close(loaded.conv.weight, model.conv.weight)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["recipe"] == "r"


@pytest.mark.parametrize(
    "wrapper", [None, "params", "params_ema", "state_dict", "model_state_dict"]
)
def test_published_layouts_are_unwrapped_and_renamed(tmp_path, wrapper):
    model = _toy(6)
    state = {f"module.{k.replace('conv.', 'net.')}": v for k, v in model.state_dict().items()}
    torch.save(state if wrapper is None else {wrapper: state, "iter": 3}, tmp_path / "t.pth")
    loaded = load_checkpoint(tmp_path / "t.pth", TOY)
    assert loaded.config == ToyConfig(6)
    torch.testing.assert_close(loaded.conv.bias, model.conv.bias)


def test_loading_is_strict_and_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"missing\.pth: Toy checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pth", TOY)
    state = {**_toy().state_dict(), "extra.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(WeightsMismatchError, match=r"extra\.pth: Toy weights do not match.*extra"):
        load_checkpoint(tmp_path / "extra.pth", TOY)
    torch.save({"params": [1, 2]}, tmp_path / "list.pth")
    with pytest.raises(WeightsMismatchError, match=r"list\.pth: not a Toy state dict"):
        load_checkpoint(tmp_path / "list.pth", TOY)
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "keys.pth")
    with pytest.raises(WeightsMismatchError, match=r"keys\.pth: .*conv\.weight"):
        load_checkpoint(tmp_path / "keys.pth", TOY)


def test_safetensors_checkpoint_of_another_kind_is_refused(tmp_path):
    path = dncnn.save(
        dncnn.DnCNN(dncnn.DnCNNConfig(depth=3, features=4)), tmp_path / "d.safetensors"
    )
    assert isinstance(dncnn.load(path), dncnn.DnCNN)
    with pytest.raises(WeightsMismatchError, match=r"d\.safetensors: not a Restormer checkpoint"):
        restormer.load(path)
    with pytest.raises(WeightsMismatchError, match=r"d\.safetensors: not a Toy checkpoint"):
        load_checkpoint(path, TOY)
