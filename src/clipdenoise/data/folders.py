"""Clean image folders, and the array helpers every image dataset shares.

* :class:`ImageFolderDataset` — the clean images of a folder, sorted, checked up front, with the
  channel count converted by an explicit, reported rule (:func:`convert_channels`).
* :func:`list_image_files` / :func:`require_image_files` — the image files of a folder in a
  stable order; a missing folder named like a benchmark set says where to get it.
* :func:`compact_image` / :func:`expand_image` — in-memory storage of decoded images.
* :func:`augment_geometry` / :func:`pad_to_size` — the 8 flips/rotations and the reflect
  padding the reference applies to training crops.

Images are ``(H, W, C)`` float32 arrays in [0, 1], RGB.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from clipdenoise.data.registry import source_hint
from clipdenoise.errors import (
    ChannelMismatchError,
    DatasetError,
    DatasetNotFoundError,
    ImageReadError,
)
from clipdenoise.image_io import IMAGE_SUFFIXES, read_image

# ITU-R BT.601 luma, as MATLAB rgb2gray / OpenCV's grey conversion (the reference reads grey
# sets with cv2.IMREAD_GRAYSCALE).
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class ChannelConversionWarning(UserWarning):
    """Images of a dataset are converted to another channel count (grey ↔ RGB)."""


class SkippedImagesWarning(UserWarning):
    """Unreadable images were skipped (``skip_bad=True``); the message lists them."""


# --------------------------------------------------------------------------------------------
# Channels and file listing
# --------------------------------------------------------------------------------------------


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Convert an ``(H, W, C)`` image to ``channels`` channels by an explicit rule.

    Grey → RGB replicates the grey plane; RGB → grey takes the BT.601 luma
    ``0.299 R + 0.587 G + 0.114 B`` (what MATLAB's ``rgb2gray`` and OpenCV compute).

    Args:
        image: ``(H, W, C)`` (or ``(H, W)``) float array, C in {1, 3}.
        channels: 1 or 3.

    Returns:
        ``(H, W, channels)`` float32 (the input itself when nothing changes).

    Raises:
        ChannelMismatchError: unsupported channel counts (a ``ValueError``).
    """
    if image.ndim == 2:
        image = image[..., None]
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=-1)
    if have == 3 and channels == 1:
        return (image.astype(np.float32) @ _LUMA_WEIGHTS)[..., None]
    raise ChannelMismatchError(
        f"cannot convert an image with {have} channels to {channels} channels"
    )


def list_image_files(
    root: str | Path, recursive: bool = False, *, what: str = "image"
) -> list[Path]:
    """Image files under ``root`` (suffixes of :data:`clipdenoise.image_io.IMAGE_SUFFIXES`,
    case-insensitive; hidden files skipped), sorted by their path relative to ``root`` so the
    order is the same on every machine and file system. May be empty.

    Args:
        root: the folder.
        recursive: include sub-folders.
        what: what the folder holds, for the error message (``"training data"``).

    Raises:
        DatasetNotFoundError: ``root`` is not a folder; the message says where to get a known
            benchmark/training set.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"{root}: {what} folder not found (it does not exist; check the path or "
            f"--data-root){source_hint(root)}"
        )
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = [
        path
        for path in candidates
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.is_file()
    ]
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def require_image_files(
    root: str | Path, recursive: bool = False, *, what: str = "image"
) -> list[Path]:
    """:func:`list_image_files`, failing when the folder holds no image.

    Raises:
        DatasetNotFoundError: ``root`` is not a folder.
        DatasetError: it holds no image; the message names it and the suffixes looked for.
    """
    root = Path(root)
    files = list_image_files(root, recursive=recursive, what=what)
    if not files:
        raise DatasetError(
            f"{root}: no images found; the {what} folder {root.name} holds no images (looked "
            f"for {', '.join(IMAGE_SUFFIXES)}{'' if recursive else ', not in sub-folders'})"
        )
    return files


def probe_image(path: Path) -> tuple[int, str | None]:
    """``(channels, None)`` from the file header, or ``(0, problem)`` when it cannot be read.

    Cheap (no decode): datasets run it on every file when they are built.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError as error:
        return 0, f"cannot be read ({error.strerror or error})"
    if size == 0:
        return 0, "file is empty (0 bytes)"
    try:
        with Image.open(path) as image:
            return (1 if image.mode in _GREY_MODES else 3), None
    except UnidentifiedImageError:
        return 0, "not a readable image"
    except (OSError, SyntaxError, ValueError) as error:
        return 0, f"cannot be read ({error})"


def format_problems(problems: Sequence[tuple[Path, str]], limit: int = 20) -> str:
    """``"path (problem); ..."`` for a warning, at most ``limit`` entries."""
    shown = [f"{path} ({problem})" for path, problem in problems[:limit]]
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more")
    return "; ".join(shown)


