"""Paired real-noise sets: noisy/clean files paired by name, and SIDD's validation blocks.

* :func:`find_image_pairs` — pairs the files of a folder: CC and PolyU (``*_real`` /
  ``*_mean``), SIDD (``*NOISY*`` / ``*GT*``), and ``noisy/`` + ``clean/`` folders with matching
  names; :func:`find_reference` finds the clean counterpart of one noisy file by the same rules.
* :class:`PairedImageDataset` — the pairs as ``(name, noisy, clean)`` arrays;
  :class:`SIDDBlocksDataset` reads SIDD's validation ``.mat`` blocks.
* :func:`open_benchmark` — a registered set by name as the dataset its layout calls for.

Images are ``(H, W, C)`` float32 arrays in [0, 1], RGB.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from clipdenoise.data.folders import (
    ImageFolderDataset,
    check_image_file,
    convert_channels,
    list_image_files,
    warn_skipped,
)
from clipdenoise.data.registry import BenchmarkInfo, benchmark_info, resolve_dataset_dir
from clipdenoise.errors import DatasetError, DatasetNotFoundError, ImageReadError
from clipdenoise.image_io import read_image


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


class PairedImageDataset(Dataset):
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
                _, _, problem = check_image_file(path, verify)
                if problem is not None:
                    if not skip_bad:
                        raise ImageReadError(f"{path}: {problem}")
                    problems.append((path, f"pair {pair.name!r}: {problem}"))
                    break
            if problem is None:
                kept.append(pair)
        self.skipped: list[tuple[Path, str]] = problems
        warn_skipped(str(self.root), problems, "pair(s) with an unreadable file")
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


class SIDDBlocksDataset(Dataset):
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
    "PAIR_LAYOUTS",
    "SIDD_VALIDATION_FILES",
    "ImagePair",
    "PairedImageDataset",
    "SIDDBlocksDataset",
    "find_image_pairs",
    "find_reference",
    "open_benchmark",
]
