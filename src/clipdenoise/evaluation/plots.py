"""Figures of an evaluation (matplotlib, an optional extra: ``pip install 'clipdenoise[plot]'``).

* :func:`plot_psnr_vs_level` — PSNR against noise level, one line per method, one figure per
  (dataset, noise kind): how gracefully each method degrades outside its training noise.
* :func:`plot_image_grid` — crops of the clean image, the noisy input and each method's
  restoration of chosen images, with PSNR/SSIM of the full image in the titles.

Only drawing happens here: the crops come from the harness
(:func:`clipdenoise.evaluation.harness.restore_crops`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clipdenoise.atomic import atomic_output
from clipdenoise.evaluation.results import ImageCrops, ResultsTable
from clipdenoise.extras import missing_extra_error

__all__ = ["plot_image_grid", "plot_psnr_vs_level"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing_extra_error("matplotlib", "plots") from error
    return plt


def _save(figure: Any, path: Path) -> Path:
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=120, bbox_inches="tight")
    return path


def plot_psnr_vs_level(
    table: ResultsTable, out_dir: str | Path, *, metric: str = "psnr"
) -> list[Path]:
    """One figure per (dataset, noise kind) with at least two levels: ``metric`` vs level.

    Args:
        table: Results to plot.
        out_dir: Folder for ``<dataset>_<noise>_<metric>.png``.
        metric: ``"psnr"`` or ``"ssim"``.

    Returns:
        The written files.
    """
    plt = _pyplot()
    groups: dict[tuple[str, str], list] = {}
    for row in table.rows:
        if row.level:
            groups.setdefault((row.dataset, row.noise), []).append(row)
    written = []
    for (dataset, noise), rows in groups.items():
        if len(rows) < 2:
            continue
        rows = sorted(rows, key=lambda r: float(r.level.split(",")[0]))
        levels = [float(r.level.split(",")[0]) for r in rows]
        figure, axis = plt.subplots(figsize=(5, 3.5))
        for method in table.methods:
            values = [
                getattr(table.cells[(r, method)], metric)
                if (r, method) in table.cells
                else math.nan
                for r in rows
            ]
            axis.plot(levels, values, marker="o", label=method)
        axis.set_xlabel(f"{noise} level")
        axis.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        axis.set_title(f"{dataset} · {noise}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        written.append(_save(figure, Path(out_dir) / f"{dataset}_{noise}_{metric}.png"))
        plt.close(figure)
    return written


def plot_image_grid(images: Sequence[ImageCrops], out_path: str | Path) -> Path:
    """Draw crops side by side, one row per image: clean, noisy, then each method.

    Panel titles carry the whole-image PSNR/SSIM; the figure title names the noise.

    Args:
        images: Crops of each image (:func:`clipdenoise.evaluation.harness.restore_crops`),
            all with the same methods.
        out_path: The PNG to write.

    Returns:
        ``out_path``.

    Raises:
        ValueError: No image to draw.
    """
    if not images:
        raise ValueError("plot_image_grid needs at least one image's crops")
    plt = _pyplot()
    columns = 2 + len(images[0].restored)
    figure, axes = plt.subplots(
        len(images), columns, figsize=(2.2 * columns, 2.4 * len(images)), squeeze=False
    )
    for row_index, crops in enumerate(images):
        panels = [
            (f"{crops.name} (clean)", crops.clean, None),
            ("noisy", crops.noisy, crops.noisy_scores),
            *((name, crop, crops.restored_scores[name]) for name, crop in crops.restored.items()),
        ]
        for column, (title, image, scores) in enumerate(panels):
            axis = axes[row_index][column]
            shown = np.clip(image, 0, 1)
            axis.imshow(
                shown[..., 0] if shown.shape[2] == 1 else shown, cmap="gray", vmin=0, vmax=1
            )
            label = title if scores is None else f"{title}\n{scores[0]:.2f} dB / {scores[1]:.3f}"
            axis.set_title(label, fontsize=8)
            axis.axis("off")
    figure.suptitle(images[0].noise, fontsize=10)
    written = _save(figure, Path(out_path))
    plt.close(figure)
    return written
