"""The benchmark registry: every set by name, where it lives under a data root, how to get it.

:data:`BENCHMARKS` is the one table of benchmark and training sets (``kodak24``, ``cbsd68``,
``cc``, ``sidd``, ``div2k``, ``ldct``, ...). A set is named by its canonical name, one of its
aliases or one of its folder names, case-insensitively (:func:`benchmark_info`), so ``Kodak``,
``Set24``, ``CC15``, ``McM`` and ``SIDD_test_PNG`` all work. :func:`resolve_dataset_dir` finds a
set's folder under the data root (:func:`default_data_root`: ``--data-root``, else
``$CLIPDENOISE_DATA``, else ``<cache>/data``) and fails with
:class:`~clipdenoise.errors.DatasetNotFoundError` naming the expected folder and how to obtain
the set (:func:`obtain_hint`). Training data, evaluation test sets and ``clipdenoise data``
all resolve sets here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clipdenoise.errors import DatasetError, DatasetNotFoundError
from clipdenoise.weights import default_cache_dir

DATA_ROOT_ENV = "CLIPDENOISE_DATA"

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

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the set is looked up by (lower case): canonical name, aliases, folders."""
        keys = (self.name, *self.aliases, *(folder.lower() for folder in self.folders))
        return tuple(dict.fromkeys(keys))


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
    """The :class:`BenchmarkInfo` of a set name, alias or folder name (case-insensitive,
    ``-`` = ``_``).

    Raises:
        DatasetNotFoundError: an unknown name; the message lists the known ones.
    """
    key = name.strip().lower().replace("-", "_")
    for info in BENCHMARKS.values():
        if key in info.names:
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
    return default_cache_dir() / "data"


def find_benchmark_folder(info: BenchmarkInfo, root: Path) -> Path | None:
    """The first of the set's accepted folders that exists under ``root``, or ``None``."""
    for folder in info.folders:
        if (root / folder).is_dir():
            return root / folder
    return None


def resolve_dataset_dir(name: str | Path, data_root: str | Path | None = None) -> Path:
    """The folder of a dataset: a folder path as is, or a benchmark set under the data root.

    Lookup order:

    * a path of several parts (or an absolute one) to an existing folder is returned as is;
    * a registered name (``kodak24``, ``CBSD68``, ``cc``, ``McM``, ...; see :data:`BENCHMARKS`)
      is looked up as each of its folder names under the data root (:func:`default_data_root`),
      then as a folder of that name in the current folder;
    * any other name is a folder in the current folder, or one under the data root.

    Raises:
        DatasetNotFoundError: nothing found. For a registered set the message names the expected
            folder and how to obtain the set; otherwise it says where it looked and lists the
            known sets.
    """
    candidate = Path(name).expanduser()
    if candidate.is_dir() and (candidate.is_absolute() or len(candidate.parts) > 1):
        return candidate
    root = default_data_root(data_root)
    try:
        info = benchmark_info(str(name))
    except DatasetNotFoundError:
        for folder in (candidate, root / candidate):
            if folder.is_dir():
                return folder
        raise DatasetNotFoundError(
            f"dataset {str(name)!r} not found: no folder {candidate} nor {root / candidate}, "
            f"and unknown benchmark set {str(name)!r} (known sets: {', '.join(BENCHMARKS)}; "
            "or pass a folder path)"
        ) from None
    found = find_benchmark_folder(info, root)
    if found is not None:
        return found
    if candidate.is_dir():
        return candidate
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


def source_hint(folder: str | Path) -> str:
    """``"; get it from <source>"`` when ``folder`` is named like a registered set, else ``""``
    (appended to errors about missing folders)."""
    try:
        return f"; get it from {benchmark_info(Path(folder).name).source}"
    except DatasetError:
        return ""


__all__ = [
    "BENCHMARKS",
    "DATA_ROOT_ENV",
    "BenchmarkInfo",
    "benchmark_info",
    "default_data_root",
    "find_benchmark_folder",
    "obtain_hint",
    "resolve_dataset_dir",
    "source_hint",
]
