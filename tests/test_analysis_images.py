"""Clean images of the analysis: channel matching and cropping to the encoder's stride."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_image_preparation_converts_channels_and_crops_to_the_stride(make_image):
    from clipdenoise.analysis.images import crop_to_multiple, to_tensor

    colour = make_image(50, 70)
    grey = colour.mean(axis=2, keepdims=True)
    assert tuple(to_tensor(grey, 3).shape) == (1, 3, 50, 70)
    assert torch.equal(to_tensor(grey, 3)[0, 0], to_tensor(grey, 3)[0, 2])
    luma = to_tensor(colour, 1)[0, 0]
    expected = 0.299 * colour[..., 0] + 0.587 * colour[..., 1] + 0.114 * colour[..., 2]
    np.testing.assert_allclose(luma.numpy(), expected, atol=1e-6)
    image = to_tensor(colour, 3)
    cropped = crop_to_multiple(image, 32)
    assert tuple(cropped.shape[-2:]) == (32, 64)
    assert torch.equal(cropped, image[..., 9:41, 3:67])  # centred
    assert tuple(crop_to_multiple(image, 16, 40).shape[-2:]) == (32, 32)
    with pytest.raises(ValueError, match="smaller than the encoder's stride 64"):
        crop_to_multiple(image, 64)
