"""Denoising files: finding inputs, naming outputs, reading, denoising, writing, reporting.

What ``clipdenoise denoise`` does, callable from Python::

    from clipdenoise.file_denoising import DenoiseFilesOptions, denoise_files, plan_jobs
    from clipdenoise.inference import Denoiser
    denoiser = Denoiser(clipdenoise.load_model("rn50.synthetic-gaussian15"))
    jobs, missing = plan_jobs(["photos/"], "restored/", recursive=True)
    report = denoise_files(denoiser, jobs, DenoiseFilesOptions(), failures=missing)
    print(report.summary())

Photos (PNG, TIFF, JPEG, BMP, WebP) keep their bit depth, alpha, ICC profile and EXIF (see
:mod:`clipdenoise.image_io`). CT slices (DICOM ``.dcm``/``.dicom``/``.ima``, ``.npy`` in HU) are
denoised in the model units of :mod:`clipdenoise.ct` (HU [-1024, 3072] -> [0, 1]) and written back
as DICOM with all metadata (:func:`clipdenoise.ct.write_dicom_like`: new SOP Instance UID, series
description noting the denoising, pixel data in the original stored representation) or ``.npy``
in HU. A bad file (unreadable, truncated, empty, unsupported, too small, would overwrite) is
recorded with the reason and the batch goes on.
"""

from __future__ import annotations

import glob
import io
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from clipdenoise import ct, metrics
from clipdenoise.atomic import remove_stale_temporaries
from clipdenoise.ct import HU_MAX
from clipdenoise.data import find_reference
from clipdenoise.errors import (
    ClipDenoiseError,
    ConfigError,
    ImageReadError,
    ImageWriteError,
    OutputExistsError,
)
from clipdenoise.image_io import (
    FORMAT_BIT_DEPTHS,
    FORMAT_SUFFIXES,
    IMAGE_SUFFIXES,
    LoadedImage,
    atomic_write,
    format_of,
    load_image,
    read_image_header,
    save_image,
    save_like,
)
from clipdenoise.inference import Denoiser
from clipdenoise.noise import add_noise

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
CT_SUFFIXES = (*DICOM_SUFFIXES, ".npy")
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *CT_SUFFIXES)
OUTPUT_FORMATS = ("same", *FORMAT_SUFFIXES)


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes."""

    source: Path
    output: Path
    relative: Path  # the input's path relative to the folder given (mirrored in the output)


@dataclass
class FileResult:
    """What happened to one input file."""

    source: Path
    output: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    psnr: float | None = None
    ssim: float | None = None
    input_psnr: float | None = None
    input_ssim: float | None = None
    tile_size: int | None = None  # the tiles used, ``None`` when untiled
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BatchReport:
    """Results of a batch, in input order."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[FileResult]:
        return [r for r in self.results if not r.ok]

    @property
    def succeeded(self) -> list[FileResult]:
        return [r for r in self.results if r.ok]

    def summary(self) -> str:
        """Counts, throughput, mean metrics, and one line per failed file with the reason."""
        done = len(self.succeeded)
        rate = done / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"denoised {done} of {len(self.results)} file(s) in {self.seconds:.1f} s "
            f"({rate:.2f} images/s)"
        ]
        scored = [r for r in self.succeeded if r.psnr is not None]
        if scored:
            mean_psnr = np.mean([r.psnr for r in scored])
            mean_ssim = np.mean([r.ssim for r in scored])
            line = f"mean over {len(scored)}: PSNR {mean_psnr:.2f} dB, SSIM {mean_ssim:.4f}"
            inputs = [r for r in scored if r.input_psnr is not None]
            if inputs:
                line += (
                    f" (input: PSNR {np.mean([r.input_psnr for r in inputs]):.2f} dB, "
                    f"SSIM {np.mean([r.input_ssim for r in inputs]):.4f})"
                )
            lines.append(line)
        if self.failures:
            lines.append(f"{len(self.failures)} file(s) failed:")
            lines += [f"  {r.source}: {r.error}" for r in self.failures]
        return "\n".join(lines)


