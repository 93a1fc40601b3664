"""Tests of :mod:`clipdenoise.srgb_synthesis`: reproducible pairs, crops, 16-bit output, checks."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from clipdenoise.errors import ConfigError
from clipdenoise.isp import CameraParams, simulate_camera_noise
from clipdenoise.srgb_synthesis import (
    SynthConfig,
    crop_origins,
    file_seed_sequence,
    synthesize_srgb_dataset,
)
from conftest import save_8bit_image


def test_noisy_file_is_replayable_from_the_manifest(clean_dir, tmp_path):
    out = tmp_path / "out"
    synthesize_srgb_dataset(clean_dir, out, SynthConfig(seed=9))
    record = next(
        r for r in json.loads((out / "manifest.json").read_text())["files"] if r["name"] == "a.png"
    )
    clean = np.asarray(Image.open(out / "clean/a.png"), dtype=np.float32) / 255.0
    rng = np.random.default_rng([*file_seed_sequence(9, "a.png").entropy, 1])
    result = simulate_camera_noise(clean, rng)
    assert result.params == CameraParams.from_dict(record["camera"])
    expected = np.round(result.noisy * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "noisy/a.png")), expected)


def test_same_stem_is_reported_not_overwritten(clean_dir, tmp_path, make_image):
    save_8bit_image(clean_dir / "a.bmp", make_image(8, 8, seed=9))
    report = synthesize_srgb_dataset(clean_dir, tmp_path / "out", SynthConfig(overwrite=True))
    assert report.failed == [
        ("a.png", f"{clean_dir.resolve() / 'a.png'}: same output name as a.bmp; rename one of them")
    ]
    assert np.asarray(Image.open(tmp_path / "out/clean/a.png")).shape == (8, 8, 3)


def test_crop_grid_follows_basicsr():
    assert crop_origins(40, 16, 8, 0) == [0, 8, 16, 24]
    assert crop_origins(45, 16, 8, 0) == [0, 8, 16, 24, 29]
    assert crop_origins(45, 16, 8, 10) == [0, 8, 16, 24]
    assert crop_origins(10, 16, 8, 0) == []


def test_sixteen_bit_output(clean_dir, tmp_path):
    out = tmp_path / "out"
    synthesize_srgb_dataset(clean_dir, out, SynthConfig(bit_depth=16))
    data = (out / "noisy/a.png").read_bytes()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (32, 24, 16, 2)
    idat_length = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + idat_length])
    rows = np.frombuffer(raw, np.uint8).reshape(24, 1 + 32 * 6)[:, 1:]
    pixels = rows.copy().view(">u2").reshape(24, 32, 3)
    clean = np.asarray(Image.open(clean_dir / "a.png"), dtype=np.float64) / 255
    assert 0.01 < np.std(pixels / 65535.0 - clean) < 0.25
    # The 16-bit clean copy holds the 8-bit input exactly (v * 257).
    clean_data = (out / "clean/a.png").read_bytes()
    clean_raw = zlib.decompress(clean_data[41 : 41 + struct.unpack(">I", clean_data[33:37])[0]])
    clean16 = np.frombuffer(clean_raw, np.uint8).reshape(24, -1)[:, 1:].copy().view(">u2")
    np.testing.assert_array_equal(clean16.reshape(24, 32, 3), (clean * 255).round() * 257)


def test_processed_clean_target(clean_dir, tmp_path):
    out = tmp_path / "out"
    synthesize_srgb_dataset(clean_dir, out, SynthConfig(seed=3, clean_target="processed"))
    original = np.asarray(Image.open(clean_dir / "a.png"), dtype=np.float32) / 255.0
    rng = np.random.default_rng([*file_seed_sequence(3, "a.png").entropy, 1])
    expected = simulate_camera_noise(original, rng, with_processed_clean=True)
    written = np.asarray(Image.open(out / "clean/a.png"))
    np.testing.assert_array_equal(
        written, np.round(expected.processed_clean * 255.0).astype(np.uint8)
    )
    assert not np.array_equal(written, np.asarray(Image.open(clean_dir / "a.png")))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["clean_target"] == "processed"
    with pytest.raises(ConfigError, match="clean_target must be"):
        SynthConfig(clean_target="noisy")


def test_output_is_a_paired_training_set(clean_dir, tmp_path):
    from clipdenoise.data import PairedImageDataset

    out = tmp_path / "out"
    synthesize_srgb_dataset(clean_dir, out, SynthConfig(seed=1))
    pairs = PairedImageDataset(out)
    assert len(pairs) == 3 and pairs.layout == "folders"
    name, noisy, clean = pairs[0]
    assert name == "a" and noisy.shape == clean.shape == (24, 32, 3)


def test_refuses_unsafe_outputs(clean_dir, tmp_path):
    with pytest.raises(ConfigError, match="must not be inside the input folder"):
        synthesize_srgb_dataset(clean_dir, clean_dir / "out")
    with pytest.raises(ConfigError, match="input folder not found"):
        synthesize_srgb_dataset(tmp_path / "missing", tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no images found"):
        synthesize_srgb_dataset(empty, tmp_path / "out")
    out = tmp_path / "out"
    synthesize_srgb_dataset(clean_dir, out)
    with pytest.raises(ConfigError, match="already holds a synthesised set"):
        synthesize_srgb_dataset(clean_dir, out)
