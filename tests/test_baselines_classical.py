"""Training-free baselines: noise level estimation, BM3D and NLM with given or estimated σ,
grey images, the noisy input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipdenoise import metrics
from clipdenoise.baselines.classical import (
    BM3DDenoiser,
    NLMDenoiser,
    NoisyInput,
    estimate_noise_sigma,
)


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
