"""Clean images for the analysis: loading (batch-tolerant), cropping and channel matching."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipdenoise.errors import ClipDenoiseError
from clipdenoise.image_io import IMAGE_SUFFIXES, read_image

# ITU-R BT.601 luma weights, for grey encoders fed colour images.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AnalysisImage:
    """A named clean image.

    Attributes:
        name: Identifier used in tables and legends (the file stem for files).
        pixels: ``(H, W, C)`` float32 in [0, 1], C = 1 or 3.
    """

    name: str
    pixels: np.ndarray

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (1, 3):
            raise ValueError(
                f"image {self.name!r}: expected (H, W, 1|3) pixels, got {self.pixels.shape}"
            )


def expand_image_paths(inputs: Iterable[str | Path], *, recursive: bool = False) -> list[Path]:
    """Files given directly plus the image files (``IMAGE_SUFFIXES``) inside given folders,
    sorted by name within each folder."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            paths += sorted(
                p for p in item.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            paths.append(item)
    return paths


def load_analysis_images(
    inputs: Iterable[str | Path],
    *,
    recursive: bool = False,
    limit: int | None = None,
) -> tuple[list[AnalysisImage], list[tuple[str, str]]]:
    """Read clean images from files and folders, continuing past unreadable files.

    Args:
        inputs: Image files and/or folders.
        recursive: Descend into sub-folders.
        limit: Keep at most this many images (the first ones in order).

    Returns:
        ``(images, failures)``: the images read, and ``(path, message)`` for every file that
        could not be read. Names that repeat get a ``#2``, ``#3`` suffix.
    """
    images: list[AnalysisImage] = []
    failures: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for path in expand_image_paths(inputs, recursive=recursive):
        if limit is not None and len(images) >= limit:
            break
        try:
            pixels = read_image(path)
        except ClipDenoiseError as error:
            failures.append((str(path), str(error)))
            continue
        count = seen[path.stem] = seen.get(path.stem, 0) + 1
        name = path.stem if count == 1 else f"{path.stem}#{count}"
        images.append(AnalysisImage(name, pixels))
    return images, failures


def to_tensor(pixels: np.ndarray, channels: int) -> torch.Tensor:
    """``(H, W, C)`` array → ``(1, channels, H, W)`` float32 tensor; grey ↔ colour converted
    (grey repeated to RGB; RGB to BT.601 luma)."""
    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)
    if image.shape[0] == channels:
        return image.unsqueeze(0)
    if channels == 3:
        return image.expand(3, -1, -1).unsqueeze(0).contiguous()
    weights = torch.tensor(_LUMA, dtype=image.dtype).view(3, 1, 1)
    return (image * weights).sum(dim=0, keepdim=True).unsqueeze(0)


def center_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre crop of ``(..., H, W)`` to ``(height, width)`` (each at most the current size)."""
    full_h, full_w = image.shape[-2:]
    height, width = min(height, full_h), min(width, full_w)
    top, left = (full_h - height) // 2, (full_w - width) // 2
    return image[..., top : top + height, left : left + width]


def crop_to_multiple(
    image: torch.Tensor, multiple: int, size: Sequence[int] | int | None = None
) -> torch.Tensor:
    """Centre-crop ``(B, C, H, W)`` to at most ``size`` (an int means square), then down to
    multiples of ``multiple`` so that no feature sees padding.

    Raises:
        ValueError: the image is smaller than ``multiple``.
    """
    height, width = image.shape[-2:]
    if size is not None:
        target_h, target_w = (size, size) if isinstance(size, int) else size
        height, width = min(height, target_h), min(width, target_w)
    height, width = height - height % multiple, width - width % multiple
    if height == 0 or width == 0:
        raise ValueError(
            f"image of size {tuple(image.shape[-2:])} is smaller than the encoder's stride "
            f"{multiple}"
        )
    return center_crop(image, height, width)


def common_size(images: Sequence[AnalysisImage]) -> tuple[int, int]:
    """Smallest height and width over ``images`` (t-SNE needs equally sized features)."""
    return (
        min(image.pixels.shape[0] for image in images),
        min(image.pixels.shape[1] for image in images),
    )


__all__ = [
    "AnalysisImage",
    "center_crop",
    "common_size",
    "crop_to_multiple",
    "expand_image_paths",
    "load_analysis_images",
    "to_tensor",
]
