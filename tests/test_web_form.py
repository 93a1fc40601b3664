"""Form posts parsed in memory: multipart and urlencoded bodies, malformed forms, no disk use."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _web_helpers import TINY, image_bytes, make_app, submit  # noqa: E402
from clipdenoise.web.upload import UploadRejectedError  # noqa: E402


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


def _multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart body with boundary ``b``: parts are ``(name, filename or None, data)``."""
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--b\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + b"--b--\r\n"


def test_multipart_fields_and_one_file_are_kept_in_memory():
    from clipdenoise.web.form import parse_form

    payload = bytes(range(256)) * 8  # binary, with CR/LF bytes inside
    body = _multipart(
        ("model", None, b"nlm"),
        ("seed", None, b"7"),
        ("seed", None, b"8"),
        ("file", "a.png", payload),
    )
    form = parse_form("multipart/form-data; boundary=b", body)
    assert form.fields == {"model": "nlm", "seed": "7"}  # the first of repeated names
    assert form.files["file"].filename == "a.png" and form.files["file"].data == payload


def test_urlencoded_fields_are_decoded():
    from clipdenoise.web.form import parse_form

    form = parse_form("application/x-www-form-urlencoded", b"sample=scene&noise=gaussian&level=")
    assert form.fields == {"sample": "scene", "noise": "gaussian", "level": ""}
    assert form.files == {}


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            "multipart/form-data; boundary=b",
            _multipart(("a", "1.png", b"1"), ("b", "2.png", b"2")),
            "send at most 1 file per request",
        ),
        (
            "multipart/form-data; boundary=b",
            _multipart(*[(f"f{i}", None, b"x") for i in range(17)]),
            "more than 16 fields",
        ),
        (
            "multipart/form-data; boundary=b",
            _multipart(("note", None, b"x" * (64 * 1024 + 1))),
            "the form field 'note' is too long",
        ),
        (
            "application/x-www-form-urlencoded",
            b"note=" + b"x" * (64 * 1024 + 1),
            "the form field 'note' is too long",
        ),
        ("multipart/form-data; boundary=" + "b" * 201, b"", "no valid boundary"),
    ],
)
def test_limits_of_a_form(content_type, body, message):
    from clipdenoise.web.form import parse_form

    with pytest.raises(UploadRejectedError, match=message) as caught:
        parse_form(content_type, body)
    assert caught.value.status_code == 400


def test_a_file_may_be_larger_than_a_field():
    from clipdenoise.web.form import parse_form

    body = _multipart(("file", "big.png", b"x" * (64 * 1024 + 1)))
    assert len(parse_form("multipart/form-data; boundary=b", body).files["file"].data) == 65537


def test_other_content_types_are_415():
    from clipdenoise.web.form import parse_form

    with pytest.raises(UploadRejectedError, match="not a valid multipart form upload") as caught:
        parse_form(None, b"")
    assert caught.value.status_code == 415
