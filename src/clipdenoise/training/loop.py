"""The training loop: robust, resumable and distributed, for every network the package builds.

The recipe's ``network`` key (:mod:`clipdenoise.networks`) selects what is trained — the
CLIPDenoiser, or a learned baseline (DnCNN, Restormer) trained "with the same recipe" as the
paper's Table 1 says — through the same data, noise, mixup, clipping, schedule, checkpoints,
exact resume and DDP.

Paper Sec. 4.1: a frozen CLIP RN50 encoder, a learnable decoder trained with L1 on 128×128
patches (batch 16) of clean images with online noise (Gaussian σ = 15 for the synthetic
recipe), AdamW (lr 3e-4, weight decay 1e-4) and cosine decay to 1e-6 over 300k iterations.
Recipes are :class:`~clipdenoise.training.recipe.ExperimentConfig` objects; the presets shipped
in ``clipdenoise/configs/*.toml`` (:func:`~clipdenoise.training.recipe.list_presets`) reproduce
the reference's three recipes and add ``tiny-cpu``, a few-minute CPU demo. The other modules of
:mod:`clipdenoise.training`: :mod:`~clipdenoise.training.recipe` (configs),
:mod:`~clipdenoise.training.patches` (patches), :mod:`~clipdenoise.training.state` (resumable
states), :mod:`~clipdenoise.training.schedule` (learning rates) and
:mod:`~clipdenoise.training.distributed` (DDP).

Python::

    from clipdenoise.training import load_experiment_config, train
    config = load_experiment_config("tiny-cpu", ["train.num_iters=100"])
    result = train(config, "runs/tiny", data_root="/data")

Command line (the same thing)::

    clipdenoise train --config tiny-cpu --run-dir runs/tiny --data-root /data --set train.num_iters=100
    torchrun --nproc_per_node 4 -m clipdenoise train --config synthetic-gaussian15 --run-dir runs/g15

A run folder holds ``config.toml`` (the resolved config), ``log.jsonl`` (one JSON record per
log step / validation / event), ``checkpoints/latest.safetensors`` and ``best.safetensors``
(weights, in :mod:`clipdenoise.checkpoints` format, with the config in their metadata),
``states/state_<iteration>.pt`` (the last few resumable training states, see
:mod:`clipdenoise.training.state`) and ``summary.json`` at the end.

Reproducibility: patches are addressed by their position in the run
(:mod:`clipdenoise.training.patches`), and noise, mixup and feature augmentation draw from
generators re-seeded from ``(seed, rank, iteration)`` at every iteration; so a run stopped at
iteration ``k`` and resumed produces exactly the losses of an uninterrupted run (on CPU, or on
GPU with ``train.deterministic = true``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from clipdenoise import config as config_io
from clipdenoise import metrics
from clipdenoise.acceleration import convert_for_training
from clipdenoise.atomic import atomic_write_text
from clipdenoise.devices import cpu_has_fast_bfloat16
from clipdenoise.errors import ClipDenoiseError, ConfigError
from clipdenoise.inference import activation_bytes_per_pixel, available_memory
from clipdenoise.networks import build_network, is_clip_denoiser, save_network
from clipdenoise.noise import parse_noise, parse_noise_spec
from clipdenoise.training.distributed import (
    DistInfo,
    any_rank,
    barrier,
    init_distributed,
    mean_over_ranks,
    parameters_in_sync,
    shutdown_distributed,
)
from clipdenoise.training.patches import (
    RunSampler,
    TrainPatchDataset,
    ValidationSet,
    add_training_noise,
    build_train_store,
    build_validation_set,
    seed_worker,
)
from clipdenoise.training.recipe import ExperimentConfig, TrainConfig, load_experiment_config
from clipdenoise.training.state import (
    latest_state,
    load_training_state,
    restore_rng_states,
    save_training_state,
)

RUN_CONFIG_NAME = "config.toml"
LOG_NAME = "log.jsonl"
SUMMARY_NAME = "summary.json"
CHECKPOINTS_DIRNAME = "checkpoints"


class TrainingError(ClipDenoiseError, RuntimeError):
    """Training cannot continue (e.g. the loss became NaN/inf); the message says what to do."""


@torch.no_grad()
def validate(model: nn.Module, dataset: ValidationSet, device: torch.device) -> dict[str, float]:
    """Mean PSNR/SSIM of ``model`` on ``dataset`` (reference metrics, model output clipped).

    Photos: :func:`clipdenoise.metrics.psnr`/``ssim`` on the [0, 255] scale (``val_psnr``,
    ``val_ssim``), and ``val_psnr_reference``: the value the reference's training log shows
    (BasicSR ``calculate_psnr`` on the unclamped [0, 1] output, peak 1 when the output's maximum
    is at most 1, else 255), so runs can be compared with its logs. Mayo CT:
    :func:`clipdenoise.metrics.ct_psnr`/``ct_ssim`` (HU window of the reference).
    """
    was_training = model.training
    model.eval()
    psnrs, ssims, reference_psnrs = [], [], []
    try:
        for noisy, clean in zip(dataset.noisy, dataset.clean):
            batch = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
            restored = model(batch.to(device)).float()[0].permute(1, 2, 0).cpu().numpy()
            if dataset.kind == "mayo":
                # training-time validation of the reference LDCT YAML: HU window [-1024, 3072]
                hu = {"norm_range_max": metrics.CT_HU_MAX}
                psnrs.append(metrics.ct_psnr(clean[..., 0], restored[..., 0], **hu))
                ssims.append(metrics.ct_ssim(clean[..., 0], restored[..., 0], **hu))
            else:
                reference, output = (
                    metrics.to_metric_scale(clean),
                    metrics.to_metric_scale(restored),
                )
                psnrs.append(metrics.psnr(reference, output))
                ssims.append(metrics.ssim(reference, output))
                reference_psnrs.append(reference_log_psnr(restored, clean))
    finally:
        model.train(was_training)
    scores = {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}
    if reference_psnrs:
        scores["val_psnr_reference"] = float(np.mean(reference_psnrs))
    return scores


def reference_log_psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    """The validation PSNR the reference's training logs: BasicSR's ``calculate_psnr`` on the
    unclamped model output and the clean image, both ``(H, W, C)`` in [0, 1] (float64), with
    peak 1 when ``restored.max() <= 1`` else 255 (so an output overshooting 1 scores ~48 dB
    higher). Not a metric to report; it makes our logs comparable with the reference's."""
    restored = np.asarray(restored, dtype=np.float64)
    mse = float(np.mean((restored - np.asarray(clean, dtype=np.float64)) ** 2))
    if mse == 0:
        return float("inf")
    peak = 1.0 if restored.max() <= 1 else 255.0
    return float(20.0 * np.log10(peak / np.sqrt(mse)))


