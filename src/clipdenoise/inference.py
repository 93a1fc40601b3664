"""Inference helpers: padding to a multiple of the network stride (tiling and the ``Denoiser``
API build on this module).

Images handled here are ``(B, C, H, W)`` float tensors with values in [0, 1].
"""

from __future__ import annotations

import torch


def reflect_indices(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices that extend ``range(size)`` by mirror reflection (edge not repeated).

    Equal to ``torch.nn.functional.pad(mode="reflect")`` when the padding is smaller than the
    size, and keeps reflecting back and forth when it is not (tiny images), where
    ``F.pad`` would fail.
    """
    positions = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def pad_to_multiple(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom and right of ``image`` so H and W are multiples of ``multiple``.

    This is the reference test protocol (``F.pad(x, (0, pw, 0, ph), 'reflect')``, bottom/right
    only), which moves benchmark numbers slightly compared with centred padding.

    Args:
        image: ``(..., H, W)`` tensor.
        multiple: Target multiple (32 for features down to F4 at stride 16 plus decoder
            symmetry; 64 with F5).

    Returns:
        The padded tensor and the original ``(H, W)`` to crop back to.
    """
    height, width = image.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image, (height, width)
    if pad_h < height and pad_w < width:
        padded = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
    else:
        rows = reflect_indices(height, 0, pad_h, image.device)
        cols = reflect_indices(width, 0, pad_w, image.device)
        padded = image.index_select(-2, rows).index_select(-1, cols)
    return padded, (height, width)
