"""Downloads against a server on 127.0.0.1: hash ok, hash mismatch, resume, offline fails fast."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time

import pytest

from clipdenoise.download import download_file, partial_path
from clipdenoise.errors import ChecksumError, DownloadError

DATA = bytes(range(256)) * 1000  # 256 kB
DIGEST = hashlib.sha256(DATA).hexdigest()


def test_checksum_ok_writes_the_file_atomically(file_server, tmp_path):
    file_server.files["/w.bin"] = DATA
    previous = os.umask(0o027)
    try:
        path = download_file(f"{file_server.url}/w.bin", tmp_path / "sub" / "w.bin", sha256=DIGEST)
    finally:
        os.umask(previous)
    assert path.read_bytes() == DATA
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.bin"]  # no partial file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_checksum_mismatch_keeps_nothing(file_server, tmp_path):
    file_server.files["/w.bin"] = DATA[:-1] + b"\x00"
    with pytest.raises(ChecksumError) as info:
        download_file(f"{file_server.url}/w.bin", tmp_path / "w.bin", sha256=DIGEST)
    message = str(info.value)
    assert DIGEST in message and "w.bin" in message
    assert hashlib.sha256(DATA[:-1] + b"\x00").hexdigest() in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_then_resumed_with_a_range_request(file_server, tmp_path):
    file_server.files["/w.bin"] = DATA
    file_server.cut_after["/w.bin"] = 100_000
    target = tmp_path / "w.bin"
    with pytest.raises(DownloadError, match=r"interrupted after 100000 of 256000 bytes"):
        download_file(f"{file_server.url}/w.bin", target, sha256=DIGEST)
    assert not target.exists()
    assert partial_path(target).stat().st_size == 100_000
    download_file(f"{file_server.url}/w.bin", target, sha256=DIGEST)
    assert target.read_bytes() == DATA
    assert file_server.requests == [("/w.bin", None), ("/w.bin", "bytes=100000-")]
    assert not partial_path(target).exists()


def test_a_complete_partial_file_is_finished_without_data(file_server, tmp_path):
    file_server.files["/w.bin"] = DATA
    target = tmp_path / "w.bin"
    partial_path(target).write_bytes(DATA)
    download_file(f"{file_server.url}/w.bin", target, sha256=DIGEST)  # server answers 416
    assert target.read_bytes() == DATA


def test_http_error_names_the_url(file_server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing\.bin answered HTTP 404"):
        download_file(f"{file_server.url}/missing.bin", tmp_path / "m.bin")


def test_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.delenv("CLIPDENOISE_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"offline mode \(HF_HUB_OFFLINE=1\)"):
        download_file("https://example.org/w.bin", tmp_path / "w.bin")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=rf"cannot download http://127.0.0.1:{port}/w.bin"):
        download_file(f"http://127.0.0.1:{port}/w.bin", tmp_path / "w.bin", timeout=2)

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(DownloadError, match="could not be resolved"):
        download_file("https://no-such-host.invalid/w.bin", tmp_path / "w.bin")
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []
