"""Benchmark test items for the evaluation harness: which files a test set holds, how they are read.

A :class:`TestSet` is a named, sorted list of :class:`TestImage` items: clean images for the
synthetic suite, noisy/clean pairs for real sRGB noise (``*_real``/``*_mean`` as CC and PolyU,
``*_NOISY``/``*_GT``, or ``noisy/`` + ``GT/`` folders as SIDD; paired by
:func:`~clipdenoise.data.pairs.find_image_pairs`), or low-dose/full-dose CT slices of one
held-out patient. Folders are found by the benchmark registry
(:func:`~clipdenoise.data.registry.resolve_dataset_dir`): a set name or alias under the data
root, or any folder path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipdenoise.ct import read_ct_model_units
from clipdenoise.data.folders import list_image_files
from clipdenoise.data.pairs import find_image_pairs
from clipdenoise.data.registry import benchmark_info, resolve_dataset_dir
from clipdenoise.errors import ConfigError, DatasetError, DatasetNotFoundError
from clipdenoise.image_io import IMAGE_SUFFIXES, read_image

__all__ = [
    "LDCT_TEST_PATIENT",
    "REAL_SRGB_DATASETS",
    "SUITES",
    "SYNTHETIC_DATASETS",
    "TestImage",
    "TestSet",
    "image_size",
    "list_test_set",
    "read_clean",
    "read_noisy",
]

SUITES = ("synthetic", "real-srgb", "ldct")
SYNTHETIC_DATASETS = ("Kodak24", "CBSD68", "McMaster", "Urban100")
REAL_SRGB_DATASETS = ("CC", "PolyU", "SIDD")
LDCT_TEST_PATIENT = "L506"


# --------------------------------------------------------------------------------------------
# Test sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestImage:
    """One test item: a clean image, and for real-noise sets its noisy counterpart."""

    name: str
    clean_path: Path
    noisy_path: Path | None = None


@dataclass
class TestSet:
    """A named list of test items; ``real_noise`` sets carry their own noisy images."""

    name: str
    images: list[TestImage]
    real_noise: bool = False
    modality: str = "srgb"  # or "ct"
    folder: Path | None = None
    full_identity: str = ""

    def __post_init__(self) -> None:
        if not self.full_identity:
            self.full_identity = self._hash_names()

    def _hash_names(self) -> str:
        names = "\n".join(item.name for item in self.images)
        return hashlib.sha256(names.encode()).hexdigest()[:12]

    def identity(self) -> str:
        """Hash of the item names of the whole set as listed (part of the cache key: a changed
        folder is a new entry; evaluating only its first images with ``max_images`` is not)."""
        return self.full_identity


def _dataset_label(name: str | Path) -> str:
    """The table label of a set: the registry's (``Kodak24``, ``CC``), else the folder name."""
    text = str(name)
    try:
        return benchmark_info(text).display_name
    except DatasetNotFoundError:
        return Path(text).name or text


def _list_real_pairs(folder: Path) -> list[TestImage]:
    """Noisy/clean pairs of a real-noise set (CC/PolyU ``*_real``/``*_mean``, SIDD
    ``*NOISY*``/``*GT*``, or ``noisy/`` + ``GT/`` folders), as :func:`find_image_pairs` pairs
    them."""
    _, pairs = find_image_pairs(folder)
    return [TestImage(pair.name, pair.clean, pair.noisy) for pair in pairs]


def _list_ct_pairs(folder: Path, patient: str) -> list[TestImage]:
    """``{patient}_{i}_input.npy`` / ``{patient}_{i}_target.npy`` pairs (RED-CNN's ``prep.py``
    layout the reference reads; ``clipdenoise synth mayo`` writes it from the DICOM release)."""
    pairs = []
    for noisy in sorted(folder.glob("*input*.npy")):
        if patient not in noisy.name:
            continue
        target = noisy.with_name(noisy.name.replace("input", "target"))
        if not target.is_file():
            raise DatasetError(f"{noisy}: no full-dose slice {target.name} beside it")
        pairs.append(TestImage(noisy.stem.replace("input", "").strip("_"), target, noisy))
    return pairs


def list_test_set(
    name: str | Path,
    suite: str = "synthetic",
    *,
    data_root: str | Path | None = None,
    ct_patient: str = LDCT_TEST_PATIENT,
) -> TestSet:
    """List the items of one test set of a suite.

    Args:
        name: A set name or alias (:data:`~clipdenoise.data.registry.BENCHMARKS`) or a folder.
        suite: ``"synthetic"``, ``"real-srgb"`` or ``"ldct"``.
        data_root: See :func:`~clipdenoise.data.registry.resolve_dataset_dir`.
        ct_patient: The held-out patient whose slices the ``ldct`` suite lists.

    Raises:
        DatasetNotFoundError: The folder is missing; the message names it and how to get the set.
        DatasetError: It holds no usable images / pairs (unpaired files are named).
        ConfigError: Unknown suite.
    """
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    folder = resolve_dataset_dir(name, data_root)
    label = _dataset_label(name)
    if suite == "synthetic":
        images = [TestImage(p.stem, p) for p in list_image_files(folder, what="test set")]
        test_set = TestSet(label, images, folder=folder)
    elif suite == "real-srgb":
        test_set = TestSet(label, _list_real_pairs(folder), real_noise=True, folder=folder)
    else:
        items = _list_ct_pairs(folder, ct_patient)
        test_set = TestSet(label, items, real_noise=True, modality="ct", folder=folder)
    if not test_set.images:
        expected = {
            "synthetic": f"image files ({', '.join(IMAGE_SUFFIXES)})",
            "real-srgb": "noisy/clean pairs (*_real/*_mean, *_NOISY/*_GT, or noisy/ + GT/)",
            "ldct": f"'*input*.npy' / '*target*.npy' slices of patient {ct_patient}",
        }[suite]
        raise DatasetError(f"{folder}: no {expected} found for dataset {label!r}")
    return test_set


def read_clean(item: TestImage, test_set: TestSet) -> np.ndarray:
    """The clean image of an item: ``(H, W, C)`` float32 in [0, 1] (CT: ``(H, W, 1)`` model
    units, :func:`clipdenoise.ct.read_ct_model_units`)."""
    if test_set.modality == "ct":
        return read_ct_model_units(item.clean_path)
    return read_image(item.clean_path)


def read_noisy(item: TestImage, test_set: TestSet) -> np.ndarray:
    """The noisy counterpart of an item of a real-noise set, as :func:`read_clean`."""
    if item.noisy_path is None:
        raise DatasetError(f"{item.clean_path}: test item {item.name!r} has no noisy image")
    if test_set.modality == "ct":
        return read_ct_model_units(item.noisy_path)
    return read_image(item.noisy_path)


def image_size(item: TestImage, test_set: TestSet) -> tuple[int, int]:
    """``(H, W)`` of an item without decoding it (``(-1, -1)`` when unreadable)."""
    if test_set.modality == "ct":
        return tuple(np.load(item.clean_path, mmap_mode="r").shape[:2])  # type: ignore[return-value]
    from PIL import Image

    try:
        with Image.open(item.clean_path) as image:
            width, height = image.size
            if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotation swaps sides
                width, height = height, width
            return height, width
    except OSError:
        return (-1, -1)  # unreadable: grouped alone, fails (and is reported) when read
