"""Server tests of the web demo: API, uploads (limits, sniffing, truncation, bombs), formats and
bit depths of downloads, the job queue under 20 concurrent requests, cancellation on timeout."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from clipdenoise.web import InferenceSettings, ServeConfig, build_catalogue, create_app  # noqa: E402
from clipdenoise.web.catalogue import TINY_DEMO_KEY  # noqa: E402
from clipdenoise.web.jobs import JobManager, JobState, QueueFullError  # noqa: E402
from clipdenoise.web.samples import SAMPLES, sample_png  # noqa: E402
from clipdenoise.web.upload import (  # noqa: E402
    UploadRejectedError,
    decode_image,
    encode_like,
    sniff_format,
)

TINY = TINY_DEMO_KEY


# ------------------------------------------------------------------------------------ helpers
def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def smooth_uint8(height: int, width: int, seed: int = 0) -> np.ndarray:
    from conftest import smooth_image

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


@pytest.fixture(scope="module")
def client():
    with TestClient(make_app(max_upload_bytes=2_000_000, max_pixels=2_000_000)) as test_client:
        yield test_client


# ------------------------------------------------------------------------------------ pages and info
def test_page_static_files_and_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="compare-slider"' in page.text and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert (
        "http://" not in page.text and "https://" not in page.text
    )  # nothing fetched from outside
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").status_code == 200
    for path in ("/static/..%2Fapp.py", "/static/app.py", "/docs", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Traceback" not in response.text


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


def test_samples_are_reproduced_by_their_generator(client):
    for key, sample in SAMPLES.items():
        shipped = client.get(f"/api/samples/{key}").content
        assert shipped == sample_png(key), key
        with Image.open(io.BytesIO(shipped)) as image:
            assert image.size == (sample.width, sample.height)
            assert image.mode == ("I;16" if sample.bit_depth == 16 else "RGB")
    assert client.get("/api/samples/..%2F..%2Fetc%2Fpasswd").status_code == 404


# ------------------------------------------------------------------------------------ a full job
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


@pytest.mark.parametrize(
    ("fmt", "mode", "media_type"),
    [("JPEG", "RGB", "image/jpeg"), ("WEBP", "RGB", "image/webp"), ("PNG", "RGBA", "image/png")],
)
def test_download_keeps_format_and_alpha(client, fmt, mode, media_type):
    pixels = smooth_uint8(40, 56)
    if mode == "RGBA":
        alpha = np.tile(np.linspace(0, 255, 56, dtype=np.uint8), (40, 1))[..., None]
        pixels = np.concatenate([pixels, alpha], axis=-1)
    upload = image_bytes(pixels, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    job = wait_done(client, submit(client, upload, filename="in.bin").json()["id"])
    assert job["state"] == "done", job
    download = client.get(f"/api/jobs/{job['id']}/files/restored")
    assert download.headers["content-type"] == media_type
    with Image.open(io.BytesIO(download.content)) as image:
        assert image.format == fmt and image.mode == mode and image.size == (56, 40)
        if mode == "RGBA":
            np.testing.assert_array_equal(np.asarray(image)[..., 3], pixels[..., 3])


def test_16_bit_rgb_tiff_round_trip(client):
    tifffile = pytest.importorskip("tifffile")
    pixels = (np.random.default_rng(0).random((40, 48, 3)) * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, photometric="rgb")
    job = wait_done(client, submit(client, buffer.getvalue(), filename="scan.tif").json()["id"])
    assert job["state"] == "done", job
    assert job["result"]["format"] == "TIFF" and job["result"]["bit_depth"] == 16
    restored = tifffile.imread(
        io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/restored").content)
    )
    assert restored.dtype == np.uint16 and restored.shape == (40, 48, 3)


# ------------------------------------------------------------------------------------ upload safety
def test_oversize_upload_refused_with_413(client):
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(2_200_000)
    response = submit(client, too_big)
    assert response.status_code == 413
    assert "too large" in response.json()["error"] and "MB" in response.json()["error"]


def test_non_image_rejected_whatever_its_name(client):
    for name, content in (("photo.png", b"just some text, not an image"), ("x.jpg", b"%PDF-1.7\n")):
        response = submit(client, content, filename=name)
        assert response.status_code == 415
        assert "not a supported image" in response.json()["error"]
    response = submit(client, b"", filename="empty.png")
    assert response.status_code == 400 and "empty" in response.json()["error"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_rejected(client, fmt):
    complete = image_bytes(smooth_uint8(64, 64), fmt)
    response = submit(client, complete[: len(complete) // 2])
    assert response.status_code == 400
    assert "truncated or corrupt" in response.json()["error"]
    assert "Traceback" not in response.text


def _png_bomb(side: int) -> bytes:
    """A valid 1-bit PNG of side × side black pixels: ~side²/8 bytes compressed far smaller."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = bytes(1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_rejected_before_decoding(client):
    bomb = _png_bomb(20_000)  # 400 megapixels in a small file
    assert len(bomb) < 200_000
    started = time.perf_counter()
    response = submit(client, bomb, filename="innocent.png")
    assert response.status_code == 413
    message = response.json()["error"]
    assert "20000×20000" in message and "decompression bomb" in message
    assert time.perf_counter() - started < 5.0


