"""Figures of the feature analysis (paper Figs. 1 and 3): files, sizes, errors, no global state."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipdenoise.analysis.invariance import SimilaritySummary
from clipdenoise.analysis.tsne import TSNEResult, TSNEScale

pytest.importorskip("matplotlib")

from clipdenoise.analysis.figures import (  # noqa: E402
    plot_image_grid,
    plot_similarity_by_encoder,
    plot_similarity_by_noise,
    plot_tsne,
)


def _summaries() -> list[SimilaritySummary]:
    rows = []
    for encoder in ("CLIP RN50", "random control"):
        for noise, label, drop in (("gaussian:25.5", "std 0.1", 0.05), ("poisson:3.5", "P", 0.1)):
            for index, scale in enumerate(("F1", "F2", "F3")):
                mean = 0.95 - drop * (index + 1)
                rows.append(
                    SimilaritySummary(
                        encoder,
                        noise,
                        label,
                        scale,
                        "cosine",
                        mean,
                        0.02,
                        0.01,
                        mean - 0.05,
                        mean + 0.03,
                        3,
                        2,
                    )  # fmt: skip
                )
    return rows


def _png(path) -> np.ndarray:
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _is_drawn(pixels: np.ndarray) -> bool:
    """More than a blank canvas: many distinct colours (lines, markers, text)."""
    return len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_similarity_figures_are_pngs_of_the_figure_size(tmp_path):
    summaries = _summaries()
    by_noise = plot_similarity_by_noise(
        summaries, encoder="CLIP RN50", metric="cosine", path=tmp_path / "noise.png"
    )
    by_encoder = plot_similarity_by_encoder(
        summaries, noise="poisson:3.5", metric="cosine", path=tmp_path / "encoder.png"
    )
    for path in (by_noise, by_encoder):
        pixels = _png(path)
        assert pixels.shape == (528, 768, 3)  # 6.4 × 4.4 inches at 120 dpi
        assert _is_drawn(pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder.png", "noise.png"]


def test_similarity_figure_without_rows_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no cka results for encoder 'CLIP RN50'"):
        plot_similarity_by_noise(
            _summaries(), encoder="CLIP RN50", metric="cka", path=tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="no cosine results for noise 'speckle:0.1'"):
        plot_similarity_by_encoder(
            _summaries(), noise="speckle:0.1", metric="cosine", path=tmp_path / "x.png"
        )
    assert list(tmp_path.iterdir()) == []


def test_the_suffix_chooses_the_format(tmp_path):
    path = plot_similarity_by_noise(
        _summaries(), encoder="random control", metric="cosine", path=tmp_path / "fig.svg"
    )
    assert path.read_text().lstrip().startswith("<?xml") and "<svg" in path.read_text()


def test_tsne_figure_has_one_panel_per_scale(tmp_path):
    rng = np.random.default_rng(0)
    result = TSNEResult(
        encoder="CLIP RN50",
        noise="gaussian:25.5",
        noise_label="std 0.1",
        images=["a", "b", "c"],
        image_index=np.repeat(np.arange(3), 3),
        draw=np.tile(np.array([-1, 0, 1]), 3),
        scales=[TSNEScale(name, rng.normal(size=(9, 2)), 0.4, 0.6, 32) for name in ("F1", "F2")],
    )
    pixels = _png(plot_tsne(result, tmp_path / "tsne.png"))
    assert pixels.shape == (456, int(round((3.4 * 2 + 1.6) * 120)), 3)
    assert _is_drawn(pixels)


def test_image_grid_shows_each_image(tmp_path):
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    colour = np.stack([ramp, ramp.T, 1 - ramp], axis=-1)
    grey = ramp[..., None] * 1.5  # out of range: clipped for display, not an error
    path = plot_image_grid([colour, grey, colour], ["a", "b", "c"], tmp_path / "grid.png")
    pixels = _png(path)
    assert pixels.shape == (336, 864, 3)  # 2.4 inches per image × 2.8 inches at 120 dpi
    assert _is_drawn(pixels)


def test_figures_leave_pyplot_alone(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_image_grid([np.zeros((8, 8, 3))], ["x"], tmp_path / "one.png", suptitle="title")
    assert plt.get_fignums() == before