@dataclass(frozen=True)
class DenoiseFilesOptions:
    """How files are written and what extra outputs are made.

    Attributes:
        format: Output format for photos: ``same`` (the input's) or png/tiff/jpeg/bmp/webp.
        bit_depth: Output bit depth (8, 16, 32 for float TIFF); ``None`` keeps the input's
            where the format allows.
        quality: JPEG / WebP quality (JPEG default 95; WebP lossless unless given).
        overwrite: Replace existing outputs (inputs are never overwritten).
        noise: A noise spec (``gaussian:25``, ``poisson:3.5``...) added to each input first; the
            input is then the clean reference. Noisy images are clipped to [0, 1] (as a
            real noisy file would be) before denoising.
        seed: Seed of the synthetic noise; each file's generator is seeded by ``seed`` and its
            relative path, so results do not depend on the order or on the other files.
        save_noisy: Also write the noisy image (``<stem>_noisy.png``, lossless).
        compare: Also write ``<stem>_compare.png``: noisy | restored | clean (when known).
        reference: A clean image (one input) or folder of clean images matched by relative
            path or name: PSNR / SSIM of the input and of the result are computed against it.
        npy_units: Units of ``.npy`` CT inputs: ``hu`` or ``model``.
    """

    format: str = "same"
    bit_depth: int | None = None
    quality: int | None = None
    overwrite: bool = False
    noise: str | None = None
    seed: int = 0
    save_noisy: bool = False
    compare: bool = False
    reference: Path | None = None
    npy_units: str = "hu"

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(f"unknown output format {self.format!r}; use {OUTPUT_FORMATS}")
        if self.bit_depth not in (None, 8, 16, 32):
            raise ConfigError(f"bit depth must be 8, 16 or 32, got {self.bit_depth}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ConfigError(f"quality must be between 1 and 100, got {self.quality}")
        if self.npy_units not in ("hu", "model"):
            raise ConfigError(f"npy units must be 'hu' or 'model', got {self.npy_units!r}")


# ============================================================================ planning
def is_ct(path: Path) -> bool:
    """A CT slice: a CT suffix, or a DICOM file without one (scanner exports often have none)."""
    return path.suffix.lower() in CT_SUFFIXES or is_dicom_without_suffix(path)


def is_dicom_without_suffix(path: Path) -> bool:
    if path.suffix.lower() in INPUT_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def collect_inputs(
    inputs: Sequence[str | Path], *, recursive: bool = False
) -> tuple[list[tuple[Path, Path]], list[FileResult]]:
    """Expand files, folders and glob patterns into ``(file, relative path)`` pairs.

    Folders contribute their image and CT files (recursively with ``recursive``), relative to
    the folder; files and glob matches contribute their name. Returns the pairs (duplicates
    removed, order kept) and a failure for each input that matched nothing.
    """
    found: list[tuple[Path, Path]] = []
    missing: list[FileResult] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(
                p
                for p in path.glob(pattern)
                if p.is_file()
                and not p.name.startswith(".")
                and (p.suffix.lower() in INPUT_SUFFIXES or is_dicom_without_suffix(p))
            )
            if not files:
                missing.append(FileResult(path, error="folder holds no image or CT files"))
            found += [(p, p.relative_to(path)) for p in files]
        elif path.is_file() or path.is_symlink():
            found.append((path, Path(path.name)))
        elif glob.has_magic(str(entry)):
            matches = sorted(Path(p) for p in glob.glob(str(entry), recursive=recursive))
            files = [p for p in matches if p.is_file()]
            if not files:
                missing.append(FileResult(path, error="pattern matches no file"))
            found += [(p, Path(p.name)) for p in files]
        else:
            missing.append(FileResult(path, error="file not found"))
    unique: dict[Path, tuple[Path, Path]] = {}
    for source, relative in found:
        unique.setdefault(source.resolve(), (source, relative))
    return list(unique.values()), missing


def output_suffix(source: Path, fmt: str) -> str:
    """The output suffix of ``source`` for format ``fmt`` (``same`` keeps the input's)."""
    if is_dicom_without_suffix(source):
        return ".png" if fmt == "png" else ".dcm"
    if fmt == "same":
        return source.suffix
    if is_ct(source) and fmt != "png":
        return ".dcm" if source.suffix.lower() in DICOM_SUFFIXES else ".npy"
    return FORMAT_SUFFIXES[fmt]


def plan_jobs(
    inputs: Sequence[str | Path],
    output: str | Path | None,
    *,
    recursive: bool = False,
    format: str = "same",
    suffix: str | None = None,
) -> tuple[list[Job], list[FileResult]]:
    """Decide each input's output path.

    ``output`` is a file when there is one input file and it has a suffix (and is not an
    existing folder); otherwise a folder mirroring the inputs' relative paths. Without
    ``output``, results go beside the inputs with ``suffix`` (default ``_denoised``) added to
    the name. An output that is an input, or that two inputs would share, is a failure.

    Returns:
        The jobs and the failures found while planning.
    """
    pairs, failures = collect_inputs(inputs, recursive=recursive)
    jobs: list[Job] = []
    single_file = len(pairs) == 1 and len(inputs) == 1 and Path(inputs[0]).is_file()
    out = Path(output) if output is not None else None
    as_file = out is not None and single_file and bool(out.suffix) and not out.is_dir()
    if output is None and suffix is None:
        suffix = "_denoised"
    sources = {p.resolve() for p, _ in pairs}
    claimed: dict[Path, Path] = {}
    for source, relative in pairs:
        name = f"{relative.stem}{suffix or ''}{output_suffix(source, format)}"
        if as_file:
            target = out
        elif out is None:
            target = source.with_name(name)
        else:
            target = out / relative.parent / name
        resolved = target.resolve()
        if resolved in sources:
            failures.append(
                FileResult(source, error=f"output {target} would overwrite an input; refused")
            )
            continue
        if resolved in claimed:
            failures.append(
                FileResult(
                    source, error=f"output {target} is also the output of {claimed[resolved]}"
                )
            )
            continue
        claimed[resolved] = source
        jobs.append(Job(source, target, relative))
    return jobs, failures


def check_bit_depth(jobs: Sequence[Job], options: DenoiseFilesOptions) -> None:
    """Refuse a requested bit depth that an output cannot store, before any work is done.

    Raises:
        ConfigError: naming the first output concerned and the depths its format stores.
    """
    if options.bit_depth is None:
        return
    for job in jobs:
        if is_ct(job.source):
            if job.output.suffix.lower() == ".png" and options.bit_depth == 16:
                continue  # CT as PNG is always 16-bit HU + 1024
            raise ConfigError(
                f"--bit-depth {options.bit_depth}: the CT output {job.output} keeps the input's "
                "stored representation (DICOM, .npy) or is 16-bit (PNG); drop --bit-depth"
            )
        fmt = format_of(job.output)
        if options.bit_depth not in FORMAT_BIT_DEPTHS[fmt]:
            depths = "/".join(str(d) for d in FORMAT_BIT_DEPTHS[fmt])
            raise ConfigError(
                f"--bit-depth {options.bit_depth}: {fmt.upper()} output ({job.output}) stores "
                f"{depths}-bit samples only; choose another --format or drop --bit-depth"
            )


# ============================================================================ running
def _file_seed(seed: int, relative: Path) -> int:
    return (seed * 1_000_003 + zlib.crc32(relative.as_posix().encode())) % (2**63)


@dataclass
class _Loaded:
    job: Job
    planes: np.ndarray  # (H, W, C) float32 model input (clean input, or noisy when noise added)
    clean: np.ndarray | None  # reference in the same units, if known
    image: LoadedImage | None  # photo metadata
    ct: object | None  # CT: ("dicom", dataset) / ("npy", dtype)
    result: FileResult


def denoise_files(
    denoiser: Denoiser,
    jobs: Sequence[Job],
    options: DenoiseFilesOptions,
    *,
    batch_size: int = 1,
    failures: Iterable[FileResult] = (),
    on_file: Callable[[FileResult], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Denoise every job; a failing file is recorded and the others go on.

    Args:
        denoiser: The configured :class:`~clipdenoise.inference.Denoiser`.
        jobs: From :func:`plan_jobs`.
        options: Output and extra-output settings.
        batch_size: Images of identical size (and channels) read together are denoised in one
            forward pass, up to this many.
        failures: Failures already known (from planning), reported first.
        on_file: Called with each file's result as soon as it is known (progress).
        on_tile: Passed to the denoiser for tiled images (progress).

    Returns:
        The :class:`BatchReport`.
    """
    check_bit_depth(jobs, options)
    report = BatchReport(results=list(failures))
    start = time.perf_counter()
    for index in range(0, len(jobs), batch_size):
        chunk = jobs[index : index + batch_size]
        loaded: list[_Loaded] = []
        for job in chunk:
            item = _guarded(job, lambda job=job: _load(job, options, denoiser))
            if isinstance(item, FileResult):
                _finish(report, item, on_file)
            else:
                loaded.append(item)
        for group in _same_shape_groups(loaded):
            _denoise_group(denoiser, group, options, report, on_file, on_tile)
    report.seconds = time.perf_counter() - start
    return report


def _finish(report: BatchReport, result: FileResult, on_file) -> None:
    report.results.append(result)
    if on_file is not None:
        on_file(result)


def _guarded(job: Job, action: Callable):
    """Run ``action``; any exception becomes a failed :class:`FileResult` naming why."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = action()
        if isinstance(value, _Loaded):
            value.result.warnings += [str(w.message) for w in caught]
        return value
    except Exception as error:  # a bad file must not stop the batch
        return _failure(job, error, time.perf_counter() - started)


def _failure(job: Job, error: BaseException, seconds: float = 0.0) -> FileResult:
    if isinstance(error, ClipDenoiseError):
        message = str(error)
    elif isinstance(error, MemoryError):
        message = "out of memory (lower --max-memory or --tile-size)"
    else:
        message = f"{type(error).__name__}: {error}"
    prefix = f"{job.source}: "
    message = message[len(prefix) :] if message.startswith(prefix) else message
    return FileResult(job.source, error=message, seconds=seconds)


def _same_shape_groups(items: list[_Loaded]) -> list[list[_Loaded]]:
    groups: dict[tuple, list[_Loaded]] = {}
    for item in items:
        groups.setdefault(item.planes.shape, []).append(item)
    return list(groups.values())


def _input_size(path: Path) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` from a file's header without decoding it; ``None`` when
    the header cannot tell (the reader then reports the problem)."""
    try:
        if path.suffix.lower() == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return (int(shape[-2]), int(shape[-1]), 1) if len(shape) >= 2 else None
        if is_ct(path):
            import pydicom

            head = io.BytesIO(path.read_bytes())  # stated lengths cannot exceed the file
            dataset = pydicom.dcmread(head, stop_before_pixels=True, force=True)
            return int(dataset.Rows), int(dataset.Columns), 1
        header = read_image_header(path)
    except Exception:  # noqa: BLE001 - unreadable headers are reported by the reader
        return None
    return header.height, header.width, header.channels


def _check_memory(denoiser: Denoiser, path: Path) -> None:
    """Refuse an image the memory budget cannot hold, from its header, before decoding it.

    Raises:
        ConfigError: from :meth:`Denoiser.plan`, saying how much memory is needed and what
            would help.
    """
    size = _input_size(path)
    if size is None:
        return
    height, width, channels = size
    channels = max(channels, denoiser.in_channels or channels)
    denoiser.plan((1, channels, height, width))


def _load(job: Job, options: DenoiseFilesOptions, denoiser: Denoiser | None = None) -> _Loaded:
    result = FileResult(job.source, output=job.output)
    if job.output.exists() and not options.overwrite:
        raise OutputExistsError(f"output {job.output} exists already (use --overwrite)")
    if denoiser is not None:
        _check_memory(denoiser, job.source)
    if is_ct(job.source):
        planes, ct_source = _load_ct(job.source, options)
        image = None
    else:
        image = load_image(job.source)
        planes, ct_source = image.pixels, None
    clean = None
    if options.reference is not None:
        try:
            clean = _load_reference(job, options, planes, ct_source is not None)
        except (ClipDenoiseError, OSError) as error:  # scores are skipped, never the denoising
            result.warnings.append(f"not scored: {error}")
    if options.noise is not None:
        clean = planes
        planes = _add_noise(planes, options, job.relative)
    return _Loaded(job, planes, clean, image, ct_source, result)


def _load_ct(path: Path, options: DenoiseFilesOptions):
    if path.suffix.lower() == ".npy":
        hu = ct.read_ct_slice(path, npy_units=options.npy_units)
        stored = np.load(path, mmap_mode="r").dtype
        return ct.hu_to_model(hu)[..., None], ("npy", stored)
    hu, dataset = ct.read_dicom_slice(path)
    return ct.hu_to_model(hu)[..., None], ("dicom", dataset)


def _load_reference(job: Job, options: DenoiseFilesOptions, planes: np.ndarray, ct_input: bool):
    reference = Path(options.reference)
    if reference.is_dir():
        found = find_reference(job.relative, reference)
        if found is None:
            raise ImageReadError(f"no reference image for it in {reference}")
        reference = found
    elif not reference.is_file():
        raise ImageReadError(f"reference {reference} not found")
    if ct_input:
        clean = ct.hu_to_model(ct.read_ct_slice(reference, npy_units=options.npy_units))[..., None]
    else:
        clean = load_image(reference).pixels
    if clean.shape[:2] != planes.shape[:2]:
        raise ImageReadError(
            f"reference {reference} is {clean.shape[1]}x{clean.shape[0]}, the input "
            f"{planes.shape[1]}x{planes.shape[0]}"
        )
    if clean.shape[2] != planes.shape[2]:
        clean = np.repeat(clean, 3, axis=2) if clean.shape[2] == 1 else clean.mean(2, keepdims=True)
    return clean


def _add_noise(planes: np.ndarray, options: DenoiseFilesOptions, relative: Path) -> np.ndarray:
    generator = torch.Generator().manual_seed(_file_seed(options.seed, relative))
    clean = torch.from_numpy(np.ascontiguousarray(planes.transpose(2, 0, 1)))
    noisy = add_noise(clean, options.noise, generator)
    return noisy.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32)


def _denoise_group(denoiser, group, options, report, on_file, on_tile) -> None:
    started = time.perf_counter()
    batch = torch.from_numpy(np.stack([item.planes.transpose(2, 0, 1) for item in group]))
    try:
        restored = denoiser.denoise_batch(batch, on_tile=on_tile)
    except Exception as error:
        if len(group) > 1:  # retry one by one so that one bad image does not fail the others
            for item in group:
                _denoise_group(denoiser, [item], options, report, on_file, on_tile)
            return
        _finish(report, _failure(group[0].job, error, time.perf_counter() - started), on_file)
        return
    plan = denoiser.last_plan
    for item, planes in zip(group, restored):
        item.result.tile_size = plan.tile_size if plan is not None else None
        restored_hwc = planes.permute(1, 2, 0).numpy()
        outcome = _guarded(item.job, lambda item=item, r=restored_hwc: _write(item, r, options))
        outcome.seconds = (time.perf_counter() - started) / len(group)
        _finish(report, outcome, on_file)


def _write(item: _Loaded, restored: np.ndarray, options: DenoiseFilesOptions) -> FileResult:
    result = item.result
    for output in (item.job.output, _extra_path(item, "_noisy"), _extra_path(item, "_compare")):
        remove_stale_temporaries(output)  # left by an earlier run that was killed mid-write
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if item.ct is not None:
            _write_ct(item, restored, options)
        else:
            fmt = format_of(item.job.output)
            save_like(
                item.job.output,
                restored,
                item.image,
                format=fmt,
                bit_depth=options.bit_depth,
                quality=options.quality,
                overwrite=options.overwrite,
            )
        if options.save_noisy and options.noise is not None:
            _save_extra(item, "_noisy", item.planes, options)
        if options.compare:
            _write_compare(item, restored, options)
    result.warnings += [str(w.message) for w in caught]
    if item.clean is not None:
        _score(result, item, restored)
    return result


def _extra_path(item: _Loaded, tag: str) -> Path:
    """``<output stem><tag>.png`` (CT noisy slices: ``.npy`` in HU)."""
    output = item.job.output
    suffix = ".npy" if item.ct is not None and tag == "_noisy" else ".png"
    return output.with_name(f"{output.stem}{tag}{suffix}")


def _save_extra(item: _Loaded, tag: str, planes: np.ndarray, options: DenoiseFilesOptions) -> None:
    path = _extra_path(item, tag)
    if item.ct is not None:
        hu = ct.model_to_hu(planes[..., 0])
        atomic_write(path, lambda handle: np.save(handle, hu), overwrite=options.overwrite)
        return
    depth = 16 if item.image is not None and item.image.bit_depth > 8 else 8
    alpha = item.image.alpha if item.image is not None else None
    save_image(
        path, planes, alpha=alpha, bit_depth=depth, format="png", overwrite=options.overwrite
    )


def _write_ct(item: _Loaded, restored: np.ndarray, options: DenoiseFilesOptions) -> None:
    _write_ct_to(item, restored, item.job.output, options)


def _write_ct_to(item: _Loaded, planes: np.ndarray, path: Path, options) -> None:
    hu = ct.model_to_hu(planes[..., 0])
    kind, info = item.ct
    if path.exists() and not options.overwrite:
        raise OutputExistsError(f"output {path} exists already (use --overwrite)")
    suffix = path.suffix.lower()
    if suffix == ".png":
        ct.write_ct_png16(hu, path)
    elif suffix in DICOM_SUFFIXES:
        if kind != "dicom":
            raise ImageWriteError(f"{path}: DICOM output needs a DICOM input (the template)")
        ct.write_dicom_like(info, hu, path, overwrite=options.overwrite)
    else:
        values = hu if kind != "npy" or options.npy_units == "hu" else ct.hu_to_model(hu)
        dtype = np.dtype(info) if kind == "npy" else np.dtype(np.float32)
        if dtype.kind in "iu":
            limits = np.iinfo(dtype)
            values = np.clip(np.rint(values), limits.min, limits.max)
        array = values.astype(dtype)

        def write(handle) -> None:
            np.save(handle, array, allow_pickle=False)

        atomic_write(path, write, overwrite=options.overwrite)


def _display(item: _Loaded, planes: np.ndarray) -> np.ndarray:
    """8-bit RGB rendering for the comparison strip (CT: the abdomen window)."""
    if item.ct is not None:
        view = ct.apply_window(ct.model_to_hu(planes[..., 0]), "abdomen")[..., None]
    else:
        view = np.clip(planes, 0.0, 1.0)
    if view.shape[-1] == 1:
        view = np.repeat(view, 3, axis=-1)
    return np.round(view * 255).astype(np.uint8)


def _write_compare(item: _Loaded, restored: np.ndarray, options: DenoiseFilesOptions) -> None:
    from PIL import Image, ImageDraw

    panels = [("noisy" if options.noise else "input", item.planes), ("restored", restored)]
    if item.clean is not None:
        panels.append(("clean", item.clean))
    height, width = item.planes.shape[:2]
    gap = 4
    strip = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap, height), "white")
    draw = ImageDraw.Draw(strip)
    for index, (label, planes) in enumerate(panels):
        left = index * (width + gap)
        strip.paste(Image.fromarray(_display(item, planes)), (left, 0))
        draw.rectangle((left, 0, left + 6 * len(label) + 6, 14), fill="black")
        draw.text((left + 3, 2), label, fill="white")
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    atomic_write(
        _extra_path(item, "_compare"),
        lambda handle: handle.write(buffer.getvalue()),
        overwrite=options.overwrite,
    )


def _score(result: FileResult, item: _Loaded, restored: np.ndarray) -> None:
    clean = item.clean
    if item.ct is not None:

        def psnr(a, b):
            return metrics.ct_psnr(a, b, norm_range_max=HU_MAX)

        def ssim(a, b):
            return metrics.ct_ssim(a, b, norm_range_max=HU_MAX)

    else:

        def psnr(a, b):
            return metrics.psnr(metrics.to_metric_scale(a), metrics.to_metric_scale(b))

        def ssim(a, b):
            return metrics.ssim(metrics.to_metric_scale(a), metrics.to_metric_scale(b))

    output = restored if restored.shape == clean.shape else restored.mean(2, keepdims=True)
    result.psnr, result.ssim = psnr(clean, output), ssim(clean, output)
    result.input_psnr, result.input_ssim = psnr(clean, item.planes), ssim(clean, item.planes)


__all__ = [
    "CT_SUFFIXES",
    "INPUT_SUFFIXES",
    "BatchReport",
    "DenoiseFilesOptions",
    "FileResult",
    "Job",
    "check_bit_depth",
    "collect_inputs",
    "denoise_files",
    "plan_jobs",
]
