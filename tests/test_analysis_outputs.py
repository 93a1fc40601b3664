"""Tables of the feature analysis: CSV rows at full precision, JSON without NaN, t-SNE rows,
file-name slugs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from clipdenoise.analysis.invariance import SimilarityRecord, SimilarityResult
from clipdenoise.analysis.outputs import (
    SIMILARITY_COLUMNS,
    SUMMARY_COLUMNS,
    TSNE_POINT_COLUMNS,
    slugify,
    tsne_point_rows,
    tsne_score_rows,
    write_csv,
    write_json,
    write_similarity_records,
    write_similarity_summary,
)
from clipdenoise.analysis.tsne import TSNEResult, TSNEScale


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _result() -> SimilarityResult:
    """Two images × two draws of one encoder, noise, scale and metric."""
    values = {("a", 0): 0.9, ("a", 1): 0.8, ("b", 0): 0.6, ("b", 1): 0.4}
    records = [
        SimilarityRecord("enc", "gaussian:25.5", image, draw, "F1", "cosine", value)
        for (image, draw), value in values.items()
    ]
    return SimilarityResult(
        records=records,
        encoder_labels=["enc"],
        noise_ids=["gaussian:25.5"],
        noise_labels={"gaussian:25.5": "Gaussian std 0.1"},
        scales={"enc": ["F1"]},
    )


def test_csv_floats_keep_full_precision_and_the_header(tmp_path):
    third = 1.0 / 3.0
    path = write_csv(tmp_path / "t.csv", ("name", "value"), [("x", third), ("y", 2)])
    assert path == tmp_path / "t.csv"
    assert path.read_text() == f"name,value\nx,{third!r}\ny,2\n"
    assert float(_read_csv(path)[0]["value"]) == third  # exact round trip


def test_similarity_records_and_summary_tables(tmp_path):
    result = _result()
    records = _read_csv(write_similarity_records(tmp_path / "records.csv", result))
    assert tuple(records[0]) == SIMILARITY_COLUMNS and len(records) == 4
    assert [float(row["value"]) for row in records] == [0.9, 0.8, 0.6, 0.4]
    (summary,) = _read_csv(write_similarity_summary(tmp_path / "summary.csv", result.summarize()))
    assert tuple(summary) == SUMMARY_COLUMNS
    assert summary["noise_label"] == "Gaussian std 0.1"
    # per-image means 0.85 and 0.5; their mean and (ddof 1) spread; mean of per-draw spreads
    assert math.isclose(float(summary["mean"]), 0.675)
    assert math.isclose(float(summary["std_images"]), np.std([0.85, 0.5], ddof=1))
    expected_draws = np.mean([np.std([0.9, 0.8], ddof=1), np.std([0.6, 0.4], ddof=1)])
    assert math.isclose(float(summary["std_draws"]), expected_draws)
    assert (summary["min"], summary["max"]) == ("0.4", "0.9")
    assert (summary["num_images"], summary["num_draws"]) == ("2", "2")


def test_json_has_no_nan_and_plain_types(tmp_path):
    payload = {"cka": float("nan"), "inf": [float("inf"), 1.5], "out": Path("x/y"), 3: (1, 2)}
    path = write_json(tmp_path / "report.json", payload)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    assert json.loads(text) == {"cka": None, "inf": [None, 1.5], "out": "x/y", "3": [1, 2]}


def test_tsne_rows_name_every_sample_and_score():
    scale = TSNEScale(
        "F2",
        embedding=np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]),
        silhouette_features=0.25,
        silhouette_embedding=0.5,
        dim=64,
    )
    result = TSNEResult(
        encoder="enc",
        noise="poisson:3.5",
        noise_label="Poisson 3.5",
        images=["cat", "dog"],
        image_index=np.array([0, 0, 1]),
        draw=np.array([-1, 0, 0]),
        scales=[scale],
        perplexity=1.0,
        seed=7,
    )
    points = tsne_point_rows([result])
    assert len(TSNE_POINT_COLUMNS) == len(points[0])
    assert points == [
        ["enc", "poisson:3.5", "F2", "cat", -1, 0.0, 1.0],
        ["enc", "poisson:3.5", "F2", "cat", 0, 2.0, 3.0],
        ["enc", "poisson:3.5", "F2", "dog", 0, 4.0, 5.0],
    ]
    assert tsne_score_rows([result]) == [["enc", "poisson:3.5", "F2", 0.5, 0.25, 64, 3, 1.0, 7]]


def test_slugify_makes_file_name_safe_names():
    assert slugify("average-pool pyramid (control)") == "average-pool-pyramid-control"
    assert slugify("gaussian:25.5") == "gaussian-25-5"
    assert slugify("CLIP RN50 (/w/rn50.pt)") == "clip-rn50-w-rn50-pt"
    assert slugify("σ ✓") == "x"
