"""Restormer (Zamir et al., CVPR 2022): published size, any input size, global residual, the
official checkpoint layout and our own.
"""

from __future__ import annotations

import pytest
import torch

from clipdenoise.baselines import load_baseline, restormer, save_baseline
from conftest import randomise_weights

TINY_RESTORMER = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1}


def test_restormer_default_has_published_parameter_count():
    model = restormer.Restormer()
    assert sum(p.numel() for p in model.parameters()) == 26_126_644  # 26.1 M (paper)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 21, 30)])
def test_restormer_any_size_and_residual(shape):
    model = restormer.build(**TINY_RESTORMER).eval()
    x = torch.rand(*shape)
    assert model(x).shape == x.shape
    torch.nn.init.zeros_(model.output.weight)
    torch.testing.assert_close(model(x), x)  # global residual


def test_restormer_loads_official_params_layout_and_infers_size(tmp_path):
    config = restormer.RestormerConfig(
        dim=8,
        num_blocks=(1, 2, 1, 1),
        num_refinement_blocks=2,
        heads=(1, 2, 4, 8),
        layernorm="BiasFree",
        bias=False,
    )
    reference = randomise_weights(restormer.Restormer(config)).eval()
    state = reference.state_dict()
    assert "encoder_level1.0.attn.temperature" in state
    assert "encoder_level1.0.norm1.body.bias" not in state  # BiasFree as the released denoisers
    torch.save({"params": state}, tmp_path / "gaussian_color_denoising_blind.pth")
    loaded = load_baseline("restormer", tmp_path / "gaussian_color_denoising_blind.pth")
    assert loaded.config == config
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), reference(x))


def test_restormer_safetensors_round_trip(tmp_path):
    model = randomise_weights(
        restormer.build(**TINY_RESTORMER, in_channels=1, out_channels=1)
    ).eval()
    path = save_baseline(model, tmp_path / "restormer.safetensors")
    loaded = load_baseline("restormer", path)
    assert loaded.config == model.config
    x = torch.rand(1, 1, 16, 24)
    torch.testing.assert_close(loaded(x), model(x))
