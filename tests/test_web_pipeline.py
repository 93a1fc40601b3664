"""What one demo job does: seeded synthetic noise, denoising (network or baseline), metrics
of the files a visitor downloads, channel checks."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from _web_helpers import png_bytes, smooth_uint8, submit, wait_done  # noqa: E402
from clipdenoise.web import build_catalogue, create_app  # noqa: E402
from clipdenoise.web.samples import sample_png  # noqa: E402


def test_denoise_sample_with_noise_metrics_match_downloads(client):
    from clipdenoise.metrics import psnr, ssim

    response = submit(client, sample="scene", noise="gaussian", level="25", seed="11")
    assert response.status_code == 202, response.text
    job = wait_done(client, response.json()["id"])
    assert job["state"] == "done", job
    result = job["result"]
    assert (result["width"], result["height"], result["format"], result["bit_depth"]) == (
        384,
        256,
        "PNG",
        8,
    )
    assert result["noise"] == "gaussian:25" and result["seed"] == 11
    assert result["denoise_seconds"] > 0 and result["tiles"] >= 1
    clean = np.asarray(Image.open(io.BytesIO(sample_png("scene"))), dtype=np.float64)
    noisy_file = client.get(f"/api/jobs/{job['id']}/files/noisy")
    restored_file = client.get(f"/api/jobs/{job['id']}/files/restored")
    assert restored_file.headers["content-type"] == "image/png"
    assert 'filename="scene-denoised.png"' in restored_file.headers["content-disposition"]
    noisy = np.asarray(Image.open(io.BytesIO(noisy_file.content)), dtype=np.float64)
    restored = np.asarray(Image.open(io.BytesIO(restored_file.content)), dtype=np.float64)
    # the reported metrics are those of the files a visitor downloads
    assert result["metrics"]["noisy"]["psnr"] == pytest.approx(psnr(clean, noisy), abs=1e-3)
    assert result["metrics"]["noisy"]["ssim"] == pytest.approx(ssim(clean, noisy), abs=1e-4)
    assert result["metrics"]["restored"]["psnr"] == pytest.approx(psnr(clean, restored), abs=1e-3)
    # σ = 25 noise: PSNR of the noisy image near 20.2 dB (clipping raises it a little)
    assert 19.5 < result["metrics"]["noisy"]["psnr"] < 21.5
    preview = client.get(f"/api/jobs/{job['id']}/previews/restored")
    assert preview.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(preview.content))), restored)


def test_same_seed_same_noise_different_seed_different(client):
    files, upload = [], png_bytes(smooth_uint8(48, 48, seed=2))
    for seed in ("5", "5", "6"):
        response = submit(client, upload, noise="poisson", level="3.5", seed=seed)
        job = wait_done(client, response.json()["id"])
        assert job["state"] == "done"
        files.append(client.get(f"/api/jobs/{job['id']}/files/noisy").content)
    assert files[0] == files[1]
    assert files[0] != files[2]


def test_baseline_really_denoises_and_keeps_16_bit_grey(client):
    job = wait_done(
        client,
        submit(
            client, sample="phantom", model="nlm", noise="gaussian", level="25", seed="1"
        ).json()["id"],
    )
    assert job["state"] == "done", job
    metrics = job["result"]["metrics"]
    assert metrics["restored"]["psnr"] > metrics["noisy"]["psnr"] + 3.0
    with Image.open(
        io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/restored").content)
    ) as image:
        assert image.mode == "I;16" and image.size == (256, 256)
        values = np.asarray(image)
    assert values.max() > 255  # real 16-bit values, not 8-bit ones scaled


def test_model_channel_mismatch_reported_on_the_page():
    from clipdenoise.model import CLIPDenoiser, tiny_config

    grey_only = CLIPDenoiser(tiny_config(in_channels=1))
    app = create_app(
        build_catalogue(models={"ct": grey_only}, include_imported=False, baselines=False)
    )
    with TestClient(app) as client:
        job = wait_done(client, submit(client, sample="scene", model="ct").json()["id"])
        assert job["state"] == "failed"
        assert "single-channel" in job["message"]
        job = wait_done(client, submit(client, sample="phantom", model="ct").json()["id"])
        assert job["state"] == "done" and job["result"]["channels"] == 1


def test_synthetic_noise_is_seeded_clipped_and_float32():
    from clipdenoise.noise import NoiseSpec
    from clipdenoise.web.pipeline import add_synthetic_noise

    clean = np.full((64, 64, 3), 0.5, dtype=np.float32)
    spec = NoiseSpec("gaussian", 50.0)
    noisy = add_synthetic_noise(clean, spec, seed=3)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert float((noisy - clean).std()) == pytest.approx(50 / 255, rel=0.1)
    np.testing.assert_array_equal(noisy, add_synthetic_noise(clean, spec, seed=3))
    assert not np.array_equal(noisy, add_synthetic_noise(clean, spec, seed=4))


def test_camera_noise_needs_colour():
    from clipdenoise.errors import ClipDenoiseError
    from clipdenoise.noise import parse_noise_spec
    from clipdenoise.web.pipeline import add_synthetic_noise

    with pytest.raises(ClipDenoiseError, match="needs a colour image; this one is grey"):
        add_synthetic_noise(np.zeros((8, 8, 1), np.float32), parse_noise_spec("srgb_camera"), 0)


def test_scores_on_the_255_scale():
    from clipdenoise.metrics import psnr
    from clipdenoise.web.pipeline import score

    clean = np.zeros((32, 32, 3), np.float32)
    assert score(clean, clean) == {"psnr": None, "ssim": 1.0}  # identical: PSNR is infinite
    shifted = clean + 10 / 255
    assert score(clean, shifted)["psnr"] == pytest.approx(20 * np.log10(255 / 10), abs=1e-3)
    assert score(clean, shifted)["psnr"] == round(psnr(clean * 255, shifted * 255), 3)
    tiny = np.zeros((8, 8, 1), np.float32)
    assert score(tiny, tiny + 0.1)["ssim"] is None  # smaller than SSIM's 11×11 window
