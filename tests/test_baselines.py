"""Baselines: shapes, checkpoint round trips in our and the authors' layouts, classical denoisers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipdenoise import metrics
from clipdenoise.baselines import (
    LEARNED_BASELINES,
    build_baseline,
    dncnn,
    load_baseline,
    restormer,
    save_baseline,
)
from clipdenoise.baselines.classical import (
    BM3DDenoiser,
    NLMDenoiser,
    NoisyInput,
    estimate_noise_sigma,
)
from clipdenoise.errors import ConfigError, WeightsMismatchError, WeightsNotFoundError

TINY_RESTORMER = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1}


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.2 + 0.9)
    return model


@pytest.mark.parametrize("channels", [1, 3])
def test_dncnn_is_residual_and_keeps_shape(channels):
    model = dncnn.DnCNN(dncnn.DnCNNConfig(channels=channels, depth=5, features=8)).eval()
    x = torch.rand(2, channels, 19, 23)
    assert model(x).shape == x.shape
    torch.nn.init.zeros_(model.model[-1].weight)
    torch.nn.init.zeros_(model.model[-1].bias)
    torch.testing.assert_close(model(x), x)  # zero noise prediction -> identity


def test_dncnn_default_is_the_17_layer_paper_model():
    model = dncnn.DnCNN()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 17 and len(norms) == 15
    assert sum(p.numel() for p in model.parameters()) == 559_363


def test_dncnn_safetensors_round_trip(tmp_path):
    model = _randomise(dncnn.DnCNN(dncnn.DnCNNConfig(depth=6, features=16))).eval()
    path = save_baseline(model, tmp_path / "dncnn.safetensors")
    loaded = load_baseline("dncnn", path)
    assert loaded.config == model.config
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))


def test_dncnn_loads_kair_merged_bn_layout(tmp_path):
    # KAIR's released dncnn_*.pth: raw state dict, convs with bias, BatchNorm merged (no BN keys).
    config = dncnn.DnCNNConfig(channels=1, features=16, depth=17, batchnorm=False)
    reference = _randomise(dncnn.DnCNN(config))
    state = reference.state_dict()
    assert "model.2.weight" in state and "model.32.weight" in state  # KAIR numbering
    torch.save(state, tmp_path / "dncnn_25.pth")
    loaded = dncnn.load(tmp_path / "dncnn_25.pth")
    assert loaded.config == config
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(loaded(x), reference.eval()(x))


def test_dncnn_loads_dncnn_pytorch_layout_with_module_prefix(tmp_path):
    reference = _randomise(dncnn.DnCNN(dncnn.DnCNNConfig(depth=5, features=8, bias=False)))
    state = {
        f"module.{k.replace('model.', 'dncnn.')}": v for k, v in reference.state_dict().items()
    }
    torch.save(state, tmp_path / "net.pth")
    loaded = dncnn.load(tmp_path / "net.pth")
    assert not loaded.config.bias and loaded.config.batchnorm and loaded.config.depth == 5
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(loaded(x), reference.eval()(x))


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
    reference = _randomise(restormer.Restormer(config)).eval()
    state = reference.state_dict()
    assert "encoder_level1.0.attn.temperature" in state
    assert "encoder_level1.0.norm1.body.bias" not in state  # BiasFree as the released denoisers
    torch.save({"params": state}, tmp_path / "gaussian_color_denoising_blind.pth")
    loaded = load_baseline("restormer", tmp_path / "gaussian_color_denoising_blind.pth")
    assert loaded.config == config
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), reference(x))


def test_restormer_safetensors_round_trip(tmp_path):
    model = _randomise(restormer.build(**TINY_RESTORMER, in_channels=1, out_channels=1)).eval()
    path = save_baseline(model, tmp_path / "restormer.safetensors")
    loaded = load_baseline("restormer", path)
    assert loaded.config == model.config
    x = torch.rand(1, 1, 16, 24)
    torch.testing.assert_close(loaded(x), model(x))


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.pth"):
        load_baseline("dncnn", tmp_path / "missing.pth")
    torch.save({"params": {"foo.weight": torch.zeros(3)}}, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match="bad.pth"):
        load_baseline("restormer", tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="dncnn, restormer"):
        build_baseline("unet")
    assert LEARNED_BASELINES == ("dncnn", "restormer")


def test_baselines_train_through_the_forward_contract():
    model = dncnn.build(depth=4, features=8).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    clean = torch.rand(2, 3, 16, 16)
    noisy = clean + 0.1 * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.l1_loss(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def _noisy_pair(make_image, sigma_255=25.0, size=64):
    clean = make_image(size, size, 3, seed=3).astype(np.float64)
    rng = np.random.RandomState(0)
    noisy = clean + rng.normal(0, sigma_255 / 255.0, clean.shape)
    return clean, noisy


def test_estimate_noise_sigma_recovers_gaussian_level(make_image):
    _, noisy = _noisy_pair(make_image, 25.0, size=96)
    assert estimate_noise_sigma(noisy) * 255 == pytest.approx(25.0, rel=0.1)


@pytest.mark.parametrize("denoiser", [BM3DDenoiser, NLMDenoiser])
def test_classical_denoisers_improve_psnr_with_given_and_estimated_sigma(denoiser, make_image):
    clean, noisy = _noisy_pair(make_image)
    x = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
    before = metrics.psnr(metrics.to_metric_scale(clean), metrics.to_metric_scale(noisy))
    # BM3D is slow: the estimated-σ path only (it also covers the denoising itself).
    for sigma in (None,) if denoiser is BM3DDenoiser else (25 / 255, None):
        model = denoiser(sigma=sigma)
        restored = model(x)
        assert restored.shape == x.shape and restored.dtype == x.dtype
        after = metrics.psnr(
            metrics.to_metric_scale(clean),
            metrics.to_metric_scale(restored[0].permute(1, 2, 0).numpy()),
        )
        assert after > before + 4.0
        assert len(model.last_sigmas) == 1
        if sigma is None:
            assert model.last_sigmas[0] * 255 == pytest.approx(25.0, rel=0.15)


def test_classical_grey_images_and_bad_sigma(make_image):
    clean = make_image(48, 48, 1, seed=1)
    x = torch.from_numpy(clean).permute(2, 0, 1)[None]
    assert NLMDenoiser(sigma=0.05)(x).shape == (1, 1, 48, 48)
    assert BM3DDenoiser(sigma=0.05).denoise_image(clean.astype(np.float64), 0.05).shape == (
        48,
        48,
        1,
    )
    with pytest.raises(ValueError, match="sigma must be > 0"):
        NLMDenoiser(sigma=0.0)


def test_noisy_input_is_the_identity():
    x = torch.rand(2, 3, 8, 8)
    out = NoisyInput()(x)
    torch.testing.assert_close(out, x)
    assert out.data_ptr() != x.data_ptr()
