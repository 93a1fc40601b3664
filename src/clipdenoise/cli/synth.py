"""``clipdenoise synth srgb``: write a noisy/clean training set with realistic camera noise.

The reference's sRGB recipe (``CLIPDenoising_sRGBDenoising_FixedPoissonGaussian.yml``) trains
on DIV2K sub-images (BasicSR ``extract_subimages``: 480x480 crops every 240 px) whose noisy
copies were written once by ``ISP_implement.py`` at the fixed level sigma_s = 0.04,
sigma_c = 0.03. This command does the same from any folder of clean images; with
``--reference-pipeline`` (:meth:`clipdenoise.isp.CameraNoiseConfig.reference`) it makes the
very files the reference's script makes for the seeds it records:

    OUT/clean/<name>[_sNNN].png   the clean image (or crop), 8-bit (or 16-bit) RGB PNG
    OUT/noisy/<name>[_sNNN].png   its noisy copy (:func:`clipdenoise.isp.simulate_camera_noise`)
    OUT/manifest.json             the settings and every image's sampled camera

Every image (and every crop) draws its camera and noise from its own generator, seeded by
``--seed`` and the file's relative path, so the output does not depend on ``--workers``, on
the order of the files or on which other files are present: the same seed gives byte-identical
files. All files are written atomically. Unreadable images are reported by name and skipped;
the command then exits with status 1.

The output folder is a paired training set as it stands: ``data.pairs_dir = OUT`` in a training
config, or ``PairedImageDataset(OUT)`` (:mod:`clipdenoise.data`).

Everything here is callable from Python: :func:`synthesize_srgb_dataset`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from clipdenoise.atomic import atomic_write_bytes, atomic_write_text
from clipdenoise.errors import ClipDenoiseError, ConfigError, ImageReadError
from clipdenoise.isp import CameraNoiseConfig, simulate_camera_noise

MANIFEST_NAME = "manifest.json"
PNG_COMPRESS_LEVEL = 3
"""zlib level of the PNGs written (BasicSR's sub-image extraction uses 3). Measured on a Kodak
image: clean PNGs are written twice as fast as at Pillow's default 6 (and 3% smaller); noisy ones
barely compress at any level (1% larger than at 6, same speed)."""


@dataclass(frozen=True)
class SynthConfig:
    """Settings of :func:`synthesize_srgb_dataset`.

    Attributes:
        seed: base seed; with a file's relative path it seeds that file's generator.
        camera: noise levels and pipeline conventions.
        crop_size: if set, cut each image into ``crop_size`` squares (BasicSR sub-images)
            and synthesise each separately; images smaller than a crop are skipped and listed.
        step: stride between crops (default ``crop_size // 2``, as BasicSR's DIV2K setting).
        thresh_size: BasicSR's rule for the last row/column of crops: a final crop flush with
            the border is added when more than ``thresh_size`` pixels would be left over.
        bit_depth: 8 (the reference writes 8-bit PNGs) or 16.
        clean_target: ``"original"`` (the input image, as the reference) or ``"processed"``
            (the input through the same simulated camera without noise, so that the pair
            differs by the noise alone).
        recursive: also read images in sub-folders (mirrored in the output).
        overwrite: replace existing output files of the same names instead of refusing
            (files of an earlier run that this run does not write are left alone).
    """

    seed: int = 0
    camera: CameraNoiseConfig = field(default_factory=CameraNoiseConfig)
    crop_size: int | None = None
    step: int | None = None
    thresh_size: int = 0
    bit_depth: int = 8
    clean_target: str = "original"
    recursive: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 1:
            raise ConfigError(f"crop_size must be >= 1, got {self.crop_size}")
        if self.step is not None and (self.step < 1 or self.crop_size is None):
            raise ConfigError("step must be >= 1 and needs crop_size")
        if self.thresh_size < 0:
            raise ConfigError(f"thresh_size must be >= 0, got {self.thresh_size}")
        if self.bit_depth not in (8, 16):
            raise ConfigError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        if self.clean_target not in ("original", "processed"):
            raise ConfigError(
                f"clean_target must be 'original' or 'processed', got {self.clean_target!r}"
            )


@dataclass
class SynthReport:
    """What a run wrote and what it could not do.

    Attributes:
        written: relative output names (``clean/`` and ``noisy/`` hold one file each).
        failed: ``(relative input path, reason)`` for images that could not be used.
        skipped: ``(relative input path, reason)`` for images deliberately left out
            (smaller than the crop size).
        manifest: path of the manifest written.
    """

    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None


def crop_origins(length: int, crop_size: int, step: int, thresh_size: int) -> list[int]:
    """Top (or left) offsets of BasicSR's sub-image grid along one axis (empty if too short)."""
    if length < crop_size:
        return []
    origins = list(range(0, length - crop_size + 1, step))
    if length - (origins[-1] + crop_size) > thresh_size:
        origins.append(length - crop_size)
    return origins


def file_seed_sequence(seed: int, relative_path: str) -> np.random.SeedSequence:
    """The seed of one input file: ``seed`` plus a hash of its relative path (posix form)."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence([seed, *words])


def list_clean_images(input_dir: Path, recursive: bool) -> list[Path]:
    """Image files under ``input_dir`` (by suffix), sorted by relative path."""
    from clipdenoise.image_io import IMAGE_SUFFIXES

    pattern = "**/*" if recursive else "*"
    found = [
        path
        for path in input_dir.glob(pattern)
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(found, key=lambda path: path.relative_to(input_dir).as_posix())


def synthesize_srgb_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    config: SynthConfig | None = None,
    *,
    workers: int = 1,
    progress: bool = False,
) -> SynthReport:
    """Write ``output_dir/{clean,noisy}/`` and ``manifest.json`` from a folder of clean images.

    Args:
        input_dir: folder of clean images (PNG, JPEG, TIFF, BMP, WebP; 8 or 16 bit; grey
            images are replicated to RGB and marked ``"grey_to_rgb": true`` in the manifest).
        output_dir: where to write; must not be ``input_dir`` or inside it.
        config: see :class:`SynthConfig`.
        workers: processes (1 = in this process); the output does not depend on it.
        progress: show a progress bar on stderr.

    Returns:
        A :class:`SynthReport`; failed images do not raise.

    Raises:
        ConfigError: missing/empty input folder, output inside the input, or output files that
            exist already without ``overwrite``.
    """
    config = config or SynthConfig()
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    if not input_dir.is_dir():
        raise ConfigError(f"{input_dir}: input folder not found")
    if output_dir == input_dir or input_dir in output_dir.parents:
        raise ConfigError(f"{output_dir}: the output folder must not be inside the input folder")
    sources = list_clean_images(input_dir, config.recursive)
    if not sources:
        raise ConfigError(f"{input_dir}: no images found (looked for PNG, JPEG, TIFF, BMP, WebP)")
    if not config.overwrite and (output_dir / MANIFEST_NAME).exists():
        raise ConfigError(
            f"{output_dir}: already holds a synthesised set ({MANIFEST_NAME}); "
            "choose another folder or pass --overwrite"
        )
    report = SynthReport()
    jobs, owners = [], {}
    for path in sources:
        relative = path.relative_to(input_dir).as_posix()
        # a.png and a.jpg would both write a.png: the first (sorted) keeps the name.
        stem = str(Path(relative).with_suffix(""))
        if stem in owners:
            report.failed.append(
                (relative, f"{path}: same output name as {owners[stem]}; rename one of them")
            )
            continue
        owners[stem] = relative
        jobs.append((path, relative, output_dir, config))
    records: list[dict] = []
    for relative, result in _run_jobs(jobs, workers, progress):
        if isinstance(result, _Failure):
            (report.skipped if result.skipped else report.failed).append((relative, result.reason))
            continue
        records.extend(result)
        report.written.extend(record["name"] for record in result)
    report.manifest = _write_manifest(output_dir, config, records, report)
    return report


@dataclass(frozen=True)
class _Failure:
    reason: str
    skipped: bool = False


def _run_jobs(jobs: list, workers: int, progress: bool) -> Iterator[tuple[str, list | _Failure]]:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="image", disable=not progress, file=sys.stderr)
    try:
        if workers <= 1:
            for job in jobs:
                yield job[1], _process_file(*job)
                bar.update()
        else:
            # spawn, not fork: the parent may hold torch/OpenMP thread pools that fork breaks.
            context = multiprocessing.get_context("spawn")
            with (
                _single_threaded_children(),
                ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
            ):
                for job, result in zip(jobs, pool.map(_process_file_star, jobs, chunksize=1)):
                    yield job[1], result
                    bar.update()
    finally:
        bar.close()


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """One BLAS/OpenMP thread per worker process (the workers are the parallelism); the
    variables are inherited by spawned children and restored here afterwards."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _process_file_star(job: tuple) -> list | _Failure:
    return _process_file(*job)


def _process_file(
    path: Path, relative: str, output_dir: Path, config: SynthConfig
) -> list[dict] | _Failure:
    from clipdenoise.image_io import read_image

    try:
        clean = read_image(path)
    except ImageReadError as error:
        return _Failure(str(error))
    grey = clean.shape[2] == 1
    if grey:
        clean = np.repeat(clean, 3, axis=2)
    crops = _crops(clean.shape[0], clean.shape[1], config)
    if not crops:
        return _Failure(
            f"{path}: {clean.shape[1]}x{clean.shape[0]} is smaller than the crop size "
            f"{config.crop_size}",
            skipped=True,
        )
    stem = str(Path(relative).with_suffix(""))
    file_seed = file_seed_sequence(config.seed, relative)
    records = []
    try:
        for index, (top, left, size_h, size_w) in enumerate(crops, start=1):
            patch = clean[top : top + size_h, left : left + size_w]
            name = f"{stem}_s{index:03d}.png" if config.crop_size else f"{stem}.png"
            # Quantise the clean target first: the noisy copy is made from exactly what is saved.
            patch = _quantise(patch, config.bit_depth)
            rng = np.random.default_rng([*file_seed.entropy, index])
            reference_draws = config.camera.draws == "reference"
            if reference_draws:
                # the reference seeds random and np.random with one number: record it
                rng = int(rng.integers(2**32))
            processed = config.clean_target == "processed"
            result = simulate_camera_noise(
                patch, rng, config.camera, with_processed_clean=processed
            )
            target = result.processed_clean if processed else patch
            for folder, image in (("clean", target), ("noisy", result.noisy)):
                _write_png(output_dir / folder / name, image, config.bit_depth, config)
            records.append(
                {
                    "name": name,
                    "source": relative,
                    "crop": [top, left, size_h, size_w],
                    "grey_to_rgb": grey,
                    "camera": result.params.to_dict(),
                    **({"reference_seed": rng} if reference_draws else {}),
                }
            )
    except (OSError, ClipDenoiseError, ValueError) as error:
        return _Failure(f"{path}: {error}")
    return records


def _crops(height: int, width: int, config: SynthConfig) -> list[tuple[int, int, int, int]]:
    if config.crop_size is None:
        return [(0, 0, height, width)]
    size = config.crop_size
    step = config.step or max(1, size // 2)
    rows = crop_origins(height, size, step, config.thresh_size)
    columns = crop_origins(width, size, step, config.thresh_size)
    return [(top, left, size, size) for top in rows for left in columns]


def _quantise(image: np.ndarray, bit_depth: int) -> np.ndarray:
    scale = 255.0 if bit_depth == 8 else 65535.0
    return (np.round(np.clip(image, 0.0, 1.0) * scale) / scale).astype(np.float32)


def _write_png(path: Path, image: np.ndarray, bit_depth: int, config: SynthConfig) -> None:
    from PIL import Image

    if path.exists() and not config.overwrite:
        raise ConfigError(f"{path}: exists already (pass --overwrite to replace it)")
    buffer = io.BytesIO()
    if bit_depth == 8:
        pixels = np.round(np.clip(image, 0, 1) * 255.0).astype(np.uint8)
        Image.fromarray(pixels, mode="RGB").save(
            buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
        )
        data = buffer.getvalue()
    else:
        data = _encode_png16(np.round(np.clip(image, 0, 1) * 65535.0).astype(np.uint16))
    atomic_write_bytes(path, data)


def _encode_png16(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (Pillow cannot write 16-bit RGB, so we build the few chunks ourselves)."""
    import struct
    import zlib

    height, width, _ = pixels.shape
    rows = pixels.astype(">u2").reshape(height, width * 3).view(np.uint8).reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, PNG_COMPRESS_LEVEL))
        + chunk(b"IEND", b"")
    )


def _write_manifest(
    output_dir: Path, config: SynthConfig, records: list[dict], report: SynthReport
) -> Path:
    from clipdenoise import __version__

    output_dir.mkdir(parents=True, exist_ok=True)
    settings = asdict(config)
    settings.pop("overwrite")
    manifest = {
        "generator": "clipdenoise synth srgb",
        "clipdenoise_version": __version__,
        "config": settings,
        "count": len(records),
        "files": sorted(records, key=lambda record: record["name"]),
        "failed": [{"source": source, "reason": reason} for source, reason in report.failed],
        "skipped": [{"source": source, "reason": reason} for source, reason in report.skipped],
    }
    path = output_dir / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")
    return path


# --------------------------------------------------------------------------- command line


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
    if report.failed:
        print(f"{len(report.failed)} image(s) failed:", file=sys.stderr)
        for source, reason in report.failed:
            print(f"  {source}: {reason}", file=sys.stderr)
        return 1
    return 0


def run_mayo(args: argparse.Namespace) -> int:
    """Entry point of ``clipdenoise synth mayo``; returns the exit status."""
    from clipdenoise.ct import patient_id_of, prepare_mayo_dataset

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