# ============================================================================ run folder
@dataclass(frozen=True)
class TrainResult:
    """What a call to :func:`train` did.

    Attributes:
        run_dir: The run folder.
        status: ``completed``, ``interrupted`` (SIGINT/SIGTERM) or ``paused`` (``stop_after``).
        iteration: Completed iterations.
        losses: ``{iteration: loss}`` of the iterations run by this call (1-based iteration
            numbers, loss averaged over ranks).
        summary: The contents of ``summary.json``.
        signal: The signal number that stopped the run, if any.
    """

    run_dir: Path
    status: Literal["completed", "interrupted", "paused"]
    iteration: int
    losses: dict[int, float]
    summary: dict[str, Any]
    signal: int | None = None

    @property
    def latest_checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINTS_DIRNAME / "latest.safetensors"

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINTS_DIRNAME / "best.safetensors"


def prepare_run_dir(run_dir: Path, *, resuming: bool, overwrite: bool) -> None:
    """Refuse to clobber an existing run unless resuming or ``overwrite`` is given.

    With ``overwrite``, only a folder that looks like a clipdenoise run (has ``config.toml``)
    or is empty is deleted.
    """
    if resuming or not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} exists and is not a folder")
    if not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            f"run folder {run_dir} already exists; pass --resume auto to continue it, "
            "--overwrite to start it over, or choose another --run-dir"
        )
    if not (run_dir / RUN_CONFIG_NAME).is_file():
        raise ConfigError(
            f"refusing to overwrite {run_dir}: it is not a clipdenoise run folder (no {RUN_CONFIG_NAME})"
        )
    shutil.rmtree(run_dir)


def resume_hint(run_dir: Path) -> str:
    return f"clipdenoise train --run-dir {run_dir} --resume auto"


