"""``clipdenoise evaluate``: every option documented; a run writes tables, plots, grid, images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipdenoise.cli import build_parser, main
from clipdenoise.noise import add_reference_noise, parse_noise_spec


def test_cli_help_documents_every_option(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["evaluate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    subparser = parser._subparsers._group_actions[0].choices["evaluate"]
    for action in subparser._actions:
        for option in action.option_strings:
            assert option in text
        if action.option_strings and action.help is not argparse_suppress():
            assert action.help, f"{action.option_strings} has no help"


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def test_cli_run_writes_tables_and_plots(image_folder, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "evaluate", "noisy", "half=nlm", "--datasets", str(image_folder),
            "--noise", "gaussian:15", "gaussian:25", "--out", str(out), "--no-progress", "--plots",
            "--grid", str(image_folder / "a.png"), "--grid-crop", "0", "0", "16", "16",
            "--save-images",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| mini | gaussian | 15 |" in printed and "half" in printed
    for name in ("results.md", "results.csv", "results.json", "per_image.csv", "grid.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "plots" / "mini_gaussian_psnr.png").stat().st_size > 0
    saved = np.asarray(Image.open(out / "images" / "noisy" / "mini" / "gaussian_25" / "a.png"))
    clean = np.asarray(Image.open(image_folder / "a.png"), dtype=np.float32) / 255.0
    expected = np.round(
        np.clip(add_reference_noise(clean, parse_noise_spec("gaussian:25")), 0, 1) * 255
    )
    assert np.abs(saved.astype(np.float64) - expected).max() <= 1.0
    assert (
        main(["evaluate", "noisy", "--datasets", str(tmp_path / "missing"), "--out", str(out)]) == 2
    )
