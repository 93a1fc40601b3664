"""Our trained DnCNN and BM3D beside numbers published by others.

1. The colour DnCNN trained here with the paper's recipe (``dncnn-gaussian15`` preset, scaled to a
   CPU; ``benchmarks/models/dncnn-gaussian15.md``) scored with the reference protocol on Kodak24
   and CBSD68: in distribution (Gaussian σ 15, 25) and at the paper's Table 1 settings (Gaussian
   σ 50, spatial Gaussian σ 55, Poisson α 3.5, salt & pepper d 0.02), beside the paper's DnCNN
   column and the published colour DnCNN at σ 15.
2. BM3D (``bm3d`` package, CBM3D ``np`` profile, true σ) from the per-image scores
   ``benchmarks/classical_baselines.py`` commits under ``results/classical_baselines/*-bm3d/``,
   beside CBM3D's published numbers.

The DnCNN is re-scored from the committed checkpoint; its tables and per-image scores are
committed under ``results/reproduce_published/``, and its per-image cache is kept outside the
repository (``--cache-dir``, default ``$CLIPDENOISE_CACHE/benchmarks/reproduce_published``, else
``~/.cache/clipdenoise/benchmarks/reproduce_published``) so a rerun is instant.
``--from-results`` compares the committed scores alone (no data, checkpoint or cache needed).

Usage::

    python benchmarks/reproduce_published.py --data-root DATA   # Kodak24 and CBSD68 under DATA
    python benchmarks/reproduce_published.py --from-results     # from the committed files
"""

from __future__ import annotations

import argparse
from pathlib import Path

from classical_baselines import committed_table
from classical_baselines import part_table as classical_part_table
from clipdenoise.atomic import atomic_write_text
from clipdenoise.evaluation import ResultsTable, RowKey, evaluate
from clipdenoise.evaluation.results import read_results
from clipdenoise.weights import default_cache_dir

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT_DIR = RESULTS / "reproduce_published"
DNCNN_CHECKPOINT = HERE / "models" / "dncnn-gaussian15.safetensors"
DATASETS = ("Kodak24", "CBSD68")
#: Images per test set (the ``n=`` of a partial cell counts against these).
SET_SIZES = {"Kodak24": 24, "CBSD68": 68}
BM3D_PARTS = {"Kodak24": "kodak-bm3d", "CBSD68": "cbsd-bm3d"}
DNCNN_NOISES = (
    "gaussian:15",
    "gaussian:25",
    "gaussian:50",
    "spatial_gaussian:55",
    "poisson:3.5",
    "salt_pepper:0.02",
)
BM3D_NOISES = ("gaussian:15", "gaussian:25", "gaussian:50")

# PSNR/SSIM. Paper Table 1 (DnCNN trained on Gaussian σ = 15, tested out of distribution).
PAPER_DNCNN: dict[tuple[str, str], tuple[float, float | None]] = {
    ("Kodak24", "gaussian:50"): (19.78, 0.301),
    ("Kodak24", "spatial_gaussian:55"): (25.98, 0.653),
    ("Kodak24", "poisson:3.5"): (24.49, 0.560),
    ("Kodak24", "salt_pepper:0.02"): (27.10, 0.723),
    ("CBSD68", "gaussian:50"): (19.84, 0.363),
    ("CBSD68", "spatial_gaussian:55"): (25.91, 0.699),
    ("CBSD68", "poisson:3.5"): (24.37, 0.627),
    ("CBSD68", "salt_pepper:0.02"): (26.53, 0.746),
    # the published colour DnCNN at its training level (as tabulated by FFDNet and Restormer)
    ("Kodak24", "gaussian:15"): (34.60, None),
    ("CBSD68", "gaussian:15"): (33.90, None),
}
# CBM3D as tabulated in the Restormer and SwinIR papers (colour Gaussian denoising).
PUBLISHED_CBM3D: dict[tuple[str, str], float] = {
    ("CBSD68", "gaussian:15"): 33.52,
    ("CBSD68", "gaussian:25"): 30.71,
    ("CBSD68", "gaussian:50"): 27.38,
    ("Kodak24", "gaussian:15"): 34.28,
    ("Kodak24", "gaussian:25"): 32.15,
    ("Kodak24", "gaussian:50"): 28.46,
}
# What counts as reproduced: ±1 dB out of distribution, ±0.5 dB at σ 15, ±0.3 dB for BM3D.
TOLERANCE_OOD, TOLERANCE_IN, TOLERANCE_BM3D = 1.0, 0.5, 0.3


def row_key(dataset: str, noise: str) -> RowKey:
    kind, level = noise.split(":")
    return RowKey(dataset, kind, level)


def score_dncnn(
    data_root: str | None, checkpoint: Path, max_images: int | None, cache_dir: Path
) -> ResultsTable:
    """Score the DnCNN (resuming from ``cache_dir``); tables and per-image scores go to
    ``results/reproduce_published/``."""
    return evaluate(
        {"dncnn": f"dncnn:{checkpoint}"},
        datasets=list(DATASETS),
        noises=list(DNCNN_NOISES),
        data_root=data_root,
        out_dir=OUT_DIR,
        cache_dir=cache_dir,
        device="cpu",
        max_images=max_images,
        progress=True,
    )