class RunLog:
    """Append-only JSONL log of rank 0 (each record is one ``write`` of one line)."""

    def __init__(self, path: Path, *, enabled: bool, tensorboard_dir: Path | None = None) -> None:
        self.path = path
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard_dir is not None:
            self.writer = open_tensorboard(tensorboard_dir)

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration`` (left by a run killed after its last saved state)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if record.get("iteration", 0) <= iteration:
                kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        # strict JSON has no NaN/Infinity: write null and name the fields in "non_finite"
        non_finite = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
        if non_finite:
            record = {**record, **dict.fromkeys(non_finite), "non_finite": non_finite}
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        with open(self.path, "ab") as stream:
            stream.write(line)
        if self.writer is not None:
            step = record.get("iteration", 0)
            for key, value in record.items():
                if key not in ("time", "iteration", "event") and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def require_tensorboard() -> None:
    """Raise a :class:`ConfigError` naming the extra to install when TensorBoard is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "train.tensorboard = true needs TensorBoard: pip install 'clipdenoise[tensorboard]'"
        )


def open_tensorboard(folder: Path):
    """A TensorBoard ``SummaryWriter`` logging to ``folder``."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))


# ============================================================================ the step
@dataclass
class StepContext:
    """What one optimizer step needs (built once by :func:`train`)."""

    forward: nn.Module  # the model as called for training (DDP / compiled wrapper or itself)
    optimizer: torch.optim.Optimizer
    parameters: list[nn.Parameter]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    autocast: Callable[[], contextlib.AbstractContextManager]
    scaler: torch.amp.GradScaler | None
    grad_clip_norm: float
    info: DistInfo
    channels_last: bool = False
    grad_norm: torch.Tensor | None = None
    """Global gradient norm before clipping of the last step, a 0-d tensor on the training
    device (kept as a tensor: reading it synchronises); ``None`` when not clipped."""


def train_step(
    step: StepContext, micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, bool]:
    """One optimizer step over ``micro_batches`` of ``(noisy, clean)`` ``(B, C, H, W)`` tensors.

    Gradients of the micro-batches are accumulated (the loss of each is divided by their
    number); under DDP only the last one synchronises. The step is skipped (gradients
    discarded) when the loss is not finite on any rank.

    Returns:
        ``(loss, finite)``: the loss (mean over micro-batches, this rank) and whether the
        optimizer stepped.
    """
    step.optimizer.zero_grad(set_to_none=True)
    count = len(micro_batches)
    total = torch.zeros((), device=step.info.device)
    for index, (noisy, clean) in enumerate(micro_batches):
        if step.channels_last:
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        last = index == count - 1
        no_sync = getattr(step.forward, "no_sync", None)
        sync_context = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        with sync_context:
            with step.autocast():
                restored = step.forward(noisy)
            loss = step.loss_fn(restored.float(), clean) / count
            (step.scaler.scale(loss) if step.scaler is not None else loss).backward()
        total += loss.detach()
    loss_value = float(total.item())
    if any_rank(not math.isfinite(loss_value), step.info):
        step.optimizer.zero_grad(set_to_none=True)
        if step.scaler is not None:
            step.scaler.update()
        return loss_value, False
    if step.scaler is not None:
        step.scaler.unscale_(step.optimizer)
    step.grad_norm = None
    if step.grad_clip_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(step.parameters, step.grad_clip_norm)
        step.grad_norm = norm.detach()
    if step.scaler is not None:
        step.scaler.step(step.optimizer)
        step.scaler.update()
    else:
        step.optimizer.step()
    return loss_value, True


def compile_networks(forward: nn.Module) -> None:
    """``torch.compile`` the networks that actually run, in place.

    ``forward`` is the model the step runs (:func:`clipdenoise.acceleration.convert_for_training`
    shares its decoder with the trained model). In place (``Module.compile``) keeps
    ``state_dict`` keys unchanged, so checkpoints and states stay loadable.
    """
    if not is_clip_denoiser(forward):
        forward.compile()
        return
    forward.decoder.compile()
    forward.encoder.compile()


def make_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if kind == "l1":
        return nn.functional.l1_loss
    if kind == "mse":
        return nn.functional.mse_loss
    raise ConfigError(f"train.loss: unknown {kind!r}; valid: l1, mse")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (``None`` = full fp32)."""
    if amp == "none":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.amp = 'fp16' needs a CUDA device; use 'bf16' on CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":  # auto
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # without native bf16 instructions oneDNN emulates it, slower than fp32
    return torch.bfloat16 if cpu_has_fast_bfloat16() else None


def iteration_seed(*parts: int) -> int:
    """A 63-bit seed from integers (for per-iteration generators)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
        >> 1
    )


