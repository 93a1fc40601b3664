"""Helpers shared by the web demo's tests: encoded test images, an app with the tiny demo
network and the baselines, and a client's view of the job API (submit, wait).

Import after ``pytest.importorskip("fastapi")``: the app needs the ``serve`` extra.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import nn

from clipdenoise.web import ServeConfig, build_catalogue, create_app
from clipdenoise.web.catalogue import TINY_DEMO_KEY
from conftest import smooth_image

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

TINY = TINY_DEMO_KEY


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def smooth_uint8(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.round(smooth_image(height, width, 3, seed) * 255).astype(np.uint8)


def make_app(**config_overrides):
    catalogue = build_catalogue(tiny_demo=True, include_imported=False, baselines=True)
    config = ServeConfig(**config_overrides)
    return create_app(catalogue, config=config)


def wait_done(client: TestClient, job_id: str, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def submit(client: TestClient, data: bytes | None = None, filename="image.png", **fields):
    fields.setdefault("model", TINY)
    files = {"file": (filename, data, "application/octet-stream")} if data is not None else None
    return client.post("/api/jobs", data=fields, files=files)


class SlowNet(nn.Module):
    """Identity network taking ``delay`` seconds per forward call (one call per tile)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        time.sleep(self.delay)
        return x * self.scale
