"""The evaluation harness: any set of methods on the paper's benchmark suites, same noisy inputs.

Suites (paper Tables 1–3 and the supplement):

* ``synthetic`` — clean sets (Kodak24, CBSD68, McMaster, Urban100, or any folder) under
  synthetic noise made by the reference protocol
  (:func:`clipdenoise.noise.add_reference_noise`, ``np.random.seed(0)`` before every image).
  Default noises: Gaussian σ 15/25/50, spatial Gaussian 40/45/50/55, Poisson α 2/2.5/3/3.5,
  speckle 0.02/0.03/0.04, salt & pepper 0.012/0.016/0.02.
* ``real-srgb`` — paired real-noise photos (CC, PolyU, SIDD validation; whatever is present),
  scored against their references with the restored image rounded to 8 bits (reference).
* ``ldct`` — low-dose CT slices of a held-out patient (the reference's ``.npy`` format:
  ``*input*`` / ``*target*`` files, patient id in the name), scored in HU.

For each image the noisy input is made once and given to every method. Networks see it
reflect-padded at the bottom/right to a multiple of 32 and cropped back, then clamped to [0, 1]
(:class:`~clipdenoise.evaluation.protocol.EvalProtocol`). Results are cached per (method,
dataset, noise, level) image by image (:class:`~clipdenoise.evaluation.results.ResultCache`), so
an interrupted run resumes and a re-run only computes what is missing. Under ``torchrun`` each
rank takes a shard of the images and rank 0 merges the records and writes the tables.
:func:`restore_crops` restores chosen images the same way for a figure
(:func:`~clipdenoise.evaluation.plots.plot_image_grid` draws it).

Example:
    >>> import clipdenoise
    >>> table = clipdenoise.evaluate(["noisy", "bm3d"], datasets=["Kodak24"],
    ...                              noises=["gaussian:25"], out_dir="eval")  # doctest: +SKIP
    >>> print(table.to_markdown())  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from clipdenoise import __version__, metrics
from clipdenoise.atomic import atomic_write, atomic_write_text
from clipdenoise.data.registry import default_data_root
from clipdenoise.data.testsets import (
    LDCT_TEST_PATIENT,
    REAL_SRGB_DATASETS,
    SUITES,
    SYNTHETIC_DATASETS,
    TestImage,
    TestSet,
    image_size,
    list_test_set,
    read_clean,
    read_noisy,
)
from clipdenoise.devices import COMPUTE_DTYPES, resolve_device
from clipdenoise.errors import (
    ClipDenoiseError,
    ConfigError,
    DatasetError,
    EvaluationError,
    MissingExtraError,
)
from clipdenoise.evaluation.methods import Method, resolve_method
from clipdenoise.evaluation.plots import plot_psnr_vs_level
from clipdenoise.evaluation.protocol import EvalProtocol
from clipdenoise.evaluation.results import (
    ImageCrops,
    ImageRecord,
    ResultCache,
    ResultsTable,
    RowKey,
    per_image_csv,
)
from clipdenoise.image_io import read_image
from clipdenoise.inference import pad_to_multiple
from clipdenoise.noise import (
    NOISE_KINDS,
    NoiseSpec,
    add_reference_noise,
    noise_kind,
    parse_noise_spec,
)

__all__ = [
    "EvaluationError",
    "LDCT_TEST_PATIENT",
    "REAL_SRGB_DATASETS",
    "SUITES",
    "SYNTHETIC_DATASETS",
    "SYNTHETIC_NOISE_KINDS",
    "TestImage",
    "TestSet",
    "default_noises",
    "evaluate",
    "list_test_set",
    "make_noisy",
    "restore_batch",
    "restore_crops",
    "score_pair",
]

SYNTHETIC_NOISE_KINDS = ("gaussian", "spatial_gaussian", "poisson", "speckle", "salt_pepper")


def default_noises() -> list[NoiseSpec]:
    """The synthetic suite's noises: every paper level of the five kinds, in paper order."""
    return [
        NoiseSpec(kind, level)
        for kind in SYNTHETIC_NOISE_KINDS
        for level in NOISE_KINDS[kind].paper_levels
    ]


