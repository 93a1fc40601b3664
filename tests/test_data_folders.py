"""Clean image folders: listing, reading, channel conversion, bad files, crop geometry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from clipdenoise.data import (
    ChannelConversionWarning,
    ImageFolderDataset,
    SkippedImagesWarning,
    augment_geometry,
    compact_image,
    convert_channels,
    expand_image,
    list_image_files,
    pad_to_size,
)
from clipdenoise.errors import DatasetError, DatasetNotFoundError, ImageReadError
from conftest import save_8bit_image


@pytest.fixture
def folder(tmp_path, make_image):
    """Four RGB PNGs of different sizes, written out of order."""
    root = tmp_path / "clean"
    root.mkdir()
    for name, (h, w) in {"c": (40, 48), "a": (36, 52), "b10": (64, 64), "b2": (20, 24)}.items():
        save_8bit_image(root / f"{name}.png", make_image(h, w, seed=len(name) + h))
    return root


# ------------------------------------------------------------------------- image folders


def test_folder_is_sorted_and_reads_exact_values(folder):
    dataset = ImageFolderDataset(folder)
    assert [path.name for path in dataset.paths] == ["a.png", "b10.png", "b2.png", "c.png"]
    assert len(dataset) == 4 and dataset.name(0) == "a"
    image = dataset[0]
    assert image.shape == (36, 52, 3) and image.dtype == np.float32
    expected = np.asarray(Image.open(folder / "a.png"), dtype=np.float32) / 255
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(dataset[-1], dataset[3])
    with pytest.raises(IndexError):
        dataset[4]


def test_formats_and_bit_depths(tmp_path, make_image):
    image = make_image(24, 32)
    save_8bit_image(tmp_path / "a.jpg", image, quality=95, subsampling=0)
    save_8bit_image(tmp_path / "b.bmp", image)
    save_8bit_image(tmp_path / "c.tif", image)
    save_8bit_image(tmp_path / "d.webp", image, lossless=True)
    grey16 = np.round(image[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "e16.png")
    (tmp_path / "notes.txt").write_text("not an image, ignored")
    with pytest.warns(ChannelConversionWarning, match=r"1 of 5 .*grey.*e16\.png"):
        dataset = ImageFolderDataset(tmp_path, channels=3)
    assert [path.name for path in dataset.paths] == ["a.jpg", "b.bmp", "c.tif", "d.webp", "e16.png"]
    exact = np.round(np.clip(image, 0, 1) * 255).astype(np.float32) / 255
    for index in (1, 2, 3):
        np.testing.assert_array_equal(dataset[index], exact)
    decoded_jpeg = np.asarray(Image.open(tmp_path / "a.jpg"), dtype=np.float32) / 255
    np.testing.assert_array_equal(dataset[0], decoded_jpeg)
    assert np.abs(dataset[0] - exact).mean() < 0.01  # lossy, but close
    grey = dataset[4]
    assert grey.shape == (24, 32, 3)
    np.testing.assert_array_equal(grey[..., 0], grey16 / np.float32(65535))
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_colour_to_grey_uses_bt601_luma_and_warns(folder):
    with pytest.warns(ChannelConversionWarning, match=r"4 of 4 .*colour.*BT\.601.*a\.png"):
        dataset = ImageFolderDataset(folder, channels=1)
    colour = np.asarray(Image.open(folder / "a.png"), dtype=np.float32) / 255
    expected = colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(dataset[0][..., 0], expected, atol=1e-6)


def test_no_warning_when_channels_match(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageFolderDataset(folder, channels=3)


def test_channel_mismatch_without_conversion_names_the_file(folder, make_image):
    save_8bit_image(folder / "grey.png", make_image(16, 16, channels=1))
    with pytest.raises(ImageReadError, match=r"grey\.png: has 1 channel\(s\), .*needs 3"):
        ImageFolderDataset(folder, convert=False)


def test_convert_channels_rules():
    grey = np.random.default_rng(0).random((4, 5, 1), dtype=np.float32)
    assert convert_channels(grey, 1) is grey
    np.testing.assert_array_equal(convert_channels(grey, 3), np.repeat(grey, 3, axis=-1))
    assert convert_channels(grey[..., 0], 1).shape == (4, 5, 1)
    with pytest.raises(ValueError, match="4 channels"):
        convert_channels(np.zeros((2, 2, 4)), 3)


def test_recursive_listing(folder, make_image):
    (folder / "sub").mkdir()
    save_8bit_image(folder / "sub" / "z.png", make_image(16, 16))
    (folder / ".hidden").mkdir()
    save_8bit_image(folder / ".hidden" / "x.png", make_image(16, 16))
    assert len(ImageFolderDataset(folder)) == 4
    dataset = ImageFolderDataset(folder, recursive=True)
    assert len(dataset) == 5 and dataset.name(4) == "sub/z"


def test_cache_returns_the_same_images(folder):
    plain, cached = ImageFolderDataset(folder), ImageFolderDataset(folder, cache=True)
    for index in range(len(plain)):
        np.testing.assert_array_equal(plain[index], cached[index])
    cached[0][:] = 0  # callers may modify what they get
    np.testing.assert_array_equal(cached[0], plain[0])


def _truncate(path, keep: int = 200):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


@pytest.mark.parametrize(
    ("make_bad", "problem"),
    [
        (lambda path: path.write_bytes(b""), "empty"),
        (lambda path: path.write_text("this is not a PNG"), "not a readable image"),
    ],
)
def test_bad_files_are_named_when_built(folder, make_bad, problem):
    make_bad(folder / "bad.png")
    with pytest.raises(ImageReadError, match=rf"bad\.png: .*{problem}"):
        ImageFolderDataset(folder)


def test_truncated_file_is_named_by_verify_and_on_read(folder):
    _truncate(folder / "b10.png")
    with pytest.raises(ImageReadError, match=r"b10\.png: .*(truncated|cannot)"):
        ImageFolderDataset(folder, verify=True)
    dataset = ImageFolderDataset(folder)  # header-only check passes
    with pytest.raises(ImageReadError, match=r"b10\.png"):
        dataset[1]


def test_skip_bad_warns_with_every_file_and_never_fails_mid_epoch(folder):
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("nope")
    _truncate(folder / "b10.png")
    with pytest.warns(SkippedImagesWarning) as record:
        dataset = ImageFolderDataset(folder, skip_bad=True)
    message = str(record[0].message)
    assert "skipped 3 unreadable image(s)" in message
    for name in ("empty.png", "text.jpg", "b10.png"):
        assert name in message
    assert [path.name for path in dataset.paths] == ["a.png", "b2.png", "c.png"]
    assert [name for name, _ in ((p.name, q) for p, q in dataset.skipped)] == [
        "b10.png",
        "empty.png",
        "text.jpg",
    ]
    assert all(dataset[i].shape[-1] == 3 for i in range(len(dataset)))


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere: image folder not found"):
        ImageFolderDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no images found"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.png").write_bytes(b"")
    with (
        pytest.warns(SkippedImagesWarning),
        pytest.raises(DatasetError, match="none of the 1 image files"),
    ):
        ImageFolderDataset(tmp_path / "allbad", skip_bad=True)


def test_from_paths_keeps_order(folder):
    paths = [folder / "c.png", folder / "a.png"]
    dataset = ImageFolderDataset.from_paths(paths)
    assert dataset.paths == paths and dataset[0].shape == (40, 48, 3)


def test_missing_folder_named_like_a_benchmark_says_where_to_get_it(tmp_path):
    with pytest.raises(
        DatasetNotFoundError, match=r"CBSD68: training data folder not found.*FFDNet"
    ):
        list_image_files(tmp_path / "CBSD68", what="training data")


def test_compact_images_expand_to_the_same_values(folder):
    eight_bit = ImageFolderDataset(folder)[0]
    stored = compact_image(eight_bit)
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(expand_image(stored), eight_bit)
    sixteen_bit = np.full((2, 2, 1), 1 / 65535, dtype=np.float32)
    assert compact_image(sixteen_bit).dtype == np.float32
    np.testing.assert_array_equal(expand_image(compact_image(sixteen_bit)), sixteen_bit)


# ------------------------------------------------------------------------- crop geometry


def test_augment_geometry_gives_the_8_distinct_transforms():
    patch = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    results = {augment_geometry(patch, mode).tobytes() for mode in range(8)}
    assert len(results) == 8
    np.testing.assert_array_equal(augment_geometry(patch, 0), patch)
    with pytest.raises(ValueError):
        augment_geometry(patch, 8)


def test_pad_to_size_reflects_repeating_the_edge_as_the_reference():
    image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    padded = pad_to_size(image, 6)
    assert padded.shape == (6, 6, 1)
    np.testing.assert_array_equal(padded[:3, :4], image)
    # OpenCV BORDER_REFLECT (the reference's padding): the edge row/column is repeated
    np.testing.assert_array_equal(padded[3, :4, 0], image[2, :, 0])
    np.testing.assert_array_equal(padded[4, :4, 0], image[1, :, 0])
    np.testing.assert_array_equal(padded[:3, 4, 0], image[:, 3, 0])
    assert pad_to_size(image, 2) is image
    assert pad_to_size(np.ones((1, 1, 3)), 5).shape == (5, 5, 3)