def check_image_file(path: Path, verify: bool) -> tuple[int, np.ndarray | None, str | None]:
    """Check one image file before a dataset uses it.

    Args:
        path: The file.
        verify: Decode it fully (catches truncated files), not only its header.

    Returns:
        ``(channels, image, problem)``: the channel count (0 when unreadable), the decoded
        ``(H, W, C)`` image when ``verify`` succeeded (else ``None``), and ``None`` or the
        reason the file cannot be used.
    """
    found, problem = probe_image(path)
    image = None
    if problem is None and verify:
        try:
            image = read_image(path)
            found = image.shape[-1]
        except ImageReadError as error:
            problem = strip_path(str(error), path)
    return found, image, problem


def warn_skipped(where: str, problems: Sequence[tuple[Path, str]], what: str) -> None:
    """One :class:`SkippedImagesWarning` listing what a dataset left out (none: no warning).

    Issued for the caller of the dataset's constructor (``where: skipped N <what>: ...``).
    """
    if problems:
        warnings.warn(
            f"{where}: skipped {len(problems)} {what}: {format_problems(problems)}",
            SkippedImagesWarning,
            stacklevel=4,
        )


# --------------------------------------------------------------------------------------------
# Clean image folders
# --------------------------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """The clean images of a folder as ``(H, W, C)`` float32 arrays in [0, 1].

    PNG, JPEG, TIFF, BMP and WebP, 8- or 16-bit, grey or colour (read by
    :func:`clipdenoise.image_io.read_image`). Files are sorted by their relative path. Every file
    is checked when the dataset is built, so a bad file is reported before training starts, not
    in the middle of an epoch:

    * always: empty files and files whose header cannot be read;
    * with ``verify=True`` (the default when ``skip_bad``): a full decode, which also catches
      truncated files (costs one read of every image).

    A bad file raises :class:`~clipdenoise.errors.ImageReadError` naming it, or, with
    ``skip_bad=True``, is left out and listed in one :class:`SkippedImagesWarning`.

    Images whose channel count differs from ``channels`` are converted by
    :func:`convert_channels` (grey replicated to RGB, RGB to BT.601 luma) and a
    :class:`ChannelConversionWarning` names how many and which; ``convert=False`` makes such an
    image an error instead.

    Args:
        root: the folder.
        channels: channels of every returned image, 1 or 3.
        recursive: include sub-folders.
        skip_bad: skip unreadable files with a warning instead of raising.
        verify: fully decode every file now; ``None`` means ``skip_bad``.
        cache: keep decoded images in memory (8-bit images stored as uint8).
        convert: allow channel conversion (otherwise a mismatch is an error).

    Raises:
        DatasetNotFoundError: ``root`` is not a folder.
        DatasetError: the folder holds no (readable) images.
        ImageReadError: a bad file when ``skip_bad`` is false; the message names it.
    """

    def __init__(
        self,
        root: str | Path,
        channels: int = 3,
        recursive: bool = False,
        skip_bad: bool = False,
        *,
        verify: bool | None = None,
        cache: bool = False,
        convert: bool = True,
    ) -> None:
        self.root = Path(root)
        paths = require_image_files(self.root, recursive=recursive)
        self._init_from_paths(paths, channels, skip_bad, verify, cache, convert, str(self.root))

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | Path],
        channels: int = 3,
        skip_bad: bool = False,
        *,
        verify: bool | None = None,
        cache: bool = False,
        convert: bool = True,
    ) -> ImageFolderDataset:
        """A dataset over an explicit list of files (kept in the given order)."""
        dataset = cls.__new__(cls)
        paths = [Path(path) for path in paths]
        if not paths:
            raise DatasetError("no image files given")
        dataset.root = Path(os.path.commonpath([str(p.parent) for p in paths]))
        dataset._init_from_paths(paths, channels, skip_bad, verify, cache, convert, "image list")
        return dataset

    def _init_from_paths(
        self,
        paths: list[Path],
        channels: int,
        skip_bad: bool,
        verify: bool | None,
        cache: bool,
        convert: bool,
        where: str,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        self.convert = convert
        self.skip_bad = skip_bad
        verify = skip_bad if verify is None else verify
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

        good: list[Path] = []
        source_channels: list[int] = []
        decoded: list[np.ndarray | None] = []
        problems: list[tuple[Path, str]] = []
        for path in paths:
            found, image, problem = check_image_file(path, verify)
            if problem is not None:
                if not skip_bad:
                    raise ImageReadError(f"{path}: {problem}")
                problems.append((path, problem))
                continue
            good.append(path)
            source_channels.append(found)
            decoded.append(image if cache else None)

        self.skipped: list[tuple[Path, str]] = problems
        warn_skipped(where, problems, "unreadable image(s)")
        if not good:
            raise DatasetError(f"{where}: none of the {len(paths)} image files could be read")
        self.paths: list[Path] = good
        self.source_channels: list[int] = source_channels
        self._report_conversions(where)
        if self._cache is not None:
            for index, image in enumerate(decoded):
                if image is not None:
                    self._cache[index] = compact_image(self._finish(image, good[index]))

    def _report_conversions(self, where: str) -> None:
        mismatched = [
            path for path, found in zip(self.paths, self.source_channels) if found != self.channels
        ]
        if not mismatched:
            return
        if not self.convert:
            found = self.source_channels[self.paths.index(mismatched[0])]
            raise ImageReadError(
                f"{mismatched[0]}: has {found} channel(s), the dataset needs {self.channels} "
                "(convert=False)"
            )
        rule = "replicated to RGB" if self.channels == 3 else "converted to BT.601 luma"
        names = ", ".join(path.name for path in mismatched[:10])
        more = f" and {len(mismatched) - 10} more" if len(mismatched) > 10 else ""
        warnings.warn(
            f"{where}: {len(mismatched)} of {len(self.paths)} image(s) are "
            f"{'grey' if self.channels == 3 else 'colour'} and will be {rule} "
            f"(channels={self.channels}): {names}{more}",
            ChannelConversionWarning,
            stacklevel=4,
        )

    def _finish(self, image: np.ndarray, path: Path) -> np.ndarray:
        if image.shape[-1] != self.channels and not self.convert:
            raise ImageReadError(
                f"{path}: has {image.shape[-1]} channel(s), the dataset needs {self.channels} "
                "(convert=False)"
            )
        return np.ascontiguousarray(convert_channels(image, self.channels), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(H, W, channels)`` float32 in [0, 1].

        Raises:
            ImageReadError: the file became unreadable since the dataset was built.
        """
        if index < 0:
            index += len(self.paths)
        if not 0 <= index < len(self.paths):
            raise IndexError(f"image index {index} out of range for {len(self.paths)} images")
        if self._cache is not None and index in self._cache:
            return expand_image(self._cache[index])
        image = self._finish(read_image(self.paths[index]), self.paths[index])
        if self._cache is not None:
            self._cache[index] = compact_image(image)
        return image

    def name(self, index: int) -> str:
        """The file's path relative to the root, without suffix (used to name outputs)."""
        path = self.paths[index]
        try:
            return path.relative_to(self.root).with_suffix("").as_posix()
        except ValueError:
            return path.stem

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, "
            f"channels={self.channels}, skipped={len(self.skipped)})"
        )


