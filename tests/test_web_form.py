"""Form posts parsed in memory: multipart and urlencoded bodies, malformed forms, no disk use."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _web_helpers import TINY, image_bytes, make_app, submit  # noqa: E402


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
