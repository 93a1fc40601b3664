"""The evaluation protocol: every convention that moves a benchmark number, as one value object.

Reported PSNR/SSIM depend on choices papers rarely print: how the test noise is seeded, how
images are padded for the network, whether the output is clamped or rounded, which channel is
scored, which SSIM. :class:`EvalProtocol` names each of them; it is serialised into every results
file (and into the cache key), so two numbers are only ever compared under the same protocol.

Three presets reproduce the reference scripts of CLIPDenoising:
:meth:`EvalProtocol.synthetic` (``test_synthetic_denoising.py``), :meth:`EvalProtocol.real_srgb`
(``test_real_denoising_sRGB.py``) and :meth:`EvalProtocol.ldct` (``test_real_denoising_CT.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from clipdenoise.errors import ConfigError

__all__ = ["EvalProtocol"]

SSIM_VARIANTS = ("matlab-gaussian-valid", "ct-gaussian-zero-padded")
METRIC_SPACES = ("srgb", "ct-hu")


@dataclass(frozen=True)
class EvalProtocol:
    """Conventions of one evaluation (defaults: the reference synthetic-noise protocol).

    Attributes:
        seed: Seed of the test noise.
        reseed_per_image: Re-seed with ``seed`` before every image (reference quirk: every image
            gets the same random stream, ``np.random.seed(0)``); ``False`` seeds once per
            (dataset, noise) with ``seed`` and draws images in sorted order.
        noise_generator: The generator of the test noise: ``"numpy-legacy"`` is numpy's
            ``RandomState`` as the reference uses it (see
            :func:`clipdenoise.noise.add_reference_noise`).
        pad_multiple: Networks see the input reflect-padded at the bottom/right to a multiple of
            this (32 in the reference) and the output is cropped back; 1 adds no padding here.
            A CLIPDenoiser also pads to its own multiple inside its forward (32, 64 with F5,
            :attr:`clipdenoise.model.ModelConfig.pad_multiple`) in the same way, so for it
            values that divide 32 give identical results (1 included): only a larger multiple
            changes its output. Baselines (DnCNN, Restormer) see exactly this padding.
            Classical methods are never padded.
        clip_noisy_input: Clip the noisy input to [0, 1] before the method sees it. The
            reference does not (Gaussian inputs go out of range; Poisson is clipped by its
            generator).
        clamp_output: Clamp the restored image to [0, 1] before scoring (reference: yes).
        round_to_uint8: Round the restored image to 8-bit before scoring (the reference does for
            real photos, not for synthetic noise).
        channel: ``"rgb"`` scores all channels (reference); ``"y"`` the BT.601 luma.
        crop_border: Pixels dropped on each side before scoring (reference: 0).
        ssim_variant: ``"matlab-gaussian-valid"`` (11×11 Gaussian σ = 1.5, valid region, mean
            over channels; the reference for photos) or ``"ct-gaussian-zero-padded"`` (the
            reference's CT SSIM).
        metric_space: ``"srgb"`` (scores on [0, 255]) or ``"ct-hu"`` (model units mapped to
            HU, truncated, data range 4096; see :func:`clipdenoise.metrics.ct_psnr`).
        ct_norm_range_max: HU value of model unit 1 in the CT metric mapping (the reference's
            3096 typo; 3072 is consistent with its data).
    """

    seed: int = 0
    reseed_per_image: bool = True
    noise_generator: Literal["numpy-legacy"] = "numpy-legacy"
    pad_multiple: int = 32
    clip_noisy_input: bool = False
    clamp_output: bool = True
    round_to_uint8: bool = False
    channel: Literal["rgb", "y"] = "rgb"
    crop_border: int = 0
    ssim_variant: str = "matlab-gaussian-valid"
    metric_space: str = "srgb"
    ct_norm_range_max: float = 3096.0

    def __post_init__(self) -> None:
        if self.channel not in ("rgb", "y"):
            raise ConfigError(f"protocol channel must be 'rgb' or 'y', got {self.channel!r}")
        if self.ssim_variant not in SSIM_VARIANTS:
            raise ConfigError(
                f"protocol ssim_variant must be one of {SSIM_VARIANTS}, got {self.ssim_variant!r}"
            )
        if self.metric_space not in METRIC_SPACES:
            raise ConfigError(
                f"protocol metric_space must be one of {METRIC_SPACES}, got {self.metric_space!r}"
            )
        if self.pad_multiple < 1:
            raise ConfigError(f"protocol pad_multiple must be >= 1, got {self.pad_multiple}")
        if self.crop_border < 0:
            raise ConfigError(f"protocol crop_border must be >= 0, got {self.crop_border}")

    @classmethod
    def synthetic(cls, **overrides: Any) -> EvalProtocol:
        """The reference synthetic protocol (paper Table 1): seed 0 per image, pad ×32, clamp,
        unrounded floats, RGB, MATLAB SSIM."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def real_srgb(cls, **overrides: Any) -> EvalProtocol:
        """The reference real-photo protocol (paper Table 2): as synthetic, but the restored image
        is rounded to uint8 before scoring against the 8-bit reference."""
        return dataclasses.replace(cls(round_to_uint8=True), **overrides)

    @classmethod
    def ldct(cls, **overrides: Any) -> EvalProtocol:
        """The reference LDCT protocol (paper Table 3): no clamping, HU metrics, CT SSIM."""
        base = cls(
            clamp_output=False,
            metric_space="ct-hu",
            ssim_variant="ct-gaussian-zero-padded",
        )
        return dataclasses.replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable mapping of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict[str, Any]) -> EvalProtocol:
        """Inverse of :meth:`to_dict`; unknown keys are an error listing the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(mapping) - valid)
        if unknown:
            raise ConfigError(f"unknown protocol field(s) {unknown}; valid fields: {sorted(valid)}")
        return cls(**mapping)

    def fingerprint(self) -> str:
        """A short stable hash of the protocol (part of every cache key)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
