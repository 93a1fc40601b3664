"""Image-quality metrics, computed exactly as the reference CLIPDenoising code computes them.

Every photo metric takes ``(H, W, C)`` (or ``(H, W)``) arrays on the [0, 255] scale, float or
integer, and computes in float64. Defaults reproduce the reference's synthetic-noise protocol
(``Denoising/utils.py``): PSNR over all RGB values with peak 255 and no border crop; SSIM the
MATLAB way (Wang et al. 2004): an 11×11 Gaussian window with σ = 1.5, constants (0.01·255)² and
(0.03·255)², only the *valid* region (windows that lie fully inside the image), computed per
channel and averaged over the channels.

Other conventions people report are named options: ``y_channel`` (BT.601 luma as MATLAB's
``rgb2ycbcr``), ``crop_border`` (pixels dropped on every side), and :func:`to_metric_scale` with
``round_to_uint8=True`` (the reference's real-photo script rounds the restored image to uint8
before scoring).

CT metrics (:func:`ct_psnr`, :func:`ct_ssim`) follow ``basicsr/metrics/CT_psnr_ssim.py`` and
``Denoising/test_real_denoising_CT.py``, quirks included (see their docstrings).
"""

from __future__ import annotations

import math

import numpy as np
import torch

SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# The reference LDCT protocol (Denoising/test_real_denoising_CT.py).
CT_HU_MIN = -1024.0
CT_HU_MAX = 3072.0
CT_NORM_RANGE_MIN = -1024.0
CT_NORM_RANGE_MAX_REFERENCE = 3096.0  # the reference's typo for 3072, see ct_psnr

__all__ = [
    "CT_HU_MAX",
    "CT_HU_MIN",
    "CT_NORM_RANGE_MAX_REFERENCE",
    "CT_NORM_RANGE_MIN",
    "crop_borders",
    "ct_psnr",
    "ct_ssim",
    "gaussian_window_1d",
    "psnr",
    "ssim",
    "ssim_map",
    "to_metric_scale",
    "to_y_channel",
]


def _check_pair(clean: np.ndarray, restored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean)
    restored = np.asarray(restored)
    if clean.shape != restored.shape:
        raise ValueError(
            f"images must have the same shape, got clean {clean.shape} and restored "
            f"{restored.shape}"
        )
    if clean.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C), got shape {clean.shape}")
    return clean.astype(np.float64), restored.astype(np.float64)


def crop_borders(image: np.ndarray, crop_border: int) -> np.ndarray:
    """Drop ``crop_border`` pixels on each of the four sides of an ``(H, W[, C])`` image."""
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border == 0:
        return image
    height, width = image.shape[:2]
    if 2 * crop_border >= min(height, width):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")
    return image[crop_border : height - crop_border, crop_border : width - crop_border]


