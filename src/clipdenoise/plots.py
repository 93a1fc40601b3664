"""Figures of an evaluation (matplotlib, an optional extra: ``pip install 'clipdenoise[plot]'``).

* :func:`plot_psnr_vs_level` — PSNR against noise level, one line per method, one figure per
  (dataset, noise kind): how gracefully each method degrades outside its training noise.
* :func:`plot_image_grid` — crops of the clean image, the noisy input and each method's
  restoration of chosen images, with PSNR/SSIM of the full image in the titles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipdenoise.results import ResultsTable

__all__ = ["plot_image_grid", "plot_psnr_vs_level"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        from clipdenoise.extras import missing_extra_error

        raise missing_extra_error("matplotlib", "plots") from error
    return plt


def _save(figure: Any, path: Path) -> Path:
    from clipdenoise.atomic import atomic_output

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


def plot_image_grid(
    methods: Sequence[Any],
    clean_paths: Sequence[str | Path],
    noise: Any,
    out_path: str | Path,
    *,
    crop: tuple[int, int, int, int] | None = None,
    protocol: Any = None,
    device: str = "cpu",
) -> Path:
    """Noisy/restored crops per method for chosen images, one row per image.

    Every method sees the same noisy input (the evaluation protocol's noise for the image).

    Args:
        methods: Method specs or modules (as for :func:`clipdenoise.evaluate`).
        clean_paths: Clean images to show.
        noise: A noise spec (``"gaussian:25"``).
        out_path: The PNG to write.
        crop: ``(top, left, height, width)`` of the shown crop (default: a central square of up
            to 128 pixels). Scores are of the whole image.
        protocol: :class:`~clipdenoise.protocol.EvalProtocol` (default: synthetic).
        device: Where networks run.

    Returns:
        ``out_path``.
    """
    from clipdenoise.evaluation import make_noisy, restore_batch, score_pair
    from clipdenoise.image_io import read_image
    from clipdenoise.methods import resolve_method
    from clipdenoise.noise import parse_noise_spec
    from clipdenoise.protocol import EvalProtocol

    plt = _pyplot()
    protocol = protocol or EvalProtocol.synthetic()
    noise = parse_noise_spec(noise)
    torch_device = torch.device(device)
    # The noisy input has its own column already.
    resolved = [
        method
        for method in (resolve_method(m, map_location=torch_device) for m in methods)
        if method.kind != "noisy"
    ]
    columns = 2 + len(resolved)
    figure, axes = plt.subplots(
        len(clean_paths), columns, figsize=(2.2 * columns, 2.4 * len(clean_paths)), squeeze=False
    )
    for row_index, path in enumerate(clean_paths):
        clean = read_image(path)
        noisy = make_noisy(clean, noise, protocol)
        top, left, height, width = crop or _central_crop(clean.shape[:2])
        window = (slice(top, top + height), slice(left, left + width))
        noisy_tensor = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
        noisy_shown = np.clip(noisy, 0, 1).astype(np.float32)
        panels = [
            (f"{Path(path).stem} (clean)", clean, None),
            ("noisy", noisy_shown, score_pair(clean, noisy_shown, protocol)),
        ]
        for method in resolved:
            module = method.for_noise(noise)
            if method.is_network:
                module.to(torch_device).eval()
            restored = restore_batch(method, module, noisy_tensor, protocol, device=torch_device)
            image = restored[0].permute(1, 2, 0).numpy()
            panels.append((method.name, image, score_pair(clean, image, protocol)))
        for column, (title, image, scores) in enumerate(panels):
            axis = axes[row_index][column]
            shown = np.clip(image[window], 0, 1)
            axis.imshow(
                shown[..., 0] if shown.shape[2] == 1 else shown, cmap="gray", vmin=0, vmax=1
            )
            label = title if scores is None else f"{title}\n{scores[0]:.2f} dB / {scores[1]:.3f}"
            axis.set_title(label, fontsize=8)
            axis.axis("off")
    figure.suptitle(str(noise), fontsize=10)
    written = _save(figure, Path(out_path))
    plt.close(figure)
    return written


def _central_crop(shape: tuple[int, int], size: int = 128) -> tuple[int, int, int, int]:
    height, width = shape
    side_h, side_w = min(size, height), min(size, width)
    return (height - side_h) // 2, (width - side_w) // 2, side_h, side_w
