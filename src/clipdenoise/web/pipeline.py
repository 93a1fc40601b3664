"""What one demo job does: add the chosen synthetic noise (seeded), denoise with the chosen model
(networks tiled through :class:`clipdenoise.inference.Denoiser`), score against the clean image
when it is known, and encode previews and downloads.

This is the library seen from the web layer: noise, inference and metrics come from their own
modules; only the orchestration lives here.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from clipdenoise.errors import ClipDenoiseError
from clipdenoise.inference import Denoiser
from clipdenoise.metrics import psnr, ssim, to_metric_scale
from clipdenoise.noise import add_noise
from clipdenoise.web.catalogue import ModelCatalogue, ModelEntry
from clipdenoise.web.jobs import JobContext
from clipdenoise.web.upload import (
    DecodedImage,
    decode_image,
    encode_like,
    encode_preview,
    snap_to_sample_grid,
)

if TYPE_CHECKING:
    from clipdenoise.noise import NoiseSpec


@dataclass(frozen=True)
class InferenceSettings:
    """How networks run: device (``auto`` picks CUDA, then MPS, then the CPU), compute dtype
    and tiling (see ``clipdenoise serve --help``)."""

    device: str = "auto"
    dtype: str = "float32"
    tile_size: int = 512
    tile_overlap: int = 128


@dataclass(frozen=True)
class DenoiseRequest:
    """A validated job: the upload, the model, optional synthetic noise and its seed.

    The upload waits in the queue as its (compressed) file bytes, already validated by a full
    decode, rather than as float pixels, which would take several times the memory; the worker
    decodes it again. ``name`` is a sanitised display name used only for the download's name.
    """

    data: bytes = field(repr=False)
    max_pixels: int
    model_key: str
    noise: NoiseSpec | None
    seed: int
    name: str

    def decode(self) -> DecodedImage:
        """The upload's pixels (decoded again in the worker)."""
        return decode_image(self.data, max_pixels=self.max_pixels)


@dataclass(frozen=True)
class DenoiseResult:
    """Everything the page shows and offers for download (kept in memory only)."""

    model_key: str
    model_label: str
    untrained: bool
    width: int
    height: int
    channels: int
    format: str
    bit_depth: int
    noise: str | None
    seed: int | None
    denoise_seconds: float
    total_seconds: float
    tiles: int
    metrics: dict[str, dict[str, float | None]] | None
    media_type: str
    suffix: str
    name: str
    previews: dict[str, bytes] = field(repr=False)
    files: dict[str, bytes] = field(repr=False)

    def public(self) -> dict:
        """JSON-ready summary (no image bytes)."""
        return {
            "model": self.model_key,
            "model_label": self.model_label,
            "untrained": self.untrained,
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "format": self.format,
            "bit_depth": self.bit_depth,
            "noise": self.noise,
            "seed": self.seed,
            "denoise_seconds": round(self.denoise_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "tiles": self.tiles,
            "metrics": self.metrics,
            "previews": sorted(self.previews),
            "downloads": sorted(self.files),
            "download_name": f"{self.name}-denoised{self.suffix}",
        }


def add_synthetic_noise(clean: np.ndarray, spec: NoiseSpec, seed: int) -> np.ndarray:
    """``clean`` ``(H, W, C)`` float32 in [0, 1] plus noise of ``spec``, seeded, clipped to [0, 1].

    The noisy image is clipped because it stands for a noisy *file* (the values a visitor can
    download and upload again); the reference's unclipped Gaussian test protocol lives in
    :func:`clipdenoise.noise.add_reference_noise` for benchmarks.

    Raises:
        ClipDenoiseError: the kind needs colour and the image is grey.
    """
    if spec.kind == "srgb_camera" and clean.shape[2] != 3:
        raise ClipDenoiseError("camera (srgb_camera) noise needs a colour image; this one is grey")
    generator = torch.Generator().manual_seed(seed)
    tensor = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1)))
    noisy = add_noise(tensor, spec, generator)
    return noisy.clamp(0.0, 1.0).permute(1, 2, 0).numpy().astype(np.float32)


def score(clean: np.ndarray, image: np.ndarray) -> dict[str, float | None]:
    """PSNR (dB) and SSIM of ``image`` against ``clean``, both ``(H, W, C)`` in [0, 1].

    Computed by :mod:`clipdenoise.metrics` on the [0, 255] scale (the paper's protocol); SSIM is
    ``None`` for images smaller than its 11×11 window, PSNR ``None`` when infinite (identical).
    """
    clean255, image255 = to_metric_scale(clean), to_metric_scale(image)
    value = psnr(clean255, image255)
    try:
        structural = ssim(clean255, image255)
    except ValueError:
        structural = None
    return {
        "psnr": None if math.isinf(value) else round(value, 3),
        "ssim": None if structural is None else round(structural, 4),
    }