def to_y_channel(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image on the [0, 255] scale, as MATLAB's ``rgb2ycbcr`` (Y in [16, 235]).

    Args:
        image: ``(H, W, 3)`` RGB array on the [0, 255] scale.

    Returns:
        ``(H, W, 1)`` float64 Y channel on the [0, 255] scale.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the Y channel needs an (H, W, 3) RGB image, got shape {image.shape}")
    weights = np.array([65.481, 128.553, 24.966], dtype=np.float64)
    return (image @ weights / 255.0 + 16.0)[..., None]


def to_metric_scale(image01: np.ndarray, *, round_to_uint8: bool = False) -> np.ndarray:
    """Map a [0, 1] image to the [0, 255] scale the metrics take, clipping to [0, 1] first.

    The product is formed in the input's float precision (float32 images are scaled in float32,
    as the reference does) and returned as float64.

    Args:
        image01: Array with values nominally in [0, 1] (values outside are clipped, as the
            reference clamps the network output).
        round_to_uint8: Round to integers as ``(x * 255).round().astype(uint8)`` does (the
            reference's real-photo protocol). Off for the synthetic protocol (unrounded floats).

    Returns:
        float64 array on [0, 255].
    """
    array = np.asarray(image01)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    # Scale in the input's precision: the reference multiplies float32 arrays by 255.
    scaled = np.clip(array, 0.0, 1.0) * array.dtype.type(255.0)
    if round_to_uint8:
        scaled = np.round(scaled)
    return scaled.astype(np.float64)


def _prepare(
    clean: np.ndarray, restored: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    clean, restored = _check_pair(clean, restored)
    clean = crop_borders(clean, crop_border)
    restored = crop_borders(restored, crop_border)
    if y_channel and clean.ndim == 3 and clean.shape[2] == 3:
        # Grey images are already a luma channel: scored as they are.
        clean, restored = to_y_channel(clean), to_y_channel(restored)
    return clean, restored


def psnr(
    clean: np.ndarray,
    restored: np.ndarray,
    data_range: float = 255.0,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Peak signal-to-noise ratio in dB, as the reference's ``calculate_psnr``.

    ``20 log10(data_range / sqrt(MSE))`` with the MSE over every pixel and channel, in float64.

    Args:
        clean: ``(H, W[, C])`` reference image on the [0, ``data_range``] scale.
        restored: The image to score, same shape and scale.
        data_range: Peak value (255 for 8-bit photos).
        crop_border: Pixels dropped on each side before scoring (0 in the reference).
        y_channel: Score the BT.601 Y channel of RGB images instead of the three channels
            (single-channel images are scored as they are).

    Returns:
        PSNR in dB; ``inf`` for identical images.

    Raises:
        ValueError: Shapes differ or are not images.
    """
    clean, restored = _prepare(clean, restored, crop_border, y_channel)
    mse = float(np.mean((clean - restored) ** 2))
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(data_range / math.sqrt(mse))


def gaussian_window_1d(size: int = SSIM_WINDOW_SIZE, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps (``cv2.getGaussianKernel`` for σ > 0), float64."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def _filter_valid(plane: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation keeping only windows fully inside ``plane`` ('valid')."""
    from numpy.lib.stride_tricks import sliding_window_view

    size = taps.size
    rows = sliding_window_view(plane, size, axis=0) @ taps
    return sliding_window_view(rows, size, axis=1) @ taps


def ssim_map(
    clean_plane: np.ndarray,
    restored_plane: np.ndarray,
    data_range: float = 255.0,
) -> np.ndarray:
    """The SSIM map of two single-channel images over the valid region (MATLAB ``ssim_index``).

    Args:
        clean_plane: ``(H, W)`` array on the [0, ``data_range``] scale, H and W >= 11.
        restored_plane: Same shape and scale.
        data_range: Dynamic range L in the constants C1 = (0.01 L)², C2 = (0.03 L)².

    Returns:
        ``(H - 10, W - 10)`` float64 map.
    """
    x = np.asarray(clean_plane, dtype=np.float64)
    y = np.asarray(restored_plane, dtype=np.float64)
    if min(x.shape) < SSIM_WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW_SIZE}x{SSIM_WINDOW_SIZE} pixels, "
            f"got {x.shape[0]}x{x.shape[1]}"
        )
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    taps = gaussian_window_1d()
    mu_x = _filter_valid(x, taps)
    mu_y = _filter_valid(y, taps)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = _filter_valid(x * x, taps) - mu_xx
    var_y = _filter_valid(y * y, taps) - mu_yy
    cov_xy = _filter_valid(x * y, taps) - mu_xy
    return ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))


def ssim(
    clean: np.ndarray,
    restored: np.ndarray,
    data_range: float = 255.0,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
) -> float:
    """Structural similarity, as the reference's ``calculate_ssim`` (MATLAB-style, valid region).

    Each channel is scored with :func:`ssim_map` and the per-channel means are averaged.

    Args:
        clean: ``(H, W[, C])`` reference image on the [0, ``data_range``] scale.
        restored: The image to score, same shape and scale.
        data_range: Dynamic range in the SSIM constants (255 in the reference).
        crop_border: Pixels dropped on each side before scoring (0 in the reference).
        y_channel: Score the BT.601 Y channel of RGB images (grey ones as they are).

    Returns:
        Mean SSIM (1.0 for identical images).

    Raises:
        ValueError: Shapes differ, are not images, or are smaller than the 11×11 window.
    """
    clean, restored = _prepare(clean, restored, crop_border, y_channel)
    if clean.ndim == 2:
        clean, restored = clean[..., None], restored[..., None]
    scores = [
        float(ssim_map(clean[..., c], restored[..., c], data_range).mean())
        for c in range(clean.shape[2])
    ]
    return float(np.mean(scores))


# --------------------------------------------------------------------------------------------
# CT (low-dose CT) metrics
# --------------------------------------------------------------------------------------------


def _ct_to_hu_truncated(
    image: np.ndarray | torch.Tensor,
    hu_min: float,
    hu_max: float,
    norm_range_min: float,
    norm_range_max: float,
) -> torch.Tensor:
    # The reference computes in float32 torch; so do we, to reproduce its rounding.
    plane = torch.as_tensor(np.asarray(image), dtype=torch.float32).squeeze()
    if plane.ndim != 2:
        raise ValueError(f"CT metrics take a single-channel slice, got shape {tuple(plane.shape)}")
    hu = plane * (norm_range_max - norm_range_min) + norm_range_min
    return hu.clamp(hu_min, hu_max)


