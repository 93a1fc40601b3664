"""Training patches: turned crops of padded images, addressed by index, identical with any
number of workers; paired crops; online camera noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise.data import augment_geometry, pad_to_size
from clipdenoise.errors import ConfigError
from clipdenoise.image_io import read_image
from clipdenoise.isp import CameraNoiseConfig
from clipdenoise.noise import parse_noise_spec
from clipdenoise.training import (
    ImageStore,
    RunSampler,
    TrainPatchDataset,
    build_train_store,
    load_experiment_config,
)
from conftest import fast_config


def test_patches_depend_only_on_their_index(data_root):
    store = ImageStore(sorted((data_root / "train").glob("*.png")), read_image, cache=True)
    dataset = TrainPatchDataset(store, 32, seed=7)
    first = dataset[11]["clean"]
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, TrainPatchDataset(store, 32, seed=7)[11]["clean"])
    assert not torch.equal(first, dataset[12]["clean"])
    # each epoch visits every image once
    assert sorted(dataset.image_index(g) for g in range(6, 12)) == list(range(6))
    # two ranks split the stream like one process would draw it
    assert list(RunSampler(2, 5, rank=1, world_size=2)) == [5, 7, 9]
    # noise added in the workers is seeded by the index too
    noisy_set = TrainPatchDataset(store, 32, seed=7, noise=parse_noise_spec("gaussian:15"))
    item = noisy_set[11]
    assert torch.equal(item["clean"], first) and torch.equal(item["noisy"], noisy_set[11]["noisy"])
    assert (item["noisy"] - first).std().item() == pytest.approx(15 / 255, rel=0.1)


def test_training_reads_noisy_clean_pairs_cropping_the_same_window(data_root, tmp_path):
    # noisy = 255 - clean: a patch pair sums to 1 only when cut and turned alike
    pairs = tmp_path / "pairs"
    for folder in ("clean", "noisy"):
        (pairs / folder).mkdir(parents=True)
    for path in sorted((data_root / "train").glob("*.png")):
        pixels = np.asarray(Image.open(path))
        Image.fromarray(pixels).save(pairs / "clean" / path.name)
        Image.fromarray(255 - pixels).save(pairs / "noisy" / path.name)
    config = fast_config(f"data.pairs_dir={pairs}", "data.patch_size=48")
    store = build_train_store(config, data_root)
    assert len(store) == 6 and store.channels == 3
    patches = TrainPatchDataset(store, 48, seed=1)
    for index in range(8):
        item = patches[index]
        assert item["noisy"].shape == item["clean"].shape == (3, 48, 48)
        torch.testing.assert_close(item["noisy"] + item["clean"], torch.ones(3, 48, 48))
    assert (
        len(build_train_store(load_experiment_config(config, ["data.max_images=2"]), data_root))
        == 2
    )
    with pytest.raises(ConfigError, match="pairs_dir needs data.format"):
        build_train_store(load_experiment_config(config, ["data.format=mayo"]), data_root)


def test_online_synthesis_runs_the_chosen_camera_pipeline(data_root):
    store = build_train_store(fast_config(), data_root)
    spec = parse_noise_spec("srgb_camera:0.04,0.03")
    reference = TrainPatchDataset(
        store, 32, seed=0, noise=spec, camera=CameraNoiseConfig.reference()
    )
    ours = TrainPatchDataset(store, 32, seed=0, noise=spec)
    codes = reference[0]["noisy"] * 255
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)  # its 8-bit output
    torch.testing.assert_close(reference[0]["noisy"], reference[0]["noisy"])  # seeded by index
    assert not torch.equal(reference[0]["noisy"], ours[0]["noisy"])
    torch.testing.assert_close(reference[0]["clean"], ours[0]["clean"])


def _is_a_turned_crop(image: np.ndarray, patch: np.ndarray) -> bool:
    """Whether ``patch`` is one of the 8 flips/rotations of a crop of the padded ``image``."""
    size = patch.shape[0]
    image = pad_to_size(image, size)
    return any(
        np.array_equal(augment_geometry(image[top : top + size, left : left + size], mode), patch)
        for top in range(image.shape[0] - size + 1)
        for left in range(image.shape[1] - size + 1)
        for mode in range(8)
    )


def test_patches_are_turned_crops_and_small_images_are_padded(make_image):
    images = [make_image(10, 12, seed=1), make_image(5, 7, seed=2)]  # the second < patch
    dataset = TrainPatchDataset(images, 8, seed=3)
    for index in range(6):
        patch = dataset[index]["clean"].permute(1, 2, 0).numpy()
        assert patch.shape == (8, 8, 3)
        assert _is_a_turned_crop(images[dataset.image_index(index)], patch)
    plain = TrainPatchDataset(images, 8, seed=3, geometric_augs=False)
    image = pad_to_size(images[1], 8)
    for index in range(4):
        if plain.image_index(index) == 1:
            np.testing.assert_array_equal(
                plain[index]["clean"].permute(1, 2, 0).numpy(), image[:8, :8]
            )


def test_augmented_patches_use_all_8_modes():
    image = np.arange(8 * 8, dtype=np.float32).reshape(8, 8, 1) / 64  # all values distinct
    dataset = TrainPatchDataset([image], 8, seed=0)
    found = set()
    for index in range(64):
        patch = dataset[index]["clean"].permute(1, 2, 0).numpy()
        found.update(m for m in range(8) if np.array_equal(augment_geometry(image, m), patch))
    assert found == set(range(8))


def test_batches_are_identical_with_any_number_of_workers(make_image):
    images = [make_image(20, 20, seed=seed) for seed in range(3)]
    dataset = TrainPatchDataset(images, 8, seed=9)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=2, num_workers=workers, sampler=range(6)
        )
        return [batch["clean"] for batch in loader]

    for serial, parallel in zip(batches(0), batches(2)):
        assert torch.equal(serial, parallel)
