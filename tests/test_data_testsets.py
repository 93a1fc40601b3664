"""Evaluation test sets: items of each suite, labels, readers, errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipdenoise.data import testsets
from clipdenoise.data.testsets import image_size, list_test_set, read_clean, read_noisy
from clipdenoise.errors import ConfigError, DatasetError, DatasetNotFoundError, ImageReadError


def _write_png(path, image01):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image01 * 255).astype(np.uint8)).save(path)


def test_synthetic_set_lists_clean_images_under_the_registry_label(tmp_path, make_image):
    for name in ("kodim02", "kodim01"):
        _write_png(tmp_path / "Kodak24" / f"{name}.png", make_image(12, 16))
    test_set = list_test_set("kodak", data_root=tmp_path)
    assert test_set.name == "Kodak24" and not test_set.real_noise
    assert [item.name for item in test_set.images] == ["kodim01", "kodim02"]
    assert test_set.folder == tmp_path / "Kodak24"
    assert image_size(test_set.images[0], test_set) == (12, 16)
    np.testing.assert_array_equal(
        read_clean(test_set.images[0], test_set),
        np.asarray(Image.open(tmp_path / "Kodak24" / "kodim01.png"), dtype=np.float32) / 255,
    )
    by_path = list_test_set(tmp_path / "Kodak24")
    assert by_path.name == "Kodak24" and by_path.identity() == test_set.identity()


def test_real_srgb_set_pairs_noisy_and_clean(tmp_path, make_image):
    folder = tmp_path / "mine"
    for name in ("b", "a"):
        _write_png(folder / f"{name}_mean.png", make_image(8, 8))
        _write_png(folder / f"{name}_real.png", np.clip(make_image(8, 8) + 0.1, 0, 1))
    test_set = list_test_set(folder, "real-srgb")
    assert test_set.name == "mine" and test_set.real_noise
    item = test_set.images[0]
    assert item.name == "a" and item.clean_path.name == "a_mean.png"
    assert read_noisy(item, test_set).mean() > read_clean(item, test_set).mean()
    (folder / "b_mean.png").unlink()
    with pytest.raises(DatasetError, match=r"noisy without clean: b_real\.png"):
        list_test_set(folder, "real-srgb")


def test_ldct_set_reads_the_held_out_patient_bit_identically(tmp_path):
    rng = np.random.default_rng(0)
    for patient in ("L067", "L506"):
        for index in range(2):
            for kind in ("input", "target"):
                slice_ = rng.random((6, 5)).astype(np.float64)
                np.save(tmp_path / f"{patient}_{index}_{kind}.npy", slice_)
    test_set = list_test_set(tmp_path, "ldct")
    assert test_set.modality == "ct" and [item.name for item in test_set.images] == [
        "L506_0",
        "L506_1",
    ]
    item = test_set.images[1]
    assert image_size(item, test_set) == (6, 5)
    expected = np.load(tmp_path / "L506_1_input.npy").astype(np.float32)[..., None]
    np.testing.assert_array_equal(read_noisy(item, test_set), expected)
    assert read_clean(item, test_set).shape == (6, 5, 1)
    (tmp_path / "L506_1_target.npy").unlink()
    with pytest.raises(DatasetError, match=r"L506_1_input\.npy: no full-dose slice"):
        list_test_set(tmp_path, "ldct")
    (tmp_path / "L506_0_input.npy").write_bytes(b"junk")
    broken = testsets.TestSet("ldct", test_set.images[:1], real_noise=True, modality="ct")
    with pytest.raises(ImageReadError, match=r"L506_0_input\.npy"):
        read_noisy(broken.images[0], broken)


def test_missing_or_empty_sets_say_what_is_wrong(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"McMaster.*clipdenoise data download mcmaster"):
        list_test_set("McM", data_root=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no image files .* found for dataset 'empty'"):
        list_test_set(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no '\\*input\\*.npy'"):
        list_test_set(tmp_path / "empty", "ldct")
    with pytest.raises(ConfigError, match="unknown suite 'video'"):
        list_test_set(tmp_path / "empty", "video")


def test_unreadable_image_size_is_grouped_alone(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    test_set = list_test_set(tmp_path)
    assert image_size(test_set.images[0], test_set) == (-1, -1)