def _ct_pair_to_hu(
    clean: np.ndarray | torch.Tensor,
    restored: np.ndarray | torch.Tensor,
    hu_min: float,
    hu_max: float,
    norm_range_min: float,
    norm_range_max: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both slices of a CT metric in truncated HU, checked to be the same shape."""
    x = _ct_to_hu_truncated(clean, hu_min, hu_max, norm_range_min, norm_range_max)
    y = _ct_to_hu_truncated(restored, hu_min, hu_max, norm_range_min, norm_range_max)
    if x.shape != y.shape:
        raise ValueError(f"slices differ in shape: {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def ct_psnr(
    clean: np.ndarray | torch.Tensor,
    restored: np.ndarray | torch.Tensor,
    *,
    hu_min: float = CT_HU_MIN,
    hu_max: float = CT_HU_MAX,
    norm_range_min: float = CT_NORM_RANGE_MIN,
    norm_range_max: float = CT_NORM_RANGE_MAX_REFERENCE,
) -> float:
    """PSNR of a CT slice in Hounsfield units, as the reference's LDCT test script computes it.

    Model units are mapped to HU by ``x * (norm_range_max - norm_range_min) + norm_range_min``,
    both images are truncated to ``[hu_min, hu_max]`` and PSNR uses ``data_range = hu_max -
    hu_min`` (4096), in float32.

    Reference quirks, reproduced by default:
      * ``norm_range_max=3096``: the script passes 3096 where the data were normalised with
        3072, so HU values are stretched by 4120/4096 before truncation. Pass
        ``norm_range_max=3072`` (``CT_HU_MAX``) for the consistent mapping.
      * the restored slice is *not* clamped to [0, 1] before the mapping (only truncated in HU).
      * the whole computation runs in float32.

    Args:
        clean: ``(H, W)`` or ``(1, H, W)`` / ``(H, W, 1)`` normal-dose slice in model units.
        restored: The denoised slice, same shape.
        hu_min: Lower truncation in HU (-1024).
        hu_max: Upper truncation in HU (3072).
        norm_range_min: HU value of model unit 0.
        norm_range_max: HU value of model unit 1 (the reference's 3096).

    Returns:
        PSNR in dB.
    """
    x, y = _ct_pair_to_hu(clean, restored, hu_min, hu_max, norm_range_min, norm_range_max)
    data_range = hu_max - hu_min
    mse = ((x - y) ** 2).mean()
    if float(mse) == 0.0:
        return math.inf
    return float(10 * torch.log10((data_range**2) / mse))


def _gaussian_window_torch(size: int, sigma: float) -> torch.Tensor:
    offsets = torch.tensor([float(i - size // 2) for i in range(size)])
    taps = torch.exp(-(offsets**2) / float(2 * sigma**2))
    taps = taps / taps.sum()
    return (taps[:, None] @ taps[None, :]).float()[None, None]


def ct_ssim(
    clean: np.ndarray | torch.Tensor,
    restored: np.ndarray | torch.Tensor,
    *,
    hu_min: float = CT_HU_MIN,
    hu_max: float = CT_HU_MAX,
    norm_range_min: float = CT_NORM_RANGE_MIN,
    norm_range_max: float = CT_NORM_RANGE_MAX_REFERENCE,
) -> float:
    """SSIM of a CT slice in HU, as the reference's ``compute_SSIM`` (pytorch-ssim variant).

    Same HU mapping and truncation as :func:`ct_psnr`; then an 11×11 Gaussian window (σ = 1.5)
    applied with *zero padding* ("same" size, unlike the valid-region photo SSIM), constants
    (0.01·4096)² and (0.03·4096)², float32, mean over the whole map.

    Returns:
        Mean SSIM.
    """
    x, y = _ct_pair_to_hu(clean, restored, hu_min, hu_max, norm_range_min, norm_range_max)
    x, y = x[None, None], y[None, None]
    window = _gaussian_window_torch(SSIM_WINDOW_SIZE, SSIM_SIGMA)
    pad = SSIM_WINDOW_SIZE // 2

    def blur(plane: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(plane, window, padding=pad)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
    var_x = blur(x * x) - mu_xx
    var_y = blur(y * y) - mu_yy
    cov_xy = blur(x * y) - mu_xy
    data_range = hu_max - hu_min
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_values = ((2 * mu_xy + c1) * (2 * cov_xy + c2)) / (
        (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
    )
    return float(ssim_values.mean())