def _parse_noises(noises: Iterable[Any] | None) -> list[NoiseSpec]:
    if noises is None:
        return default_noises()
    specs = []
    for item in noises:
        if isinstance(item, str) and ":" not in item:
            # a bare kind means all its paper levels
            kind = noise_kind(item)
            specs.extend(NoiseSpec(kind.name, level) for level in kind.paper_levels)
        else:
            specs.append(parse_noise_spec(item))
    return specs


# --------------------------------------------------------------------------------------------
# One image: noise, restoration, scores
# --------------------------------------------------------------------------------------------


def _level_text(noise: Any) -> str:
    return str(noise).partition(":")[2] if noise is not None else ""


def make_noisy(
    clean: np.ndarray, noise: Any, protocol: EvalProtocol, image_index: int = 0
) -> np.ndarray:
    """The noisy test input for one clean image under ``protocol`` (float64, ``(H, W, C)``).

    With ``reseed_per_image`` every image uses ``protocol.seed`` (the reference); otherwise the
    image at position ``image_index`` of the sorted set uses ``seed + image_index``.
    """
    seed = protocol.seed if protocol.reseed_per_image else protocol.seed + image_index
    noisy = add_reference_noise(clean, noise, seed=seed)
    if protocol.clip_noisy_input:
        noisy = np.clip(noisy, 0.0, 1.0)
    return noisy


def _prepare_network(module: nn.Module, device: torch.device) -> None:
    """Eval mode on ``device`` in the channels-last layout, which oneDNN and cuDNN run fastest
    (twice as fast as NCHW for a DnCNN on an AVX2 CPU); outputs agree to float rounding."""
    module.to(device, memory_format=torch.channels_last).eval()


@torch.no_grad()
def restore_batch(
    method: Method,
    module: nn.Module,
    noisy: torch.Tensor,
    protocol: EvalProtocol,
    *,
    device: torch.device,
    dtype: str = "float32",
) -> torch.Tensor:
    """Run one method on a ``(B, C, H, W)`` float32 batch; returns float32 on the CPU.

    Networks get the protocol's reflect padding (bottom/right, to ``pad_multiple``), run on
    ``device`` (under autocast for ``float16`` / ``bfloat16``) and are cropped back; classical
    methods see the image as is. The output is clamped to [0, 1] when the protocol says so.
    """
    if method.is_network:
        batch = noisy.to(device)
        padded, (height, width) = pad_to_multiple(batch, protocol.pad_multiple)
        padded = padded.contiguous(memory_format=torch.channels_last)
        if dtype == "float32":
            restored = module(padded)
        else:
            with torch.autocast(device_type=device.type, dtype=COMPUTE_DTYPES[dtype]):
                restored = module(padded)
        restored = restored[..., :height, :width].float()
    else:
        restored = module(noisy)
    if protocol.clamp_output:
        restored = restored.clamp(0.0, 1.0)
    return restored.float().cpu()


def score_pair(
    clean: np.ndarray, restored: np.ndarray, protocol: EvalProtocol
) -> tuple[float, float]:
    """PSNR and SSIM of one restored image under ``protocol``.

    Args:
        clean: ``(H, W, C)`` float32 in [0, 1] (CT: model units).
        restored: Same shape, float32, as the method returned it (already clamped if the
            protocol clamps).

    Returns:
        ``(psnr, ssim)``.
    """
    if protocol.metric_space == "ct-hu":
        options = {"norm_range_max": protocol.ct_norm_range_max}
        return (
            metrics.ct_psnr(clean, restored, **options),
            metrics.ct_ssim(clean, restored, **options),
        )
    clean_255 = metrics.to_metric_scale(clean, round_to_uint8=protocol.round_to_uint8)
    if protocol.clamp_output:
        restored_255 = metrics.to_metric_scale(restored, round_to_uint8=protocol.round_to_uint8)
    else:
        restored_255 = np.asarray(restored, dtype=restored.dtype) * restored.dtype.type(255.0)
        restored_255 = restored_255.astype(np.float64)
    options = {"crop_border": protocol.crop_border, "y_channel": protocol.channel == "y"}
    return (
        metrics.psnr(clean_255, restored_255, **options),
        metrics.ssim(clean_255, restored_255, **options),
    )


