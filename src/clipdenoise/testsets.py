"""Benchmark test sets on disk: where they are, which files pair up, how items are read.

A :class:`TestSet` is a named, sorted list of :class:`TestImage` items: clean images for the
synthetic suite, noisy/clean pairs for real sRGB noise (``*_real``/``*_mean`` as CC and PolyU,
``*_NOISY``/``*_GT``, or ``noisy/`` + ``GT/`` folders as SIDD), or low-dose/full-dose CT slices of
one held-out patient. Folders are found through the data module's benchmark registry
(:data:`clipdenoise.data.BENCHMARKS`, :func:`clipdenoise.data.resolve_dataset_dir`) under
``--data-root`` / ``$CLIPDENOISE_DATA`` / the default data root; any folder path works too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipdenoise.errors import ClipDenoiseError, ConfigError
from clipdenoise.image_io import IMAGE_SUFFIXES

__all__ = [
    "DATASET_ALIASES",
    "LDCT_TEST_PATIENT",
    "REAL_SRGB_DATASETS",
    "SUITES",
    "SYNTHETIC_DATASETS",
    "EvaluationError",
    "TestImage",
    "TestSet",
    "image_size",
    "list_test_set",
    "read_clean",
    "read_noisy",
    "resolve_dataset_folder",
]

SUITES = ("synthetic", "real-srgb", "ldct")
SYNTHETIC_DATASETS = ("Kodak24", "CBSD68", "McMaster", "Urban100")
REAL_SRGB_DATASETS = ("CC", "PolyU", "SIDD")
LDCT_TEST_PATIENT = "L506"


def _aliases() -> dict[str, tuple[str, ...]]:
    from clipdenoise.data import BENCHMARKS

    return {
        info.display_name: tuple(dict.fromkeys((*info.folders, *info.aliases, info.name)))
        for info in BENCHMARKS.values()
    }


#: Table label -> every other name the set goes by, derived from the one registry
#: (:data:`clipdenoise.data.BENCHMARKS`).
DATASET_ALIASES: dict[str, tuple[str, ...]] = _aliases()


class EvaluationError(ClipDenoiseError, RuntimeError):
    """An evaluation cannot run as asked (no data found, nothing to evaluate...)."""


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


def data_roots(data_root: str | Path | None) -> list[Path]:
    """Where datasets are looked up: ``data_root``, then ``$CLIPDENOISE_DATA`` (or the default
    data root, :func:`clipdenoise.data.default_data_root`)."""
    from clipdenoise.data import default_data_root

    roots = []
    if data_root is not None:
        roots.append(Path(data_root).expanduser())
    roots.append(default_data_root())
    return list(dict.fromkeys(roots))


def resolve_dataset_folder(name: str | Path, data_root: str | Path | None = None) -> Path:
    """Find a test set folder: an existing path, or ``name`` (or an alias) under the data root.

    Raises:
        EvaluationError: Nothing found; the message lists where it looked.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    registry_error: Exception | None = None
    try:  # the data module's registry knows every benchmark's folder names and sources
        from clipdenoise.data import resolve_dataset_dir

        return Path(resolve_dataset_dir(str(name), data_root))
    except ImportError:
        pass
    except (ClipDenoiseError, FileNotFoundError, KeyError, ValueError) as error:
        registry_error = error
    candidates = [str(name)]
    for canonical, aliases in DATASET_ALIASES.items():
        if str(name) == canonical or str(name) in aliases:
            candidates = [canonical, *aliases]
    tried = []
    for root in data_roots(data_root):
        for candidate in candidates:
            folder = root / candidate
            tried.append(str(folder))
            if folder.is_dir():
                return folder
    hint = ", ".join(tried) if tried else "no data root given (--data-root or $CLIPDENOISE_DATA)"
    detail = f" ({registry_error})" if registry_error is not None else ""
    raise EvaluationError(f"dataset {str(name)!r} not found; looked in: {hint}{detail}")


def _dataset_label(name: str | Path) -> str:
    from clipdenoise.data import benchmark_info
    from clipdenoise.errors import DatasetNotFoundError

    text = str(name)
    try:
        return benchmark_info(text).display_name
    except DatasetNotFoundError:
        pass
    for canonical, aliases in DATASET_ALIASES.items():
        if text == canonical or text in aliases:
            return canonical
    return Path(text).name or text


def _list_images(folder: Path) -> list[Path]:
    from clipdenoise.data import list_image_files

    return list_image_files(folder, what="test set")


def _list_real_pairs(folder: Path) -> list[TestImage]:
    """Noisy/clean pairs of a real-noise set (CC/PolyU ``*_real``/``*_mean``, SIDD
    ``*NOISY*``/``*GT*``, or ``noisy/`` + ``GT/`` folders), as the datasets module pairs them."""
    from clipdenoise.data import find_image_pairs
    from clipdenoise.errors import DatasetError

    try:
        _, pairs = find_image_pairs(folder)
    except DatasetError as error:
        raise EvaluationError(str(error)) from error
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
            raise EvaluationError(f"{noisy}: no full-dose slice {target.name} beside it")
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

    Raises:
        EvaluationError: The folder is missing or holds no usable images / pairs.
    """
    folder = resolve_dataset_folder(name, data_root)
    label = _dataset_label(name)
    if suite == "synthetic":
        images = [TestImage(p.stem, p) for p in _list_images(folder)]
        test_set = TestSet(label, images, folder=folder)
    elif suite == "real-srgb":
        test_set = TestSet(label, _list_real_pairs(folder), real_noise=True, folder=folder)
    elif suite == "ldct":
        items = _list_ct_pairs(folder, ct_patient)
        test_set = TestSet(label, items, real_noise=True, modality="ct", folder=folder)
    else:
        raise ConfigError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    if not test_set.images:
        expected = {
            "synthetic": f"image files ({', '.join(IMAGE_SUFFIXES)})",
            "real-srgb": "noisy/clean pairs (*_real/*_mean, *_NOISY/*_GT, or noisy/ + GT/)",
            "ldct": f"'*input*.npy' / '*target*.npy' slices of patient {ct_patient}",
        }[suite]
        raise EvaluationError(f"{folder}: no {expected} found for dataset {label!r}")
    return test_set


def read_clean(item: TestImage, test_set: TestSet) -> np.ndarray:
    """The clean image of an item: ``(H, W, C)`` float32 in [0, 1] (CT: model units)."""
    if test_set.modality == "ct":
        return read_ct_slice(item.clean_path)
    from clipdenoise.image_io import read_image

    return read_image(item.clean_path)


def read_ct_slice(path: Path) -> np.ndarray:
    """A ``.npy`` CT slice as ``(H, W, 1)`` float32 model units."""
    try:
        array = np.load(path)
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{path}: cannot read CT slice ({error})") from error
    if array.ndim != 2:
        raise EvaluationError(f"{path}: expected a 2-D slice, got shape {array.shape}")
    return array.astype(np.float32)[..., None]


def read_noisy(item: TestImage, test_set: TestSet) -> np.ndarray:
    """The noisy counterpart of an item of a real-noise set, as :func:`read_clean`."""
    assert item.noisy_path is not None
    if test_set.modality == "ct":
        return read_ct_slice(item.noisy_path)
    from clipdenoise.image_io import read_image

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
