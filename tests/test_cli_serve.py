"""``clipdenoise serve``: options to app, checkpoints given with --weights, serving on loopback."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


from _web_helpers import TINY, submit, wait_done  # noqa: E402


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


def test_serve_loads_a_checkpoint_given_with_weights(tmp_path):
    from fastapi.testclient import TestClient

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
