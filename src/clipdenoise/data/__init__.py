"""Datasets: the benchmark registry, clean image folders, paired real-noise sets, evaluation
test sets, and getting/checking the benchmark sets on disk.

* :mod:`~clipdenoise.data.registry` — every set by name, its folder under the data root
  (``--data-root`` or ``$CLIPDENOISE_DATA``) and how to obtain it;
* :mod:`~clipdenoise.data.folders` — :class:`ImageFolderDataset` and the image helpers;
* :mod:`~clipdenoise.data.pairs` — :class:`PairedImageDataset`, :class:`SIDDBlocksDataset`;
* :mod:`~clipdenoise.data.testsets` — :class:`TestSet` items for the evaluation harness;
* :mod:`~clipdenoise.data.store` — ``clipdenoise data download / import / verify``.

The names below are re-exported here; the store is imported from its module.
"""

from __future__ import annotations

from clipdenoise.data.folders import (
    ChannelConversionWarning,
    ImageFolderDataset,
    SkippedImagesWarning,
    augment_geometry,
    compact_image,
    convert_channels,
    expand_image,
    list_image_files,
    pad_to_size,
    require_image_files,
)
from clipdenoise.data.pairs import (
    PAIR_LAYOUTS,
    SIDD_VALIDATION_FILES,
    ImagePair,
    PairedImageDataset,
    SIDDBlocksDataset,
    find_image_pairs,
    find_reference,
    open_benchmark,
)
from clipdenoise.data.registry import (
    BENCHMARKS,
    DATA_ROOT_ENV,
    BenchmarkInfo,
    benchmark_info,
    default_data_root,
    obtain_hint,
    resolve_dataset_dir,
)
from clipdenoise.data.testsets import (
    LDCT_TEST_PATIENT,
    REAL_SRGB_DATASETS,
    SUITES,
    SYNTHETIC_DATASETS,
    TestImage,
    TestSet,
    list_test_set,
)

__all__ = [
    "BENCHMARKS",
    "DATA_ROOT_ENV",
    "LDCT_TEST_PATIENT",
    "PAIR_LAYOUTS",
    "REAL_SRGB_DATASETS",
    "SIDD_VALIDATION_FILES",
    "SUITES",
    "SYNTHETIC_DATASETS",
    "BenchmarkInfo",
    "ChannelConversionWarning",
    "ImageFolderDataset",
    "ImagePair",
    "PairedImageDataset",
    "SIDDBlocksDataset",
    "SkippedImagesWarning",
    "TestImage",
    "TestSet",
    "augment_geometry",
    "benchmark_info",
    "compact_image",
    "convert_channels",
    "default_data_root",
    "expand_image",
    "find_image_pairs",
    "find_reference",
    "list_image_files",
    "list_test_set",
    "obtain_hint",
    "open_benchmark",
    "pad_to_size",
    "require_image_files",
    "resolve_dataset_dir",
]
