"""run_analysis: the whole feature analysis from a config to its tables, JSON and figures."""

from __future__ import annotations

import csv
import json

from clipdenoise.analysis import AnalysisConfig, run_analysis

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_run_analysis_writes_tables_json_and_figures(tmp_path, analysis_images):
    config = AnalysisConfig(
        inputs=("generated",),
        encoders=("avgpool", "avgpool@pooling twin"),
        gaussian_stds=(0.3,),
        noises=("poisson:3.5",),
        draws=2,
        scales=("F1", "F2"),
        tsne=True,
        tsne_draws=3,
        tsne_max_dim=256,
        tsne_max_iter=250,
    )
    report = run_analysis(config, tmp_path, images=analysis_images)
    with open(tmp_path / "similarity_records.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 2 * 3 * 2 * 2 * 2  # encoders, noises, images, draws, scales, metrics
    assert {row["noise"] for row in rows} == {"gaussian:76.5", "poisson:3.5"}
    payload = json.loads((tmp_path / "analysis.json").read_text())
    assert payload["encoders"] == ["average-pool pyramid (control)", "pooling twin"]
    assert len(payload["similarity_summary"]) == 2 * 2 * 2 * 2
    assert len(payload["tsne"]) == 2 * 2  # encoders x the paper's two t-SNE levels
    figures = report.files["figures"]
    names = {path.name for path in figures}
    assert "similarity_cosine_by_noise_average-pool-pyramid-control.png" in names
    assert "similarity_cka_by_encoder_poisson-3-5.png" in names
    assert "tsne_pooling-twin_gaussian-51.png" in names
    assert "noisy_examples.png" in names
    for path in figures:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, path
    with open(tmp_path / "tsne_scores.csv") as stream:
        scores = list(csv.DictReader(stream))
    assert len(scores) == 2 * 2 * 2
    assert all(-1 <= float(row["silhouette_embedding"]) <= 1 for row in scores)
