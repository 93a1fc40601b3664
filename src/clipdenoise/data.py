"""Datasets: clean image folders, training patches with online noise, paired real-noise sets,
and the benchmark sets by name.

* :class:`ImageFolderDataset` — the clean images of a folder, sorted, checked up front, with the
  channel count converted by an explicit, reported rule.
* :class:`PatchDataset` — random ``patch_size`` crops, the 8 flips/rotations and online noise
  (paper Sec. 4.1: 128×128 patches, geometric augmentation, Gaussian σ = 15 online); every sample
  is a pure function of ``(seed, epoch, index)``, so it is the same whatever the number of
  dataloader workers or the order they run in. Also crops noisy/clean pairs (sRGB training on a
  set made by ``clipdenoise synth srgb``).
* :class:`NoiseSynthesizer` — adds noise to whole batches on the training device (GPU) with its
  own seeded generator, which is cheaper than noising each patch in the workers.
* :class:`PairedImageDataset` — noisy/clean pairs: CC and PolyU (``*_real`` / ``*_mean``),
  SIDD (``*NOISY*`` / ``*GT*``), and ``noisy/`` + ``clean/`` folders with matching names;
  :class:`SIDDBlocksDataset` reads SIDD's validation ``.mat`` blocks.
* :func:`resolve_dataset_dir` / :func:`open_benchmark` — ``kodak24``, ``cbsd68``, ... under a data
  root (``--data-root`` or ``$CLIPDENOISE_DATA``).

Images are ``(H, W, C)`` float32 arrays in [0, 1], RGB; patches are ``(C, p, p)`` float32 tensors.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clipdenoise.errors import (
    ChannelMismatchError,
    DatasetError,
    DatasetNotFoundError,
    ImageReadError,
)
from clipdenoise.image_io import IMAGE_SUFFIXES, read_image
from clipdenoise.noise import NoiseSpec, add_noise, parse_noise_spec

if TYPE_CHECKING:
    import torch

DATA_ROOT_ENV = "CLIPDENOISE_DATA"

# ITU-R BT.601 luma, as MATLAB rgb2gray / OpenCV's grey conversion (the reference reads grey
# sets with cv2.IMREAD_GRAYSCALE).
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

try:  # torch is a hard dependency; the fallback only keeps the module importable for docs.
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[assignment,misc]


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
            f"--data-root){_source_hint(root)}"
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


def _source_hint(folder: Path) -> str:
    """Where to get a missing benchmark/training set, when its folder name is a known one."""
    try:
        return f"; get it from {benchmark_info(folder.name).source}"
    except DatasetError:
        return ""


def _probe_image(path: Path) -> tuple[int, str | None]:
    """``(channels, None)`` from the file header, or ``(0, problem)`` when it cannot be read."""
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


def _format_problems(problems: Sequence[tuple[Path, str]], limit: int = 20) -> str:
    shown = [f"{path} ({problem})" for path, problem in problems[:limit]]
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more")
    return "; ".join(shown)


# --------------------------------------------------------------------------------------------
# Clean image folders
# --------------------------------------------------------------------------------------------


class ImageFolderDataset(_TorchDataset):
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
            found, problem = _probe_image(path)
            image = None
            if problem is None and verify:
                try:
                    image = read_image(path)
                    found = image.shape[-1]
                except ImageReadError as error:
                    problem = _strip_path(str(error), path)
            if problem is not None:
                if not skip_bad:
                    raise ImageReadError(f"{path}: {problem}")
                problems.append((path, problem))
                continue
            good.append(path)
            source_channels.append(found)
            decoded.append(image if cache else None)

        self.skipped: list[tuple[Path, str]] = problems
        if problems:
            warnings.warn(
                f"{where}: skipped {len(problems)} unreadable image(s): "
                f"{_format_problems(problems)}",
                SkippedImagesWarning,
                stacklevel=3,
            )
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


def _strip_path(message: str, path: Path) -> str:
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
# Training patches
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


def _seed_int(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


class PatchDataset(_TorchDataset):
    """Random training patches with geometric augmentation and online noise.

    Sample ``index`` of epoch ``e`` is cropped from image ``index % len(images)`` at a position,
    with a flip/rotation and with noise all drawn from a generator seeded by
    ``(seed, e, index)`` — never from global state — so every sample is reproducible and the
    same whatever the number of dataloader workers. Call :meth:`set_epoch` at the start of each
    epoch (with ``persistent_workers=False``) to draw new patches, as with a
    ``DistributedSampler``.

    ``images`` is a sequence of clean ``(H, W, C)`` arrays (an :class:`ImageFolderDataset`, a list,
    or a folder path), or a :class:`PairedImageDataset` / sequence of ``(name, noisy, clean)``
    tuples, whose noisy and clean images are cropped and augmented identically.

    Images smaller than ``patch_size`` are reflect-padded (:func:`pad_to_size`, as the reference's
    BasicSR pipeline does) rather than rejected.

    Args:
        images: see above.
        patch_size: side of the square patches (paper: 128).
        noise: noise added to each clean patch (a :class:`~clipdenoise.noise.NoiseSpec` or its
            text); ``None`` yields clean patches only (add noise per batch on the training
            device with :class:`NoiseSynthesizer`). Must be ``None`` for paired images.
        seed: base seed.
        augment: apply a random one of the 8 flips/rotations.
        patches_per_image: samples per image and epoch (the reference's
            ``dataset_enlarge_ratio``).
        channels: channel count when ``images`` is a folder path.

    Items:
        ``{"clean": (C, p, p), "noisy": (C, p, p)}`` float32 tensors (``"noisy"`` only with noise
        or pairs). Clean values are in [0, 1]; noisy ones may leave it for unclipped kinds.
    """

    def __init__(
        self,
        images: Sequence[Any] | str | Path,
        patch_size: int = 128,
        noise: NoiseSpec | str | None = None,
        seed: int = 0,
        augment: bool = True,
        *,
        patches_per_image: int = 1,
        channels: int = 3,
    ) -> None:
        if isinstance(images, (str, Path)):
            images = ImageFolderDataset(images, channels=channels)
        if len(images) == 0:
            raise DatasetError("PatchDataset needs at least one image")
        if patch_size < 1 or patches_per_image < 1:
            raise ValueError(
                f"patch_size and patches_per_image must be positive, got {patch_size}, "
                f"{patches_per_image}"
            )
        self.images = images
        self.paired = isinstance(images, PairedImageDataset) or (
            not isinstance(images, ImageFolderDataset) and isinstance(images[0], tuple)
        )
        self.noise = None if noise is None else parse_noise_spec(noise)
        if self.paired and self.noise is not None:
            raise ValueError("paired images already hold their noise; pass noise=None")
        self.patch_size = patch_size
        self.seed = seed
        self.augment = augment
        self.patches_per_image = patches_per_image
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the patches of ``epoch`` (samples are a function of seed, epoch and index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) * self.patches_per_image

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import torch

        if not 0 <= index < len(self):
            raise IndexError(f"patch index {index} out of range for {len(self)} patches")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item = self.images[index % len(self.images)]
        planes = [item[1], item[2]] if self.paired else [item]
        if self.paired and planes[0].shape != planes[1].shape:
            raise DatasetError(
                f"pair {item[0]!r}: noisy {planes[0].shape} and clean {planes[1].shape} differ"
            )
        patches = self._crop(planes, rng)
        tensors = [
            torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32))
            for patch in patches
        ]
        if self.paired:
            return {"noisy": tensors[0], "clean": tensors[1]}
        clean = tensors[0]
        noise_seed = _seed_int(rng)
        if self.noise is None:
            return {"clean": clean}
        generator = torch.Generator().manual_seed(noise_seed)
        return {"noisy": add_noise(clean, self.noise, generator), "clean": clean}

    def _crop(self, planes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        size = self.patch_size
        planes = [
            pad_to_size(plane if plane.ndim == 3 else plane[..., None], size) for plane in planes
        ]
        height, width = planes[0].shape[:2]
        top = int(rng.integers(0, height - size + 1))
        left = int(rng.integers(0, width - size + 1))
        mode = int(rng.integers(0, 8)) if self.augment else 0
        return [
            augment_geometry(plane[top : top + size, left : left + size], mode) for plane in planes
        ]


class NoiseSynthesizer:
    """Adds noise to whole batches on the training device with its own seeded generator.

    Per-batch noise on the GPU is the cheap way to train with online noise: the workers only
    crop, the device draws ``B × C × p × p`` samples at once. The generator lives on ``device``;
    for DDP give each rank its own ``seed`` (e.g. ``seed + rank``). :meth:`state_dict` /
    :meth:`load_state_dict` carry the generator state so a resumed run continues the stream.

    Args:
        noise: the noise (spec or text).
        seed: generator seed.
        device: where batches live (``"cuda"``, ``"cuda:1"``, ``"cpu"``).

    Example:
        >>> import torch
        >>> synthesize = NoiseSynthesizer("gaussian:15", seed=0)
        >>> noisy = synthesize(torch.full((2, 3, 8, 8), 0.5))
        >>> noisy.shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self, noise: NoiseSpec | str, seed: int = 0, device: str | torch.device = "cpu"
    ) -> None:
        import torch

        self.noise = parse_noise_spec(noise)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def __call__(self, clean: torch.Tensor) -> torch.Tensor:
        """Noisy version of ``clean`` (``(B, C, H, W)`` or ``(C, H, W)`` on ``device``)."""
        if clean.device.type != self.device.type:
            raise ValueError(
                f"batch is on {clean.device}, the noise generator on {self.device}; "
                "move the batch first"
            )
        return add_noise(clean, self.noise, self.generator)

    def state_dict(self) -> dict[str, Any]:
        return {"noise": str(self.noise), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("noise") != str(self.noise):
            raise ValueError(
                f"noise state is for {state.get('noise')!r}, this synthesizer adds {self.noise}"
            )
        self.generator.set_state(state["generator"])


# --------------------------------------------------------------------------------------------
# Paired real-noise sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImagePair:
    """One noisy/clean pair: ``name`` (used for outputs and reports) and the two files."""

    name: str
    noisy: Path
    clean: Path


PAIR_LAYOUTS = ("folders", "real_mean", "sidd")
_NOISY_FOLDERS = ("noisy", "Noisy", "NOISY", "input", "real", "lq", "LQ")
_CLEAN_FOLDERS = ("clean", "Clean", "GT", "gt", "target", "groundtruth", "mean", "reference")
_REAL_MEAN = re.compile(r"^(?P<name>.*?)[_-]?(?P<role>real|mean)$", re.IGNORECASE)


def find_image_pairs(root: str | Path, layout: str = "auto") -> tuple[str, list[ImagePair]]:
    """Pair the noisy and clean files of a folder.

    Layouts:

    * ``"folders"``: ``root/noisy/`` and ``root/clean/`` (also ``input``/``real``/``lq`` and
      ``GT``/``gt``/``target``/``mean``, as in the reference's ``SIDD_test_PNG/{noisy,GT}``),
      files matched by relative path without suffix, sub-folders included.
    * ``"real_mean"``: CC and PolyU, ``<name>_real.<ext>`` (noisy) next to ``<name>_mean.<ext>``
      (clean), case-insensitive; other files in the folder are ignored.
    * ``"sidd"``: SIDD-Medium style, recursive; a file with ``NOISY`` in its name pairs with the
      same path with ``GT`` instead.
    * ``"auto"``: ``folders`` if such sub-folders exist, else ``real_mean`` if ``*_real`` files
      exist, else ``sidd`` if ``*NOISY*`` files exist.

    Returns:
        ``(layout, pairs)``, pairs sorted by name.

    Raises:
        DatasetNotFoundError: ``root`` is not a folder.
        DatasetError: unknown/undetectable layout, no pairs, or unpaired files (the message lists
            each noisy file without a clean one and vice versa, by name).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"{root}: paired dataset folder not found")
    if layout == "auto":
        layout = _detect_layout(root)
    if layout == "folders":
        pairs = _pairs_from_folders(root)
    elif layout in ("real_mean", "cc", "polyu"):
        layout, pairs = "real_mean", _pairs_from_real_mean(root)
    elif layout == "sidd":
        pairs = _pairs_from_sidd(root)
    else:
        raise DatasetError(
            f"{root}: unknown paired layout {layout!r}; valid: auto, {', '.join(PAIR_LAYOUTS)}"
        )
    if not pairs:
        raise DatasetError(f"{root}: no noisy/clean pairs found (layout {layout!r})")
    return layout, sorted(pairs, key=lambda pair: pair.name)


def _find_subfolder(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _detect_layout(root: Path) -> str:
    if _find_subfolder(root, _NOISY_FOLDERS) and _find_subfolder(root, _CLEAN_FOLDERS):
        return "folders"
    files = list_image_files(root)
    if any(_REAL_MEAN.match(path.stem) for path in files):
        return "real_mean"
    if any("NOISY" in path.name for path in list_image_files(root, recursive=True)):
        return "sidd"
    raise DatasetError(
        f"{root}: cannot tell the paired layout: expected noisy/ + clean/ (or GT/) sub-folders, "
        "<name>_real / <name>_mean files (CC, PolyU), or *NOISY* / *GT* files (SIDD)"
    )


def _unpaired_error(root: Path, noisy_only: list[str], clean_only: list[str]) -> DatasetError:
    parts = []
    if noisy_only:
        parts.append(f"noisy without clean: {', '.join(noisy_only[:20])}")
    if clean_only:
        parts.append(f"clean without noisy: {', '.join(clean_only[:20])}")
    count = len(noisy_only) + len(clean_only)
    return DatasetError(f"{root}: {count} unpaired file(s): {'; '.join(parts)}")


def _pairs_from_folders(root: Path) -> list[ImagePair]:
    noisy_dir = _find_subfolder(root, _NOISY_FOLDERS)
    clean_dir = _find_subfolder(root, _CLEAN_FOLDERS)
    if noisy_dir is None or clean_dir is None:
        raise DatasetError(
            f"{root}: expected sub-folders {_NOISY_FOLDERS[0]}/ and {_CLEAN_FOLDERS[0]}/ "
            f"(or one of {', '.join(_NOISY_FOLDERS)} / {', '.join(_CLEAN_FOLDERS)})"
        )

    def keyed(folder: Path) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for path in list_image_files(folder, recursive=True):
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in files:
                raise DatasetError(
                    f"{folder}: {files[key].name} and {path.name} have the same name; "
                    "pairs are matched by name, keep one"
                )
            files[key] = path
        return files

    noisy, clean = keyed(noisy_dir), keyed(clean_dir)
    if set(noisy) != set(clean):
        raise _unpaired_error(
            root, sorted(set(noisy) - set(clean)), sorted(set(clean) - set(noisy))
        )
    return [ImagePair(key, noisy[key], clean[key]) for key in noisy]


def _real_mean_key(stem: str) -> tuple[str, str] | None:
    """``(name, "real" | "mean")`` of a CC / PolyU file stem (``<name>_real``), else None."""
    match = _REAL_MEAN.match(stem)
    return (match["name"], match["role"].lower()) if match else None


def find_reference(relative: str | Path, reference_dir: str | Path) -> Path | None:
    """The clean counterpart in ``reference_dir`` of the noisy file ``relative``, paired by the
    rules of :func:`find_image_pairs`.

    ``relative`` is the noisy file's path relative to its input folder; the counterpart is looked
    for in the same sub-folder of ``reference_dir``: ``<name>_mean.*`` for ``<name>_real.*`` (CC,
    PolyU; case-insensitive), the name with ``GT`` for ``NOISY`` (SIDD), else the same relative
    path, else the same stem with another suffix.

    Returns:
        The reference file, or None when there is none.
    """
    relative = Path(relative)
    folder = Path(reference_dir) / relative.parent
    if not folder.is_dir():
        return None
    files = list_image_files(folder)
    key = _real_mean_key(relative.stem)
    if key is not None and key[1] == "real":
        for path in files:
            if _real_mean_key(path.stem) == (key[0], "mean"):
                return path
    if "NOISY" in relative.name:
        wanted = Path(relative.name.replace("NOISY", "GT")).stem
        for path in files:
            if path.stem == wanted:
                return path
    exact = Path(reference_dir) / relative
    if exact.is_file():
        return exact
    return next((path for path in files if path.stem == relative.stem), None)


def _pairs_from_real_mean(root: Path) -> list[ImagePair]:
    noisy: dict[str, Path] = {}
    clean: dict[str, Path] = {}
    for path in list_image_files(root):
        key = _real_mean_key(path.stem)
        if key is None:
            continue
        target = noisy if key[1] == "real" else clean
        target[key[0]] = path
    if set(noisy) != set(clean):
        raise _unpaired_error(
            root,
            [noisy[name].name for name in sorted(set(noisy) - set(clean))],
            [clean[name].name for name in sorted(set(clean) - set(noisy))],
        )
    return [ImagePair(name, noisy[name], clean[name]) for name in noisy]


def _pairs_from_sidd(root: Path) -> list[ImagePair]:
    files = list_image_files(root, recursive=True)
    by_relative = {path.relative_to(root).as_posix(): path for path in files}
    pairs: list[ImagePair] = []
    noisy_only: list[str] = []
    paired_clean: set[str] = set()
    for relative, path in by_relative.items():
        if "NOISY" not in path.name:
            continue
        clean_relative = (Path(relative).parent / path.name.replace("NOISY", "GT")).as_posix()
        if clean_relative not in by_relative:
            noisy_only.append(relative)
            continue
        paired_clean.add(clean_relative)
        name = Path(relative).with_suffix("").as_posix().replace("_NOISY", "").replace("NOISY", "")
        pairs.append(ImagePair(name, path, by_relative[clean_relative]))
    clean_only = [
        relative
        for relative, path in by_relative.items()
        if "GT" in path.name and relative not in paired_clean
    ]
    if noisy_only or clean_only:
        raise _unpaired_error(root, noisy_only, clean_only)
    return pairs


class PairedImageDataset(_TorchDataset):
    """Noisy/clean pairs (real noise: CC, PolyU, SIDD, or your own folders).

    Items are ``(name, noisy, clean)`` with ``(H, W, channels)`` float32 arrays in [0, 1]. See
    :func:`find_image_pairs` for the layouts. Files are checked (header) when the dataset is
    built; ``verify=True`` also decodes them.

    Args:
        root: the folder.
        layout: ``"auto"``, ``"folders"``, ``"real_mean"`` (CC/PolyU) or ``"sidd"``.
        channels: 1 or 3; conversion as in :class:`ImageFolderDataset`.
        skip_bad: drop pairs with an unreadable file (warning lists them) instead of raising.
        verify: fully decode every file now; ``None`` means ``skip_bad``.

    Raises:
        DatasetNotFoundError, DatasetError: see :func:`find_image_pairs`.
        ImageReadError: a bad file (named) when ``skip_bad`` is false; a pair whose noisy and
            clean images differ in size (both named) when read.
    """

    def __init__(
        self,
        root: str | Path,
        layout: str = "auto",
        channels: int = 3,
        skip_bad: bool = False,
        *,
        verify: bool | None = None,
    ) -> None:
        self.root = Path(root)
        self.layout, pairs = find_image_pairs(self.root, layout)
        self._init_from_pairs(pairs, channels, skip_bad, verify)

    @classmethod
    def from_pairs(
        cls,
        pairs: Iterable[ImagePair],
        channels: int = 3,
        skip_bad: bool = False,
        *,
        verify: bool | None = None,
    ) -> PairedImageDataset:
        """A dataset over explicit :class:`ImagePair` entries (kept in order)."""
        dataset = cls.__new__(cls)
        pairs = list(pairs)
        if not pairs:
            raise DatasetError("no image pairs given")
        dataset.root = Path(os.path.commonpath([str(pair.noisy.parent) for pair in pairs]))
        dataset.layout = "pairs"
        dataset._init_from_pairs(pairs, channels, skip_bad, verify)
        return dataset

    def _init_from_pairs(
        self, pairs: list[ImagePair], channels: int, skip_bad: bool, verify: bool | None
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels
        verify = skip_bad if verify is None else verify
        kept: list[ImagePair] = []
        problems: list[tuple[Path, str]] = []
        for pair in pairs:
            problem = None
            for path in (pair.noisy, pair.clean):
                _, problem = _probe_image(path)
                if problem is None and verify:
                    try:
                        read_image(path)
                    except ImageReadError as error:
                        problem = _strip_path(str(error), path)
                if problem is not None:
                    if not skip_bad:
                        raise ImageReadError(f"{path}: {problem}")
                    problems.append((path, f"pair {pair.name!r}: {problem}"))
                    break
            if problem is None:
                kept.append(pair)
        self.skipped: list[tuple[Path, str]] = problems
        if problems:
            warnings.warn(
                f"{self.root}: skipped {len(problems)} pair(s) with an unreadable file: "
                f"{_format_problems(problems)}",
                SkippedImagesWarning,
                stacklevel=3,
            )
        if not kept:
            raise DatasetError(f"{self.root}: none of the {len(pairs)} pairs could be read")
        self.pairs: list[ImagePair] = kept

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        pair = self.pairs[index]
        noisy = convert_channels(read_image(pair.noisy), self.channels)
        clean = convert_channels(read_image(pair.clean), self.channels)
        if noisy.shape != clean.shape:
            raise ImageReadError(
                f"{pair.noisy}: size {noisy.shape[1]}x{noisy.shape[0]} differs from its clean "
                f"image {pair.clean} ({clean.shape[1]}x{clean.shape[0]})"
            )
        return (
            pair.name,
            np.ascontiguousarray(noisy, dtype=np.float32),
            np.ascontiguousarray(clean, dtype=np.float32),
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, layout={self.layout!r}, "
            f"pairs={len(self)}, channels={self.channels})"
        )


SIDD_VALIDATION_FILES = ("ValidationNoisyBlocksSrgb.mat", "ValidationGtBlocksSrgb.mat")


class SIDDBlocksDataset(_TorchDataset):
    """The SIDD validation set as distributed: ``ValidationNoisyBlocksSrgb.mat`` and
    ``ValidationGtBlocksSrgb.mat`` (40 images × 32 blocks of 256×256 sRGB, uint8).

    Items are ``(name, noisy, clean)`` like :class:`PairedImageDataset`, name
    ``"<image>_<block>"`` counted from 1 (``"01_01"`` … ``"40_32"``), arrays ``(256, 256, 3)``
    float32 in [0, 1]. Both files are loaded into memory (about 250 MB each as uint8).

    Args:
        root: the folder holding the two ``.mat`` files.
        channels: 3, or 1 for BT.601 luma.

    Raises:
        DatasetNotFoundError: a file is missing (named).
        DatasetError: a file lacks the expected array, or the two differ in shape (named).
    """

    def __init__(self, root: str | Path, channels: int = 3) -> None:
        self.root = Path(root)
        self.channels = channels
        noisy_path, clean_path = (self.root / name for name in SIDD_VALIDATION_FILES)
        self.noisy = _load_mat_blocks(noisy_path, "ValidationNoisyBlocksSrgb")
        self.clean = _load_mat_blocks(clean_path, "ValidationGtBlocksSrgb")
        if self.noisy.shape != self.clean.shape:
            raise DatasetError(
                f"{noisy_path}: blocks {self.noisy.shape} differ from {clean_path} "
                f"{self.clean.shape}"
            )
        self.num_images, self.num_blocks = self.noisy.shape[:2]

    def __len__(self) -> int:
        return self.num_images * self.num_blocks

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"block index {index} out of range for {len(self)} blocks")
        image, block = divmod(index, self.num_blocks)
        name = f"{image + 1:02d}_{block + 1:02d}"
        noisy = self.noisy[image, block].astype(np.float32) / 255.0
        clean = self.clean[image, block].astype(np.float32) / 255.0
        return (
            name,
            convert_channels(noisy, self.channels),
            convert_channels(clean, self.channels),
        )


def _load_mat_blocks(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: SIDD validation file not found")
    try:
        content = loadmat(str(path))
    except NotImplementedError as error:  # MATLAB v7.3 (HDF5) files
        raise DatasetError(
            f"{path}: MATLAB v7.3 file, which scipy cannot read; re-save it with "
            f"save('-v7') or convert the blocks to PNG folders noisy/ + GT/ ({error})"
        ) from error
    except (MatReadError, ValueError, OSError) as error:
        raise DatasetError(f"{path}: not a readable .mat file ({error})") from error
    if key not in content:
        found = ", ".join(name for name in content if not name.startswith("__"))
        raise DatasetError(f"{path}: no array {key!r} (found: {found or 'none'})")
    blocks = np.asarray(content[key])
    if blocks.ndim != 5 or blocks.shape[-1] != 3:
        raise DatasetError(
            f"{path}: {key} has shape {blocks.shape}, expected (images, blocks, H, W, 3)"
        )
    return blocks


# --------------------------------------------------------------------------------------------
# Benchmark sets by name
# --------------------------------------------------------------------------------------------


_GITHUB_RAW = "https://raw.githubusercontent.com"
_FFDNET = f"{_GITHUB_RAW}/cszn/FFDNet/e787f46df2f374ff3591186706229cb9a0591fea/"


@dataclass(frozen=True)
class BenchmarkInfo:
    """A benchmark set: where it lives under a data root, where to get it, how to check it.

    Attributes:
        name: canonical lower-case name (``kodak24``).
        folders: accepted folder names under the data root, first is the canonical one (where
            ``clipdenoise data download`` / ``import`` put it).
        kind: ``"clean"`` (clean images, noise is synthesised), ``"paired"`` (real noisy/clean),
            ``"noisy"`` (real noise, no reference) or ``"ct"`` (low/normal-dose CT slices).
        channels: 3 colour, 1 grey.
        description: one line.
        source: where the set can be obtained (canonical source, for people).
        aliases: other accepted names.
        label: the name in result tables (``Kodak24``, ``CC``); defaults to ``folders[0]``.
        count: how many files the set has (its manifest's rows when it has one).
        download: how ``clipdenoise data download`` gets it: ``"files"`` (each manifest row's
            ``source`` path appended to ``origin``, a pinned repository snapshot), ``"archive"``
            (the zip at ``origin``, whose ``source`` members are extracted) or ``"manual"``
            (instructions; ``clipdenoise data import NAME --from DIR`` afterwards).
        origin: base URL (``"files"``) or archive URL (``"archive"``).
    """

    name: str
    folders: tuple[str, ...]
    kind: str
    channels: int
    description: str
    source: str
    aliases: tuple[str, ...] = ()
    label: str = ""
    count: int | None = None
    download: str = "manual"
    origin: str = ""

    @property
    def display_name(self) -> str:
        return self.label or self.folders[0]


BENCHMARKS: dict[str, BenchmarkInfo] = {
    info.name: info
    for info in (
        BenchmarkInfo(
            "kodak24",
            ("Kodak24", "Kodak", "kodak24", "kodak", "Set24"),
            "clean",
            3,
            "24 colour photos, 768x512 (synthetic-noise test set)",
            "https://r0k.us/graphics/kodak/ (PNG copy: github cszn/IRCNN testsets/Set24)",
            ("kodak", "set24"),
            count=24,
            download="files",
            origin=f"{_GITHUB_RAW}/cszn/IRCNN/d9dcd537bdac3ae5b753296cd675db8a303c8f72/",
        ),
        BenchmarkInfo(
            "cbsd68",
            ("CBSD68", "cbsd68"),
            "clean",
            3,
            "68 colour BSDS300 test images, 481x321 (synthetic-noise test set)",
            "https://github.com/cszn/FFDNet (testsets/CBSD68)",
            count=68,
            download="files",
            origin=_FFDNET,
        ),
        BenchmarkInfo(
            "mcmaster",
            ("McMaster", "McM", "mcmaster", "MCM"),
            "clean",
            3,
            "18 colour images, 500x500 (synthetic-noise test set)",
            "https://www4.comp.polyu.edu.hk/~cslzhang/CDM_Dataset.htm "
            "(also cszn/FFDNet testsets/McMaster)",
            ("mcm", "mcmaster18"),
            count=18,
            download="files",
            origin=_FFDNET,
        ),
        BenchmarkInfo(
            "urban100",
            ("Urban100", "urban100", "Urban100/HR"),
            "clean",
            3,
            "100 colour urban scenes (synthetic-noise test set)",
            "https://github.com/jbhuang0604/SelfExSR (Urban100 HR images; the project page "
            "links the archive)",
            ("urban",),
            count=100,
        ),
        BenchmarkInfo(
            "cbsd432",
            ("CBSD432", "cbsd432", "CBSD400"),
            "clean",
            3,
            "432 colour BSDS500 images minus CBSD68 (the paper's training set)",
            "BSDS500, https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
            "resources.html (train+val+test minus CBSD68; the original JPEGs, as in github "
            "Magauiya/Extended_SURE Dataset/CBSD432)",
            count=432,
            download="files",
            origin=f"{_GITHUB_RAW}/Magauiya/Extended_SURE/1bcec3b61d7c3687f0fc906d684cc7d29e59aab4/",
        ),
        BenchmarkInfo(
            "set12",
            ("Set12", "set12"),
            "clean",
            1,
            "12 grey images, 256x256 / 512x512",
            "https://github.com/cszn/FFDNet (testsets/Set12)",
            count=12,
            download="files",
            origin=_FFDNET,
        ),
        BenchmarkInfo(
            "bsd68",
            ("BSD68", "bsd68"),
            "clean",
            1,
            "68 grey BSDS300 test images",
            "https://github.com/cszn/FFDNet (testsets/BSD68)",
            count=68,
            download="files",
            origin=_FFDNET,
        ),
        BenchmarkInfo(
            "cc",
            ("CC15", "CC", "cc", "cc15"),
            "paired",
            3,
            "15 real noisy/mean pairs, 512x512 (Nam et al. 2016)",
            "https://github.com/csjunxu/MCWNNM-ICCV2017 (Real_ccnoise_denoised_part, *_real / "
            "*_mean; non-commercial licence, kept as LICENSE.txt)",
            ("cc15",),
            label="CC",
            count=31,
            download="files",
            origin=f"{_GITHUB_RAW}/csjunxu/MCWNNM-ICCV2017/e6db69b01ff21e89461cc49893c89afb1a9a941c/",
        ),
        BenchmarkInfo(
            "polyu",
            ("PolyU", "polyu", "PolyU100"),
            "paired",
            3,
            "100 real noisy/mean crops, 512x512 (Xu et al. 2018)",
            "https://github.com/csjunxu/PolyU-Real-World-Noisy-Images-Dataset (CroppedImages; "
            "licence kept as LICENSE.txt)",
            count=201,
            download="files",
            origin=f"{_GITHUB_RAW}/csjunxu/PolyU-Real-World-Noisy-Images-Dataset/"
            "3af0f2646b267a00446fe4b7113a15e67bc80b4e/",
        ),
        BenchmarkInfo(
            "sidd",
            ("SIDD", "SIDD_val", "SIDD_test_PNG", "SSID/SIDD_test_PNG", "sidd"),
            "paired",
            3,
            "SIDD validation: the .mat blocks, PNG folders noisy/ + GT/, or SIDD-Medium "
            "(*NOISY* / *GT*)",
            "https://abdokamel.github.io/sidd/ (SIDD Validation Data and Ground Truth: 'Noisy "
            "sRGB data' and 'Ground-truth sRGB data', ValidationNoisyBlocksSrgb.mat and "
            "ValidationGtBlocksSrgb.mat)",
            ("sidd_val", "sidd_validation", "ssid/sidd_test_png"),
            count=2,
        ),
        BenchmarkInfo(
            "div2k",
            ("DIV2K", "DIV2K_train_HR", "div2k"),
            "clean",
            3,
            "800 2K training images (the paper's sRGB training source)",
            "https://data.vision.ee.ethz.ch/cvl/DIV2K/ (DIV2K_train_HR.zip)",
            count=800,
            download="archive",
            origin="http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        ),
        BenchmarkInfo(
            "rni6",
            ("RNI6", "rni6"),
            "noisy",
            1,
            "6 grey real noisy images without reference",
            "https://github.com/cszn/FFDNet (testsets/RNI6)",
            count=6,
            download="files",
            origin=_FFDNET,
        ),
        BenchmarkInfo(
            "rni15",
            ("RNI15", "rni15"),
            "noisy",
            3,
            "15 colour real noisy images without reference",
            "https://github.com/cszn/FFDNet (testsets/RNI15)",
            count=15,
            download="files",
            origin=_FFDNET,
        ),
        BenchmarkInfo(
            "ldct",
            ("ldct", "Mayo", "mayo", "AAPM", "LDCT"),
            "ct",
            1,
            "low/normal-dose CT slices of the Mayo / AAPM challenge (held-out patient L506)",
            "AAPM Low Dose CT Grand Challenge via TCIA (not redistributable; convert the DICOM "
            "release with `clipdenoise synth mayo`)",
            ("mayo", "aapm"),
            label="ldct",
        ),
    )
}


def benchmark_info(name: str) -> BenchmarkInfo:
    """The :class:`BenchmarkInfo` of a set name or alias (case-insensitive, ``-`` = ``_``).

    Raises:
        DatasetNotFoundError: an unknown name; the message lists the known ones.
    """
    key = name.strip().lower().replace("-", "_")
    for info in BENCHMARKS.values():
        if key == info.name or key in info.aliases:
            return info
    raise DatasetNotFoundError(
        f"unknown benchmark set {name!r}; known sets: {', '.join(BENCHMARKS)} "
        "(or pass a folder path)"
    )


def default_data_root(data_root: str | Path | None = None) -> Path:
    """``data_root`` if given, else ``$CLIPDENOISE_DATA``, else ``<cache>/data`` (the folder
    ``clipdenoise data download`` fills; ``~/.cache/clipdenoise/data`` unless
    ``$CLIPDENOISE_CACHE`` or ``$XDG_CACHE_HOME`` say otherwise)."""
    if data_root is not None:
        return Path(data_root).expanduser()
    value = os.environ.get(DATA_ROOT_ENV)
    if value:
        return Path(value).expanduser()
    from clipdenoise.weights import default_cache_dir

    return default_cache_dir() / "data"


def resolve_dataset_dir(name: str | Path, data_root: str | Path | None = None) -> Path:
    """The folder of a benchmark set under the data root.

    ``name`` is a set name or alias (``kodak24``, ``CBSD68``, ``cc``, ``McM``, ...; see
    :data:`BENCHMARKS`) looked up as one of its folder names under ``data_root`` (or
    ``$CLIPDENOISE_DATA``); a path to an existing folder is returned as is.

    Raises:
        DatasetNotFoundError: no data root, or the set's folder is missing; the message names
            the expected folder and where the set can be obtained.
    """
    candidate = Path(name).expanduser()
    if candidate.is_dir() and (candidate.is_absolute() or len(candidate.parts) > 1):
        return candidate
    try:
        info = benchmark_info(str(name))
    except DatasetNotFoundError:
        if candidate.is_dir():
            return candidate
        raise
    root = default_data_root(data_root)
    for folder in info.folders:
        if (root / folder).is_dir():
            return root / folder
    raise DatasetNotFoundError(
        f"benchmark set {info.name!r} not found: expected the folder {root / info.folders[0]} "
        f"(also accepted: {', '.join(info.folders[1:]) or 'none'}; another data root: "
        f"--data-root or ${DATA_ROOT_ENV}); {obtain_hint(info)}"
    )


def obtain_hint(info: BenchmarkInfo) -> str:
    """How to get a set into the data root: the ``clipdenoise data`` command and its source."""
    if info.download == "manual":
        return f"get it from {info.source}, then `clipdenoise data import {info.name} --from DIR`"
    return (
        f"get it with `clipdenoise data download {info.name}` (source: {info.source}), or "
        f"`clipdenoise data import {info.name} --from DIR`"
    )


def open_benchmark(
    name: str | Path,
    data_root: str | Path | None = None,
    channels: int | None = None,
    *,
    skip_bad: bool = False,
) -> ImageFolderDataset | PairedImageDataset | SIDDBlocksDataset:
    """The dataset of a benchmark set: an :class:`ImageFolderDataset` for clean and noisy-only
    sets, a :class:`PairedImageDataset` for paired ones (``cc``, ``polyu``, ``sidd``), or a
    :class:`SIDDBlocksDataset` for a folder holding SIDD's validation ``.mat`` files.

    Args:
        name: set name, alias or folder path (a folder path is opened as clean images unless it
            holds a recognisable paired layout).
        data_root: see :func:`resolve_dataset_dir`.
        channels: channels to return; ``None`` uses the set's own (3, or 1 for Set12 / BSD68).
        skip_bad: skip unreadable files with a warning.
    """
    folder = resolve_dataset_dir(name, data_root)
    try:
        info: BenchmarkInfo | None = benchmark_info(str(name))
    except DatasetNotFoundError:
        info = None
    channels = channels or (info.channels if info else 3)
    if (folder / SIDD_VALIDATION_FILES[0]).is_file():
        return SIDDBlocksDataset(folder, channels=channels)
    if info is not None and info.kind == "paired":
        return PairedImageDataset(folder, channels=channels, skip_bad=skip_bad)
    if info is None:
        try:
            return PairedImageDataset(folder, channels=channels, skip_bad=skip_bad)
        except DatasetError:
            pass
    return ImageFolderDataset(folder, channels=channels, skip_bad=skip_bad)


__all__ = [
    "BENCHMARKS",
    "DATA_ROOT_ENV",
    "BenchmarkInfo",
    "ChannelConversionWarning",
    "ImageFolderDataset",
    "ImagePair",
    "NoiseSynthesizer",
    "PairedImageDataset",
    "PatchDataset",
    "SIDDBlocksDataset",
    "SkippedImagesWarning",
    "augment_geometry",
    "benchmark_info",
    "obtain_hint",
    "compact_image",
    "convert_channels",
    "default_data_root",
    "expand_image",
    "find_image_pairs",
    "find_reference",
    "list_image_files",
    "open_benchmark",
    "pad_to_size",
    "require_image_files",
    "resolve_dataset_dir",
]
