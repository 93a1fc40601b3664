"""PNG figures of the analysis (paper Figs. 1 and 3; supplement's CKA / Poisson variants).

matplotlib is imported inside each function (``pip install 'clipdenoise[analysis]'``) and used
through its object API with the Agg canvas, so the global pyplot state and backend of a
notebook are left alone. Files are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clipdenoise.analysis.invariance import SimilaritySummary
from clipdenoise.analysis.tsne import TSNEResult
from clipdenoise.atomic import atomic_write
from clipdenoise.encoder import FEATURE_NAMES
from clipdenoise.extras import missing_extra_error

METRIC_TITLES = {"cosine": "Cosine similarity", "cka": "Linear CKA"}


def _new_figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing_extra_error("matplotlib", "figures", "analysis") from error
    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    image_format = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda stream: figure.savefig(stream, format=image_format))


def _spread_note(rows: Sequence[SimilaritySummary]) -> str:
    images = max(row.num_images for row in rows)
    draws = max(row.num_draws for row in rows)
    if images > 1:
        return f"mean ± std over {images} images ({draws} noise draw{'s' * (draws > 1)} each)"
    if draws > 1:
        return f"mean ± std over {draws} noise draws of 1 image"
    return "1 image, 1 noise draw"


def _scale_axis(axes, scales: Sequence[str], metric: str) -> None:
    axes.set_xticks(range(len(scales)), scales)
    axes.set_xlabel("feature scale, shallow → deep (CLIP ResNet: F1 = stride 2 … F5 = stride 32)")
    axes.set_ylabel(f"{METRIC_TITLES[metric]} (clean vs noisy features)")
    axes.grid(True, alpha=0.3)
    bottom, top = axes.get_ylim()
    if top <= 1.05:  # similarities are at most 1: show the ceiling
        axes.set_ylim(bottom, 1.02)


def plot_similarity_by_noise(
    summaries: Sequence[SimilaritySummary], *, encoder: str, metric: str, path: str | Path
) -> Path:
    """Similarity vs scale, one line per noise, for one encoder (paper Fig. 1, left)."""
    rows = _rows_of(summaries, metric, "encoder", encoder)
    title = f"{METRIC_TITLES[metric]} of clean vs noisy features\n{encoder} — {_spread_note(rows)}"
    return _plot_similarity_lines(rows, metric, "noise", "noise_label", title=title, path=path)


def plot_similarity_by_encoder(
    summaries: Sequence[SimilaritySummary], *, noise: str, metric: str, path: str | Path
) -> Path:
    """Similarity vs scale, one line per encoder, for one noise (paper Fig. 1, right)."""
    rows = _rows_of(summaries, metric, "noise", noise)
    title = (
        f"{METRIC_TITLES[metric]} of clean vs noisy features per encoder\n"
        f"{rows[0].noise_label} — {_spread_note(rows)}"
    )
    return _plot_similarity_lines(rows, metric, "encoder", "encoder", title=title, path=path)


def _rows_of(
    summaries: Sequence[SimilaritySummary], metric: str, field: str, value: str
) -> list[SimilaritySummary]:
    """The ``metric`` rows whose ``field`` (``"encoder"`` or ``"noise"``) is ``value``.

    Raises:
        ValueError: there are none.
    """
    rows = [row for row in summaries if getattr(row, field) == value and row.metric == metric]
    if not rows:
        raise ValueError(f"no {metric} results for {field} {value!r}")
    return rows


def _plot_similarity_lines(
    rows: Sequence[SimilaritySummary],
    metric: str,
    group: str,
    label: str,
    *,
    title: str,
    path: str | Path,
) -> Path:
    """Mean ± spread vs feature scale, one line per distinct value of the rows' ``group`` field
    (``"noise"`` or ``"encoder"``, also the legend's title) in first-seen order, labelled with
    the ``label`` field of its rows."""
    scales = [name for name in FEATURE_NAMES if any(row.scale == name for row in rows)]
    figure = _new_figure(6.4, 4.4)
    axes = figure.add_subplot()
    for key in dict.fromkeys(getattr(row, group) for row in rows):
        line = {row.scale: row for row in rows if getattr(row, group) == key}
        x = [i for i, name in enumerate(scales) if name in line]
        axes.errorbar(
            x,
            [line[scales[i]].mean for i in x],
            yerr=[line[scales[i]].spread for i in x],
            marker="o",
            capsize=3,
            label=getattr(line[scales[x[0]]], label),
        )
    _scale_axis(axes, scales, metric)
    axes.legend(title=group, fontsize="small")
    axes.set_title(title, fontsize="medium")
    return _save(figure, path)


def plot_tsne(result: TSNEResult, path: str | Path) -> Path:
    """t-SNE scatter per scale, noisy samples coloured by image, clean ones as stars (Fig. 3)."""
    from matplotlib import colormaps

    count = len(result.scales)
    figure = _new_figure(3.4 * count + 1.6, 3.8)
    palette = colormaps["tab10" if len(result.images) <= 10 else "tab20"]
    noisy = result.draw >= 0
    for column, scale in enumerate(result.scales):
        axes = figure.add_subplot(1, count, column + 1)
        for index, name in enumerate(result.images):
            color = palette(index % palette.N)
            mine = result.image_index == index
            points = scale.embedding[mine & noisy]
            axes.scatter(points[:, 0], points[:, 1], s=14, color=color, alpha=0.8, label=name)
            clean = scale.embedding[mine & ~noisy]
            if len(clean):
                axes.scatter(
                    clean[:, 0],
                    clean[:, 1],
                    s=110,
                    marker="*",
                    color=color,
                    edgecolors="black",
                    linewidths=0.8,
                )
        axes.set_title(
            f"{scale.scale}: silhouette {scale.silhouette_embedding:.2f}\n"
            f"(feature space {scale.silhouette_features:.2f})",
            fontsize="small",
        )
        axes.set_xlabel("t-SNE 1")
        axes.set_ylabel("t-SNE 2" if column == 0 else "")
        axes.tick_params(labelsize="x-small")
    handles, labels = figure.axes[0].get_legend_handles_labels()
    if (~noisy).any():
        from matplotlib.lines import Line2D

        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                color="grey",
                markeredgecolor="black",
                linestyle="",
                markersize=10,
            )
        )
        labels.append("clean image")
    figure.legend(handles, labels, loc="outside right center", title="image", fontsize="small")
    draws = int(result.draw.max()) + 1
    figure.suptitle(
        f"t-SNE of {result.encoder} features under {result.noise_label}\n"
        f"{len(result.images)} images × {draws} noisy draws, coloured by image",
        fontsize="medium",
    )
    return _save(figure, path)


def plot_image_grid(
    images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, *, suptitle: str = ""
) -> Path:
    """A row of ``(H, W, C)`` [0, 1] images (e.g. an image under increasing noise, Fig. 1a)."""
    figure = _new_figure(2.4 * len(images), 2.8)
    for column, (pixels, title) in enumerate(zip(images, titles)):
        axes = figure.add_subplot(1, len(images), column + 1)
        shown = np.clip(pixels, 0.0, 1.0)
        axes.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0, vmax=1)
        axes.set_title(title, fontsize="small")
        axes.axis("off")
    if suptitle:
        figure.suptitle(suptitle, fontsize="medium")
    return _save(figure, path)


__all__ = [
    "METRIC_TITLES",
    "plot_image_grid",
    "plot_similarity_by_encoder",
    "plot_similarity_by_noise",
    "plot_tsne",
]
