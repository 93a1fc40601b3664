"""Noisy versions of the analysis images: noise specs, paper units, seeding.

The paper's Sec. 3.1 states Gaussian noise as a standard deviation on [0, 1] images
(std = 0.1 … 0.5); the noise module's ``gaussian`` level is σ on the 0–255 scale, so
std 0.1 is ``gaussian:25.5``. :func:`gaussian_std_spec` converts.

Seeding: the noise of image ``i``, draw ``d`` comes from a generator seeded by
``(seed, i, d)`` only, so every encoder sees the same noisy images and, for additive noise,
every level of a kind reuses the same noise pattern scaled (common random numbers: curves over
levels and encoders are not blurred by independent draws).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from clipdenoise.noise import NoiseSpec, parse_noise_spec

#: Noise levels of the paper's Fig. 1 (left), as Gaussian std on [0, 1] images.
PAPER_GAUSSIAN_STDS = (0.1, 0.2, 0.3, 0.4, 0.5)


@runtime_checkable
class Corruption(Protocol):
    """Anything with ``apply(clean, generator) -> noisy`` on ``(B, C, H, W)`` tensors, e.g.
    :class:`clipdenoise.noise.NoiseSpec` or a user-defined degradation."""

    def apply(self, clean: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...


CorruptionLike = Corruption | Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def gaussian_std_spec(std: float) -> Any:
    """The noise spec of i.i.d. Gaussian noise with standard deviation ``std`` on [0, 1] images
    (the paper's Sec. 3.1 unit): ``gaussian`` with ``σ_255 = 255 · std``."""
    if std < 0:
        raise ValueError(f"Gaussian std must be >= 0, got {std}")
    return NoiseSpec("gaussian", round(255.0 * float(std), 6))


def parse_corruption(text: str) -> Any:
    """Parse a noise spec string (``gaussian:25.5``, ``poisson:3.5``, …) with the noise module."""
    return parse_noise_spec(text)


def noise_id(noise: CorruptionLike) -> str:
    """Machine-readable name of a corruption: ``kind:level`` for noise specs."""
    if getattr(noise, "kind", None) is not None and hasattr(noise, "level"):
        return str(noise)  # NoiseSpec's text form, which parse_noise_spec reads back
    return str(getattr(noise, "label", None) or getattr(noise, "__name__", None) or noise)


def noise_label(noise: CorruptionLike) -> str:
    """Legend name of a corruption; Gaussian noise also shows the paper's std on [0, 1]."""
    kind, level = getattr(noise, "kind", None), getattr(noise, "level", None)
    if kind == "gaussian" and isinstance(level, (int, float)):
        return f"Gaussian std {float(level) / 255:.3g} (σ₂₅₅={float(level):g})"
    return noise_id(noise)


def draw_generator(seed: int, image_index: int, draw: int) -> torch.Generator:
    """CPU generator of noise draw ``draw`` of image ``image_index`` (see the module docstring)."""
    state = np.random.SeedSequence([seed, image_index, draw]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator(device="cpu")
    generator.manual_seed((int(state[0]) << 32 | int(state[1])) & (2**63 - 1))
    return generator


def apply_corruption(
    noise: CorruptionLike,
    clean: torch.Tensor,
    generator: torch.Generator,
    *,
    clip: bool = False,
) -> torch.Tensor:
    """Corrupt ``clean`` ``(B, C, H, W)`` float in [0, 1] (on CPU, so draws match on any device).

    Args:
        noise: A noise spec (``.apply``) or a callable ``(clean, generator) -> noisy``.
        clean: Clean images.
        generator: Seeded CPU generator.
        clip: Clip the result to [0, 1]. Off by default: the reference adds Gaussian noise
            without clipping, and so does the paper's analysis.

    Returns:
        The noisy images, float32, same shape.
    """
    if hasattr(noise, "apply"):
        noisy = noise.apply(clean, generator)
    elif callable(noise):
        noisy = noise(clean, generator)
    else:
        raise TypeError(f"{noise!r} is neither a noise spec nor a callable")
    if noisy.shape != clean.shape:
        raise ValueError(
            f"noise {noise_id(noise)} changed the shape {tuple(clean.shape)} -> "
            f"{tuple(noisy.shape)}"
        )
    noisy = noisy.to(torch.float32)
    return noisy.clamp(0.0, 1.0) if clip else noisy


__all__ = [
    "PAPER_GAUSSIAN_STDS",
    "Corruption",
    "CorruptionLike",
    "apply_corruption",
    "draw_generator",
    "gaussian_std_spec",
    "noise_id",
    "noise_label",
    "parse_corruption",
]
