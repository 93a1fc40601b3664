"""Tests of the ``clipdenoise synth srgb`` command line: options, messages, exit status."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipdenoise.cli import main
from clipdenoise.isp import CameraNoiseConfig, CameraParams
from clipdenoise.srgb_synthesis import synthesize_srgb_dataset


def _files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "srgb", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--input", "--output", "--seed", "--sigma-s", "--crop-size", "--workers"):
        assert option in text


def test_writes_pairs_manifest_and_is_byte_reproducible(clean_dir, tmp_path, capsys):
    first, second, other = tmp_path / "out1", tmp_path / "out2", tmp_path / "out3"
    common = ["synth", "srgb", "--input", str(clean_dir), "--no-progress"]
    assert main([*common, "--output", str(first), "--seed", "5"]) == 0
    assert "wrote 3 noisy/clean pairs" in capsys.readouterr().out
    assert main([*common, "--output", str(second), "--seed", "5", "--workers", "2"]) == 0
    assert main([*common, "--output", str(other), "--seed", "6"]) == 0

    files = _files(first)
    assert set(files) == {
        "manifest.json",
        *(f"{kind}/{name}.png" for kind in ("clean", "noisy") for name in ("a", "b", "grey")),
    }
    # Same seed -> byte-identical files, whatever the number of workers.
    assert files == _files(second)
    changed = _files(other)
    assert changed["clean/a.png"] == files["clean/a.png"]
    assert changed["noisy/a.png"] != files["noisy/a.png"]

    # The clean image is the input, pixel for pixel; the noisy one is visibly noisy.
    clean = np.asarray(Image.open(first / "clean/a.png"), dtype=np.float64)
    noisy = np.asarray(Image.open(first / "noisy/a.png"), dtype=np.float64)
    np.testing.assert_array_equal(clean, np.asarray(Image.open(clean_dir / "a.png")))
    assert noisy.shape == clean.shape == (24, 32, 3)
    assert 3.0 < np.std(noisy - clean) < 60.0

    manifest = json.loads(files["manifest.json"])
    assert manifest["count"] == 3 and manifest["failed"] == []
    assert manifest["config"]["seed"] == 5
    assert manifest["config"]["camera"]["sigma_s"] == 0.04
    record = {r["name"]: r for r in manifest["files"]}
    assert record["grey.png"]["grey_to_rgb"] is True
    assert record["a.png"]["crop"] == [0, 0, 24, 32]


def test_bad_images_are_reported_by_name_and_skipped(clean_dir, tmp_path, capsys):
    (clean_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (clean_dir / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    status = main(["synth", "srgb", "--input", str(clean_dir), "--output", str(out)])
    assert status == 1
    error = capsys.readouterr().err
    assert "2 image(s) failed" in error
    assert "broken.png" in error and "empty.jpg" in error and "0 bytes" in error
    assert sorted(p.name for p in (out / "noisy").iterdir()) == ["a.png", "b.png", "grey.png"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(Path(f["source"]).name for f in manifest["failed"]) == ["broken.png", "empty.jpg"]


def test_crops_and_too_small_images(clean_dir, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(
        [
            *("synth", "srgb", "--input", str(clean_dir), "--output", str(out)),
            *("--crop-size", "17", "--step", "8", "--no-progress"),
        ]
    )
    assert status == 0  # a too-small image is skipped, not a failure
    captured = capsys.readouterr()
    assert "skipped grey.png" in captured.err and "smaller than the crop size 17" in captured.err
    # a.png is 24x32: rows [0, 7], columns [0, 8, 15] -> 6 crops; b.jpg 20x20 -> [0, 3]^2 = 4.
    names = sorted(p.name for p in (out / "noisy").iterdir())
    assert names == [f"a_s{i:03d}.png" for i in range(1, 7)] + [
        f"b_s{i:03d}.png" for i in range(1, 5)
    ]
    crop = np.asarray(Image.open(out / "clean/a_s006.png"))
    np.testing.assert_array_equal(crop, np.asarray(Image.open(clean_dir / "a.png"))[7:24, 15:32])
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["name"]: r["crop"] for r in manifest["files"]}["a_s006.png"] == [7, 15, 17, 17]
    # Every crop has its own camera.
    cameras = {json.dumps(r["camera"], sort_keys=True) for r in manifest["files"]}
    assert len(cameras) == 10


def test_noise_options_reach_the_manifest(clean_dir, tmp_path):
    out = tmp_path / "out"
    status = main(
        [
            *("synth", "srgb", "--input", str(clean_dir), "--output", str(out), "--no-progress"),
            *("--sigma-s-range", "0.001", "0.16", "--sigma-c-range", "0.001", "0.06"),
            *("--noise-form", "reference", "--inverse-crf", "tabulated", "--no-white-balance"),
        ]
    )
    assert status == 0
    manifest = json.loads((out / "manifest.json").read_text())
    camera_config = manifest["config"]["camera"]
    assert camera_config["noise_form"] == "reference"
    assert camera_config["inverse_crf"] == "tabulated"
    assert camera_config["sigma_s_range"] == [0.001, 0.16]
    levels = [(r["camera"]["sigma_s"], r["camera"]["sigma_c"]) for r in manifest["files"]]
    assert len(set(levels)) == 3
    assert all(0.001 <= s <= 0.16 and 0.001 <= c <= 0.06 for s, c in levels)
    assert all(r["camera"]["red_gain"] == 1.0 for r in manifest["files"])


def test_reference_pipeline_flag(clean_dir, tmp_path):
    out = tmp_path / "out"
    args = ["synth", "srgb", "--input", str(clean_dir), "--output", str(out), "--no-progress"]
    assert main([*args, "--reference-pipeline"]) == 0
    camera_config = json.loads((out / "manifest.json").read_text())["config"]["camera"]
    assert (camera_config["noise_form"], camera_config["inverse_crf"]) == ("reference", "tabulated")
    assert camera_config["clip_xyz"] is True
    assert camera_config == json.loads(json.dumps(asdict(CameraNoiseConfig.reference())))
    # each noisy file is what the reference's preparation writes for the recorded seed
    from clipdenoise.isp import ReferenceDraws, add_raw_noise, process, unprocess

    record = json.loads((out / "manifest.json").read_text())["files"][0]
    clean = np.asarray(Image.open(out / "clean" / record["name"]), dtype=np.float64) / 255.0
    draws = ReferenceDraws(record["reference_seed"])
    config = CameraNoiseConfig.reference()
    params = draws.sample_camera_params(config)
    assert params == CameraParams.from_dict(record["camera"])
    raw = unprocess(clean, params, config)
    noisy = process(add_raw_noise(raw, 0.04, 0.03, draws.numpy, form="reference"), params, config)
    written = np.asarray(Image.open(out / "noisy" / record["name"]))
    np.testing.assert_array_equal(written, (noisy * 255).round().astype(np.uint8))


def test_existing_set_needs_overwrite(clean_dir, tmp_path, capsys):
    out = tmp_path / "out"
    synthesize_srgb_dataset(clean_dir, out)
    status = main(["synth", "srgb", "--input", str(clean_dir), "--output", str(out)])
    assert status == 2
    assert "already holds a synthesised set" in capsys.readouterr().err
    assert (
        main(["synth", "srgb", "--input", str(clean_dir), "--output", str(out), "--overwrite"]) == 0
    )
