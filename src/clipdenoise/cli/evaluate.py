"""``clipdenoise evaluate``: reproduce the paper's tables for any model or baseline.

A thin layer over :func:`clipdenoise.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipdenoise.evaluation import EvalProtocol, evaluate, plot_image_grid, restore_crops
from clipdenoise.noise import NOISE_KINDS, parse_noise_spec

DESCRIPTION = """\
Score denoisers on the paper's benchmark suites with the reference protocol and write
OUT/results.{md,csv,json} (rows dataset x noise x level, columns methods, PSNR/SSIM, best per
row in bold) and OUT/per_image.csv (with package version, git commit, checkpoint sha256, seed,
device, dtype and time per image). Results are cached per image under OUT/cache: an interrupted
run resumes where it stopped and a re-run only computes what is missing.

Methods:
  noisy                     the noisy input itself (the floor)
  bm3d, nlm                 BM3D / non-local means (sigma given for Gaussian noise, else estimated)
  bm3d-est, nlm-est         the same, always estimating sigma from the noisy image
  clipdenoise:SPEC          ours: .safetensors, the reference's .pth, or an imported model name
  dncnn:PATH, restormer:PATH  learned baselines (ours or their authors' checkpoint layouts)
  ablation:NAME:SPEC        a paper ablation (frozen, finetuned, scratch, no-noisy-input, with-f5)
  PATH                      a checkpoint file, same as clipdenoise:PATH
  Prefix LABEL= to name the column: ours=clipdenoise:runs/sigma15/best.safetensors

Suites:
  synthetic   Kodak24, CBSD68, McMaster, Urban100 (or folders) x Gaussian 15/25/50, spatial
              Gaussian 40/45/50/55, Poisson 2/2.5/3/3.5, speckle 0.02/0.03/0.04, salt & pepper
              0.012/0.016/0.02 (seed 0 reset per image, as the reference)
  real-srgb   CC, PolyU, SIDD validation pairs (restored image rounded to 8 bits)
  ldct        held-out patient of a Mayo-style .npy folder (*input*/*target*), scored in HU

Multi-GPU: torchrun --nproc_per_node N -m clipdenoise evaluate ... (each rank takes a shard of
the images; rank 0 writes the tables).
"""

EPILOG = """\
examples:
  clipdenoise evaluate noisy bm3d ours=clipdenoise:model.safetensors --datasets Kodak24 \\
      --noise gaussian:25 poisson --data-root data --out eval/kodak
  clipdenoise evaluate clipdenoise:rn50.srgb-poissongaussian --suite real-srgb --data-root data --out eval/real
  clipdenoise evaluate noisy nlm --datasets path/to/folder --noise speckle:0.04 --out eval/folder
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score models and baselines on the paper's benchmark suites",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("methods", nargs="+", metavar="METHOD", help="methods to score (see above)")
    where = parser.add_argument_group("what to evaluate")
    where.add_argument(
        "--suite",
        choices=("synthetic", "real-srgb", "ldct"),
        default="synthetic",
        help="benchmark suite (default: synthetic)",
    )
    where.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME_OR_DIR",
        help="dataset names under --data-root, or folders (default: the suite's sets present)",
    )
    where.add_argument(
        "--noise",
        nargs="+",
        metavar="SPEC",
        help="synthetic noises: KIND:LEVEL (gaussian:25) or a bare KIND for all paper levels "
        "(default: all 17 paper settings)",
    )
    where.add_argument(
        "--data-root",
        type=Path,
        help="folder holding the datasets (default: $CLIPDENOISE_DATA or "
        "~/.cache/clipdenoise/data, where `clipdenoise data download` puts them)",
    )
    where.add_argument("--max-images", type=int, help="only the first N images of each set")
    where.add_argument(
        "--ct-patient", default="L506", help="held-out patient id of the ldct suite (default: L506)"
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", type=Path, default=Path("eval"), help="output folder (default: ./eval)"
    )
    output.add_argument(
        "--save-images", action="store_true", help="also save restored images (8-bit PNG)"
    )
    output.add_argument(
        "--plots", action="store_true", help="PSNR-vs-level plots (needs matplotlib)"
    )
    output.add_argument(
        "--grid",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="also draw OUT/grid.png: noisy/restored crops of these clean images per method",
    )
    output.add_argument(
        "--grid-crop",
        type=int,
        nargs=4,
        metavar=("TOP", "LEFT", "HEIGHT", "WIDTH"),
        help="crop shown in the grid (default: central 128x128)",
    )
    output.add_argument(
        "--table-only",
        action="store_true",
        help="compute nothing; rebuild the tables from the cache in --out",
    )
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    run = parser.add_argument_group("execution")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (default: auto)")
    run.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="network precision (half types use autocast; default: float32)",
    )
    run.add_argument(
        "--batch-size", type=int, default=1, help="same-size images restored together (default: 1)"
    )
    protocol = parser.add_argument_group(
        "protocol (defaults: the reference scripts of the chosen suite)"
    )
    protocol.add_argument("--seed", type=int, default=0, help="test-noise seed (default: 0)")
    protocol.add_argument(
        "--no-reseed",
        action="store_true",
        help="seed image i with SEED+i instead of re-seeding every image with SEED",
    )
    protocol.add_argument(
        "--pad-multiple",
        type=int,
        default=32,
        help="networks see inputs reflect-padded (bottom/right) to this multiple (default: 32); "
        "CLIPDenoiser models pad to 32 themselves, so only larger multiples change their output",
    )
    protocol.add_argument(
        "--clip-noisy-input", action="store_true", help="clip noisy inputs to [0, 1] first"
    )
    protocol.add_argument(
        "--no-clamp", action="store_true", help="do not clamp outputs to [0, 1] before scoring"
    )
    rounding = protocol.add_mutually_exclusive_group()
    rounding.add_argument(
        "--round-uint8",
        dest="round_uint8",
        action="store_true",
        default=None,
        help="round outputs to 8 bits before scoring (default for real-srgb)",
    )
    rounding.add_argument(
        "--no-round-uint8",
        dest="round_uint8",
        action="store_false",
        help="score unrounded outputs (default for synthetic)",
    )
    protocol.add_argument(
        "--channel",
        choices=("rgb", "y"),
        default="rgb",
        help="score RGB (reference) or the BT.601 Y channel (default: rgb)",
    )
    protocol.add_argument(
        "--crop-border", type=int, default=0, help="pixels dropped on each side (default: 0)"
    )
    protocol.add_argument(
        "--ct-norm-range-max",
        type=float,
        default=3096.0,
        help="ldct: HU of model unit 1 in the metric (reference quirk 3096; consistent 3072)",
    )
    parser.set_defaults(func=run_evaluate)


def _protocol_from_args(args: argparse.Namespace):
    preset = {
        "synthetic": EvalProtocol.synthetic,
        "real-srgb": EvalProtocol.real_srgb,
        "ldct": EvalProtocol.ldct,
    }[args.suite]
    overrides = {
        "seed": args.seed,
        "reseed_per_image": not args.no_reseed,
        "pad_multiple": args.pad_multiple,
        "clip_noisy_input": args.clip_noisy_input,
        "channel": args.channel,
        "crop_border": args.crop_border,
        "ct_norm_range_max": args.ct_norm_range_max,
    }
    if args.no_clamp:
        overrides["clamp_output"] = False
    if args.round_uint8 is not None:
        overrides["round_to_uint8"] = args.round_uint8
    return preset(**overrides)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation the arguments describe; exit 1 when some images failed."""
    protocol = _protocol_from_args(args)
    table = evaluate(
        args.methods,
        suite=args.suite,
        datasets=args.datasets,
        noises=args.noise,
        data_root=args.data_root,
        out_dir=args.out,
        protocol=protocol,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_images=args.max_images,
        save_images=args.save_images,
        plots=args.plots,
        progress=not args.no_progress,
        ct_patient=args.ct_patient,
        compute=not args.table_only,
    )
    if table is None:  # a non-zero torchrun rank
        return 0
    if args.grid:
        noise = (args.noise or ["gaussian:25"])[0]
        if ":" not in noise:
            kind = parse_noise_spec(f"{noise}:1").kind
            noise = f"{kind}:{NOISE_KINDS[kind].paper_levels[-1]}"
        crops = restore_crops(
            args.methods,
            args.grid,
            noise,
            crop=tuple(args.grid_crop) if args.grid_crop else None,
            protocol=protocol,
            device="cpu" if args.device == "auto" else args.device,
        )
        plot_image_grid(crops, args.out / "grid.png")
    print(table.to_markdown(), end="")
    print(f"results written to {args.out}/results.md, .csv, .json and per_image.csv")
    failures = table.metadata.get("failures", [])
    for failure in failures:
        print(
            f"failed: {failure['dataset']}/{failure['image']}: {failure['error']}", file=sys.stderr
        )
    return 1 if failures else 0
