"""Paired real-noise sets: CC/PolyU, SIDD and folder layouts, SIDD .mat blocks, benchmarks
opened by name."""

from __future__ import annotations

import numpy as np
import pytest

from clipdenoise.data import (
    ImageFolderDataset,
    ImagePair,
    PairedImageDataset,
    SIDDBlocksDataset,
    SkippedImagesWarning,
    find_image_pairs,
    open_benchmark,
)
from clipdenoise.errors import DatasetError, DatasetNotFoundError, ImageReadError
from conftest import save_8bit_image


def _write_pairs(root, names, make_image, noisy_fmt, clean_fmt):
    for index, name in enumerate(names):
        image = make_image(24, 24, seed=index)
        noisy_path = root / noisy_fmt.format(name)
        clean_path = root / clean_fmt.format(name)
        noisy_path.parent.mkdir(parents=True, exist_ok=True)
        clean_path.parent.mkdir(parents=True, exist_ok=True)
        save_8bit_image(noisy_path, np.clip(image + 0.05, 0, 1))
        save_8bit_image(clean_path, image)


def test_cc_and_polyu_naming(tmp_path, make_image):
    _write_pairs(tmp_path / "cc", ["d800_1", "5d_2"], make_image, "{}_real.png", "{}_mean.png")
    save_8bit_image(
        tmp_path / "cc" / "d800_1_ours.png", make_image(24, 24)
    )  # other files are ignored
    dataset = PairedImageDataset(tmp_path / "cc")
    assert dataset.layout == "real_mean" and [p.name for p in dataset.pairs] == ["5d_2", "d800_1"]
    name, noisy, clean = dataset[1]
    assert name == "d800_1" and noisy.shape == clean.shape == (24, 24, 3)
    assert noisy.mean() > clean.mean()
    _write_pairs(tmp_path / "polyu", ["Canon_bag"], make_image, "{}_Real.JPG", "{}_mean.JPG")
    layout, pairs = find_image_pairs(tmp_path / "polyu")
    assert layout == "real_mean" and pairs[0].noisy.name == "Canon_bag_Real.JPG"


def test_sidd_naming(tmp_path, make_image):
    scenes = ["0001_001_S6/0001_{}_SRGB_010", "0002_001_N6/0002_{}_SRGB_011"]
    for index, scene in enumerate(scenes):
        image = make_image(20, 20, seed=index)
        for token, value in (("NOISY", np.clip(image + 0.1, 0, 1)), ("GT", image)):
            path = tmp_path / (scene.format(token) + ".PNG")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_8bit_image(path, value)
    dataset = PairedImageDataset(tmp_path)
    assert dataset.layout == "sidd"
    assert [pair.name for pair in dataset.pairs] == [
        "0001_001_S6/0001_SRGB_010",
        "0002_001_N6/0002_SRGB_011",
    ]
    assert dataset.pairs[0].clean.name == "0001_GT_SRGB_010.PNG"
    (tmp_path / "0002_001_N6" / "0002_GT_SRGB_011.PNG").unlink()
    with pytest.raises(DatasetError, match=r"noisy without clean: 0002_001_N6/0002_NOISY_SRGB_011"):
        PairedImageDataset(tmp_path)


def test_noisy_clean_folders(tmp_path, make_image):
    _write_pairs(tmp_path, ["a", "b"], make_image, "noisy/{}.png", "GT/{}.png")
    dataset = PairedImageDataset(tmp_path)
    assert dataset.layout == "folders" and [p.name for p in dataset.pairs] == ["a", "b"]
    assert dataset[0][0] == "a"


def test_mismatched_pairs_are_reported_by_name(tmp_path, make_image):
    _write_pairs(tmp_path / "f", ["a", "b"], make_image, "noisy/{}.png", "clean/{}.png")
    save_8bit_image(tmp_path / "f" / "noisy" / "only_noisy.png", make_image(8, 8))
    save_8bit_image(tmp_path / "f" / "clean" / "only_clean.png", make_image(8, 8))
    with pytest.raises(
        DatasetError,
        match=r"2 unpaired.*noisy without clean: only_noisy.*clean without noisy: only_clean",
    ):
        PairedImageDataset(tmp_path / "f")
    _write_pairs(tmp_path / "cc", ["x"], make_image, "{}_real.png", "{}_mean.png")
    save_8bit_image(tmp_path / "cc" / "y_real.png", make_image(8, 8))
    with pytest.raises(DatasetError, match=r"noisy without clean: y_real\.png"):
        PairedImageDataset(tmp_path / "cc")


def test_pair_size_mismatch_names_both_files(tmp_path, make_image):
    save_8bit_image(tmp_path / "a_real.png", make_image(16, 16))
    save_8bit_image(tmp_path / "a_mean.png", make_image(16, 20))
    dataset = PairedImageDataset(tmp_path)
    with pytest.raises(ImageReadError, match=r"a_real\.png: size 16x16 differs .*a_mean\.png"):
        dataset[0]


