"""Tables of the analysis: CSV of every number and a JSON report, written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clipdenoise.analysis.invariance import SimilarityResult, SimilaritySummary
from clipdenoise.analysis.tsne import TSNEResult
from clipdenoise.atomic import atomic_write_text

SIMILARITY_COLUMNS = ("encoder", "noise", "image", "draw", "scale", "metric", "value")
SUMMARY_COLUMNS = (
    "encoder",
    "noise",
    "noise_label",
    "scale",
    "metric",
    "mean",
    "std_images",
    "std_draws",
    "min",
    "max",
    "num_images",
    "num_draws",
)
TSNE_POINT_COLUMNS = ("encoder", "noise", "scale", "image", "draw", "x", "y")
TSNE_SCORE_COLUMNS = (
    "encoder",
    "noise",
    "scale",
    "silhouette_embedding",
    "silhouette_features",
    "dim",
    "num_samples",
    "perplexity",
    "seed",
)


def write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV with a header row; floats keep full precision (``repr``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    return atomic_write_text(path, buffer.getvalue())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null means "undefined" (e.g. an all-zero feature map)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (NaN/inf become ``null``)."""
    return atomic_write_text(path, json.dumps(_json_safe(payload), indent=2) + "\n")


def write_similarity_records(path: str | Path, result: SimilarityResult) -> Path:
    """Every similarity number: one row per encoder, noise, image, draw, scale and metric."""
    return write_csv(
        path,
        SIMILARITY_COLUMNS,
        ([getattr(r, c) for c in SIMILARITY_COLUMNS] for r in result.records),
    )


def write_similarity_summary(path: str | Path, summaries: Sequence[SimilaritySummary]) -> Path:
    """Mean and spread per encoder, noise, scale and metric."""
    return write_csv(
        path, SUMMARY_COLUMNS, ([getattr(s, c) for c in SUMMARY_COLUMNS] for s in summaries)
    )


def tsne_point_rows(results: Sequence[TSNEResult]) -> list[list[Any]]:
    """Rows of :data:`TSNE_POINT_COLUMNS`: every embedded sample (draw -1 = clean image)."""
    rows = []
    for result in results:
        for scale in result.scales:
            for (x, y), index, draw in zip(scale.embedding, result.image_index, result.draw):
                rows.append(
                    [
                        result.encoder,
                        result.noise,
                        scale.scale,
                        result.images[int(index)],
                        int(draw),
                        float(x),
                        float(y),
                    ]
                )
    return rows


def tsne_score_rows(results: Sequence[TSNEResult]) -> list[list[Any]]:
    """Rows of :data:`TSNE_SCORE_COLUMNS`: separation scores per encoder, noise and scale."""
    return [
        [
            result.encoder,
            result.noise,
            scale.scale,
            scale.silhouette_embedding,
            scale.silhouette_features,
            scale.dim,
            len(result.draw),
            result.perplexity,
            result.seed,
        ]
        for result in results
        for scale in result.scales
    ]


def summary_dicts(summaries: Sequence[SimilaritySummary]) -> list[dict[str, Any]]:
    return [asdict(summary) for summary in summaries]


def slugify(text: str) -> str:
    """A file-name-safe lowercase slug of ``text``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


__all__ = [
    "SIMILARITY_COLUMNS",
    "SUMMARY_COLUMNS",
    "TSNE_POINT_COLUMNS",
    "TSNE_SCORE_COLUMNS",
    "slugify",
    "summary_dicts",
    "tsne_point_rows",
    "tsne_score_rows",
    "write_csv",
    "write_json",
    "write_similarity_records",
    "write_similarity_summary",
]
