"""Retrain and re-score the built-in model (``builtin.blind-unet``).

``--train RUN_DIR`` trains it with the shipped ``builtin-blind`` preset (resumable: run the same
command again after a stop) and writes the float16 package file
``src/clipdenoise/resources/builtin-blind-unet.safetensors`` from the run's last weights. Then, or
alone, it scores the shipped file with the reference protocol:

* Kodak24 and CBSD68 under the whole synthetic suite (17 paper settings) beside the noisy input;
* non-local means and BM3D at the settings ``benchmarks/classical_baselines.py`` has scored
  (σ told for Gaussian noise, else estimated), read from the per-image scores it commits under
  ``results/classical_baselines/``: the same noisy inputs;
* CC15 (real camera noise) beside the noisy input, NLM and BM3D with estimated σ.

Results go to ``benchmarks/results/builtin_model_{synthetic,real}.{md,csv,json}``. Per-image
results are cached outside the repository (``--cache-dir``, default
``$CLIPDENOISE_CACHE/benchmarks/builtin_model``, else
``~/.cache/clipdenoise/benchmarks/builtin_model``).

Usage::

    python benchmarks/builtin_model.py --data-root DATA                      # score only
    nice -n 10 python benchmarks/builtin_model.py --data-root DATA --train runs/builtin
"""

from __future__ import annotations

import argparse
from pathlib import Path

from classical_baselines import OUT_DIR as CLASSICAL
from classical_baselines import committed_table
from clipdenoise.builtin import BUILTIN_FILE, BUILTIN_MODEL
from clipdenoise.checkpoints import export_builtin
from clipdenoise.evaluation import ResultsTable, evaluate, plot_image_grid, restore_crops
from clipdenoise.weights import default_cache_dir

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PACKAGE_FILE = HERE.parent / "src" / "clipdenoise" / "resources" / BUILTIN_FILE
CLASSICAL_PARTS = {
    "Kodak24": ("kodak-nlm", "kodak-bm3d"),
    "CBSD68": ("cbsd-nlm", "cbsd-bm3d"),
}


def train_builtin(run_dir: Path, data_root: str | None) -> Path:
    """Train (or resume) the preset, then write the package file; returns its path."""
    from clipdenoise.training import load_experiment_config, train

    result = train(
        load_experiment_config("builtin-blind"), run_dir, data_root=data_root, resume="auto"
    )
    if result.status != "completed":
        raise SystemExit(f"training {result.status} at iteration {result.iteration}; run again")
    return export_builtin(result.latest_checkpoint, PACKAGE_FILE)


def score_synthetic(data_root: str | None, max_images: int | None, cache: Path) -> ResultsTable:
    tables = [
        evaluate(
            {"builtin": f"clipdenoise:{BUILTIN_MODEL}", "noisy": "noisy"},
            datasets=["Kodak24", "CBSD68"],
            data_root=data_root,
            out_dir=cache / "synthetic",
            device="cpu",
            max_images=max_images,
        )
    ]
    for parts in CLASSICAL_PARTS.values():
        for part, method in zip(parts, ("nlm", "bm3d")):
            if (CLASSICAL / part / "per_image.csv").is_file():
                tables.append(committed_table(part, method))
    return ResultsTable.combine(tables)


def score_real(data_root: str | None, max_images: int | None, cache: Path) -> ResultsTable:
    return evaluate(
        {
            "builtin": f"clipdenoise:{BUILTIN_MODEL}",
            "noisy": "noisy",
            "nlm": "nlm-est",
            "bm3d": "bm3d-est",
        },  # fmt: skip
        suite="real-srgb",
        datasets=["CC15"],
        data_root=data_root,
        out_dir=cache / "real",
        device="cpu",
        max_images=max_images,
    )


GALLERY = HERE.parent / "docs" / "gallery"
GALLERY_IMAGES = ("kodim05", "kodim23")
GALLERY_NOISES = ("gaussian:25", "poisson:3.5", "spatial_gaussian:55")


def write_gallery(data_root: str | None) -> list[Path]:
    """Noisy / NLM / built-in / clean crops of two Kodak images under three noises."""
    from clipdenoise.data import resolve_dataset_dir

    folder = resolve_dataset_dir("Kodak24", data_root)
    clean = [folder / f"{name}.png" for name in GALLERY_IMAGES]
    return [
        plot_image_grid(
            restore_crops(
                ["noisy", "nlm", f"clipdenoise:{BUILTIN_MODEL}"],
                clean,
                noise,
                crop=(160, 240, 192, 256),
                device="cpu",
            ),
            GALLERY / f"builtin-{noise.replace(':', '-')}.png",
        )
        for noise in GALLERY_NOISES
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", help="folder holding Kodak24/, CBSD68/, CBSD432/, CC15/")
    parser.add_argument("--train", type=Path, metavar="RUN_DIR", help="retrain into RUN_DIR first")
    parser.add_argument("--max-images", type=int, help="first N images per set (smoke test)")
    parser.add_argument("--gallery", action="store_true", help="also write docs/gallery/*.png")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir() / "benchmarks" / "builtin_model",
        help="resumable per-image cache and full evaluation folders (kept out of the repository)",
    )
    args = parser.parse_args(argv)
    if args.train is not None:
        print(f"wrote {train_builtin(args.train, args.data_root)}")
    for stem, table in (
        (
            "builtin_model_synthetic",
            score_synthetic(args.data_root, args.max_images, args.cache_dir),
        ),
        ("builtin_model_real", score_real(args.data_root, args.max_images, args.cache_dir)),
    ):
        table.write(RESULTS, stem=stem)
        print(table.to_markdown(ssim_digits=3))
    if args.gallery:
        for path in write_gallery(args.data_root):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