def test_bomb_headers_of_other_formats_rejected():
    huge_16bit_rgb_png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    huge_16bit_rgb_png += struct.pack(">IIBBBBB", 50_000, 50_000, 16, 2, 0, 0, 0) + b"\0" * 4
    with pytest.raises(UploadRejectedError, match="50000×50000") as caught:
        decode_image(huge_16bit_rgb_png, max_pixels=1_000_000)
    assert caught.value.status_code == 413


def test_sniffing():
    assert sniff_format(png_bytes(smooth_uint8(8, 8))) == "PNG"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "JPEG")) == "JPEG"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "WEBP")) == "WEBP"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "TIFF")) == "TIFF"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "BMP")) is None
    assert sniff_format(b"GIF89a") is None


def _paeth_filtered_png16(samples: np.ndarray) -> bytes:
    """A 16-bit RGB PNG whose rows use the Sub, Up, Average and Paeth filters in turn."""
    height, width, channels = samples.shape
    raw = samples.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int32)
    bpp = 2 * channels
    rows = []
    for y in range(height):
        line = raw[y]
        above = raw[y - 1] if y else np.zeros_like(line)
        left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int32), above[:-bpp]])
        kind = 1 + y % 4
        if kind == 1:
            predictor = left
        elif kind == 2:
            predictor = above
        elif kind == 3:
            predictor = (left + above) // 2
        else:
            p = left + above - upper_left
            pa, pb, pc = np.abs(p - left), np.abs(p - above), np.abs(p - upper_left)
            predictor = np.where(
                (pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left)
            )
        rows.append(bytes([kind]) + ((line - predictor) & 0xFF).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    idat = zlib.compress(b"".join(rows))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_16_bit_rgb_png_decoded_exactly_and_written_back():
    samples = (np.random.default_rng(3).random((21, 17, 3)) * 65535).astype(np.uint16)
    decoded = decode_image(_paeth_filtered_png16(samples), max_pixels=10_000)
    assert decoded.sample_dtype == "uint16" and decoded.format == "PNG"
    np.testing.assert_array_equal(np.round(decoded.pixels * 65535).astype(np.uint16), samples)
    again = decode_image(encode_like(decoded.pixels, decoded), max_pixels=10_000)
    np.testing.assert_array_equal(again.pixels, decoded.pixels)
    complete = _paeth_filtered_png16(samples)
    with pytest.raises(UploadRejectedError, match="truncated"):
        decode_image(complete[: len(complete) - 40], max_pixels=10_000)


def test_unknown_model_bad_noise_and_seed_are_clear_errors(client):
    assert "unknown model" in submit(client, sample="scene", model="nope").json()["error"]
    response = submit(client, sample="scene", noise="blur", level="3")
    assert response.status_code == 400 and "gaussian" in response.json()["error"]
    response = submit(client, sample="scene", noise="gaussian", level="25", seed="-3")
    assert response.status_code == 400 and "seed" in response.json()["error"]
    assert client.get("/api/jobs/not-a-job").status_code == 404
    assert client.get("/api/jobs/" + "a" * 22).json() == {"error": "unknown or expired job"}


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


def test_internal_errors_hide_details():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, x):
            raise RuntimeError("secret internal detail /etc/shadow")

    app = create_app(
        build_catalogue(models={"broken": Broken()}, include_imported=False, baselines=False)
    )
    with TestClient(app) as client:
        job = wait_done(client, submit(client, sample="scene", model="broken").json()["id"])
    assert job["state"] == "failed"
    assert job["message"] == "internal error while processing this image"
    assert "secret" not in str(job)


