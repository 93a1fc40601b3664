"""Evaluation: any set of methods on the paper's benchmark suites, scored under one protocol.

* :mod:`~clipdenoise.evaluation.harness` — :func:`evaluate` (noise, restoration, scores, cache,
  tables) and :func:`restore_crops` (crops for a figure).
* :mod:`~clipdenoise.evaluation.protocol` — :class:`EvalProtocol`, every convention that moves a
  benchmark number.
* :mod:`~clipdenoise.evaluation.methods` — :func:`resolve_method`: method specs to modules.
* :mod:`~clipdenoise.evaluation.results` — per-image records, the resumable cache, the tables.
* :mod:`~clipdenoise.evaluation.plots` — figures (matplotlib, imported only when drawing).
"""

from __future__ import annotations

from clipdenoise.evaluation.harness import (
    LDCT_TEST_PATIENT,
    REAL_SRGB_DATASETS,
    SUITES,
    SYNTHETIC_DATASETS,
    SYNTHETIC_NOISE_KINDS,
    EvaluationError,
    TestImage,
    TestSet,
    default_noises,
    evaluate,
    list_test_set,
    make_noisy,
    restore_batch,
    restore_crops,
    score_pair,
)
from clipdenoise.evaluation.methods import ABLATIONS, CLASSICAL_METHODS, Method, resolve_method
from clipdenoise.evaluation.plots import plot_image_grid, plot_psnr_vs_level
from clipdenoise.evaluation.protocol import EvalProtocol
from clipdenoise.evaluation.results import (
    PER_IMAGE_COLUMNS,
    RESULTS_SCHEMA,
    Cell,
    ImageCrops,
    ImageRecord,
    ResultCache,
    ResultsTable,
    RowKey,
)

__all__ = [
    "ABLATIONS",
    "CLASSICAL_METHODS",
    "LDCT_TEST_PATIENT",
    "PER_IMAGE_COLUMNS",
    "REAL_SRGB_DATASETS",
    "RESULTS_SCHEMA",
    "SUITES",
    "SYNTHETIC_DATASETS",
    "SYNTHETIC_NOISE_KINDS",
    "Cell",
    "EvalProtocol",
    "EvaluationError",
    "ImageCrops",
    "ImageRecord",
    "Method",
    "ResultCache",
    "ResultsTable",
    "RowKey",
    "TestImage",
    "TestSet",
    "default_noises",
    "evaluate",
    "list_test_set",
    "make_noisy",
    "plot_image_grid",
    "plot_psnr_vs_level",
    "resolve_method",
    "restore_batch",
    "restore_crops",
    "score_pair",
]