def restore_crops(
    methods: Sequence[str | nn.Module | Method],
    clean_paths: Sequence[str | Path],
    noise: str | NoiseSpec,
    *,
    crop: tuple[int, int, int, int] | None = None,
    protocol: EvalProtocol | None = None,
    device: str | torch.device = "cpu",
) -> list[ImageCrops]:
    """Crops of chosen images for a figure: clean, noisy and each method's restoration.

    Every method sees the same noisy input, the protocol's noise for the image (as in
    :func:`evaluate`); the ``noisy`` method is left out, the noisy input has its own panel.
    Draw the result with :func:`clipdenoise.evaluation.plots.plot_image_grid`.

    Args:
        methods: Method specs or modules (as for :func:`evaluate`).
        clean_paths: Clean images to show.
        noise: A noise spec (``"gaussian:25"``).
        crop: ``(top, left, height, width)`` of the shown crop (default: a central square of up
            to 128 pixels). Scores are of the whole image.
        protocol: Conventions (default: :meth:`EvalProtocol.synthetic`).
        device: Where networks run.

    Returns:
        One :class:`~clipdenoise.evaluation.results.ImageCrops` per path, in order.
    """
    protocol = protocol or EvalProtocol.synthetic()
    noise = parse_noise_spec(noise)
    torch_device = torch.device(device)
    resolved = [
        method
        for method in (resolve_method(m, map_location=torch_device) for m in methods)
        if method.kind != "noisy"
    ]
    return [
        _image_crops(path, resolved, noise, crop, protocol, torch_device) for path in clean_paths
    ]


def _image_crops(
    path: str | Path,
    methods: list[Method],
    noise: NoiseSpec,
    crop: tuple[int, int, int, int] | None,
    protocol: EvalProtocol,
    device: torch.device,
) -> ImageCrops:
    clean = read_image(path)
    noisy = make_noisy(clean, noise, protocol)
    top, left, height, width = crop or _central_crop(clean.shape[:2])
    window = (slice(top, top + height), slice(left, left + width))
    noisy_tensor = torch.from_numpy(noisy).permute(2, 0, 1)[None].float()
    noisy_shown = np.clip(noisy, 0, 1).astype(np.float32)
    restored, scores = {}, {}
    for method in methods:
        module = method.for_noise(noise)
        if method.is_network:
            _prepare_network(module, device)
        output = restore_batch(method, module, noisy_tensor, protocol, device=device)
        image = output[0].permute(1, 2, 0).numpy()
        restored[method.name] = image[window]
        scores[method.name] = score_pair(clean, image, protocol)
    return ImageCrops(
        name=Path(path).stem,
        noise=str(noise),
        clean=clean[window],
        noisy=noisy_shown[window],
        noisy_scores=score_pair(clean, noisy_shown, protocol),
        restored=restored,
        restored_scores=scores,
    )


def _central_crop(shape: tuple[int, int], size: int = 128) -> tuple[int, int, int, int]:
    height, width = shape
    side_h, side_w = min(size, height), min(size, width)
    return (height - side_h) // 2, (width - side_w) // 2, side_h, side_w


# --------------------------------------------------------------------------------------------
# Run metadata
# --------------------------------------------------------------------------------------------


def git_commit() -> str | None:
    """The commit of the installed package's git checkout, when it is one (else None)."""
    folder = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) == 40 else None


def _save_restored(path: Path, restored: np.ndarray) -> None:
    pixels = np.round(np.clip(restored, 0.0, 1.0) * 255.0).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    atomic_write(path, lambda stream: image.save(stream, format="PNG"))


# --------------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------------


@dataclass
class _Task:
    test_set: TestSet
    noise: Any  # NoiseSpec, or None for real-noise sets
    row: RowKey
    entries: dict[str, Path] = field(default_factory=dict)
    done: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class _Run:
    """What planning, computing and merging of one :func:`evaluate` call share."""

    methods: list[Method]
    protocol: EvalProtocol
    dtype: str
    cache: ResultCache | None
    memory: dict[Path, list[ImageRecord]]  # records of this call, per cache entry
    info: dict[str, Any]  # provenance written into every record and the tables


def _normalise_methods(
    methods: Sequence[str | nn.Module | Method] | Mapping[str, str | nn.Module | Method],
    map_location: str | torch.device,
) -> list[Method]:
    items = methods.items() if isinstance(methods, Mapping) else [(None, m) for m in methods]
    resolved = [resolve_method(spec, name=name, map_location=map_location) for name, spec in items]
    names = [m.name for m in resolved]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"method names must be unique, repeated: {duplicates}; use 'label=spec'")
    if not resolved:
        raise ConfigError("no method to evaluate")
    return resolved