def test_bad_pair_files_are_named_or_skipped(tmp_path, make_image):
    _write_pairs(tmp_path, ["a", "b"], make_image, "{}_real.png", "{}_mean.png")
    (tmp_path / "b_mean.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"b_mean\.png: file is empty"):
        PairedImageDataset(tmp_path)
    with pytest.warns(SkippedImagesWarning, match=r"b_mean\.png.*pair 'b'"):
        dataset = PairedImageDataset(tmp_path, skip_bad=True)
    assert [pair.name for pair in dataset.pairs] == ["a"]


def test_layout_errors(tmp_path, make_image):
    save_8bit_image(tmp_path / "plain.png", make_image(8, 8))
    with pytest.raises(DatasetError, match=r"cannot tell the paired layout"):
        PairedImageDataset(tmp_path)
    with pytest.raises(DatasetError, match=r"unknown paired layout 'zip'"):
        PairedImageDataset(tmp_path, layout="zip")
    with pytest.raises(DatasetNotFoundError, match="missing: paired dataset folder not found"):
        PairedImageDataset(tmp_path / "missing")


def test_from_pairs(tmp_path, make_image):
    _write_pairs(tmp_path, ["a"], make_image, "n_{}.png", "c_{}.png")
    dataset = PairedImageDataset.from_pairs(
        [ImagePair("a", tmp_path / "n_a.png", tmp_path / "c_a.png")], channels=1
    )
    assert dataset[0][1].shape == (24, 24, 1)


def _write_sidd_mats(root, noisy, clean):
    from scipy.io import savemat

    root.mkdir(exist_ok=True)
    savemat(root / "ValidationNoisyBlocksSrgb.mat", {"ValidationNoisyBlocksSrgb": noisy})
    savemat(root / "ValidationGtBlocksSrgb.mat", {"ValidationGtBlocksSrgb": clean})


def test_sidd_validation_mat_blocks(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    noisy = rng.integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    _write_sidd_mats(tmp_path / "SIDD", noisy, clean)
    dataset = open_benchmark("sidd", tmp_path)
    assert isinstance(dataset, SIDDBlocksDataset) and len(dataset) == 6
    name, noisy_block, clean_block = dataset[4]
    assert name == "02_02"
    np.testing.assert_array_equal(noisy_block, noisy[1, 1] / np.float32(255))
    np.testing.assert_array_equal(clean_block, clean[1, 1] / np.float32(255))
    assert open_benchmark("sidd", tmp_path, channels=1)[0][1].shape == (8, 8, 1)


def test_sidd_mat_errors_name_the_file(tmp_path):
    from scipy.io import savemat

    with pytest.raises(DatasetNotFoundError, match=r"ValidationNoisyBlocksSrgb\.mat: SIDD"):
        SIDDBlocksDataset(tmp_path)
    blocks = np.zeros((1, 2, 4, 4, 3), np.uint8)
    _write_sidd_mats(tmp_path, blocks, blocks[:, :1])
    with pytest.raises(DatasetError, match=r"ValidationNoisyBlocksSrgb\.mat: blocks"):
        SIDDBlocksDataset(tmp_path)
    savemat(tmp_path / "ValidationGtBlocksSrgb.mat", {"other": blocks})
    with pytest.raises(DatasetError, match=r"ValidationGtBlocksSrgb\.mat: no array .*other"):
        SIDDBlocksDataset(tmp_path)
    (tmp_path / "ValidationGtBlocksSrgb.mat").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"ValidationGtBlocksSrgb\.mat: not a readable"):
        SIDDBlocksDataset(tmp_path)


def test_open_benchmark_picks_the_dataset_of_the_layout(tmp_path, make_image):
    (tmp_path / "Kodak24").mkdir()
    save_8bit_image(tmp_path / "Kodak24" / "kodim01.png", make_image(8, 8))
    assert isinstance(open_benchmark("kodak", tmp_path), ImageFolderDataset)
    _write_pairs(tmp_path / "mine", ["a"], make_image, "{}_real.png", "{}_mean.png")
    assert isinstance(open_benchmark(tmp_path / "mine"), PairedImageDataset)


def test_shared_benchmarks_open(benchmark_data_dir):
    cc = open_benchmark("cc", benchmark_data_dir)
    assert isinstance(cc, PairedImageDataset) and len(cc) == 15
    assert cc.pairs[0].name == "5dmark3_iso3200_1"
    name, noisy, clean = cc[0]
    assert noisy.shape == clean.shape == (512, 512, 3)
    assert 0.005 < np.abs(noisy - clean).mean() < 0.1
    set12 = open_benchmark("set12", benchmark_data_dir)
    assert isinstance(set12, ImageFolderDataset) and len(set12) == 12 and set12.channels == 1
    kodak = open_benchmark("kodak24", benchmark_data_dir)
    assert len(kodak) == 24 and kodak.paths[0].name == "kodim01.png"
    assert kodak[23].shape[-1] == 3
