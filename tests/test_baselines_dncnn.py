"""DnCNN (Zhang et al., 2017): residual output, the 17-layer paper model, and loading our,
KAIR's and DnCNN-PyTorch's checkpoint layouts.
"""

from __future__ import annotations

import pytest
import torch

from clipdenoise.baselines import dncnn, load_baseline, save_baseline
from conftest import randomise_weights


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
    model = randomise_weights(dncnn.DnCNN(dncnn.DnCNNConfig(depth=6, features=16))).eval()
    path = save_baseline(model, tmp_path / "dncnn.safetensors")
    loaded = load_baseline("dncnn", path)
    assert loaded.config == model.config
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), model(x))


def test_dncnn_loads_kair_merged_bn_layout(tmp_path):
    # KAIR's released dncnn_*.pth: raw state dict, convs with bias, BatchNorm merged (no BN keys).
    config = dncnn.DnCNNConfig(channels=1, features=16, depth=17, batchnorm=False)
    reference = randomise_weights(dncnn.DnCNN(config))
    state = reference.state_dict()
    assert "model.2.weight" in state and "model.32.weight" in state  # KAIR numbering
    torch.save(state, tmp_path / "dncnn_25.pth")
    loaded = dncnn.load(tmp_path / "dncnn_25.pth")
    assert loaded.config == config
    x = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(loaded(x), reference.eval()(x))


def test_dncnn_loads_dncnn_pytorch_layout_with_module_prefix(tmp_path):
    reference = randomise_weights(dncnn.DnCNN(dncnn.DnCNNConfig(depth=5, features=8, bias=False)))
    state = {
        f"module.{k.replace('model.', 'dncnn.')}": v for k, v in reference.state_dict().items()
    }
    torch.save(state, tmp_path / "net.pth")
    loaded = dncnn.load(tmp_path / "net.pth")
    assert not loaded.config.bias and loaded.config.batchnorm and loaded.config.depth == 5
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(loaded(x), reference.eval()(x))


def test_the_committed_dncnn_denoises_its_training_noise(make_image):
    from pathlib import Path

    from clipdenoise.evaluation import resolve_method
    from clipdenoise.metrics import psnr

    checkpoint = (
        Path(__file__).resolve().parents[1] / "benchmarks/models/dncnn-gaussian15.safetensors"
    )
    method = resolve_method(f"dncnn:{checkpoint}")
    clean = torch.from_numpy(make_image(64, 64, 3, seed=5)).permute(2, 0, 1)[None]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 15 / 255
    noisy = clean + noise
    with torch.no_grad():
        restored = method.module.eval()(noisy).clamp(0, 1)

    def score(image: torch.Tensor) -> float:
        as_hwc = (image[0].permute(1, 2, 0) * 255).double().numpy()
        return psnr((clean[0].permute(1, 2, 0) * 255).double().numpy(), as_hwc)

    gain = score(restored) - score(noisy.clamp(0, 1))
    assert gain > 5.0, f"PSNR gain {gain:.2f} dB"