def test_no_temporary_files_left(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = make_app(max_upload_bytes=8_000_000, max_pixels=4_000_000)
    big = image_bytes(
        np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8), "PNG"
    )
    assert len(big) > 1_500_000  # over the 1 MB that Starlette's own parser keeps in memory
    with TestClient(app) as client:
        response = submit(client, big, filename="big.png", model="nlm")
        assert response.status_code == 202
        client.delete(f"/api/jobs/{response.json()['id']}")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ queue
def test_twenty_concurrent_requests_all_answered():
    import httpx

    from clipdenoise.web.server import BackgroundServer

    # 50 ms per job: with 2 workers, requests arriving together must wait in line
    catalogue = build_catalogue(
        models={"slow": SlowNet(0.05)}, include_imported=False, baselines=False
    )
    app = create_app(catalogue, config=ServeConfig(max_concurrent=2, max_queue=32, max_results=32))
    upload = png_bytes(smooth_uint8(64, 64))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        responses: list = [None] * 20

        def post(index: int) -> None:
            fields = {"model": "slow", "noise": "gaussian", "level": "15", "seed": str(index)}
            responses[index] = http.post(
                "/api/jobs", data=fields, files={"file": ("x.png", upload, "image/png")}
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status_code for r in responses] == [202] * 20
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids)) == 20
        assert any(r.json()["state"] == "queued" and r.json()["position"] for r in responses)
        states, noisy_files = [], set()
        for job_id in ids:
            job = app.state.manager.wait(job_id, timeout=60)
            states.append(job.state)
            noisy_files.add(http.get(f"/api/jobs/{job_id}/files/noisy").content)
        assert states == [JobState.DONE] * 20
        assert len(noisy_files) == 20  # every answer is that request's own (seeds differ)


def test_full_queue_answers_503_and_loses_nothing():
    release = threading.Event()
    manager = JobManager(
        lambda payload, context: release.wait(10) and payload, max_concurrent=1, max_queue=4
    )
    accepted, refused = [], 0
    for index in range(20):
        try:
            accepted.append(manager.submit(index))
        except QueueFullError as busy:
            refused += 1
            assert "try again" in str(busy)
    assert (len(accepted), refused) == (5, 15)
    deadline = time.monotonic() + 5
    while accepted[0].state is not JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker picks the first job up
    assert [manager.position(job) for job in accepted] == [None, 1, 2, 3, 4]
    release.set()
    results = [manager.wait(job.id, timeout=10).result for job in accepted]
    assert results == [0, 1, 2, 3, 4]
    manager.shutdown()


def test_http_503_with_retry_after_when_busy():
    app = make_app(max_concurrent=1, max_queue=0)
    gate = threading.Event()
    app.state.manager._work = lambda payload, context: gate.wait(10)
    with TestClient(app) as client:
        first = submit(client, sample="scene")
        second = submit(client, sample="scene")
        assert first.status_code == 202
        assert second.status_code == 503 and second.headers["retry-after"] == "5"
        assert "busy" in second.json()["error"]
        gate.set()