def mix_batch(
    noisy: torch.Tensor, clean: torch.Tensor, *, beta: float, identity: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's mixup: ``λ·x + (1−λ)·x[perm]`` on both images, λ ~ Beta(β, β).

    With ``identity`` the batch is left as is with probability 1/2 (reference ``use_identity``).
    """
    rng = np.random.default_rng(seed)
    if identity and rng.integers(0, 2) == 1:
        return noisy, clean
    lam = float(rng.beta(beta, beta))
    perm = torch.from_numpy(rng.permutation(noisy.shape[0])).to(noisy.device)
    return lam * noisy + (1 - lam) * noisy[perm], lam * clean + (1 - lam) * clean[perm]


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop polls; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for signum in (signal.SIGINT, signal.SIGTERM):
            # outside the main thread signals cannot be handled: leave them alone
            with contextlib.suppress(ValueError):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name} received: saving a training state after this iteration...", file=sys.stderr
        )

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# ============================================================================ the loop
def train(
    config: ExperimentConfig | str | Path,
    run_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Train a CLIPDenoiser as ``config`` says, writing the run into ``run_dir``.

    Args:
        config: An :class:`ExperimentConfig`, a preset name or a TOML path.
        run_dir: The run folder (created; an existing one is refused unless resuming or
            ``overwrite``).
        data_root: Root of relative data paths (default ``$CLIPDENOISE_DATA`` or the current
            folder).
        resume: ``"auto"`` (continue from the newest state in ``run_dir`` if there is one,
            else start) or the path of a state file.
        overwrite: Delete an existing run folder first.
        stop_after: Stop (saving a state) once this many iterations are complete; the run is
            continued later with ``resume``.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ConfigError, DatasetError, WeightsNotFoundError, ImageReadError: before training
            starts, for bad settings, missing/empty data folders, unreadable images or missing
            CLIP weights.
        TrainingError: the loss became NaN/inf with ``nan_policy = "stop"`` (the last good
            state is saved first).
    """
    if not isinstance(config, ExperimentConfig):
        config = load_experiment_config(config)
    run_dir = Path(run_dir)
    # process-wide torch settings this run changes, restored afterwards
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn_flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if config.train.cpu_threads > 0:
        torch.set_num_threads(config.train.cpu_threads)
    info = init_distributed(config.train.device)
    created = not run_dir.exists()
    try:
        trainer = Trainer(
            config, run_dir, info, data_root=data_root, resume=resume, overwrite=overwrite
        )
        result = trainer.run(stop_after)
        barrier(info)  # no rank may leave the process group while another still uses it
        return result
    except BaseException:
        if created and info.is_main:
            remove_unstarted_run(run_dir)
        raise
    finally:
        shutdown_distributed(info)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn_flags


#: Bytes per patch pixel of one training step, as a multiple of the inference estimate
#: (:func:`clipdenoise.inference.activation_bytes_per_pixel`): the decoder's activations are
#: kept for the backward pass, which allocates as much again, plus the patches themselves.
TRAIN_MEMORY_FACTOR = 3.0


def check_step_memory(config: ExperimentConfig, model: nn.Module, device: torch.device) -> None:
    """Refuse a patch and batch size whose training step cannot fit in ``device``'s memory.

    Raises:
        ConfigError: naming ``data.patch_size`` and ``data.batch_size``, the estimate and what
            is available.
    """
    data = config.data
    pixels = data.batch_size * data.patch_size**2
    was_training = model.training
    model.eval()  # a probe pass (networks other than CLIPDenoiser) must not move BatchNorm stats
    try:
        per_pixel = activation_bytes_per_pixel(model)
    except Exception:  # noqa: BLE001 - a network the probe cannot run: count the patches only
        per_pixel = 4 * 4.0 * data.channels  # clean, noisy, padded and augmented float32 copies
    finally:
        model.train(was_training)
    need = pixels * per_pixel * TRAIN_MEMORY_FACTOR
    available = available_memory(device)
    if need > available:
        raise ConfigError(
            f"data.patch_size = {data.patch_size} with data.batch_size = {data.batch_size} "
            f"needs about {need / 2**30:.1f} GiB per training step, more than the "
            f"{available / 2**30:.1f} GiB available on {device}; lower data.patch_size or "
            "data.batch_size (train.grad_accum_steps keeps the global batch)"
        )


def remove_unstarted_run(run_dir: Path) -> bool:
    """Delete a run folder holding nothing to resume or read: no state, no weights and no
    training record in its log (a run that failed before its first iteration). Returns
    whether it was removed."""
    if not run_dir.is_dir() or latest_state(run_dir) is not None:
        return False
    if (run_dir / CHECKPOINTS_DIRNAME).exists():
        return False
    log = run_dir / LOG_NAME
    if log.is_file() and '"event": "train"' in log.read_text(encoding="utf-8", errors="replace"):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _find_resume_state(run_dir: Path, resume: str | Path | None) -> Path | None:
    if resume is None:
        return None
    if str(resume) == "auto":
        return latest_state(run_dir)
    path = Path(resume)
    if not path.is_file():
        raise ConfigError(f"{path}: training state to resume from not found")
    return path


def _configure_determinism(config: TrainConfig) -> None:
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = True


def _build_model(config: ExperimentConfig, state: dict[str, Any] | None) -> nn.Module:
    model = build_network(config)
    if state is not None:
        model.load_state_dict(state["model"])
    return model


def changed_keys(old_json: str, new_json: str) -> list[str]:
    """``section.key`` names whose values differ between two JSON configs."""

    def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    old, new = flatten(json.loads(old_json)), flatten(json.loads(new_json))
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


@dataclass
class LoopCounters:
    """Counters carried across save/resume (stored in the state's ``extra``)."""

    best_psnr: float = -math.inf
    best_iteration: int = 0
    skipped_steps: int = 0

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> LoopCounters:
        extra = dict(state["extra"]) if state is not None else {}
        return cls(
            best_psnr=float(extra.get("best_psnr", -math.inf)),
            best_iteration=int(extra.get("best_iteration", 0)),
            skipped_steps=int(extra.get("skipped_steps", 0)),
        )


class Trainer:
    """One training run: set up by :meth:`__init__` (failing fast), executed by :meth:`run`.

    Use :func:`train`; this class exists to keep each part of the loop a small method.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: Path,
        info: DistInfo,
        *,
        data_root: str | Path | None,
        resume: str | Path | None,
        overwrite: bool,
    ) -> None:
        self.config, self.run_dir, self.info = config, run_dir, info
        self.settings = settings = config.train
        state_file = _find_resume_state(run_dir, resume)
        state = load_training_state(state_file) if state_file is not None else None
        if info.is_main:
            prepare_run_dir(run_dir, resuming=resume is not None, overwrite=overwrite)
        barrier(info)

        # fail fast: settings, weights, data, before any long work
        self.noise_spec = parse_noise(config.noise.train)
        if config.eval.val_dir and config.eval.format == "images":
            parse_noise_spec(config.eval.noise)
        self.amp_dtype = resolve_amp(settings.amp, info.device)
        if settings.tensorboard and info.is_main:
            require_tensorboard()
        self.schedule = settings.lr_schedule()
        loss_fn = make_loss(settings.loss)
        _configure_determinism(settings)
        self.model = _build_model(config, state).to(info.device)
        check_step_memory(config, self.model, info.device)
        self.store = build_train_store(config, data_root)
        self.val_set = build_validation_set(config, data_root) if info.is_main else None

        self.start_iter = int(state["iteration"]) if state is not None else 0
        self.config_json = config_io.dumps_json(config)
        self.log = RunLog(
            run_dir / LOG_NAME,
            enabled=info.is_main,
            tensorboard_dir=run_dir / "tensorboard" if settings.tensorboard else None,
        )
        self._start_run_folder(
            resumed=state is not None,
            changed=changed_keys(state["config_json"], self.config_json) if state else [],
        )
        self.step = self._build_step(loss_fn, state)
        self.loader = self._build_loader()
        self.counters = LoopCounters.from_state(state)
        if state is not None:
            restore_rng_states(state["rng"])
        self.noise_generator = torch.Generator(device=info.device)
        self.aug_generator = torch.Generator(device=info.device)
        if is_clip_denoiser(self.model):
            self.model.aug_generator = self.aug_generator

    # ------------------------------------------------------------------ setup
    def _start_run_folder(self, *, resumed: bool, changed: list[str]) -> None:
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / RUN_CONFIG_NAME, config_io.dumps_toml(self.config))
            # a fresh start in a folder without states (``--resume auto``) drops the old log
            self.log.truncate_after(self.start_iter if resumed else -1)
            self.log.write(
                {
                    "event": "resume" if resumed else "start",
                    "iteration": self.start_iter,
                    "world_size": self.info.world_size,
                    "global_batch": self.global_batch,
                    "device": str(self.info.device),
                    "train_images": len(self.store),
                    "val_images": len(self.val_set.names) if self.val_set else 0,
                    **({"config_changed": changed} if changed else {}),
                }
            )
            if changed:
                print(f"resuming with a changed config: {', '.join(changed)}", file=sys.stderr)
        barrier(self.info)

    @property
    def global_batch(self) -> int:
        return self.config.global_batch_per_process * self.info.world_size

    def _build_step(self, loss_fn, state: dict[str, Any] | None) -> StepContext:
        settings, info = self.settings, self.info
        if settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if not parameters:
            raise ConfigError("the model has no trainable parameters")
        optimizer_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
        optimizer = optimizer_cls(
            parameters,
            lr=self.schedule.lr_at(self.start_iter),
            betas=settings.betas,
            weight_decay=settings.weight_decay,
        )
        scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        forward: nn.Module = self.model
        if is_clip_denoiser(self.model):
            # The step runs the model's own forward with the frozen encoder swapped for a
            # BatchNorm-folded copy in the AMP dtype (no autograd through it), the decoder
            # under autocast; exact in fp32. The decoder's parameters are the model's own.
            forward = convert_for_training(self.model, dtype=self.amp_dtype or torch.float32)
        if settings.compile:
            compile_networks(forward)
        if info.is_distributed:
            device_ids = [info.device.index] if info.device.type == "cuda" else None
            forward = DistributedDataParallel(forward, device_ids=device_ids)
        amp_dtype = self.amp_dtype

        def autocast() -> contextlib.AbstractContextManager:
            if amp_dtype is None:
                return contextlib.nullcontext()
            return torch.autocast(device_type=info.device.type, dtype=amp_dtype)

        return StepContext(
            forward=forward,
            optimizer=optimizer,
            parameters=parameters,
            loss_fn=loss_fn,
            autocast=autocast,
            scaler=scaler,
            grad_clip_norm=settings.grad_clip_norm,
            info=info,
            channels_last=settings.channels_last,
        )

    def _build_loader(self) -> torch.utils.data.DataLoader:
        """Batches from ``start_iter`` on; local sample s of a rank is global s × world + rank."""
        data, settings = self.config.data, self.settings
        per_iter = data.batch_size * settings.grad_accum_steps
        dataset = TrainPatchDataset(
            self.store,
            data.patch_size,
            seed=settings.seed,
            geometric_augs=data.geometric_augs,
            noise=self.noise_spec if self.config.noise.in_workers else None,
            camera=self.config.noise.camera_config(),
        )
        sampler = RunSampler(
            self.start_iter * per_iter,
            settings.num_iters * per_iter,
            rank=self.info.rank,
            world_size=self.info.world_size,
        )
        workers = data.num_workers
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=data.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=data.pin_memory and self.info.device.type == "cuda",
            worker_init_fn=seed_worker if workers > 0 else None,
            prefetch_factor=data.prefetch_factor if workers > 0 else None,
        )

    # ------------------------------------------------------------------ one iteration
    def next_micro_batches(
        self, batches, iteration: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(noisy, clean)`` micro-batches of ``iteration`` on the device (noise, mixup)."""
        settings, device, rank = self.settings, self.info.device, self.info.rank
        camera = self.config.noise.camera_config()
        micro_batches = []
        for micro in range(settings.grad_accum_steps):
            batch = next(batches)
            clean = batch["clean"].to(device, non_blocking=True)
            if "noisy" in batch:
                noisy = batch["noisy"].to(device, non_blocking=True)
            else:
                seed = iteration_seed(settings.seed, 1, rank, iteration, micro)
                generator = self.noise_generator.manual_seed(seed)
                noisy = add_training_noise(clean, self.noise_spec, generator, camera)
            if settings.mixup:
                noisy, clean = mix_batch(
                    noisy,
                    clean,
                    beta=settings.mixup_beta,
                    identity=settings.mixup_identity,
                    seed=iteration_seed(settings.seed, 2, rank, iteration, micro),
                )
            micro_batches.append((noisy, clean))
        self.aug_generator.manual_seed(iteration_seed(settings.seed, 3, rank, iteration))
        return micro_batches

    def handle_bad_step(self, iteration: int, loss: float, consecutive: int) -> None:
        """Apply ``nan_policy`` to a non-finite loss at (0-based) ``iteration``."""
        number = iteration + 1
        if self.settings.nan_policy == "stop":
            path = self.save_state(iteration)
            self.log.write({"event": "nan", "iteration": number, "loss": loss})
            raise TrainingError(
                f"loss became {loss} at iteration {number}; the last good state (iteration "
                f"{iteration}) is saved in {path or self.run_dir / 'states'}. Lower train.lr, "
                "enable train.grad_clip_norm, or set train.nan_policy = 'skip'."
            )
        self.counters.skipped_steps += 1
        self.log.write({"event": "skipped_step", "iteration": number, "loss": loss})
        if consecutive > self.settings.max_skipped_steps:
            self.save_state(iteration)
            raise TrainingError(
                f"{consecutive} consecutive non-finite losses up to iteration {number}; "
                f"training diverged (state saved at iteration {iteration})"
            )

    # ------------------------------------------------------------------ saving, validation
    def save_state(self, iteration: int) -> Path | None:
        """Write the training state after ``iteration`` iterations (rank 0; all ranks wait)."""
        path = None
        if self.info.is_main:
            step = self.step
            path = save_training_state(
                self.run_dir,
                iteration=iteration,
                model_state=self.model.state_dict(),
                optimizer_state=step.optimizer.state_dict(),
                scaler_state=step.scaler.state_dict() if step.scaler is not None else None,
                extra=dataclasses.asdict(self.counters),
                config_json=self.config_json,
                keep_last=self.settings.keep_states,
            )
        barrier(self.info)
        return path

    def save_weights(self, name: str, iteration: int, **metadata: str) -> Path:
        """Save a ``checkpoints/<name>.safetensors`` weights file (rank 0; all ranks wait)."""
        path = self.run_dir / CHECKPOINTS_DIRNAME / f"{name}.safetensors"
        if self.info.is_main:
            self._write_weights(name, iteration, **metadata)
        barrier(self.info)
        return path

    def _write_weights(self, name: str, iteration: int, **metadata: str) -> None:
        info = {"train_config": self.config_json, "iteration": str(iteration), **metadata}
        save_network(self.model, self.run_dir / CHECKPOINTS_DIRNAME / f"{name}.safetensors", info)

    def validate_and_keep_best(self, iteration: int) -> dict[str, float] | None:
        """Validate (rank 0), log the scores and save ``best`` when PSNR improved."""
        scores = None
        if self.info.is_main and self.val_set is not None:
            started = time.perf_counter()
            scores = validate(self.model, self.val_set, self.info.device)
            elapsed = round(time.perf_counter() - started, 3)
            self.log.write(
                {"event": "validation", "iteration": iteration, **scores, "val_time_s": elapsed}
            )
            if scores["val_psnr"] > self.counters.best_psnr:
                self.counters.best_psnr = scores["val_psnr"]
                self.counters.best_iteration = iteration
                self._write_weights("best", iteration, val_psnr=f"{scores['val_psnr']:.4f}")
        barrier(self.info)
        return scores

    # ------------------------------------------------------------------ the loop
    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train from ``start_iter`` to ``num_iters`` (or ``stop_after``, or a signal)."""
        settings, info = self.settings, self.info
        progress = _progress_bar(settings, info, self.start_iter)
        losses: dict[int, float] = {}
        window: list[float] = []
        last_scores: dict[str, float] | None = None
        consecutive_bad = 0
        status: Literal["completed", "interrupted", "paused"] = "completed"
        iteration = self.start_iter
        train_seconds = 0.0
        window_start = time.perf_counter()
        batches = iter(self.loader)
        with StopRequest() as stop:
            try:
                while iteration < settings.num_iters:
                    tick = time.perf_counter()
                    lr = self.schedule.lr_at(iteration)
                    for group in self.step.optimizer.param_groups:
                        group["lr"] = lr
                    loss, stepped = train_step(
                        self.step, self.next_micro_batches(batches, iteration)
                    )
                    loss = mean_over_ranks(loss, info)
                    consecutive_bad = 0 if stepped else consecutive_bad + 1
                    if not stepped:
                        self.handle_bad_step(iteration, loss, consecutive_bad)
                    iteration += 1
                    losses[iteration] = loss
                    if stepped:
                        window.append(loss)
                    train_seconds += time.perf_counter() - tick
                    progress.update(1)

                    if iteration % settings.log_every == 0 or iteration == settings.num_iters:
                        elapsed = time.perf_counter() - window_start
                        mean_loss = float(np.mean(window)) if window else float("nan")
                        self.log.write(
                            {
                                "event": "train",
                                "iteration": iteration,
                                "loss": mean_loss,
                                "lr": lr,
                                "it_per_s": round(len(window) / elapsed, 4) if elapsed > 0 else 0.0,
                                "train_time_s": round(train_seconds, 3),
                            }
                        )
                        progress.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.3g}", refresh=False)
                        window, window_start = [], time.perf_counter()

                    unfinished = iteration < settings.num_iters
                    if iteration % self.config.eval.every == 0 and unfinished:
                        last_scores = self.validate_and_keep_best(iteration) or last_scores
                    if iteration % settings.checkpoint_every == 0 and unfinished:
                        self.save_weights("latest", iteration)
                        self.save_state(iteration)
                    signalled = any_rank(stop.signum is not None, info)
                    paused = stop_after is not None and iteration >= stop_after and unfinished
                    if signalled or paused:
                        status = "interrupted" if signalled else "paused"
                        break
            finally:
                progress.close()
            if status == "completed":
                last_scores = self.validate_and_keep_best(iteration) or last_scores
            self.save_weights("latest", iteration)
            state_written = self.save_state(iteration)
        summary = self.summarize(status, iteration, losses, train_seconds, last_scores)
        summary["state"] = str(state_written) if state_written else None
        self.finish(status, iteration, summary, stop.signum)
        return TrainResult(self.run_dir, status, iteration, losses, summary, stop.signum)

    def summarize(
        self,
        status: str,
        iteration: int,
        losses: dict[int, float],
        train_seconds: float,
        last_scores: dict[str, float] | None,
    ) -> dict[str, Any]:
        """The ``summary.json`` contents (also checks that DDP ranks hold the same weights)."""
        counters = self.counters
        best = self.run_dir / CHECKPOINTS_DIRNAME / "best.safetensors"
        return {
            "name": self.config.name,
            "status": status,
            "iteration": iteration,
            "num_iters": self.settings.num_iters,
            "final_loss": _last_train_loss(losses),
            "best_val_psnr": counters.best_psnr if math.isfinite(counters.best_psnr) else None,
            "best_iteration": counters.best_iteration or None,
            "last_val": last_scores,
            "skipped_steps": counters.skipped_steps,
            "train_time_s": round(train_seconds, 3),
            "it_per_s": round(len(losses) / train_seconds, 4) if train_seconds > 0 else None,
            "world_size": self.info.world_size,
            "global_batch": self.global_batch,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "none",
            "device": str(self.info.device),
            "ranks_in_sync": parameters_in_sync(self.model, self.info),
            "latest_checkpoint": str(self.run_dir / CHECKPOINTS_DIRNAME / "latest.safetensors"),
            "best_checkpoint": str(best) if counters.best_iteration else None,
        }

    def finish(
        self, status: str, iteration: int, summary: dict[str, Any], signum: int | None
    ) -> None:
        """Write the last log record and ``summary.json``; say how to resume an unfinished run."""
        if self.info.is_main:
            self.log.write({"event": status, "iteration": iteration})
            self.log.close()
            atomic_write_text(self.run_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
            if status != "completed":
                why = (
                    f"{signal.Signals(signum).name} received"
                    if signum
                    else f"paused after iteration {iteration}"
                )
                print(
                    f"{why}: state saved at iteration {iteration}; resume with: "
                    f"{resume_hint(self.run_dir)}",
                    file=sys.stderr,
                )
        if not summary["ranks_in_sync"]:
            raise TrainingError(
                "DDP ranks ended with different weights; the run is not trustworthy"
            )


def _last_train_loss(losses: dict[int, float]) -> float | None:
    if not losses:
        return None
    tail = [v for _, v in sorted(losses.items())[-50:] if math.isfinite(v)]
    return float(np.mean(tail)) if tail else None


class _NoProgress:
    def update(self, n: int = 1) -> None: ...

    def set_postfix(self, **kwargs: Any) -> None: ...

    def close(self) -> None: ...


def _progress_bar(settings: TrainConfig, info: DistInfo, start: int):
    if not (settings.progress and info.is_main):
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(
        total=settings.num_iters, initial=start, unit="it", dynamic_ncols=True, desc="train"
    )


__all__ = [
    "CHECKPOINTS_DIRNAME",
    "LOG_NAME",
    "RUN_CONFIG_NAME",
    "SUMMARY_NAME",
    "StepContext",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "check_step_memory",
    "iteration_seed",
    "make_loss",
    "mix_batch",
    "prepare_run_dir",
    "reference_log_psnr",
    "train",
    "train_step",
    "validate",
]
