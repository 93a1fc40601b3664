"""Figures of an evaluation: PSNR-versus-level curves and the image grid, drawn from results."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipdenoise.evaluation import ImageCrops, ImageRecord, ResultsTable, RowKey
from clipdenoise.evaluation.plots import plot_image_grid, plot_psnr_vs_level

pytest.importorskip("matplotlib")


def _crops(name: str, methods: tuple[str, ...], channels: int = 3) -> ImageCrops:
    generator = np.random.default_rng(len(name))
    crop = generator.random((12, 16, channels)).astype(np.float32)
    return ImageCrops(
        name=name,
        noise="gaussian:25",
        clean=crop,
        noisy=np.clip(crop + 0.1, 0, 1),
        noisy_scores=(20.0, 0.5),
        restored={method: crop * 0.9 for method in methods},
        restored_scores={method: (30.0, 0.9) for method in methods},
    )


def test_image_grid_draws_one_row_per_image(tmp_path):
    one = plot_image_grid([_crops("a", ("nlm",))], tmp_path / "one.png")
    two = plot_image_grid(
        [_crops("a", ("nlm", "ours")), _crops("b", ("nlm", "ours"))], tmp_path / "two.png"
    )
    assert one == tmp_path / "one.png"
    with Image.open(one) as small, Image.open(two) as large:
        assert large.width > small.width and large.height > small.height  # 4 columns, 2 rows
    plot_image_grid([_crops("g", ("nlm",), channels=1)], tmp_path / "grey.png")
    assert (tmp_path / "grey.png").stat().st_size > 0
    with pytest.raises(ValueError, match="at least one"):
        plot_image_grid([], tmp_path / "none.png")


def test_psnr_vs_level_draws_each_kind_with_two_levels_or_more(tmp_path):
    records = [
        ImageRecord(
            method=method,
            dataset="mini",
            noise=noise,
            level=level,
            image="a",
            height=8,
            width=8,
            channels=3,
            psnr=psnr,
            ssim=0.5,
            seconds=0.0,
        )  # fmt: skip
        for method, noise, level, psnr in [
            ("nlm", "gaussian", "15", 30.0),
            ("nlm", "gaussian", "25", 28.0),
            ("ours", "gaussian", "15", 32.0),
            ("poisson-only", "poisson", "3", 25.0),
        ]  # fmt: skip
    ]
    table = ResultsTable.from_records(records, rows=[RowKey("mini", "gaussian", "25")])
    written = plot_psnr_vs_level(table, tmp_path / "plots", metric="ssim")
    assert written == [tmp_path / "plots" / "mini_gaussian_ssim.png"]
    assert written[0].stat().st_size > 0
