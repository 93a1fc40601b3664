"""Training patches: crops of the (reflect-padded) images under one of the 8 flips/rotations."""

from __future__ import annotations

import numpy as np
import torch

from clipdenoise.data import augment_geometry, pad_to_size
from clipdenoise.training_data import TrainPatchDataset


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
