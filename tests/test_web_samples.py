"""The demo's bundled sample images, generated procedurally and reproduced exactly."""

from __future__ import annotations

import io

import numpy as np
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


def test_sample_descriptions_match_their_files():
    for key, sample in SAMPLES.items():
        with Image.open(io.BytesIO(sample.data())) as image:
            assert image.size == (sample.width, sample.height)
            assert image.mode == ("I;16" if sample.bit_depth == 16 else "RGB")
        public = sample.public()
        assert public["url"] == f"/api/samples/{key}" and public["bit_depth"] == sample.bit_depth
        assert sample.filename == f"{key}.png"


def test_the_phantom_is_the_modified_shepp_logan_head():
    from clipdenoise.web.samples import render_phantom

    phantom = render_phantom(128)
    assert phantom.shape == (128, 128, 1) and phantom.min() >= 0.0 and phantom.max() <= 1.0
    assert phantom[0, 0, 0] == 0.0  # outside the skull
    assert phantom[64, 64, 0] == pytest.approx(0.2, abs=0.01)  # brain matter (Toft's 1 - 0.8)
    assert phantom[64, 20, 0] == pytest.approx(1.0) and phantom[64, 107, 0] == pytest.approx(1.0)
    assert np.allclose(phantom[6:9, 64, 0], 1.0)  # the skull, at the sides and on top
    assert phantom[64, 17, 0] == 0.0 and phantom[2, 64, 0] == 0.0


def test_the_quickstart_image_is_its_scene_with_reference_noise():
    from clipdenoise.metrics import psnr
    from clipdenoise.web.samples import quickstart_clean, quickstart_png

    clean = quickstart_clean()
    assert clean.shape == (192, 256, 3) and clean.dtype == np.uint8
    noisy = np.asarray(Image.open(io.BytesIO(quickstart_png())), dtype=np.float64)
    assert 20.0 < psnr(clean.astype(np.float64), noisy) < 21.5  # σ = 25 noise, clipped


def test_write_samples_writes_every_png(tmp_path, monkeypatch):
    import clipdenoise.web.samples as samples

    monkeypatch.setattr(samples, "sample_png", lambda key: f"png of {key}".encode())
    paths = samples.write_samples(tmp_path / "out")
    assert [path.name for path in paths] == [f"{key}.png" for key in SAMPLES]
    assert [path.read_bytes() for path in paths] == [f"png of {key}".encode() for key in SAMPLES]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
