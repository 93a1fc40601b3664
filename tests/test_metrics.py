"""Metric parity with the reference CLIPDenoising scripts and cross-checks with scikit-image."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from clipdenoise import metrics
from conftest import fixture_files


@pytest.fixture(scope="module")
def protocol_fixture(fixtures_dir):
    folder = fixtures_dir / "protocol"
    expected = json.loads((folder / "official_test_noise.json").read_text())
    arrays = dict(np.load(folder / "official_test_noise.npz"))
    return expected, arrays


@pytest.mark.parametrize("path", fixture_files("*_test_noise.json"), ids=lambda path: path.name)
def test_reference_parity_on_official_test_noise(path):
    """Every case of every protocol fixture: the reference's scores of the clipped noisy image."""
    expected = json.loads(path.read_text())
    arrays = dict(np.load(path.with_suffix(".npz")))
    if path.name == "official_test_noise.json":
        assert len(expected) == 22
    for case, values in expected.items():
        index, rest = case.split("_", 1)
        clean = arrays[f"clean_{index}"].astype(np.float64) * 255.0
        noisy = np.clip(arrays[f"noisy_{case}"], 0.0, 1.0) * 255.0
        assert metrics.psnr(clean, noisy) == pytest.approx(values["psnr_clipped_noisy"], abs=1e-6)
        assert metrics.ssim(clean, noisy) == pytest.approx(values["ssim_clipped_noisy"], abs=1e-6)


def test_to_metric_scale_matches_reference_clipping(protocol_fixture):
    expected, arrays = protocol_fixture
    clean = metrics.to_metric_scale(arrays["clean_1"])
    noisy = metrics.to_metric_scale(arrays["noisy_1_gauss_25"])
    assert metrics.psnr(clean, noisy) == pytest.approx(
        expected["1_gauss_25"]["psnr_clipped_noisy"], abs=1e-6
    )


def _pair(seed: int = 0, shape=(40, 52, 3)) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    clean = generator.uniform(0, 255, size=shape)
    restored = np.clip(clean + generator.normal(0, 20, size=shape), 0, 255)
    return clean, restored


def test_psnr_matches_skimage_and_closed_form():
    from skimage.metrics import peak_signal_noise_ratio

    clean, restored = _pair()
    expected = peak_signal_noise_ratio(clean, restored, data_range=255)
    assert metrics.psnr(clean, restored) == pytest.approx(expected, abs=1e-10)
    mse = np.mean((clean - restored) ** 2)
    assert metrics.psnr(clean, restored) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-10)
    assert metrics.psnr(clean, clean) == math.inf


def test_ssim_matches_skimage_gaussian_valid_region():
    from skimage.metrics import structural_similarity

    clean, restored = _pair(1)
    expected = structural_similarity(
        clean,
        restored,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )
    assert metrics.ssim(clean, restored) == pytest.approx(expected, abs=1e-9)
    assert metrics.ssim(clean, clean) == pytest.approx(1.0, abs=1e-12)


def test_ssim_on_single_channel_shapes_agree():
    clean, restored = _pair(2, shape=(30, 33, 1))
    assert metrics.ssim(clean, restored) == pytest.approx(
        metrics.ssim(clean[..., 0], restored[..., 0]), abs=1e-15
    )


def test_y_channel_matches_bt601_formula_and_skimage():
    from skimage.color import rgb2ycbcr

    clean, restored = _pair(3)
    y_clean = metrics.to_y_channel(clean)[..., 0]
    np.testing.assert_allclose(y_clean, rgb2ycbcr(clean / 255.0)[..., 0], atol=1e-9)
    assert y_clean.min() >= 16.0 - 1e-9 and y_clean.max() <= 235.0 + 1e-9
    y_restored = metrics.to_y_channel(restored)
    assert metrics.psnr(clean, restored, y_channel=True) == pytest.approx(
        metrics.psnr(y_clean[..., None], y_restored), abs=1e-12
    )


def test_y_channel_leaves_grey_images_as_they_are():
    clean, restored = _pair(6, shape=(24, 24, 1))
    assert metrics.psnr(clean, restored, y_channel=True) == metrics.psnr(clean, restored)
    assert metrics.ssim(clean, restored, y_channel=True) == metrics.ssim(clean, restored)


