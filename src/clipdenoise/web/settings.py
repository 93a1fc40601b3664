"""Limits and options of the web demo server (``clipdenoise serve``)."""

from __future__ import annotations

from dataclasses import dataclass

from clipdenoise.errors import ConfigError

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class ServeConfig:
    """What the demo server accepts and how much work it takes on at once.

    Attributes:
        host: Interface to bind. ``127.0.0.1`` (default) keeps the demo private to this machine;
            ``0.0.0.0`` exposes it to the network.
        port: TCP port.
        max_upload_bytes: Largest request body accepted (the upload plus form fields); larger
            requests are refused with HTTP 413 before they are read.
        max_pixels: Largest image (width × height) decoded; checked from the file header before
            any pixel is decompressed, so decompression bombs are refused cheaply.
        max_concurrent: Jobs that run at the same time (each uses every CPU core torch is
            allowed; 1 is right for CPUs, 1–2 for one GPU).
        max_queue: Jobs that may wait for a free slot; beyond that requests get HTTP 503 with a
            ``Retry-After`` header instead of piling up.
        job_timeout_s: Seconds a job may run (queueing not counted) before it is cancelled.
        tile_size: Tile side (pixels, a multiple of 32) for networks; larger images are denoised
            tile by tile.
        tile_overlap: Overlap between neighbouring tiles (pixels, at most half a tile); the
            default covers the network's receptive field, so tiles leave no seams.
        result_ttl_s: Seconds finished results stay downloadable (kept in memory only).
        max_results: Finished jobs kept at most; the oldest are dropped first.
        request_timeout_s: Seconds a client has to send a request's headers, and again its
            body; a slower client gets HTTP 408 (body) or is disconnected (headers), so stalled
            connections cannot pile up. Idle keep-alive connections close after 5 s.
    """

    host: str = LOCALHOST
    port: int = 8000
    max_upload_bytes: int = 40 * 1024 * 1024
    max_pixels: int = 16_000_000
    max_concurrent: int = 1
    max_queue: int = 32
    job_timeout_s: float = 300.0
    tile_size: int = 512
    tile_overlap: int = 128
    result_ttl_s: float = 900.0
    max_results: int = 16
    request_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        positive = {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_concurrent": self.max_concurrent,
            "job_timeout_s": self.job_timeout_s,
            "tile_size": self.tile_size,
            "result_ttl_s": self.result_ttl_s,
            "max_results": self.max_results,
            "request_timeout_s": self.request_timeout_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"serve option {name} must be positive, got {value}")
        if self.max_queue < 0:
            raise ConfigError(f"serve option max_queue must be >= 0, got {self.max_queue}")
        if self.tile_size < 64 or self.tile_size % 32:
            raise ConfigError(
                f"serve option tile_size must be a multiple of 32, at least 64, got {self.tile_size}"
            )
        if not 0 <= 2 * self.tile_overlap <= self.tile_size:
            raise ConfigError(
                "serve option tile_overlap must be between 0 and half the tile size, got "
                f"{self.tile_overlap} for tiles of {self.tile_size}"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"serve option port must be in [0, 65535], got {self.port}")
