"""The demo service behind the HTTP layer: info, validation of models, noise and seeds,
names of downloads."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _web_helpers import TINY, make_app, png_bytes, smooth_uint8, submit, wait_done  # noqa: E402
from clipdenoise.web.samples import SAMPLES  # noqa: E402


def test_info_lists_models_noise_kinds_samples_and_guidance(client):
    info = client.get("/api/info").json()
    models = {model["key"]: model for model in info["models"]}
    assert models[TINY]["untrained"] is True and "UNTRAINED" in models[TINY]["label"]
    assert {"nlm", "bm3d"} <= set(models) and models["nlm"]["family"] == "baseline"
    # no trained network: the page explains how to add weights
    assert "clipdenoise weights" in info["weights_guidance"]
    assert "--weights" in info["weights_guidance"]
    kinds = {kind["name"]: kind for kind in info["noise_kinds"]}
    assert {"gaussian", "poisson", "speckle", "salt_pepper", "spatial_gaussian"} <= set(kinds)
    assert kinds["gaussian"]["paper_levels"] == ["15", "25", "50"]
    assert [sample["key"] for sample in info["samples"]] == list(SAMPLES)
    assert info["limits"]["max_pixels"] == 2_000_000


def test_uploaded_noisy_image_has_no_metrics(client):
    noisy = smooth_uint8(48, 64)
    job = wait_done(
        client,
        submit(client, png_bytes(noisy), filename="C:\\Users\\me\\..\\photo.png").json()["id"],
    )
    assert job["state"] == "done"
    assert job["result"]["metrics"] is None and job["result"]["noise"] is None
    assert job["result"]["download_name"] == "photo-denoised.png"
    assert client.get(f"/api/jobs/{job['id']}/files/noisy").status_code == 404


def test_unknown_model_bad_noise_and_seed_are_clear_errors(client):
    assert "unknown model" in submit(client, sample="scene", model="nope").json()["error"]
    response = submit(client, sample="scene", noise="blur", level="3")
    assert response.status_code == 400 and "gaussian" in response.json()["error"]
    response = submit(client, sample="scene", noise="gaussian", level="25", seed="-3")
    assert response.status_code == 400 and "seed" in response.json()["error"]
    assert client.get("/api/jobs/not-a-job").status_code == 404
    assert client.get("/api/jobs/" + "a" * 22).json() == {"error": "unknown or expired job"}


def test_camera_noise_on_grey_image_is_refused(client):
    response = submit(client, sample="phantom", noise="srgb_camera")
    assert response.status_code == 400 and "colour image" in response.json()["error"]


def test_every_noise_kind_works_with_the_level_the_page_suggests(client):
    kinds = client.get("/api/info").json()["noise_kinds"]
    upload = png_bytes(smooth_uint8(40, 40, seed=4))
    for kind in kinds:
        response = submit(client, upload, noise=kind["name"], level=kind["suggested"], seed="3")
        assert response.status_code == 202, (kind["name"], response.text)
        job = wait_done(client, response.json()["id"])
        assert job["state"] == "done", (kind["name"], job)
        assert job["result"]["noise"].startswith(kind["name"] + ":")
        assert job["result"]["metrics"]["noisy"]["psnr"] < 40.0, kind["name"]


@pytest.mark.parametrize(
    "seed", ["²", "١٢٣", "1" * 5000, "-1", "1e3", str(2**63), " 7 8 "], ids=repr
)
def test_odd_seeds_are_400_and_the_connection_stays_usable(seed):
    import httpx

    from clipdenoise.web.server import BackgroundServer

    app = make_app()
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/api/jobs", data={"sample": "scene", "model": TINY, "seed": seed})
        assert response.status_code == 400
        message = response.json()["error"]
        assert message.startswith("the seed must be a whole number from 0 to 2^63-1")
        assert len(message) < 200
        # the same keep-alive connection answers the next request
        ok = http.post("/api/jobs", data={"sample": "scene", "model": TINY, "seed": "7"})
        assert ok.status_code == 202