def test_border_crop_drops_exactly_the_border():
    clean, restored = _pair(4)
    restored_bad_border = restored.copy()
    restored_bad_border[:3] = 0
    restored_bad_border[:, -3:] = 255
    assert metrics.psnr(clean, restored_bad_border, crop_border=3) == pytest.approx(
        metrics.psnr(clean[3:-3, 3:-3], restored[3:-3, 3:-3]), abs=1e-12
    )
    assert metrics.ssim(clean, restored_bad_border, crop_border=3) == pytest.approx(
        metrics.ssim(clean[3:-3, 3:-3], restored[3:-3, 3:-3]), abs=1e-12
    )
    with pytest.raises(ValueError, match="leaves nothing"):
        metrics.psnr(clean, restored, crop_border=30)


def test_uint8_rounding_option():
    image01 = np.array([[[0.1, 0.5, 1.2]], [[-0.1, 0.499, 0.998]]])
    np.testing.assert_array_equal(
        metrics.to_metric_scale(image01, round_to_uint8=True),
        (np.clip(image01, 0, 1) * 255.0).round().astype(np.uint8).astype(np.float64),
    )
    assert metrics.to_metric_scale(image01)[0, 0, 0] == pytest.approx(25.5)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(np.zeros((8, 20)), np.zeros((8, 20)))


def _reference_ct_hu(image: torch.Tensor) -> torch.Tensor:
    # The reference's denormalize_ (3096 quirk) + trunc, written out independently.
    hu = image.float() * (3096.0 - (-1024.0)) + (-1024.0)
    hu = torch.where(hu <= -1024.0, torch.tensor(-1024.0), hu)
    return torch.where(hu >= 3072.0, torch.tensor(3072.0), hu)


def test_ct_psnr_uses_hu_truncation_and_data_range_4096():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(64, 64, generator=generator) * 0.5
    restored = clean + 0.01 * torch.randn(64, 64, generator=generator)
    restored[0, 0] = 2.0  # far above the HU window: truncated to 3072
    x, y = _reference_ct_hu(clean), _reference_ct_hu(restored)
    expected = 10 * math.log10(4096.0**2 / float(((x - y) ** 2).mean()))
    assert metrics.ct_psnr(clean, restored) == pytest.approx(expected, abs=1e-4)
    consistent = metrics.ct_psnr(clean, restored, norm_range_max=3072.0)
    assert consistent != pytest.approx(metrics.ct_psnr(clean, restored), abs=1e-3)


def test_ct_ssim_zero_padded_matches_skimage_on_interior_and_is_one_for_identity():
    generator = torch.Generator().manual_seed(1)
    clean = torch.rand(48, 48, generator=generator) * 0.3 + 0.2
    restored = clean + 0.02 * torch.randn(48, 48, generator=generator)
    assert metrics.ct_ssim(clean, clean) == pytest.approx(1.0, abs=1e-6)
    value = metrics.ct_ssim(clean.numpy()[..., None], restored.numpy()[..., None])
    assert 0.0 < value < 1.0
    # Same quantity in float64 with explicit zero padding through scipy.
    from scipy.ndimage import correlate

    window = np.outer(metrics.gaussian_window_1d(), metrics.gaussian_window_1d())
    x = _reference_ct_hu(clean).double().numpy()
    y = _reference_ct_hu(restored).double().numpy()

    def blur(plane):
        return correlate(plane, window, mode="constant", cval=0.0)

    mu_x, mu_y = blur(x), blur(y)
    c1, c2 = (0.01 * 4096) ** 2, (0.03 * 4096) ** 2
    expected = (
        ((2 * mu_x * mu_y + c1) * (2 * (blur(x * y) - mu_x * mu_y) + c2))
        / ((mu_x**2 + mu_y**2 + c1) * (blur(x * x) - mu_x**2 + blur(y * y) - mu_y**2 + c2))
    ).mean()
    assert value == pytest.approx(expected, abs=1e-4)
