"""Classical baselines (BM3D, non-local means) and the noisy floor on the paper's synthetic noises.

Runs, at full image size with the reference test protocol (seed 0 per image, unclipped Gaussian
inputs, outputs clamped to [0, 1], PSNR/SSIM on [0, 255] RGB):

* Kodak24: noisy input, BM3D (CBM3D), NLM;
* CBSD68: noisy input, NLM;

for Gaussian σ 25 and 50, spatial Gaussian σ 55, Poisson α 3.5, speckle variance 0.04 and
salt & pepper density 0.02. BM3D and NLM are told σ for Gaussian noise and
estimate it from the noisy image otherwise.

Results are cached per image under ``benchmarks/results/classical_baselines/<part>/cache`` (BM3D takes
~30 s per Kodak image on one core), so the script can be interrupted and resumed; each run
rewrites ``classical_baselines.{md,csv,json}`` from everything finished so far.

Usage::

    nice -n 10 python benchmarks/classical_baselines.py --data-root ../shared/data
    python benchmarks/classical_baselines.py --only kodak-bm3d   # one part
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipdenoise.evaluation import evaluate, list_test_set
from clipdenoise.results import ResultsTable

RESULTS = Path(__file__).resolve().parent / "results"
OUT_DIR = RESULTS / "classical_baselines"
NOISES = (
    "gaussian:25",
    "gaussian:50",
    "spatial_gaussian:55",
    "poisson:3.5",
    "speckle:0.04",
    "salt_pepper:0.02",
)
PARTS = {
    "kodak-nlm": ("Kodak24", ["noisy", "nlm"]),
    "cbsd-nlm": ("CBSD68", ["noisy", "nlm"]),
    "kodak-bm3d": ("Kodak24", ["bm3d"]),
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
        "--table-only", action="store_true", help="only rebuild the table from the cache"
    )
    args = parser.parse_args(argv)

    parts = args.only or list(PARTS)
    if not args.table_only:
        for part in parts:
            dataset, methods = PARTS[part]
            count = len(list_test_set(dataset, data_root=args.data_root).images)
            count = min(count, args.max_images or count)
            print(f"== {part}: {', '.join(methods)} on {count} images of {dataset}", flush=True)
            # Image by image across all noises, so that an unfinished run still has every noise
            # on the same first images (the cache makes each call compute only the new image).
            for num_images in range(1, count + 1):
                evaluate(
                    methods,
                    datasets=[dataset],
                    noises=list(NOISES),
                    data_root=args.data_root,
                    out_dir=OUT_DIR / part,
                    max_images=num_images,
                    progress=False,
                )
                print(f"{part}: {num_images}/{count} images done", flush=True)
    tables = []
    for part, (dataset, methods) in PARTS.items():
        # Rebuild from the cache only (no new computation): every finished image counts.
        tables.append(
            evaluate(
                methods,
                datasets=[dataset],
                noises=list(NOISES),
                data_root=args.data_root,
                out_dir=OUT_DIR / part,
                max_images=args.max_images,
                progress=False,
                compute=False,
            )
        )
    table = ResultsTable.combine(tables)
    table.write(RESULTS, stem="classical_baselines")
    print(table.to_markdown())
    counts = sorted({cell.num_images for cell in table.cells.values()})
    print(f"images per cell: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
