"""``clipdenoise denoise``: denoise image files, folders and CT slices.

A thin layer over :mod:`clipdenoise.file_denoising` (planning, reading, writing, reporting) and
:class:`clipdenoise.inference.Denoiser` (device, dtype, tiling).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from pathlib import Path

from clipdenoise.atomic import interrupt_on_termination
from clipdenoise.checkpoints import DEFAULT_MODEL, load_model, resolve_model_name
from clipdenoise.cli import print_failures
from clipdenoise.errors import ConfigError
from clipdenoise.file_denoising import (
    DenoiseFilesOptions,
    check_bit_depth,
    denoise_files,
    plan_jobs,
)
from clipdenoise.inference import Denoiser
from clipdenoise.noise import parse_noise_spec

DESCRIPTION = textwrap.dedent(
    """\
    Denoise image files with a CLIPDenoiser.

    INPUT may be files, folders (their image and CT files; -r for subfolders) or glob patterns.
    With one input file, -o names the output file; otherwise -o is a folder that mirrors the
    inputs' subfolders. Without -o, results go beside the inputs as NAME_denoised.EXT.
    Inputs are never overwritten; existing outputs only with --overwrite. Files are written
    atomically (temporary file + rename).

    Formats: PNG and TIFF (8/16 bit, float TIFF), JPEG, BMP, WebP; the output keeps the
    input's bit depth, alpha channel (untouched), ICC profile and EXIF where the format allows;
    EXIF orientation is applied. CT: DICOM (.dcm/.dicom/.ima) in -> DICOM out with all metadata
    (new SOP Instance UID, series description noting the denoising, original stored
    representation); .npy slices in HU.

    A file that cannot be processed (unreadable, truncated, empty, unsupported, too small)
    is reported and the others go on; the command then exits with status 1.
    """
)
EPILOG = textwrap.dedent(
    """\
    examples:
      clipdenoise denoise photo.jpg -o photo_clean.png --weights rn50.synthetic-gaussian15
      clipdenoise denoise scans/ -r -o restored/ --format tiff --max-memory 6GB
      clipdenoise denoise kodak/*.png -o out/ --add-noise gaussian:50 --compare
      clipdenoise denoise slice.dcm -o slice_denoised.dcm --weights rn50.ldct-gaussian5

    exit status: 0 all files denoised, 1 some files failed (listed at the end),
    2 bad options or weights not found.
    """
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise image files, folders and CT slices",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output file (one input) or folder; default: beside each input with --suffix",
    )
    parser.add_argument(
        "-w",
        "--weights",
        default=DEFAULT_MODEL,
        metavar="NAME|PATH",
        help="denoiser name (see 'clipdenoise weights list') or checkpoint file; 'auto' "
        f"(default: {DEFAULT_MODEL}) = the paper's rn50.synthetic-gaussian15 when imported, "
        "else the built-in model builtin.blind-unet",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="include subfolders of INPUT folders"
    )

    out = parser.add_argument_group("output files")
    out.add_argument(
        "--format",
        default="same",
        choices=["same", "png", "tiff", "jpeg", "bmp", "webp"],
        help="output format of photos (default: same as the input; CT keeps DICOM/.npy, "
        "'png' writes CT as 16-bit PNG of HU+1024)",
    )
    out.add_argument(
        "--suffix",
        default=None,
        help="text added to output file names (default: none with -o, '_denoised' without)",
    )
    out.add_argument(
        "--bit-depth",
        type=int,
        choices=[8, 16, 32],
        default=None,
        help="bits per sample of the output (default: the input's where the format allows; "
        "32 = float TIFF)",
    )
    out.add_argument(
        "--quality",
        type=int,
        default=None,
        metavar="1-100",
        help="JPEG/WebP quality (JPEG default 95 with 4:4:4 chroma; WebP is lossless unless "
        "given). JPEG output adds compression artefacts to the restored image",
    )
    out.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs (never inputs)"
    )
    out.add_argument(
        "--npy-units",
        choices=["hu", "model"],
        default="hu",
        help="units of .npy CT slices: Hounsfield units (default) or model units [0, 1]",
    )
    out.add_argument(
        "--channel-conversion",
        choices=["auto", "strict", "per-channel", "luma"],
        default="auto",
        help="image/model channel mismatch: 'auto' replicates grey images for RGB models "
        "(and converts back) but refuses RGB images on 1-channel models; 'strict' refuses "
        "any mismatch; 'per-channel' denoises each RGB channel with a 1-channel model; "
        "'luma' converts RGB to grey for a 1-channel model",
    )

    run = parser.add_argument_group("device and memory")
    run.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"
    )
    run.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="compute precision (auto: float16 on CUDA, bfloat16 on CPUs with native bf16, "
        "else float32)",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="images of the same size denoised together in one forward pass (default 1)",
    )
    run.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="process images in tiles of this side (multiple of 32, >= 64); default: "
        "chosen from --max-memory (untiled when the whole image fits)",
    )
    run.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        help="pixels shared by neighbouring tiles, blended with a smooth window (default 128, "
        "or half a smaller --tile-size; at most half the tile size)",
    )
    run.add_argument(
        "--tile-batch-size", type=int, default=1, help="tiles per forward pass (default 1)"
    )
    run.add_argument(
        "--max-memory",
        default="auto",
        help="memory budget, e.g. 6GB or 4GiB: the largest tiles that keep the estimated peak "
        "under it are used (default auto: half the available RAM on CPU, 80%% of free GPU "
        "memory)",
    )

    trial = parser.add_argument_group("synthetic noise, references and metrics")
    trial.add_argument(
        "--add-noise",
        metavar="SPEC",
        default=None,
        help="add noise first (e.g. gaussian:50, poisson:3.5, speckle:0.05, "
        "salt_pepper:0.02, srgb_camera); the input is then the clean reference",
    )
    trial.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of --add-noise (each file's noise depends on it and the file's name)",
    )
    trial.add_argument(
        "--save-noisy", action="store_true", help="also write the noisy image (NAME_noisy.png)"
    )
    trial.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="clean image (one input) or folder of clean images matched by name: PSNR/SSIM "
        "of the input and of the result are printed",
    )
    trial.add_argument(
        "--compare",
        action="store_true",
        help="also write NAME_compare.png: noisy | restored | clean (when known)",
    )
    trial.add_argument("--no-progress", action="store_true", help="no progress bar")
    trial.add_argument(
        "-q", "--quiet", action="store_true", help="print only failures and the summary"
    )
    parser.set_defaults(func=run_denoise)


def run_denoise(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.tile_batch_size < 1:
        raise ConfigError("--batch-size and --tile-batch-size must be at least 1")
    if args.add_noise is not None:
        parse_noise_spec(args.add_noise)  # a bad spec is a usage error, before any work
    if args.save_noisy and args.add_noise is None:
        raise ConfigError("--save-noisy needs --add-noise")
    options = DenoiseFilesOptions(
        format=args.format,
        bit_depth=args.bit_depth,
        quality=args.quality,
        overwrite=args.overwrite,
        noise=args.add_noise,
        seed=args.seed,
        save_noisy=args.save_noisy,
        compare=args.compare,
        reference=args.reference,
        npy_units=args.npy_units,
    )
    if args.reference is not None and not args.reference.exists():
        print(
            f"warning: reference {args.reference} not found: results are not scored",
            file=sys.stderr,
        )
        options = dataclasses.replace(options, reference=None)
    jobs, failures = plan_jobs(
        args.inputs, args.output, recursive=args.recursive, format=args.format, suffix=args.suffix
    )
    if not jobs and failures:
        return print_failures(
            ((failure.source, failure.error) for failure in failures), "input(s) failed"
        )
    check_bit_depth(jobs, options)
    model_name = resolve_model_name(args.weights)
    model = load_model(model_name)
    denoiser = Denoiser(
        model,
        device=args.device,
        dtype=args.dtype,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        tile_batch_size=args.tile_batch_size,
        batch_size=args.batch_size,
        max_memory=args.max_memory,
        channel_conversion=args.channel_conversion,
    )
    if not args.quiet:
        print(
            f"model {model_name} on {denoiser.device} ({str(denoiser.dtype).replace('torch.', '')})"
            f", {len(jobs)} file(s)",
            file=sys.stderr,
        )
    if any(job.output.suffix.lower() in (".jpg", ".jpeg") for job in jobs):
        print(
            "warning: JPEG output re-compresses the restored image and adds block artefacts; "
            "write PNG or TIFF (--format) to keep it exact",
            file=sys.stderr,
        )
    progress = _progress(len(jobs), disabled=args.no_progress or args.quiet)
    tile_bar = {}

    def on_file(result) -> None:
        if not args.quiet:
            _print_result(result, progress)
        if progress is not None:
            progress.update(1)
        if "bar" in tile_bar:
            tile_bar.pop("bar").close()

    def on_tile(done: int, total: int) -> None:
        if progress is None or total <= 1:
            return
        bar = tile_bar.get("bar")
        if bar is None:
            from tqdm import tqdm

            bar = tile_bar["bar"] = tqdm(total=total, unit="tile", leave=False, desc="tiles")
        bar.update(done - bar.n)

    with interrupt_on_termination():  # SIGTERM/SIGHUP: like Ctrl+C, no temporary file left
        report = denoise_files(
            denoiser,
            jobs,
            options,
            batch_size=args.batch_size,
            failures=failures,
            on_file=on_file,
            on_tile=on_tile,
        )
    if progress is not None:
        progress.close()
    print(report.summary(), file=sys.stderr)
    return 1 if report.failures else 0


def _progress(total: int, *, disabled: bool):
    if disabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="denoising", dynamic_ncols=True)


def _print_result(result, progress) -> None:
    def write(text: str) -> None:
        if progress is not None:
            progress.write(text, file=sys.stderr)  # keeps the bar intact
        else:
            print(text, file=sys.stderr)

    for warning in result.warnings:
        write(f"warning: {result.source}: {warning}")
    if not result.ok:
        write(f"failed: {result.source}: {result.error}")
        return
    tiles = f", tiles of {result.tile_size} px" if result.tile_size else ""
    line = f"{result.source} -> {result.output} ({result.seconds:.2f} s{tiles})"
    if result.psnr is not None:
        line += f"  PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}"
        if result.input_psnr is not None:
            line += f" (input {result.input_psnr:.2f} dB, {result.input_ssim:.4f})"
    write(line)
