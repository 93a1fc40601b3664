"""Datasets: image folders, training patches, paired sets, benchmark names."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise.data import (
    BENCHMARKS,
    ChannelConversionWarning,
    ImageFolderDataset,
    ImagePair,
    NoiseSynthesizer,
    PairedImageDataset,
    PatchDataset,
    SIDDBlocksDataset,
    SkippedImagesWarning,
    augment_geometry,
    convert_channels,
    find_image_pairs,
    open_benchmark,
    pad_to_size,
    resolve_dataset_dir,
)
from clipdenoise.errors import DatasetError, DatasetNotFoundError, ImageReadError
from clipdenoise.noise import NoiseSpec


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _save(path, image: np.ndarray, **kwargs):
    array = _to_uint8(image)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, **kwargs)
    return path


@pytest.fixture
def folder(tmp_path, make_image):
    """Four RGB PNGs of different sizes, written out of order."""
    root = tmp_path / "clean"
    root.mkdir()
    for name, (h, w) in {"c": (40, 48), "a": (36, 52), "b10": (64, 64), "b2": (20, 24)}.items():
        _save(root / f"{name}.png", make_image(h, w, seed=len(name) + h))
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
    _save(tmp_path / "a.jpg", image, quality=95, subsampling=0)
    _save(tmp_path / "b.bmp", image)
    _save(tmp_path / "c.tif", image)
    _save(tmp_path / "d.webp", image, lossless=True)
    grey16 = np.round(image[..., 0] * 65535).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "e16.png")
    (tmp_path / "notes.txt").write_text("not an image, ignored")
    with pytest.warns(ChannelConversionWarning, match=r"1 of 5 .*grey.*e16\.png"):
        dataset = ImageFolderDataset(tmp_path, channels=3)
    assert [path.name for path in dataset.paths] == ["a.jpg", "b.bmp", "c.tif", "d.webp", "e16.png"]
    exact = _to_uint8(image).astype(np.float32) / 255
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
    _save(folder / "grey.png", make_image(16, 16, channels=1))
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
    _save(folder / "sub" / "z.png", make_image(16, 16))
    (folder / ".hidden").mkdir()
    _save(folder / ".hidden" / "x.png", make_image(16, 16))
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
    patches = PatchDataset(dataset, patch_size=16)
    assert all(patches[i]["clean"].shape == (3, 16, 16) for i in range(len(patches)))


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


# ------------------------------------------------------------------------------ patches


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


def test_patches_are_crops_of_the_image(folder):
    images = ImageFolderDataset(folder)
    patches = PatchDataset(images, patch_size=16, augment=False, seed=3)
    assert len(patches) == 4
    for index in range(4):
        item = patches[index]
        assert set(item) == {"clean"}
        clean = item["clean"].permute(1, 2, 0).numpy()
        assert item["clean"].dtype == torch.float32 and clean.shape == (16, 16, 3)
        image = images[index]
        found = any(
            np.array_equal(image[top : top + 16, left : left + 16], clean)
            for top in range(image.shape[0] - 15)
            for left in range(image.shape[1] - 15)
        )
        assert found


def test_augmented_patches_use_all_8_modes(folder):
    patches = PatchDataset(ImageFolderDataset(folder), patch_size=8, patches_per_image=16)
    assert len(patches) == 64
    # Each patch equals some transform of the unaugmented crop with the same seed stream.
    plain = PatchDataset(patches.images, patch_size=8, augment=False, patches_per_image=16)
    modes = set()
    for index in range(len(patches)):
        reference = plain[index]["clean"].permute(1, 2, 0).numpy()
        patch = patches[index]["clean"].permute(1, 2, 0).numpy()
        matches = [m for m in range(8) if np.array_equal(augment_geometry(reference, m), patch)]
        assert matches
        modes.update(matches)
    assert modes == set(range(8))


def test_patches_are_reproducible_per_seed_and_epoch(folder):
    images = ImageFolderDataset(folder, cache=True)
    first = PatchDataset(images, patch_size=16, noise="gaussian:15", seed=5)
    again = PatchDataset(images, patch_size=16, noise=NoiseSpec("gaussian", 15), seed=5)
    other = PatchDataset(images, patch_size=16, noise="gaussian:15", seed=6)
    for index in (2, 0, 1):  # any access order
        assert torch.equal(first[index]["noisy"], again[index]["noisy"])
        assert torch.equal(first[index]["clean"], again[index]["clean"])
        assert not torch.equal(first[index]["noisy"], other[index]["noisy"])
    before = first[0]["noisy"]
    first.set_epoch(1)
    assert not torch.equal(first[0]["noisy"], before)
    first.set_epoch(0)
    assert torch.equal(first[0]["noisy"], before)


def test_online_noise_statistics(folder):
    patches = PatchDataset(folder, patch_size=32, noise="gaussian:25", patches_per_image=8)
    noise = torch.stack([patches[i]["noisy"] - patches[i]["clean"] for i in range(len(patches))])
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.03)
    assert abs(noise.mean().item()) < 0.003


def test_small_images_are_reflect_padded(tmp_path, make_image):
    _save(tmp_path / "tiny.png", make_image(5, 7))
    patches = PatchDataset(tmp_path, patch_size=12, augment=False)
    clean = patches[0]["clean"].permute(1, 2, 0).numpy()
    image = ImageFolderDataset(tmp_path)[0]
    np.testing.assert_array_equal(clean, pad_to_size(image, 12)[:12, :12])


def test_patches_are_identical_with_any_number_of_workers(folder):
    patches = PatchDataset(ImageFolderDataset(folder), patch_size=16, noise="poisson:2", seed=9)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(patches, batch_size=2, num_workers=workers)
        return [batch["noisy"] for batch in loader]

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 2
    for a, b in zip(serial, parallel):
        assert torch.equal(a, b)


def test_paired_patches_are_cropped_together(tmp_path, make_image):
    for name in ("one", "two"):
        clean = make_image(30, 40, seed=len(name))
        _save(tmp_path / f"{name}_mean.png", clean)
        _save(tmp_path / f"{name}_real.png", np.clip(clean + 20 / 255, 0, 1))
    pairs = PairedImageDataset(tmp_path)
    patches = PatchDataset(pairs, patch_size=16, seed=1)
    for index in range(2):
        item = patches[index]
        assert set(item) == {"noisy", "clean"}
        name, noisy_image, clean_image = pairs[index]
        difference = (item["noisy"] - item["clean"]).numpy()
        full_difference = noisy_image - clean_image
        # The clean images are smooth (< 235/255), so the offset survives everywhere.
        assert np.allclose(difference, full_difference.max(), atol=1e-6)
    with pytest.raises(ValueError, match="noise=None"):
        PatchDataset(pairs, noise="gaussian:15")


def test_patches_from_a_list_of_arrays():
    images = [np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)]
    patches = PatchDataset(images, patch_size=8, noise="speckle:0.02", seed=1)
    item = patches[0]
    assert item["clean"].shape == item["noisy"].shape == (1, 8, 8)


def test_patch_dataset_argument_errors(folder):
    with pytest.raises(ValueError, match="positive"):
        PatchDataset(folder, patch_size=0)
    with pytest.raises(IndexError):
        PatchDataset(folder, patch_size=8)[4]


def test_noise_synthesizer_is_seeded_and_resumable():
    clean = torch.full((2, 3, 16, 16), 0.5)
    first = NoiseSynthesizer("gaussian:15", seed=1)
    assert torch.equal(first(clean), NoiseSynthesizer("gaussian:15", seed=1)(clean))
    assert not torch.equal(first(clean), NoiseSynthesizer("gaussian:15", seed=2)(clean))
    state = first.state_dict()
    expected = first(clean)
    resumed = NoiseSynthesizer("gaussian:15", seed=123)
    resumed.load_state_dict(state)
    assert torch.equal(resumed(clean), expected)
    with pytest.raises(ValueError, match="gaussian:15"):
        NoiseSynthesizer("poisson:2").load_state_dict(state)
    assert (first(clean) - clean).std().item() == pytest.approx(15 / 255, rel=0.1)


# -------------------------------------------------------------------------- paired sets


def _write_pairs(root, names, make_image, noisy_fmt, clean_fmt):
    for index, name in enumerate(names):
        image = make_image(24, 24, seed=index)
        noisy_path = root / noisy_fmt.format(name)
        clean_path = root / clean_fmt.format(name)
        noisy_path.parent.mkdir(parents=True, exist_ok=True)
        clean_path.parent.mkdir(parents=True, exist_ok=True)
        _save(noisy_path, np.clip(image + 0.05, 0, 1))
        _save(clean_path, image)


def test_cc_and_polyu_naming(tmp_path, make_image):
    _write_pairs(tmp_path / "cc", ["d800_1", "5d_2"], make_image, "{}_real.png", "{}_mean.png")
    _save(tmp_path / "cc" / "d800_1_ours.png", make_image(24, 24))  # other files are ignored
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
            _save(path, value)
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
    _save(tmp_path / "f" / "noisy" / "only_noisy.png", make_image(8, 8))
    _save(tmp_path / "f" / "clean" / "only_clean.png", make_image(8, 8))
    with pytest.raises(
        DatasetError,
        match=r"2 unpaired.*noisy without clean: only_noisy.*clean without noisy: only_clean",
    ):
        PairedImageDataset(tmp_path / "f")
    _write_pairs(tmp_path / "cc", ["x"], make_image, "{}_real.png", "{}_mean.png")
    _save(tmp_path / "cc" / "y_real.png", make_image(8, 8))
    with pytest.raises(DatasetError, match=r"noisy without clean: y_real\.png"):
        PairedImageDataset(tmp_path / "cc")


def test_pair_size_mismatch_names_both_files(tmp_path, make_image):
    _save(tmp_path / "a_real.png", make_image(16, 16))
    _save(tmp_path / "a_mean.png", make_image(16, 20))
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
    _save(tmp_path / "plain.png", make_image(8, 8))
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
    patches = PatchDataset(dataset, patch_size=4)
    assert patches[0]["noisy"].shape == (3, 4, 4)


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


def test_docstring_examples_run():
    import doctest

    import clipdenoise.data

    assert doctest.testmod(clipdenoise.data).failed == 0


# ----------------------------------------------------------------------- benchmark names


def test_resolve_dataset_dir_under_a_data_root(tmp_path, monkeypatch):
    (tmp_path / "Kodak24").mkdir()
    (tmp_path / "McM").mkdir()
    monkeypatch.delenv("CLIPDENOISE_DATA", raising=False)
    assert resolve_dataset_dir("kodak24", tmp_path) == tmp_path / "Kodak24"
    assert resolve_dataset_dir("Kodak", tmp_path) == tmp_path / "Kodak24"
    assert resolve_dataset_dir("mcmaster", tmp_path) == tmp_path / "McM"
    monkeypatch.setenv("CLIPDENOISE_DATA", str(tmp_path))
    assert resolve_dataset_dir("KODAK24") == tmp_path / "Kodak24"
    assert resolve_dataset_dir(str(tmp_path / "McM")) == tmp_path / "McM"


def test_missing_benchmark_names_the_folder_and_source(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPDENOISE_DATA", raising=False)
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset_dir("cbsd68")  # the default data root: <cache>/data
    message = str(info.value)
    assert str(tmp_path / "cache" / "data" / "CBSD68") in message
    assert "--data-root or $CLIPDENOISE_DATA" in message
    assert "clipdenoise data download cbsd68" in message
    with pytest.raises(DatasetNotFoundError) as info:
        resolve_dataset_dir("urban100", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "Urban100") in message and "SelfExSR" in message
    assert "clipdenoise data import urban100 --from DIR" in message
    with pytest.raises(DatasetNotFoundError, match=r"unknown benchmark set 'imagenet'.*kodak24"):
        resolve_dataset_dir("imagenet", tmp_path)


def test_every_benchmark_says_where_to_get_it():
    for name in ("kodak24", "cbsd68", "mcmaster", "urban100", "cbsd432", "set12", "bsd68"):
        assert BENCHMARKS[name].kind == "clean"
    for name in ("cc", "polyu", "sidd"):
        assert BENCHMARKS[name].kind == "paired"
    assert all(info.source and info.folders for info in BENCHMARKS.values())


def test_shared_benchmarks_resolve_and_open(benchmark_data_dir):
    data_root = benchmark_data_dir
    expected = {
        "kodak24": "Kodak24",
        "cbsd68": "CBSD68",
        "cbsd432": "CBSD432",
        "set12": "Set12",
        "bsd68": "BSD68",
        "cc": "CC15",
        "rni15": "RNI15",
    }
    for name, folder in expected.items():
        assert resolve_dataset_dir(name, data_root) == data_root / folder
    cc = open_benchmark("cc", data_root)
    assert isinstance(cc, PairedImageDataset) and len(cc) == 15
    assert cc.pairs[0].name == "5dmark3_iso3200_1"
    name, noisy, clean = cc[0]
    assert noisy.shape == clean.shape == (512, 512, 3)
    assert 0.005 < np.abs(noisy - clean).mean() < 0.1
    set12 = open_benchmark("set12", data_root)
    assert isinstance(set12, ImageFolderDataset) and len(set12) == 12 and set12.channels == 1
    kodak = open_benchmark("kodak24", data_root)
    assert len(kodak) == 24 and kodak.paths[0].name == "kodim01.png"
    patches = PatchDataset(kodak, patch_size=64, noise="gaussian:15")
    assert patches[23]["noisy"].shape == (3, 64, 64)
