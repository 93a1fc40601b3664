"""The networks the training loop can train: built from an experiment's section, their image
channels, saved in their kind's checkpoint format with the run's metadata."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from clipdenoise.baselines import DnCNN, Restormer, load_baseline
from clipdenoise.checkpoints import load_checkpoint
from clipdenoise.model import CLIPDenoiser
from clipdenoise.networks import (
    NETWORK_KINDS,
    build_network,
    is_clip_denoiser,
    network_channels,
    save_network,
)
from conftest import fast_config

KINDS = {
    "clipdenoiser": (),
    "dncnn": ("network=dncnn", "dncnn.depth=4", "dncnn.features=8"),
    "restormer": (
        "network=restormer",
        "restormer.dim=8",
        "restormer.num_blocks=[1, 1, 1, 1]",
        "restormer.num_refinement_blocks=1",
    ),
}


def _metadata(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def test_the_kinds_are_those_of_the_recipe():
    assert tuple(KINDS) == NETWORK_KINDS


@pytest.mark.parametrize(
    ("kind", "network_class"),
    [("clipdenoiser", CLIPDenoiser), ("dncnn", DnCNN), ("restormer", Restormer)],
)
def test_each_kind_is_built_from_its_section(kind, network_class):
    config = fast_config(*KINDS[kind])
    network = build_network(config)
    assert type(network) is network_class
    assert is_clip_denoiser(network) is (kind == "clipdenoiser")
    if kind == "clipdenoiser":
        assert network.config.resolved_width == 8  # the [model] section (model.width=8)
    elif kind == "dncnn":
        assert (network.config.depth, network.config.features) == (4, 8)
    else:
        assert network.config.dim == 8 and network.config.num_blocks == (1, 1, 1, 1)
    noisy = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert network.eval()(noisy).shape == noisy.shape  # the denoiser contract


@pytest.mark.parametrize(
    ("overrides", "channels"),
    [
        ((), 3),
        (("model.in_channels=1", "data.channels=1"), 1),
        (("network=dncnn", "dncnn.channels=1", "data.channels=1"), 1),
        (
            (
                "network=restormer",
                "restormer.in_channels=1",
                "restormer.out_channels=1",
                "data.channels=1",
            ),
            1,
        ),
    ],
)
def test_network_channels_follow_the_chosen_section(overrides, channels):
    assert network_channels(fast_config(*overrides)) == channels


def test_a_clipdenoiser_is_saved_as_a_checkpoint_with_the_metadata(tmp_path):
    network = build_network(fast_config()).eval()
    path = save_network(network, tmp_path / "net.safetensors", {"train_config": "x = 1"})
    assert _metadata(path)["train_config"] == "x = 1"
    loaded = load_checkpoint(path)
    noisy = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(noisy), network(noisy))


def test_a_baseline_is_saved_in_the_baseline_format_with_the_metadata(tmp_path):
    network = build_network(fast_config(*KINDS["dncnn"])).eval()
    path = save_network(network, tmp_path / "dncnn.safetensors", {"run": "r1"})
    metadata = _metadata(path)
    assert metadata["run"] == "r1" and metadata["kind"] == "dncnn"
    loaded = load_baseline("dncnn", path)
    noisy = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(noisy), network(noisy))
