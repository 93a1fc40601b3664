"""``clipdenoise synth``: ``srgb`` writes a noisy/clean training set with realistic camera noise
(:func:`clipdenoise.srgb_synthesis.synthesize_srgb_dataset`); ``mayo`` converts the Mayo CT
release to the reference's layout (:func:`clipdenoise.ct.prepare_mayo_dataset`).

``srgb`` exits with status 1 when an image could not be used (each is named on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipdenoise.cli import print_failures
from clipdenoise.ct import patient_id_of, prepare_mayo_dataset
from clipdenoise.isp import CameraNoiseConfig
from clipdenoise.srgb_synthesis import MANIFEST_NAME, SynthConfig, synthesize_srgb_dataset


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` (subcommands ``srgb`` and ``mayo``) to the ``clipdenoise`` parser."""
    synth = subparsers.add_parser(
        "synth",
        help="synthesise / prepare training data (sRGB camera noise, Mayo CT)",
        description="Synthesise noisy/clean training sets and prepare the Mayo CT data.",
    )
    kinds = synth.add_subparsers(dest="synth_kind", metavar="KIND")
    synth.set_defaults(func=lambda args: _print_help(synth))

    srgb = kinds.add_parser(
        "srgb",
        help="realistic sRGB camera noise (CBDNet pipeline), as the paper's sRGB training set",
        description=(
            "Write OUT/clean/*.png, OUT/noisy/*.png and OUT/manifest.json from a folder of clean "
            "images: each image (or crop) goes through a random simulated camera (DoRF response "
            "curve, colour matrix, Bayer pattern, white balance) with Poisson-Gaussian noise in "
            "raw, then back to sRGB. Same --seed -> byte-identical files, whatever --workers."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    srgb.add_argument(
        "--input", required=True, type=Path, metavar="CLEAN_DIR", help="folder of clean images"
    )
    srgb.add_argument(
        "--output", required=True, type=Path, metavar="OUT_DIR", help="folder to write (new)"
    )
    srgb.add_argument("--seed", type=int, default=0, help="base seed")
    srgb.add_argument("--sigma-s", type=float, default=0.04, help="raw shot-noise level")
    srgb.add_argument("--sigma-c", type=float, default=0.03, help="raw read-noise level")
    srgb.add_argument(
        "--sigma-s-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="draw sigma_s log-uniformly per image instead (reference: 1e-4 0.16)",
    )
    srgb.add_argument(
        "--sigma-c-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="draw sigma_c log-uniformly per image instead (reference: 1e-4 0.06)",
    )
    srgb.add_argument(
        "--noise-form",
        choices=("heteroscedastic", "reference"),
        default="heteroscedastic",
        help="raw noise variance sigma_s^2*x + sigma_c^2 (CBDNet) or the reference code's "
        "sigma_s^2*x^2 + sigma_c^2",
    )
    srgb.add_argument(
        "--inverse-crf",
        choices=("exact", "tabulated"),
        default="exact",
        help="exact inverse of the response curve, or the DoRF invI table (reference)",
    )
    srgb.add_argument(
        "--clip-xyz", action="store_true", help="clip XYZ to [0, 1] on the way back (reference)"
    )
    srgb.add_argument(
        "--curve-lookup",
        choices=("interpolate", "nearest_bin"),
        default="interpolate",
        help="read the response curves by linear interpolation or by nearest bin (reference)",
    )
    srgb.add_argument(
        "--demosaic-border",
        choices=("mirror", "reflect"),
        default="mirror",
        help="demosaicing border mode: mirror keeps the Bayer parity, reflect is the reference's",
    )
    srgb.add_argument(
        "--reference-pipeline",
        action="store_true",
        help="the reference's pipeline exactly (CameraNoiseConfig.reference()): --noise-form "
        "reference --inverse-crf tabulated --clip-xyz --curve-lookup nearest_bin "
        "--demosaic-border reflect, its random draws (each file's reference_seed in the "
        "manifest) and 8-bit output; the paper's sRGB training set is made with it",
    )
    srgb.add_argument(
        "--no-white-balance", action="store_true", help="skip the random white-balance gains"
    )
    srgb.add_argument("--crop-size", type=int, help="cut images into crops of this size")
    srgb.add_argument("--step", type=int, help="stride between crops (default crop-size/2)")
    srgb.add_argument(
        "--thresh-size", type=int, default=0, help="BasicSR rule for a last crop at the border"
    )
    srgb.add_argument(
        "--bit-depth", type=int, choices=(8, 16), default=8, help="bits per channel of the PNGs"
    )
    srgb.add_argument(
        "--clean-target",
        choices=("original", "processed"),
        default="original",
        help="clean image written: the input (reference) or the input through the same camera "
        "without noise",
    )
    srgb.add_argument("--recursive", action="store_true", help="include sub-folders")
    srgb.add_argument("--overwrite", action="store_true", help="replace an existing output set")
    srgb.add_argument("--workers", type=int, default=1, help="worker processes")
    srgb.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    srgb.set_defaults(func=run_srgb)

    mayo = kinds.add_parser(
        "mayo",
        help="convert the AAPM/Mayo low-dose CT DICOM release to the reference's .npy layout",
        description=(
            "Read RAW_DIR/<patient>/quarter_<thickness>/ and full_<thickness>/ DICOM series and "
            "write OUT_DIR/<patient>_<i>_input.npy (quarter dose) and _target.npy (full dose) "
            "in model units ((HU + 1024) / 4096), slices ordered by table position, as the "
            "reference's data preparation (RED-CNN prep.py) does."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    mayo.add_argument(
        "--input", required=True, type=Path, metavar="RAW_DIR", help="one folder per patient"
    )
    mayo.add_argument(
        "--output", required=True, type=Path, metavar="OUT_DIR", help="flat folder of .npy slices"
    )
    mayo.add_argument("--thickness", default="1mm", help="slice thickness folder suffix")
    mayo.add_argument("--patients", nargs="+", metavar="ID", help="only these patients")
    mayo.add_argument("--overwrite", action="store_true", help="replace existing .npy files")
    mayo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    mayo.set_defaults(func=run_mayo)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_srgb(args: argparse.Namespace) -> int:
    """Entry point of ``clipdenoise synth srgb``; returns the exit status."""
    levels = {
        "sigma_s": args.sigma_s,
        "sigma_c": args.sigma_c,
        "sigma_s_range": tuple(args.sigma_s_range) if args.sigma_s_range else None,
        "sigma_c_range": tuple(args.sigma_c_range) if args.sigma_c_range else None,
        "white_balance": not args.no_white_balance,
    }
    if args.reference_pipeline:
        camera = CameraNoiseConfig.reference(**levels)
    else:
        camera = CameraNoiseConfig(
            **levels,
            noise_form=args.noise_form,
            inverse_crf=args.inverse_crf,
            clip_xyz=args.clip_xyz,
            curve_lookup=args.curve_lookup,
            demosaic_border=args.demosaic_border,
        )
    config = SynthConfig(
        seed=args.seed,
        camera=camera,
        crop_size=args.crop_size,
        step=args.step,
        thresh_size=args.thresh_size,
        bit_depth=args.bit_depth,
        clean_target=args.clean_target,
        recursive=args.recursive,
        overwrite=args.overwrite,
    )
    report = synthesize_srgb_dataset(
        args.input,
        args.output,
        config,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(f"wrote {len(report.written)} noisy/clean pairs to {Path(args.output)} ({MANIFEST_NAME})")
    for source, reason in report.skipped:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    return print_failures(report.failed, "image(s) failed")


def run_mayo(args: argparse.Namespace) -> int:
    """Entry point of ``clipdenoise synth mayo``; returns the exit status."""
    written = prepare_mayo_dataset(
        args.input,
        args.output,
        thickness=args.thickness,
        patients=args.patients,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    patients = sorted({patient_id_of(path) for path in written})
    pairs = len(written) // 2
    print(
        f"wrote {pairs} quarter/full-dose slice pairs of {len(patients)} patient(s) to "
        f"{args.output}: {', '.join(patients)}"
    )
    return 0
