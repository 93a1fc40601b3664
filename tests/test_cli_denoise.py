"""``clipdenoise denoise`` as a command: exit codes, usage errors, --help, the quickstart
guidance, tiling flags, termination signals (file handling: test_file_denoising.py)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from clipdenoise.cli import build_parser, main
from clipdenoise.image_io import load_image, save_image
from conftest import random_rgb8, run_denoise, save_png


def test_missing_inputs_fail_with_exit_1(tmp_path, tiny_checkpoints, capsys):
    code = run_denoise(
        tmp_path / "nothing.png", "-o", tmp_path / "o.png", "--weights", tiny_checkpoints["rgb"]
    )
    assert code == 1
    assert "nothing.png: file not found" in capsys.readouterr().err


def test_tiled_cli_matches_untiled(tmp_path, rng, tiny_checkpoints):
    source = save_image(tmp_path / "big.png", rng.random((150, 200, 3)), bit_depth=16)
    assert (
        run_denoise(
            source,
            "-o",
            tmp_path / "whole.png",
            "--weights",
            tiny_checkpoints["rgb"],
            "--max-memory",
            "64GB",
        )
        == 0
    )
    assert (
        run_denoise(
            source,
            "-o",
            tmp_path / "tiled.png",
            "--weights",
            tiny_checkpoints["rgb"],
            "--tile-size",
            "128",
            "--tile-overlap",
            "64",
        )
        == 0
    )
    whole = load_image(tmp_path / "whole.png").pixels
    tiled = load_image(tmp_path / "tiled.png").pixels
    assert np.abs(whole - tiled).max() <= 2 / 65535


def test_quickstart_sample_without_weights_prints_guidance(tmp_path, monkeypatch, capsys):
    """The README's quickstart command on a machine without the released weights."""
    from importlib.resources import files

    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    sample = Path(str(files("clipdenoise") / "resources" / "sample.png"))
    assert load_image(sample).pixels.shape == (192, 256, 3)
    argv = ["denoise", str(sample), "-o", str(tmp_path / "restored.png")]
    code = main([*argv, "--weights", "rn50.synthetic-gaussian15", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "clipdenoise weights import" in err and "Traceback" not in err
    assert not (tmp_path / "r.png").exists()


def test_help_documents_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    denoise = sub.choices["denoise"]
    text = denoise.format_help()
    options = [a for a in denoise._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= 20
    for action in options:
        assert action.help and len(action.help) > 10, action.dest
        assert any(flag in text for flag in action.option_strings)
    for flag in ("--device", "--dtype", "--batch-size", "--tile-size", "--tile-overlap",
                 "--max-memory", "--add-noise", "--save-noisy", "--compare", "--reference",
                 "--overwrite", "--quality", "--format", "--recursive"):  # fmt: skip
        assert flag in text


def test_unavailable_device_is_a_usage_error(tmp_path, rng, tiny_checkpoints, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    source = save_png(tmp_path / "a.png", random_rgb8(rng))
    code = main(["denoise", str(source), "-o", str(tmp_path / "r.png"), "--weights",
                 str(tiny_checkpoints["rgb"]), "--device", "cuda:0"])  # fmt: skip
    assert code == 2 and "CUDA is not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "extra", "message"),
    [
        ("o.jpg", ["--bit-depth", "16"], r"JPEG output \(.*o\.jpg\) stores 8-bit samples only"),
        ("o.png", ["--bit-depth", "32"], r"PNG output \(.*o\.png\) stores 8/16-bit samples only"),
        ("o.png", ["--tile-overlap", "-5"], "tile overlap must be at least 0, got -5"),
    ],
)
def test_impossible_output_settings_are_refused(
    tmp_path, rng, tiny_checkpoints, capsys, output, extra, message
):
    source = save_png(tmp_path / "in.png", random_rgb8(rng))
    code = run_denoise(
        source, "-o", tmp_path / output, "--weights", tiny_checkpoints["rgb"], *extra
    )
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_termination_signals_leave_no_temporary_file(tmp_path, rng, tiny_checkpoints, signame):
    import subprocess
    import sys

    source = save_png(tmp_path / "in.png", random_rgb8(rng))
    script = f"""
import os, signal, sys, time
import clipdenoise.image_io as image_io
from clipdenoise.cli import main

real = image_io._write_png
def write_then_get_killed(handle, *args):
    handle.write(b"half an image")
    handle.flush()
    os.kill(os.getpid(), signal.{signame})
    time.sleep(30)  # the handler interrupts this
    real(handle, *args)
image_io._write_png = write_then_get_killed
sys.exit(main(["denoise", sys.argv[1], "-o", sys.argv[2], "--weights", sys.argv[3],
               "--device", "cpu", "--dtype", "float32", "--no-progress"]))
"""
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(source),
            str(out / "o.png"),
            str(tiny_checkpoints["rgb"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 130, done.stderr
    assert "interrupted" in done.stderr and "Traceback" not in done.stderr
    assert out.is_dir() and list(out.iterdir()) == []
