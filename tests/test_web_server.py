"""The demo app on a background uvicorn server: invalid HTTP and slow clients."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from _web_helpers import make_app  # noqa: E402


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