def score_bm3d(data_root: str | None, compute: bool, classical_cache: Path) -> ResultsTable:
    """BM3D's committed per-image scores; with ``compute``, first run the images missing from
    the classical-baselines cache and rewrite that part's committed files."""
    tables = []
    for part in BM3D_PARTS.values():
        if compute:
            _run_bm3d(part, data_root, classical_cache)
            classical_part_table(part, data_root, classical_cache)  # rewrites the part's files
        tables.append(committed_table(part, "bm3d", BM3D_NOISES))
    return ResultsTable.combine(tables)


def _run_bm3d(part: str, data_root: str | None, classical_cache: Path) -> None:
    dataset = next(name for name, known in BM3D_PARTS.items() if known == part)
    evaluate(
        ["bm3d"],
        datasets=[dataset],
        noises=list(BM3D_NOISES),
        data_root=data_root,
        cache_dir=classical_cache / part,
    )


def _verdict(difference: float, tolerance: float) -> str:
    return "yes" if abs(difference) <= tolerance else "no"


def dncnn_markdown(table: ResultsTable, sizes: dict[str, int]) -> str:
    lines = [
        "| Dataset | Noise | Ours PSNR/SSIM | Published PSNR/SSIM | ΔPSNR | Within |",
        "|---|---|---:|---:|---:|:---:|",
    ]
    for dataset in DATASETS:
        for noise in DNCNN_NOISES:
            cell = table.cells.get((row_key(dataset, noise), "dncnn"))
            ours = "not run" if cell is None else f"{cell.psnr:.2f}/{cell.ssim:.3f}"
            if cell is not None and cell.num_images < sizes[dataset]:
                ours += f" (n={cell.num_images})"
            published = PAPER_DNCNN.get((dataset, noise))
            if published is None or cell is None:
                shown = "–" if published is None else _published_text(published)
                lines.append(f"| {dataset} | {noise} | {ours} | {shown} | – | – |")
                continue
            difference = cell.psnr - published[0]
            tolerance = TOLERANCE_IN if noise == "gaussian:15" else TOLERANCE_OOD
            lines.append(
                f"| {dataset} | {noise} | {ours} | {_published_text(published)} | "
                f"{difference:+.2f} | {_verdict(difference, tolerance)} (±{tolerance}) |"
            )
    return "\n".join(lines) + "\n"


def _published_text(published: tuple[float, float | None]) -> str:
    psnr, ssim = published
    return f"{psnr:.2f}" + (f"/{ssim:.3f}" if ssim is not None else "")


def bm3d_markdown(table: ResultsTable, sizes: dict[str, int]) -> str:
    lines = [
        "| Dataset | Noise | BM3D here PSNR/SSIM | CBM3D published | ΔPSNR | Within ±0.3 dB |",
        "|---|---|---:|---:|---:|:---:|",
    ]
    for dataset in DATASETS:
        for noise in BM3D_NOISES:
            cell = table.cells.get((row_key(dataset, noise), "bm3d"))
            published = PUBLISHED_CBM3D[(dataset, noise)]
            if cell is None:
                lines.append(f"| {dataset} | {noise} | not run | {published:.2f} | – | – |")
                continue
            ours = f"{cell.psnr:.2f}/{cell.ssim:.3f}"
            if cell.num_images < sizes[dataset]:
                ours += f" (n={cell.num_images} of {sizes[dataset]})"
            difference = cell.psnr - published
            lines.append(
                f"| {dataset} | {noise} | {ours} | {published:.2f} | {difference:+.2f} | "
                f"{_verdict(difference, TOLERANCE_BM3D)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", help="folder holding Kodak24/ and CBSD68/")
    parser.add_argument("--checkpoint", type=Path, default=DNCNN_CHECKPOINT)
    parser.add_argument(
        "--compute-bm3d",
        action="store_true",
        help="first run BM3D on the images missing from --classical-cache-dir (slow: ~35 s per "
        "Kodak image)",
    )
    parser.add_argument("--max-images", type=int, help="first N images per set (smoke test)")
    parser.add_argument(
        "--from-results",
        action="store_true",
        help="compare the committed per-image scores only (no data, checkpoint or cache)",
    )
    benchmarks_cache = default_cache_dir() / "benchmarks"
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=benchmarks_cache / "reproduce_published",
        help="resumable per-image cache of the DnCNN scores (kept out of the repository)",
    )
    parser.add_argument(
        "--classical-cache-dir",
        type=Path,
        default=benchmarks_cache / "classical_baselines",
        help="classical_baselines.py's --cache-dir (used by --compute-bm3d)",
    )
    args = parser.parse_args(argv)

    sizes = SET_SIZES
    if args.from_results and not (OUT_DIR / "results.json").is_file():
        folder = OUT_DIR.relative_to(HERE.parent)
        dncnn_text = f"No committed DnCNN scores in {folder}: run without --from-results.\n"
    elif args.from_results:
        dncnn_text = dncnn_markdown(read_results(OUT_DIR), sizes)
    elif args.checkpoint.is_file():
        dncnn = score_dncnn(args.data_root, args.checkpoint, args.max_images, args.cache_dir)
        dncnn_text = dncnn_markdown(dncnn, sizes)
    else:
        dncnn_text = f"No checkpoint at {args.checkpoint}: train it first (see the module doc).\n"
    compute_bm3d = args.compute_bm3d and not args.from_results
    bm3d = score_bm3d(args.data_root, compute_bm3d, args.classical_cache_dir)
    text = (
        "## DnCNN trained here vs. published\n\n"
        + dncnn_text
        + "\n## BM3D here vs. published CBM3D\n\n"
        + bm3d_markdown(bm3d, sizes)
    )
    atomic_write_text(RESULTS / "reproduce_published.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
