"""Synthesising a paired sRGB training set with realistic camera noise.

The reference's sRGB recipe (``CLIPDenoising_sRGBDenoising_FixedPoissonGaussian.yml``) trains
on DIV2K sub-images (BasicSR ``extract_subimages``: 480x480 crops every 240 px) whose noisy
copies were written once by ``ISP_implement.py`` at the fixed level sigma_s = 0.04,
sigma_c = 0.03. :func:`synthesize_srgb_dataset` does the same from any folder of clean images;
with :meth:`clipdenoise.isp.CameraNoiseConfig.reference` it makes the very files the reference's
script makes for the seeds it records:

    OUT/clean/<name>[_sNNN].png   the clean image (or crop), 8-bit (or 16-bit) RGB PNG
    OUT/noisy/<name>[_sNNN].png   its noisy copy (:func:`clipdenoise.isp.simulate_camera_noise`)
    OUT/manifest.json             the settings and every image's sampled camera

Every image (and every crop) draws its camera and noise from its own generator, seeded by the
base seed and the file's relative path, so the output does not depend on the number of worker
processes, on the order of the files or on which other files are present: the same seed gives
byte-identical files. All files are written atomically. Unreadable images are reported by name
and skipped (:attr:`SynthReport.failed`).

The output folder is a paired training set as it stands:
``PairedImageDataset(OUT)`` (:mod:`clipdenoise.data`).
The command line ``clipdenoise synth srgb`` (:mod:`clipdenoise.cli.synth`) calls this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from clipdenoise import __version__
from clipdenoise.atomic import atomic_write_bytes, atomic_write_text
from clipdenoise.errors import ClipDenoiseError, ConfigError, ImageReadError
from clipdenoise.image_io import IMAGE_SUFFIXES, encode_png16, read_image
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


#: One input file to process: ``(path, relative path, output folder, config)``.
_Job = tuple[Path, str, Path, SynthConfig]


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
    jobs: list[_Job] = []
    owners: dict[str, str] = {}
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


def _run_jobs(
    jobs: list[_Job], workers: int, progress: bool
) -> Iterator[tuple[str, list[dict] | _Failure]]:
    """Process ``jobs`` in this process or a spawn pool, yielding results in job order."""
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


def _process_file_star(job: _Job) -> list[dict] | _Failure:
    return _process_file(*job)


def _process_file(
    path: Path, relative: str, output_dir: Path, config: SynthConfig
) -> list[dict] | _Failure:
    """Write the clean/noisy pair(s) of one input file; its manifest records, or why not."""
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
    import io

    from PIL import Image

    if path.exists() and not config.overwrite:
        raise ConfigError(f"{path}: exists already (pass --overwrite to replace it)")
    if bit_depth == 8:
        buffer = io.BytesIO()
        pixels = np.round(np.clip(image, 0, 1) * 255.0).astype(np.uint8)
        Image.fromarray(pixels, mode="RGB").save(
            buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
        )
        data = buffer.getvalue()
    else:
        samples = np.round(np.clip(image, 0, 1) * 65535.0).astype(np.uint16)
        data = encode_png16(samples, compress_level=PNG_COMPRESS_LEVEL)
    atomic_write_bytes(path, data)


def _write_manifest(
    output_dir: Path, config: SynthConfig, records: list[dict], report: SynthReport
) -> Path:
    """Write ``manifest.json``: the settings, every written file's camera, failures, skips."""
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


__all__ = [
    "MANIFEST_NAME",
    "PNG_COMPRESS_LEVEL",
    "SynthConfig",
    "SynthReport",
    "crop_origins",
    "file_seed_sequence",
    "list_clean_images",
    "synthesize_srgb_dataset",
]
