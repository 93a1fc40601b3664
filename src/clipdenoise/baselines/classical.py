"""Training-free baselines: BM3D, non-local means, and the noisy input itself (the floor).

All three follow the package-wide denoiser contract ``forward(x)`` on ``(B, C, H, W)`` float
tensors in [0, 1] (RGB or single-channel), so the evaluation harness treats them like any
network. They run on the CPU through numpy whatever device ``x`` is on, and return a tensor on
``x``'s device and dtype.

Noise level: BM3D and NLM need the standard deviation σ of (approximately) white Gaussian noise,
on the [0, 1] scale. Give it (``sigma=25 / 255``) when the noise is known Gaussian, or leave it
``None`` to estimate it from each noisy image with :func:`estimate_noise_sigma` (what the paper's
generalisation setting implies for non-Gaussian kinds: the method is not told the noise).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from clipdenoise.extras import import_optional

__all__ = ["BM3DDenoiser", "NLMDenoiser", "NoisyInput", "estimate_noise_sigma"]


def _require(module: str, extra: str = "baselines"):
    return import_optional(module, "this baseline", extra)


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Estimate the standard deviation of additive white Gaussian noise in an image.

    Uses the robust wavelet estimator of Donoho & Johnstone (median absolute deviation of the
    finest diagonal wavelet coefficients, scikit-image's ``estimate_sigma``), averaged over the
    channels. For non-Gaussian noise this is the σ of the Gaussian that best explains the
    high-frequency energy, which is what BM3D / NLM then assume.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` float array on the [0, 1] scale.

    Returns:
        σ on the [0, 1] scale (a small positive floor keeps the denoisers defined on clean
        images).
    """
    restoration = _require("skimage.restoration")
    image = np.asarray(image, dtype=np.float64)
    channel_axis = -1 if image.ndim == 3 else None
    sigma = restoration.estimate_sigma(image, channel_axis=channel_axis, average_sigmas=True)
    return float(max(sigma, 1e-4))


class _NumpyDenoiser(nn.Module):
    """Applies a per-image numpy denoiser to each image of a batch."""

    def __init__(self, sigma: float | None) -> None:
        super().__init__()
        if sigma is not None and not sigma > 0:
            raise ValueError(f"sigma must be > 0 on the [0, 1] scale or None, got {sigma}")
        self.sigma = sigma
        self.last_sigmas: list[
            float
        ] = []  # σ used per image of the last batch (estimated or given)

    def denoise_image(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        images = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
        outputs, self.last_sigmas = [], []
        for noisy in images:
            sigma = self.sigma if self.sigma is not None else estimate_noise_sigma(noisy)
            self.last_sigmas.append(sigma)
            outputs.append(self.denoise_image(noisy, sigma))
        restored = torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2)
        return restored.to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"sigma={'estimated' if self.sigma is None else f'{self.sigma * 255:.4g}/255'}"


class BM3DDenoiser(_NumpyDenoiser):
    """BM3D (Dabov et al., 2007) through the ``bm3d`` package; CBM3D (opponent colour) for RGB.

    Args:
        sigma: Noise standard deviation on the [0, 1] scale, or ``None`` to estimate it per image.
        profile: ``bm3d`` profile name (``"np"`` normal, ``"refilter"``, ``"vn"``...).

    Example:
        >>> import torch
        >>> BM3DDenoiser(sigma=25 / 255)(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(self, sigma: float | None = None, profile: str = "np") -> None:
        super().__init__(sigma)
        self.profile = profile

    def denoise_image(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        bm3d = _require("bm3d")
        if noisy.shape[2] == 3:
            restored = bm3d.bm3d_rgb(noisy, sigma, profile=self.profile)
        else:
            restored = bm3d.bm3d(noisy[..., 0], sigma, profile=self.profile)[..., None]
        return np.asarray(restored, dtype=np.float64).reshape(noisy.shape)


class NLMDenoiser(_NumpyDenoiser):
    """Non-local means (Buades et al., 2005), scikit-image's fast implementation.

    The filtering strength is ``h = h_factor * sigma`` and σ is also passed to scikit-image,
    which subtracts the expected noise contribution from patch distances (its recommended
    setting, with ``h`` somewhat below σ).

    Args:
        sigma: Noise standard deviation on the [0, 1] scale, or ``None`` to estimate it per image.
        h_factor: Filtering strength relative to σ.
        patch_size: Side of the compared patches.
        patch_distance: Search radius in pixels.
        fast_mode: scikit-image's fast (box-kernel) mode.
    """

    def __init__(
        self,
        sigma: float | None = None,
        *,
        h_factor: float = 0.6,
        patch_size: int = 5,
        patch_distance: int = 6,
        fast_mode: bool = True,
    ) -> None:
        super().__init__(sigma)
        self.h_factor = h_factor
        self.patch_size = patch_size
        self.patch_distance = patch_distance
        self.fast_mode = fast_mode

    def denoise_image(self, noisy: np.ndarray, sigma: float) -> np.ndarray:
        restoration = _require("skimage.restoration")
        restored = restoration.denoise_nl_means(
            noisy,
            h=self.h_factor * sigma,
            sigma=sigma,
            patch_size=self.patch_size,
            patch_distance=self.patch_distance,
            fast_mode=self.fast_mode,
            channel_axis=-1,
        )
        return np.asarray(restored, dtype=np.float64).reshape(noisy.shape)


class NoisyInput(nn.Module):
    """The identity: scores the noisy input itself, the floor every denoiser must beat."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()
