"""Classical baselines (BM3D, non-local means) and the noisy floor on the paper's synthetic noises.

Runs, at full image size with the reference test protocol (seed 0 per image, unclipped Gaussian
inputs, outputs clamped to [0, 1], PSNR/SSIM on [0, 255] RGB):

* Kodak24: noisy input, BM3D (CBM3D), NLM;
* CBSD68: noisy input, NLM, and BM3D at the Gaussian levels;

for Gaussian σ 15, 25 and 50, spatial Gaussian σ 55, Poisson α 3.5, speckle variance 0.04 and
salt & pepper density 0.02. BM3D and NLM are told σ for Gaussian noise and
estimate it from the noisy image otherwise. BM3D is the ``bm3d`` package's ``bm3d_rgb`` with its
``np`` (normal) profile: the published CBM3D configuration, not the slower ``refilter`` one.

Per-image results are cached outside the repository, under ``--cache-dir`` (default
``$CLIPDENOISE_CACHE/benchmarks/classical_baselines``, else
``~/.cache/clipdenoise/benchmarks/classical_baselines``), one folder per part (BM3D takes ~30 s
per Kodak image on one core), so the script can be interrupted and resumed. Each run rewrites,
from every image finished in its cache, ``results/classical_baselines/<part>/`` (summary tables and
``per_image.csv``, committed) and ``classical_baselines.{md,csv,json}``. A part whose cache is
absent (a fresh clone) is read back from its committed files instead, so ``--table-only`` works
without the cache.

Usage::

    nice -n 10 python benchmarks/classical_baselines.py --data-root ../shared/data
    python benchmarks/classical_baselines.py --only kodak-bm3d   # one part
    python benchmarks/classical_baselines.py --table-only        # tables only, no computation
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from clipdenoise.atomic import atomic_write_text
from clipdenoise.evaluation import ResultsTable, evaluate, list_test_set
from clipdenoise.evaluation.results import read_results
from clipdenoise.weights import default_cache_dir

RESULTS = Path(__file__).resolve().parent / "results"
OUT_DIR = RESULTS / "classical_baselines"
NOISES = (
    "gaussian:15",
    "gaussian:25",
    "gaussian:50",
    "spatial_gaussian:55",
    "poisson:3.5",
    "speckle:0.04",
    "salt_pepper:0.02",
)
GAUSSIAN = tuple(noise for noise in NOISES if noise.startswith("gaussian:"))
PARTS: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "kodak-nlm": ("Kodak24", ["noisy", "nlm"], NOISES),
    "cbsd-nlm": ("CBSD68", ["noisy", "nlm"], NOISES),
    "kodak-bm3d": ("Kodak24", ["bm3d"], NOISES),
    "cbsd-bm3d": ("CBSD68", ["bm3d"], GAUSSIAN),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    parser.add_argument(
        "--only", choices=sorted(PARTS), action="append", help="run only these parts"
    )
    parser.add_argument(
        "--max-images", type=int, default=None, help="first N images per set (smoke test)"
    )
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="compute nothing; rebuild the tables from the cache (a part without one: from its "
        "committed files)",
    )
    parser.add_argument(
        "--start",
        type=int,
        default=0,
        help="begin at this image index and wrap around (another process can work elsewhere)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes working on different images at once, one thread each (they share the "
        "cache)",
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="walk the images from the last one (a second process can then work from the other "
        "end of the same set; both share the cache)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir() / "benchmarks" / "classical_baselines",
        help="resumable per-image cache, one folder per part (kept out of the repository)",
    )
    args = parser.parse_args(argv)

    parts = args.only or list(PARTS)
    if not args.table_only:
        for part in parts:
            order = image_order(part, args)
            cache = args.cache_dir / part
            if args.workers > 1:
                with ProcessPoolExecutor(args.workers, initializer=_one_thread) as pool:
                    jobs = [
                        pool.submit(
                            run_images, part, order[k :: args.workers], args.data_root, cache
                        )
                        for k in range(args.workers)
                    ]
                    for job in jobs:
                        job.result()
            else:
                run_images(part, order, args.data_root, cache)
    table = ResultsTable.combine(
        [part_table(part, args.data_root, args.cache_dir, args.max_images) for part in PARTS]
    )
    table.write(RESULTS, stem="classical_baselines")
    comparison = paper_comparison(table, args.data_root)
    atomic_write_text(RESULTS / "classical_baselines_vs_paper.md", comparison)
    print(comparison)
    counts = sorted({cell.num_images for cell in table.cells.values()})
    print(f"images per cell: {counts}", file=sys.stderr)
    return 0


def image_order(part: str, args: argparse.Namespace) -> list[str]:
    """The images of ``part`` in the order this run walks them (``--start``, ``--reverse``)."""
    dataset = PARTS[part][0]
    names = [item.name for item in list_test_set(dataset, data_root=args.data_root).images]
    count = min(len(names), args.max_images or len(names))
    order = names[:count][args.start :] + names[:count][: args.start]
    return order[::-1] if args.reverse else order


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def part_table(
    part: str, data_root: str, cache_dir: Path, max_images: int | None = None
) -> ResultsTable:
    """``part``'s table: rebuilt from its cache (no new computation: every finished image counts)
    and written into ``results/classical_baselines/<part>/``; without a cache, read back from
    the files committed there."""
    if not (cache_dir / part).is_dir():
        return read_results(OUT_DIR / part)
    dataset, methods, noises = PARTS[part]
    return evaluate(
        methods,
        datasets=[dataset],
        noises=list(noises),
        data_root=data_root,
        out_dir=OUT_DIR / part,
        cache_dir=cache_dir / part,
        max_images=max_images,
        progress=False,
        compute=False,
    )


def committed_table(part: str, method: str, noises: tuple[str, ...] | None = None) -> ResultsTable:
    """The committed per-image scores of one method of ``part`` (optionally only ``noises``)."""
    table = read_results(OUT_DIR / part)
    records = [
        r for r in table.records if r.method == method and (noises is None or r.row.label in noises)
    ]
    selected = ResultsTable.from_records(
        records,
        methods=[method],
        protocol=table.protocol,
        metadata=table.metadata,
        method_info=[i for i in table.method_info if i["name"] == method],
    )
    selected.records = records
    return selected


def run_images(part: str, names: list[str], data_root: str, cache_dir: Path) -> None:
    """Score ``part``'s methods on ``names``, image by image across all its noises, so that an
    unfinished run still has every noise on the same images (the cache in ``cache_dir`` skips
    finished ones)."""
    dataset, methods, noises = PARTS[part]
    print(f"== {part}: {', '.join(methods)} on {len(names)} images of {dataset}", flush=True)
    for done, name in enumerate(names, start=1):
        evaluate(
            methods,
            datasets=[dataset],
            noises=list(noises),
            data_root=data_root,
            cache_dir=cache_dir,
            images=[name],
            progress=False,
        )
        print(f"{part}: {name} done ({done}/{len(names)})", flush=True)


# Paper Table 1 (PSNR/SSIM), models trained on Gaussian sigma = 15; Gaussian 25 and speckle are
# only in the supplement's Table 9, which is not part of the paper text we have.
PAPER_TABLE1: dict[tuple[str, str], dict[str, str]] = {
    ("Kodak24", "gaussian:50"): {"DnCNN": "19.78/0.301", "Restormer": "20.12/0.321", "CLIPDenoising": "27.39/0.723"},
    ("Kodak24", "spatial_gaussian:55"): {"DnCNN": "25.98/0.653", "Restormer": "22.99/0.533", "CLIPDenoising": "28.29/0.786"},
    ("Kodak24", "poisson:3.5"): {"DnCNN": "24.49/0.560", "Restormer": "22.55/0.517", "CLIPDenoising": "28.66/0.813"},
    ("Kodak24", "salt_pepper:0.02"): {"DnCNN": "27.10/0.723", "Restormer": "23.81/0.639", "CLIPDenoising": "30.61/0.837"},
    ("CBSD68", "gaussian:50"): {"DnCNN": "19.84/0.363", "Restormer": "19.92/0.365", "CLIPDenoising": "26.69/0.731"},
    ("CBSD68", "spatial_gaussian:55"): {"DnCNN": "25.91/0.699", "Restormer": "23.51/0.595", "CLIPDenoising": "27.60/0.797"},
    ("CBSD68", "poisson:3.5"): {"DnCNN": "24.37/0.627", "Restormer": "22.20/0.559", "CLIPDenoising": "27.67/0.818"},
    ("CBSD68", "salt_pepper:0.02"): {"DnCNN": "26.53/0.746", "Restormer": "23.59/0.679", "CLIPDenoising": "29.81/0.844"},
}  # fmt: skip
PAPER_METHODS = ("DnCNN", "Restormer", "CLIPDenoising")


def _cell_text(table: ResultsTable, row, method: str, full: int) -> str:
    cell = table.cells.get((row, method))
    if cell is None or cell.num_images == 0:
        return "not run"
    text = f"{cell.psnr:.2f}/{cell.ssim:.3f}"
    return text if cell.num_images == full else f"{text} (n={cell.num_images})"


def paper_comparison(table: ResultsTable, data_root: str) -> str:
    """Markdown: our measured classical baselines beside the paper's Table 1 learned methods,
    then BM3D against NLM and the noisy input on exactly the images BM3D finished."""
    sizes = {
        name: len(list_test_set(name, data_root=data_root).images) for name in ("Kodak24", "CBSD68")
    }
    measured = ("noisy", "nlm", "bm3d")
    lines = [
        "| Dataset | Noise | Noisy input | NLM | BM3D | DnCNN (paper) | Restormer (paper) | CLIPDenoising (paper) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.rows:
        key = (row.dataset, f"{row.noise}:{row.level}")
        paper = PAPER_TABLE1.get(key, {})
        cells = [_cell_text(table, row, m, sizes[row.dataset]) for m in measured]
        cells += [paper.get(m, "n/a") for m in PAPER_METHODS]
        lines.append(f"| {row.dataset} | {row.noise} {row.level} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    kodak_rows = [r for r in table.rows if r.dataset == "Kodak24"]
    counts = {
        r.label: table.cells[(r, "bm3d")].num_images if (r, "bm3d") in table.cells else 0
        for r in kodak_rows
    }
    if counts and min(counts.values()) < sizes["Kodak24"]:
        done = {(r.noise, r.level, r.image) for r in table.records if r.method == "bm3d"}
        subset = [
            r
            for r in sorted(table.records, key=lambda r: r.image)
            if r.dataset == "Kodak24" and (r.noise, r.level, r.image) in done
        ]
        sub_table = ResultsTable.from_records(subset, methods=list(measured))
        images = sorted({r.image for r in subset})
        finished = ", ".join(f"{label} {count}" for label, count in counts.items())
        text += (
            f"\nBM3D did not finish: images of Kodak24 (of {sizes['Kodak24']}) per noise: "
            f"{finished}. On exactly the images BM3D finished:\n\n"
            + sub_table.to_markdown(ssim_digits=3)
            + f"\nImages: {', '.join(images)}.\n"
        )
    return text


if __name__ == "__main__":
    raise SystemExit(main())