def _cache_key(method: Method, protocol: EvalProtocol, test_set: TestSet, dtype: str) -> str:
    text = json.dumps(
        [method.fingerprint(), protocol.fingerprint(), test_set.identity(), dtype], sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shard_info(shard: tuple[int, int] | None) -> tuple[int, int, Any, bool]:
    """(rank, world_size, torch.distributed or None, whether we created the process group):
    an explicit shard, a torchrun job (``WORLD_SIZE`` > 1), or a single process."""
    if shard is not None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ConfigError(
                f"shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}"
            )
        return rank, world, None, False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        created = not dist.is_initialized()
        if created:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        return dist.get_rank(), dist.get_world_size(), dist, created
    return 0, 1, None, False


def evaluate(
    methods: Sequence[str | nn.Module | Method] | Mapping[str, str | nn.Module | Method],
    *,
    suite: str = "synthetic",
    datasets: Sequence[str | Path] | None = None,
    noises: Sequence[Any] | None = None,
    data_root: str | Path | None = None,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    protocol: EvalProtocol | None = None,
    device: str | torch.device = "auto",
    dtype: str = "float32",
    batch_size: int = 1,
    max_images: int | None = None,
    images: Sequence[str] | None = None,
    save_images: bool = False,
    plots: bool = False,
    progress: bool = True,
    ct_patient: str = LDCT_TEST_PATIENT,
    shard: tuple[int, int] | None = None,
    merge: bool = True,
    compute: bool = True,
    write_tables: bool = True,
) -> ResultsTable | None:
    """Score methods on a benchmark suite and write the results tables.

    Args:
        methods: Method specs (``"bm3d"``, ``"ours=clipdenoise:model.safetensors"``, see
            :mod:`clipdenoise.evaluation.methods`), modules following the denoiser contract, or a mapping
            ``label -> spec | module``.
        suite: ``"synthetic"``, ``"real-srgb"`` or ``"ldct"``.
        datasets: Dataset names (resolved under ``data_root``) or folders. Default: the
            suite's sets that are present (Kodak24, CBSD68, McMaster, Urban100 / CC, PolyU,
            SIDD / the ``ldct`` folder).
        noises: For ``synthetic``: specs (``"gaussian:25"``) or bare kinds (all paper levels).
            Default: all 17 paper settings (:func:`default_noises`). Ignored by real suites.
        data_root: Folder holding the datasets (else ``$CLIPDENOISE_DATA``, else the default
            data root, :func:`clipdenoise.data.registry.default_data_root`).
        out_dir: Where the cache, tables, per-image CSV, plots and images go. ``None`` keeps
            everything in memory (no resume).
        cache_dir: Where the per-image cache goes instead of ``out_dir/cache`` (e.g. outside a
            repository that commits ``out_dir``'s tables).
        protocol: Conventions (default: the suite's reference protocol).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (networks only).
        dtype: ``"float32"``, or ``"float16"`` / ``"bfloat16"`` autocast for networks.
        batch_size: Images of the same size restored together by networks.
        max_images: Use only the first N images of each set (quick checks).
        images: Use only the images with these names (file stems), e.g. for a figure.
        save_images: Also write the restored images (8-bit PNG) under ``out_dir/images``.
        plots: Also write PSNR-versus-level plots (needs matplotlib).
        progress: Show a progress bar with ETA.
        ct_patient: Held-out patient id of the ``ldct`` suite.
        shard: ``(rank, world_size)`` to compute only this shard of the images; by default taken
            from torchrun's environment (``WORLD_SIZE``), else the whole set.
        merge: After computing, build the tables from every shard's records (done by rank 0
            only under torchrun, after a barrier).
        compute: ``False`` computes nothing and builds the tables from the cache alone.
        write_tables: ``False`` leaves ``out_dir`` untouched (with ``compute=False``: read its
            cache only, e.g. to compare with results another script owns).

    Returns:
        The :class:`~clipdenoise.evaluation.results.ResultsTable` (on rank 0; ``None`` on other ranks or
        with ``merge=False``). Images that failed (unreadable files...) are listed in
        ``table.metadata["failures"]``.

    Raises:
        ConfigError: Bad method, noise, suite or option.
        EvaluationError: None of the suite's default datasets found.
        DatasetNotFoundError: A dataset asked for is missing (the message names its folder and
            how to get it).
        DatasetError: A dataset asked for holds no usable images / pairs.
    """
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; valid suites: {', '.join(SUITES)}")
    if dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    protocol = (
        protocol
        or {
            "synthetic": EvalProtocol.synthetic,
            "real-srgb": EvalProtocol.real_srgb,
            "ldct": EvalProtocol.ldct,
        }[suite]()
    )
    rank, world_size, dist, created_group = _shard_info(shard)
    if world_size > 1 and out_dir is None:
        raise ConfigError("a sharded / torchrun evaluation needs out_dir (ranks merge on disk)")
    torch_device = resolve_device(device)
    if dist is not None and torch_device.type == "cuda":
        torch_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    method_list = _normalise_methods(methods, torch_device)
    for method in method_list:
        if method.is_network and method.module is not None:
            _prepare_network(method.module, torch_device)

    test_sets = _collect_test_sets(suite, datasets, data_root, ct_patient, max_images)
    if images is not None:
        wanted = set(images)
        for test_set in test_sets:
            test_set.images = [item for item in test_set.images if item.name in wanted]
    noise_list = _parse_noises(noises) if suite == "synthetic" else [None]
    if cache_dir is None and out_dir is not None:
        cache_dir = Path(out_dir) / "cache"
    run = _Run(
        methods=method_list,
        protocol=protocol,
        dtype=dtype,
        cache=ResultCache(cache_dir) if cache_dir is not None else None,
        memory={},
        info={
            "package_version": __version__,
            "git_commit": git_commit(),
            "torch_version": torch.__version__,
            "device": str(torch_device),
            "dtype": dtype,
            "suite": suite,
            "world_size": world_size,
            "rank": rank,
        },
    )
    tasks = _plan_tasks(test_sets, noise_list, run, record_meta=compute)
    failures = []
    if compute:
        failures = _run_tasks(
            tasks,
            run,
            rank=rank,
            world_size=world_size,
            device=torch_device,
            batch_size=batch_size,
            out_dir=Path(out_dir) if out_dir is not None else None,
            save_images=save_images,
            progress=progress and rank == 0,
        )
    if dist is not None:
        dist.barrier()
        if created_group:
            dist.destroy_process_group()
    if not merge or rank != 0:
        return None
    return _merge_and_write(tasks, run, failures, out_dir if write_tables else None, plots)


def _collect_test_sets(
    suite: str,
    datasets: Sequence[str | Path] | None,
    data_root: str | Path | None,
    ct_patient: str,
    max_images: int | None,
) -> list[TestSet]:
    if datasets is None:
        defaults = {
            "synthetic": SYNTHETIC_DATASETS,
            "real-srgb": REAL_SRGB_DATASETS,
            "ldct": ("ldct",),
        }[suite]
        test_sets = []
        for name in defaults:
            try:
                test_sets.append(
                    list_test_set(name, suite, data_root=data_root, ct_patient=ct_patient)
                )
            except DatasetError:  # absent or unusable: the default list takes what is there
                continue
        if not test_sets:
            raise EvaluationError(
                f"none of the {suite} datasets ({', '.join(defaults)}) was found under "
                f"{default_data_root(data_root)}; pass --data-root / $CLIPDENOISE_DATA or "
                "dataset folders"
            )
    else:
        test_sets = [
            list_test_set(name, suite, data_root=data_root, ct_patient=ct_patient)
            for name in datasets
        ]
    if max_images is not None:
        for test_set in test_sets:
            test_set.images = test_set.images[:max_images]
    return test_sets


def _plan_tasks(
    test_sets: list[TestSet],
    noise_list: list[Any],
    run: _Run,
    *,
    record_meta: bool = True,
) -> list[_Task]:
    cache = run.cache
    tasks = []
    for test_set in test_sets:
        for noise in noise_list if not test_set.real_noise else [None]:
            row = RowKey(
                test_set.name, noise.kind if noise is not None else "real", _level_text(noise)
            )
            task = _Task(test_set, noise, row)
            for method in run.methods:
                key = _cache_key(method, run.protocol, test_set, run.dtype)
                entry = (
                    cache.entry(method.name, row, key)
                    if cache is not None
                    else Path(method.name) / row.label / key
                )
                task.entries[method.name] = entry
                records = cache.load(entry) if cache is not None else {}
                task.done[method.name] = set(records)
                if cache is not None and record_meta:
                    cache.ensure_meta(
                        entry,
                        {
                            "method": method.describe(),
                            "protocol": run.protocol.to_dict(),
                            "dataset": test_set.name,
                            "dataset_folder": str(test_set.folder),
                            "dataset_identity": test_set.identity(),
                            "noise": str(noise) if noise is not None else "real",
                            "dtype": run.dtype,
                        },
                    )
                run.memory.setdefault(entry, [])
            tasks.append(task)
    return tasks


def _batches(
    items: list[tuple[int, TestImage]], test_set: TestSet, batch_size: int
) -> list[list[tuple[int, TestImage]]]:
    """Group same-size images into batches of at most ``batch_size`` (order kept per size)."""
    if batch_size == 1:
        return [[item] for item in items]
    groups: dict[tuple[int, int], list[tuple[int, TestImage]]] = {}
    for item in items:
        groups.setdefault(image_size(item[1], test_set), []).append(item)
    batches = []
    for size, group in groups.items():
        step = 1 if size == (-1, -1) else batch_size
        batches.extend(group[i : i + step] for i in range(0, len(group), step))
    return batches


def _run_tasks(
    tasks: list[_Task],
    run: _Run,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
    batch_size: int,
    out_dir: Path | None,
    save_images: bool,
    progress: bool,
) -> list[dict[str, str]]:
    work = []
    for task in tasks:
        shard = [
            (index, item)
            for index, item in enumerate(task.test_set.images)
            if index % world_size == rank
        ]
        pending = [
            (index, item)
            for index, item in shard
            if any(item.name not in task.done[m.name] for m in run.methods)
        ]
        work.append((task, pending))
    total = sum(
        sum(1 for _, item in pending for m in run.methods if item.name not in task.done[m.name])
        for task, pending in work
    )
    failures: list[dict[str, str]] = []
    bar = tqdm(total=total, disable=not progress, unit="img", desc="evaluate", dynamic_ncols=True)
    try:
        for task, pending in work:
            bar.set_postfix_str(f"{task.test_set.name} {task.row.label}")
            for batch in _batches(pending, task.test_set, batch_size):
                _run_batch(
                    task,
                    batch,
                    run,
                    failures,
                    device=device,
                    out_dir=out_dir,
                    save_images=save_images,
                    bar=bar,
                )
    finally:
        bar.close()
    return failures


def _run_batch(
    task: _Task,
    batch: list[tuple[int, TestImage]],
    run: _Run,
    failures: list[dict[str, str]],
    *,
    device: torch.device,
    out_dir: Path | None,
    save_images: bool,
    bar: Any,
) -> None:
    method_list, protocol, dtype, run_info = run.methods, run.protocol, run.dtype, run.info
    cleans, noisies, items = [], [], []
    # Grey photos scored by RGB networks are read as three equal channels, as the reference's
    # cv2.imread gives them (synthetic noise is then drawn for each channel).
    wanted = {_model_channels(m.for_noise(task.noise)) for m in method_list} - {None}
    as_rgb = task.test_set.modality != "ct" and wanted == {3}
    for index, item in batch:
        try:
            clean = _as_rgb(read_clean(item, task.test_set), as_rgb)
            if task.noise is None:
                noisy = _as_rgb(read_noisy(item, task.test_set), as_rgb)
                if noisy.shape != clean.shape:
                    raise EvaluationError(
                        f"{item.noisy_path}: shape {noisy.shape} differs from its reference "
                        f"{item.clean_path} {clean.shape}"
                    )
            else:
                noisy = make_noisy(clean, task.noise, protocol, index)
        except (ClipDenoiseError, OSError, ValueError) as error:
            failures.append(
                {"dataset": task.test_set.name, "image": item.name, "error": str(error)}
            )
            bar.update(sum(1 for m in method_list if item.name not in task.done[m.name]))
            continue
        cleans.append(clean)
        noisies.append(noisy)
        items.append(item)
    if not items:
        return
    noisy_batch = torch.from_numpy(np.stack(noisies)).permute(0, 3, 1, 2).float()
    for method in method_list:
        todo = [i for i, item in enumerate(items) if item.name not in task.done[method.name]]
        if not todo:
            continue
        module = method.for_noise(task.noise)
        _check_channels(method, module, noisy_batch.shape[1], task.test_set.name)
        if method.is_network and device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        restored = restore_batch(
            method, module, noisy_batch[todo], protocol, device=device, dtype=dtype
        )
        if method.is_network and device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / len(todo)
        sigmas = getattr(module, "last_sigmas", None) or [None] * len(todo)
        records = []
        for position, item_index in enumerate(todo):
            item = items[item_index]
            restored_image = restored[position].permute(1, 2, 0).numpy()
            psnr_value, ssim_value = score_pair(cleans[item_index], restored_image, protocol)
            sigma = sigmas[position]
            records.append(
                ImageRecord(
                    method=method.name,
                    dataset=task.test_set.name,
                    noise=task.row.noise,
                    level=task.row.level,
                    image=item.name,
                    height=restored_image.shape[0],
                    width=restored_image.shape[1],
                    channels=restored_image.shape[2],
                    psnr=psnr_value,
                    ssim=ssim_value,
                    seconds=seconds,
                    sigma_used_255=None if sigma is None else float(sigma) * 255.0,
                    seed=protocol.seed if task.noise is not None else None,
                    device=run_info["device"] if method.is_network else "cpu",
                    dtype=dtype if method.is_network else "float64",
                    checkpoint_sha256=method.checkpoint_sha256,
                    package_version=run_info["package_version"],
                    git_commit=run_info["git_commit"],
                )
            )
            if save_images and out_dir is not None:
                _save_restored(
                    out_dir
                    / "images"
                    / method.name
                    / task.test_set.name
                    / task.row.label.replace(":", "_")
                    / f"{item.name}.png",
                    restored_image,
                )
            task.done[method.name].add(item.name)
        entry = task.entries[method.name]
        run.memory[entry].extend(records)
        if run.cache is not None:
            run.cache.append(entry, records, rank=int(run_info.get("rank", 0)))
        bar.update(len(todo))


def _model_channels(module: nn.Module) -> int | None:
    config = getattr(module, "config", None)
    return getattr(config, "in_channels", None) or getattr(config, "channels", None)


def _as_rgb(image: np.ndarray, wanted: bool) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if wanted and image.shape[2] == 1 else image


def _check_channels(method: Method, module: nn.Module, channels: int, dataset: str) -> None:
    expected = _model_channels(module)
    if expected is not None and expected != channels:
        raise ConfigError(
            f"method {method.name!r} takes {expected}-channel images but {dataset} has "
            f"{channels}-channel images; use a {channels}-channel model for this set"
        )


def _merge_and_write(
    tasks: list[_Task],
    run: _Run,
    failures: list[dict[str, str]],
    out_dir: str | Path | None,
    plots: bool,
) -> ResultsTable:
    method_list, protocol, cache = run.methods, run.protocol, run.cache
    records: list[ImageRecord] = []
    for task in tasks:
        wanted = {item.name for item in task.test_set.images}
        for method in method_list:
            entry = task.entries[method.name]
            found = (
                cache.load(entry) if cache is not None else {r.image: r for r in run.memory[entry]}
            )
            records.extend(found[name] for name in sorted(found) if name in wanted)
    metadata = dict(run.info)
    metadata["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    metadata["failures"] = failures
    table = ResultsTable.from_records(
        records,
        methods=[m.name for m in method_list],
        rows=[task.row for task in tasks],
        protocol=protocol.to_dict(),
        metadata=metadata,
        method_info=[m.describe() for m in method_list],
    )
    table.records = records
    if out_dir is not None:
        out_dir = Path(out_dir)
        table.write(out_dir)
        atomic_write_text(out_dir / "per_image.csv", per_image_csv(records, protocol.to_dict()))
        protocol_text = json.dumps(
            {"fingerprint": protocol.fingerprint(), **protocol.to_dict()}, indent=2, sort_keys=True
        )
        atomic_write_text(out_dir / "protocol.json", protocol_text + "\n")
        if plots:
            try:
                plot_psnr_vs_level(table, out_dir / "plots")
            except MissingExtraError as error:  # the tables above are written and stay
                raise MissingExtraError(
                    f"results written to {out_dir} (results.md, .csv, .json, per_image.csv) "
                    f"but no plots: {error}"
                ) from error
    return table