# ------------------------------------------------------------------------------------ timeouts
def test_job_over_time_limit_is_cancelled_and_server_keeps_serving():
    catalogue = build_catalogue(
        models={"slow": SlowNet(0.1), "fast": SlowNet(0.0)}, include_imported=False, baselines=False
    )
    config = ServeConfig(job_timeout_s=0.6, max_concurrent=1, tile_size=64, tile_overlap=16)
    app = create_app(catalogue, config=config)
    with TestClient(app) as client:
        slow = submit(client, sample="scene", model="slow").json()["id"]  # ~40 tiles × 0.1 s
        job = wait_done(client, slow, timeout=20)
        assert job["state"] == "cancelled"
        assert "time limit of 0.6 s" in job["message"]
        assert 0 < job["progress"] < 1
        timed_out = client.post("/api/denoise", data={"sample": "scene", "model": "slow"})
        assert timed_out.status_code == 504 and "time limit" in timed_out.json()["error"]
        fast = wait_done(client, submit(client, sample="scene", model="fast").json()["id"])
        assert fast["state"] == "done"
        assert fast["result"]["tiles"] > 1  # large images are tiled
        # the cancelled job really stopped: its worker is free again
        deadline = time.monotonic() + 5
        while client.get("/healthz").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/healthz").json()["running"] == 0


def test_visitor_can_cancel_a_running_job():
    app = create_app(
        build_catalogue(models={"slow": SlowNet(0.1)}, include_imported=False, baselines=False),
        config=ServeConfig(tile_size=64, tile_overlap=16),
    )
    with TestClient(app) as client:
        job_id = submit(client, sample="scene", model="slow").json()["id"]
        time.sleep(0.3)
        cancelled = client.delete(f"/api/jobs/{job_id}").json()
        assert (
            cancelled["state"] == "cancelled" and "cancelled by the visitor" in cancelled["message"]
        )