def strip_path(message: str, path: Path) -> str:
    """``message`` without a leading ``"<path>: "`` (the caller names the file itself)."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def compact_image(image: np.ndarray) -> np.ndarray:
    """An image to keep in memory: uint8 when the float image in [0, 1] holds exact 8-bit
    values (4× less memory), else float32. :func:`expand_image` undoes it."""
    scaled = image * 255.0
    rounded = np.round(scaled)
    if np.abs(scaled - rounded).max(initial=0.0) < 1e-4:
        return rounded.astype(np.uint8)
    return image.astype(np.float32, copy=False)


def expand_image(image: np.ndarray) -> np.ndarray:
    """A :func:`compact_image` result as a fresh ``(H, W, C)`` float32 array in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.copy()


# --------------------------------------------------------------------------------------------
# Crop geometry
# --------------------------------------------------------------------------------------------


def augment_geometry(image: np.ndarray, mode: int) -> np.ndarray:
    """One of the 8 flips/rotations of an ``(H, W, C)`` array (mode 0 is the identity).

    Modes 0–3 rotate by ``90° × mode`` counter-clockwise; 4–7 flip vertically first. Together
    they are the dihedral group of the square, the reference's ``random_augmentation``.
    """
    if not 0 <= mode < 8:
        raise ValueError(f"augmentation mode must be in 0..7, got {mode}")
    if mode >= 4:
        image = image[::-1]
    return np.rot90(image, k=mode % 4, axes=(0, 1))


def pad_to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad the bottom and right of ``image`` so that both sides are at least ``size``.

    Reflection repeats the edge sample (``numpy`` 'symmetric' = OpenCV ``BORDER_REFLECT``), as
    the reference's ``padding`` (``basicsr/utils/img_util.py``) does before cropping; pads
    longer than the image reflect again. Small images are padded rather than rejected so that
    every file of a folder contributes.
    """
    pad_h = max(0, size - image.shape[0])
    pad_w = max(0, size - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


__all__ = [
    "ChannelConversionWarning",
    "ImageFolderDataset",
    "SkippedImagesWarning",
    "augment_geometry",
    "compact_image",
    "convert_channels",
    "expand_image",
    "list_image_files",
    "pad_to_size",
    "require_image_files",
]
