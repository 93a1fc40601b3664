"""``clipdenoise analyze``: help, a run with unreadable files, a config file rerun with overrides."""

from __future__ import annotations

import csv

import numpy as np
import pytest


def test_cli_help_documents_the_command(capsys):
    from clipdenoise.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--gaussian-std", "--encoder", "RN50:random", "--tsne", "CKA", "std on [0, 1]"):
        assert needle in text


def test_cli_runs_and_reports_unreadable_files(tmp_path, make_image, capsys):
    from PIL import Image

    from clipdenoise.cli import main

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        pixels = (make_image(48, 64, seed=index) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"good{index}.png")
    (folder / "bad.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((3, 40, 3), np.uint8)).save(folder / "sliver.png")  # < stride 4
    out = tmp_path / "out"
    code = main(
        [
            "analyze", str(folder), "--encoder", "avgpool", "--gaussian-std", "0.2",
            "--scales", "F1", "F2", "--no-figures", "--out", str(out),
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    assert "bad.png" in captured.err and "2 image(s) could not be read" in captured.err
    assert "sliver: image is 40x3, smaller than the stride 4 of the deepest scale" in captured.err
    assert "cosine — average-pool pyramid (control)" in captured.out
    with open(out / "similarity_summary.csv") as stream:
        summary = list(csv.DictReader(stream))
    assert len(summary) == 2 * 2
    assert all(0.5 < float(row["mean"]) < 1.0 for row in summary)
    assert not list(out.glob("*.png"))
    code = main(["analyze", str(folder / "bad.png"), "--encoder", "avgpool", "--out", str(out)])
    assert code == 2
    assert "no readable image" in capsys.readouterr().err


def test_cli_config_file_reruns_with_overrides(tmp_path, make_image):
    from PIL import Image

    from clipdenoise.analysis.runner import AnalysisConfig
    from clipdenoise.cli import main
    from clipdenoise.config import load_toml

    image_path = tmp_path / "one.png"
    Image.fromarray((make_image(32, 32) * 255).round().astype(np.uint8)).save(image_path)
    first = tmp_path / "first"
    arguments = ["analyze", str(image_path), "--encoder", "avgpool", "--scales", "F1"]
    arguments += ["--noise", "speckle:0.03", "--tsne-max-dim", "0", "--no-figures", "-q"]
    assert main([*arguments, "--out", str(first)]) == 0
    saved = load_toml(AnalysisConfig, first / "analysis_config.toml")
    assert saved.noises == ("speckle:0.03",) and saved.tsne_max_dim == 0 and not saved.figures
    second = tmp_path / "second"
    config = str(first / "analysis_config.toml")
    assert main(["analyze", "--config", config, "--draws", "3", "-q", "--out", str(second)]) == 0
    rerun = load_toml(AnalysisConfig, second / "analysis_config.toml")
    assert rerun.inputs == (str(image_path),) and rerun.draws == 3
    with open(second / "similarity_records.csv") as stream:
        assert len(list(csv.DictReader(stream))) == 3 * 2  # draws x metrics
