"""The demo's web application: page and static files, security headers, request size limits,
HTTP status of busy and failing servers, the synchronous endpoint for scripts."""

from __future__ import annotations

import io
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from _web_helpers import image_bytes, make_app, smooth_uint8, submit  # noqa: E402


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


def test_oversize_upload_refused_with_413(client):
    too_big = b"\x89PNG\r\n\x1a\n" + bytes(2_200_000)
    response = submit(client, too_big)
    assert response.status_code == 413
    assert "too large" in response.json()["error"] and "MB" in response.json()["error"]


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
