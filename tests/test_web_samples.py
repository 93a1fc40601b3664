"""The demo's bundled sample images, generated procedurally and reproduced exactly."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

from clipdenoise.web.samples import SAMPLES, sample_png  # noqa: E402


def test_samples_are_reproduced_by_their_generator(client):
    for key, sample in SAMPLES.items():
        shipped = client.get(f"/api/samples/{key}").content
        assert shipped == sample_png(key), key
        with Image.open(io.BytesIO(shipped)) as image:
            assert image.size == (sample.width, sample.height)
            assert image.mode == ("I;16" if sample.bit_depth == 16 else "RGB")
    assert client.get("/api/samples/..%2F..%2Fetc%2Fpasswd").status_code == 404