def test_body_size_limit_without_content_length():
    app = make_app(max_upload_bytes=10_000)

    def chunks():
        for _ in range(50):
            yield b"x" * 10_000

    with TestClient(app) as client:
        response = client.post(
            "/api/jobs",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
    assert response.status_code == 413


# ------------------------------------------------------------------------------------ CLI and config
def test_serve_cli_builds_the_app_with_tiny_demo_and_reports_missing_weights(tmp_path):
    from clipdenoise.cli import build_parser
    from clipdenoise.cli.serve import build_app_from_args, is_loopback

    args = build_parser().parse_args(
        [
            "serve",
            "--tiny-demo",
            "--no-imported",
            "--weights",
            str(tmp_path / "missing.pth"),
            "--timeout",
            "5",
            "--max-results",
            "3",
        ]
    )
    assert args.host == "127.0.0.1" and args.port == 8000
    app, config, catalogue = build_app_from_args(args)
    assert config.job_timeout_s == 5 and config.max_results == 3
    entries = catalogue.public()["models"]
    missing = next(entry for entry in entries if entry["key"] == "missing.pth")
    assert missing["available"] is False and "missing.pth" in missing["error"]
    assert any(entry["untrained"] for entry in entries)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")


def test_serve_config_validation():
    from clipdenoise.errors import ConfigError

    with pytest.raises(ConfigError, match="max_pixels"):
        ServeConfig(max_pixels=0)
    with pytest.raises(ConfigError, match="tile_overlap"):
        ServeConfig(tile_size=64, tile_overlap=40)
    with pytest.raises(ConfigError, match="multiple of 32"):
        ServeConfig(tile_size=100)
    assert InferenceSettings().device == "auto"
    with pytest.raises(ConfigError, match="device"):
        create_app(
            build_catalogue(include_imported=False), settings=InferenceSettings(device="tpu")
        )
    assert ServeConfig().host == "127.0.0.1"


def test_camera_noise_on_grey_image_is_refused(client):
    response = submit(client, sample="phantom", noise="srgb_camera")
    assert response.status_code == 400 and "colour image" in response.json()["error"]


def test_clipdenoise_serve_command_serves_on_loopback(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "clipdenoise", "serve", "--tiny-demo", "--no-imported"]
    command += ["--no-baselines", "--port", str(port), "--log-level", "warning"]
    log = tmp_path / "serve.log"
    with log.open("w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    try:
        deadline, info = time.monotonic() + 60, None
        while info is None and time.monotonic() < deadline and process.poll() is None:
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert info is not None, log.read_text()
        # the built-in trained model is offered and chosen; the untrained one only on request
        assert [model["key"] for model in info["models"]] == ["builtin.blind-unet", TINY]
        assert info["default"] == "builtin.blind-unet" and info["weights_guidance"]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    output = log.read_text()
    assert f"http://127.0.0.1:{port}/" in output
    assert "UNTRAINED" in output and "clipdenoise weights" in output


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


def test_finished_results_expire_and_are_capped():
    manager = JobManager(lambda payload, context: payload, max_results=2, result_ttl_s=60)
    jobs = [manager.submit(index) for index in range(4)]
    for index, job in enumerate(jobs):
        assert job.done_event.wait(10) and job.result == index
    # lookups purge: only the 2 most recently finished results remain
    assert [manager.get(job.id) is not None for job in jobs] == [False, False, True, True]
    manager.result_ttl_s = 0.0
    time.sleep(0.01)
    assert all(manager.get(job.id) is None for job in jobs)
    manager.shutdown()


def test_unexpected_server_errors_answer_500_without_details(monkeypatch):
    import clipdenoise.web.service as web_service

    def explode(value):
        raise RuntimeError("secret detail: /home/operator/.ssh/id_rsa")

    monkeypatch.setattr(web_service, "parse_seed", explode)
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        response = submit(client, sample="scene", noise="gaussian", level="5")
    assert response.status_code == 500
    assert response.json()["error"].startswith("internal server error (reference ")
    assert "secret" not in response.text and "Traceback" not in response.text


def test_synchronous_denoise_endpoint_for_scripts(client):
    upload = image_bytes(smooth_uint8(40, 48), "JPEG")
    response = client.post(
        "/api/denoise",
        data={"model": "nlm", "noise": "none"},
        files={"file": ("scan.jpeg", upload, "image/jpeg")},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert 'filename="scan-denoised.jpg"' in response.headers["content-disposition"]
    job = client.get(f"/api/jobs/{response.headers['x-clipdenoise-job']}").json()
    assert job["state"] == "done" and job["result"]["format"] == "JPEG"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "JPEG" and image.size == (48, 40)
    refused = client.post("/api/denoise", data={"model": "nlm"}, files={"file": ("a", b"x")})
    assert refused.status_code == 415


def test_serve_loads_a_checkpoint_given_with_weights(tmp_path):
    from clipdenoise.checkpoints import save_checkpoint
    from clipdenoise.cli import build_parser
    from clipdenoise.cli.serve import build_app_from_args
    from clipdenoise.model import CLIPDenoiser, tiny_config

    path = save_checkpoint(CLIPDenoiser(tiny_config()), tmp_path / "mine.safetensors")
    args = build_parser().parse_args(
        ["serve", "--weights", str(path), "--no-imported", "--no-baselines", "--device", "cpu"]
    )
    app, _, catalogue = build_app_from_args(args)
    assert list(catalogue.entries) == ["mine.safetensors"]
    assert catalogue.has_trained_network  # a checkpoint is taken as trained: no guidance banner
    with TestClient(app) as client:
        assert client.get("/api/info").json()["weights_guidance"] is None
        job = wait_done(
            client, submit(client, sample="chart", model="mine.safetensors").json()["id"]
        )
    assert job["state"] == "done" and job["result"]["model_label"] == "mine.safetensors"


def test_cmyk_jpeg_becomes_rgb_without_its_cmyk_profile():
    cmyk = Image.fromarray(smooth_uint8(16, 16)).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", icc_profile=b"fake-cmyk-profile")
    decoded = decode_image(buffer.getvalue(), max_pixels=1000)
    assert decoded.channels == 3 and decoded.icc_profile is None
    with Image.open(io.BytesIO(encode_like(decoded.pixels, decoded))) as image:
        assert image.mode == "RGB" and image.format == "JPEG"


def test_models_imported_into_the_cache_are_listed_and_loaded_on_first_use(tmp_path, monkeypatch):
    from clipdenoise.checkpoints import import_checkpoint, save_checkpoint
    from clipdenoise.model import CLIPDenoiser, tiny_config

    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    source = save_checkpoint(CLIPDenoiser(tiny_config()), tmp_path / "trained.safetensors")
    import_checkpoint(source, "my-model")
    catalogue = build_catalogue(baselines=False)
    entry = catalogue.get("my-model")
    assert entry.available and entry.module is None  # not loaded until someone uses it
    assert catalogue.default_key == "my-model"
    with TestClient(create_app(catalogue)) as client:
        job = wait_done(client, submit(client, sample="scene", model="my-model").json()["id"])
    assert job["state"] == "done" and entry.module is not None


# ------------------------------------------------------------------------------------ hostile clients
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


def _raw_exchange(server, payload: bytes, *, wait_s: float = 5.0) -> tuple[bytes, float]:
    """Send ``payload`` on a fresh connection; the bytes answered until the server closes it
    (or ``wait_s`` passes), and how long that took."""
    import socket

    started = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=wait_s) as connection:
        if payload:
            connection.sendall(payload)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer, time.monotonic() - started


def test_invalid_http_gets_a_json_400():
    from clipdenoise.web.server import BackgroundServer

    with BackgroundServer(make_app()) as server:
        answer, _ = _raw_exchange(server, b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert body == b'{"error": "the request is not valid HTTP"}'


def test_slow_clients_are_timed_out():
    from clipdenoise.web.server import BackgroundServer

    with BackgroundServer(make_app(request_timeout_s=1.0)) as server:
        # connects and sends nothing: disconnected
        answer, seconds = _raw_exchange(server, b"", wait_s=10)
        assert answer == b"" and seconds < 5
        # trickles its headers: disconnected
        answer, seconds = _raw_exchange(
            server, b"POST /api/jobs HTTP/1.1\r\nHost: x\r\n", wait_s=10
        )
        assert answer == b"" and seconds < 5
        # sends its headers but not the body it announced: 408 with a JSON message
        head = (
            b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
        )
        answer, seconds = _raw_exchange(server, head, wait_s=10)
        assert answer.startswith(b"HTTP/1.1 408") and seconds < 5
        assert b'"error": "the request did not arrive within 1 s' in answer


def test_tiny_garbage_upload_message_has_no_object_repr(client):
    response = submit(client, b"\x89PNG\r\n\x1a\n\x00", filename="nine.png")
    assert response.status_code == 400
    message = response.json()["error"]
    assert "could not be decoded" in message and " at 0x" not in message and "<" not in message


def test_uploads_never_touch_the_disk(monkeypatch):
    import tempfile

    import starlette.formparsers

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for module, name in [
        (tempfile, "SpooledTemporaryFile"),
        (tempfile, "TemporaryFile"),
        (tempfile, "NamedTemporaryFile"),
        (tempfile, "mkstemp"),
        (starlette.formparsers, "SpooledTemporaryFile"),
    ]:
        monkeypatch.setattr(module, name, refuse)
    app = make_app(max_upload_bytes=8_000_000, max_pixels=4_000_000)
    big = image_bytes(
        np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8), "PNG"
    )
    assert len(big) > 2_000_000  # twice Starlette's in-memory spool size
    with TestClient(app) as client:
        response = submit(client, big, filename="big.png", model="nlm")
        assert response.status_code == 202, response.text
        client.delete(f"/api/jobs/{response.json()['id']}")


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        ("text/plain", b"sample=scene", 415, "not a valid multipart form upload"),
        ("multipart/form-data", b"--b\r\n", 400, "no valid boundary"),
        ("multipart/form-data; boundary=b", b"garbage", 400, "the multipart form is malformed"),
        ("multipart/form-data; boundary=b", b"--b--\r\n", 400, "choose an image"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            400,
            "has no field name",
        ),
        ("application/x-www-form-urlencoded", b"a=1&" * 40, 400, "too many fields"),
    ],
)
def test_malformed_forms_are_clear_400s(client, content_type, body, status, message):
    response = client.post("/api/jobs", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_urlencoded_sample_requests_work(client):
    response = client.post(
        "/api/jobs",
        content=f"sample=scene&model={TINY}&seed=3".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 202