class DenoiserCache:
    """One :class:`clipdenoise.inference.Denoiser` per network, built on first use.

    Building one copies the network, folds its BatchNorm and moves it to the device, so it is
    done once per model, not per request; ``Denoiser`` calls are safe from several threads
    (inference mode, no state changed).
    """

    def __init__(self, settings: InferenceSettings) -> None:
        self.settings = settings
        self._denoisers: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, entry: ModelEntry):
        with self._lock:
            if entry.key not in self._denoisers:
                self._denoisers[entry.key] = Denoiser(
                    entry.get_module(),
                    device=self.settings.device,
                    dtype=self.settings.dtype,
                    tile_size=self.settings.tile_size,
                    tile_overlap=self.settings.tile_overlap,
                    batch_size=1,
                    channel_conversion="auto",
                )
            return self._denoisers[entry.key]


def restore_with_network(
    denoiser, noisy: np.ndarray, context: JobContext
) -> tuple[np.ndarray, int]:
    """Denoise ``(H, W, C)`` float32 in [0, 1] with a network (tiled when large).

    Progress is reported after every tile, which is also where a cancelled or timed-out job
    stops. Returns the restored image and the number of forward passes (tiles).
    """
    tiles_seen = [1]

    def on_tile(done: int, total: int) -> None:
        tiles_seen[0] = total
        context.report(min(done / total, 0.99), f"denoising tile {min(done + 1, total)} of {total}")

    batch = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    context.report(0.0, "denoising")
    restored = denoiser.denoise_batch(batch, on_tile=on_tile)
    context.check()
    image = restored[0].clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return image.reshape(noisy.shape), tiles_seen[0]


def restore_with_baseline(
    module: nn.Module, noisy: np.ndarray, context: JobContext, label: str
) -> np.ndarray:
    """Denoise with a classical baseline (whole image: its σ is estimated per image)."""
    context.report(0.05, f"running {label}")
    batch = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
    restored = module(batch)[0].permute(1, 2, 0).numpy()
    context.check()
    return restored.astype(np.float32)


def run_denoise(
    request: DenoiseRequest,
    catalogue: ModelCatalogue,
    denoisers: DenoiserCache,
    context: JobContext,
) -> DenoiseResult:
    """The body of one job (runs in a worker thread)."""
    started = time.perf_counter()
    entry: ModelEntry = catalogue.get(request.model_key)
    context.report(0.0, f"loading {entry.label}")
    module = entry.get_module()
    denoiser = denoisers.get(entry) if entry.family == "network" else None
    image = request.decode()
    clean = image.pixels
    noisy = clean
    if request.noise is not None:
        context.report(0.0, f"adding {request.noise} noise (seed {request.seed})")
        noisy = snap_to_sample_grid(
            add_synthetic_noise(clean, request.noise, request.seed), image.sample_dtype
        )
    context.check()
    denoise_started = time.perf_counter()
    with torch.inference_mode():
        if entry.family == "network":
            restored, tiles = restore_with_network(denoiser, noisy, context)
        else:
            restored, tiles = restore_with_baseline(module, noisy, context, entry.label), 1
    denoise_seconds = time.perf_counter() - denoise_started
    context.report(0.99, "encoding the result")
    restored = snap_to_sample_grid(restored, image.sample_dtype)
    metrics = None
    previews = {"noisy": encode_preview(noisy), "restored": encode_preview(restored)}
    files = {"restored": encode_like(restored, image)}
    if request.noise is not None:
        metrics = {"noisy": score(clean, noisy), "restored": score(clean, restored)}
        previews["clean"] = encode_preview(clean)
        files["noisy"] = encode_like(noisy, image)
    context.check()
    return DenoiseResult(
        model_key=entry.key,
        model_label=entry.label,
        untrained=entry.untrained,
        width=image.width,
        height=image.height,
        channels=image.channels,
        format=image.format,
        bit_depth=image.bit_depth,
        noise=None if request.noise is None else str(request.noise),
        seed=None if request.noise is None else request.seed,
        denoise_seconds=denoise_seconds,
        total_seconds=time.perf_counter() - started,
        tiles=tiles,
        metrics=metrics,
        media_type=image.media_type,
        suffix=image.suffix,
        name=request.name,
        previews=previews,
        files=files,
    )
