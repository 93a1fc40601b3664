"""Training recipes: typed, frozen experiment configs and the presets shipped as TOML.

An :class:`ExperimentConfig` has five sections: ``model``
(:class:`~clipdenoise.model.ModelConfig`), ``data``, ``noise``, ``train`` and ``eval``. It is
loaded strictly from TOML (an unknown key is an error listing the valid ones) and accepts
``section.key=value`` overrides typed by the field (:mod:`clipdenoise.config`). The presets in
``clipdenoise/configs/*.toml`` reproduce the reference's recipes, each number annotated with
its source; ``tiny-cpu`` is a few-minute CPU demo.

    config = load_experiment_config("synthetic-gaussian15", ["train.schedule=cosine_restart"])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from clipdenoise import config as config_io
from clipdenoise.baselines.dncnn import DnCNNConfig
from clipdenoise.baselines.restormer import RestormerConfig
from clipdenoise.errors import ConfigError
from clipdenoise.isp import CameraNoiseConfig
from clipdenoise.model import ModelConfig
from clipdenoise.networks import NetworkKind, network_channels
from clipdenoise.training.schedule import LRSchedule


@dataclass(frozen=True)
class DataConfig:
    """Training data.

    Attributes:
        train_dir: Folder of clean training images, relative to the data root (``--data-root``
            or ``$CLIPDENOISE_DATA``) unless absolute. For ``format = "mayo"``: the flat Mayo/AAPM
            folder of ``{patient}_{index}_input|target`` slices
            (:class:`clipdenoise.ct.MayoCTDataset`; the full-dose targets are trained on).
        format: ``images`` (any image files) or ``mayo`` (Mayo LDCT slices in model units;
            the ``test_patient`` is held out).
        pairs_dir: Train on noisy/clean pairs read from this folder instead of adding noise to
            ``train_dir``'s images (relative to the data root; ``""``: online noise). Any layout
            :func:`clipdenoise.data.find_image_pairs` knows: ``noisy/`` + ``clean/`` as
            ``clipdenoise synth srgb`` writes it (the reference's offline sRGB pairs), CC/PolyU
            ``*_real``/``*_mean``, SIDD. The same window is cropped from both images.
        pair_layout: Layout of ``pairs_dir``: ``auto``, ``folders``, ``real_mean`` or ``sidd``.
        test_patient: Mayo patient id excluded from training (reference: ``L506``).
        channels: 3 (RGB) or 1 (grey/CT); must equal ``model.in_channels``.
        recursive: Search ``train_dir`` recursively.
        max_images: Use only the first N images (sorted by path); 0 = all.
        patch_size: Side of the square training patches (reference ``gt_size``: 128).
        batch_size: Patches per process per micro-batch (reference ``batch_size_per_gpu``).
            Global batch = ``batch_size × world_size × train.grad_accum_steps``.
        geometric_augs: Random flips and 90° rotations (8 modes, reference ``geometric_augs``).
        cache_images: Decode every image up front and keep it in memory (8-bit images as
            uint8). Also reports unreadable images before training starts.
        verify_images: When not caching, decode every image once before training anyway.
        num_workers: Dataloader worker processes (0 = load in the main process).
        pin_memory: Pin host memory for faster copies (CUDA only; ignored on CPU).
        prefetch_factor: Batches each worker prepares ahead.
    """

    train_dir: str = "CBSD432"
    format: Literal["images", "mayo"] = "images"
    test_patient: str = "L506"
    pairs_dir: str = ""
    pair_layout: str = "auto"
    channels: int = 3
    recursive: bool = False
    max_images: int = 0
    patch_size: int = 128
    batch_size: int = 16
    geometric_augs: bool = True
    cache_images: bool = True
    verify_images: bool = True
    num_workers: int = 4
    pin_memory: bool = True
    prefetch_factor: int = 2

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {self.channels}")
        for name in ("patch_size", "batch_size", "prefetch_factor"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.num_workers < 0 or self.max_images < 0:
            raise ValueError("data.num_workers and data.max_images must be >= 0")


@dataclass(frozen=True)
class NoiseConfig:
    """Online training noise.

    Attributes:
        train: Noise spec of :func:`clipdenoise.noise.parse_noise_spec` (``gaussian:15``,
            ``srgb_camera:0.04,0.03``, ``gaussian:0..55`` for a random level, ...), or several
            joined by ``+`` (:class:`~clipdenoise.noise.NoiseMixture`: one drawn per image).
        in_workers: Add the noise in the dataloader workers (CPU) instead of on the training
            device; use it for CPU-only kinds such as ``srgb_camera``.
        camera: The camera pipeline of ``srgb_camera`` noise: ``reference`` (the reference's
            exact pipeline, :meth:`clipdenoise.isp.CameraNoiseConfig.reference`, 8-bit output
            included) or ``clipdenoise`` (our conventions, :class:`~clipdenoise.isp.CameraNoiseConfig`
            defaults; see :mod:`clipdenoise.isp`).
    """

    train: str = "gaussian:15"
    in_workers: bool = False
    camera: Literal["clipdenoise", "reference"] = "clipdenoise"

    def __post_init__(self) -> None:
        if self.camera not in ("clipdenoise", "reference"):
            raise ValueError(
                f"noise.camera must be 'clipdenoise' or 'reference', got {self.camera!r}"
            )

    def camera_config(self) -> CameraNoiseConfig | None:
        """The :class:`~clipdenoise.isp.CameraNoiseConfig` of ``srgb_camera`` noise, or ``None``
        for the default pipeline of :func:`clipdenoise.noise.add_noise`."""
        if self.camera == "clipdenoise":
            return None
        return CameraNoiseConfig.reference()


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, loop and performance switches.

    Attributes:
        num_iters: Total optimizer steps (reference ``total_iter``).
        optimizer: ``adamw`` (reference) or ``adam``.
        lr: Peak learning rate. weight_decay, betas: AdamW's.
        loss: ``l1`` (reference ``L1Loss``) or ``mse``.
        schedule: ``cosine`` (paper: ``lr`` → ``min_lr`` over ``num_iters``),
            ``cosine_restart`` (reference YAML: periods ``restart_periods`` with minima
            ``restart_min_lrs``) or ``constant``.
        min_lr: End of the ``cosine`` schedule.
        restart_periods, restart_min_lrs, restart_weights: The ``cosine_restart`` periods.
        warmup_iters: Linear warm-up iterations (reference: none).
        grad_clip_norm: Clip the global gradient norm to this (reference ``use_grad_clip``:
            0.01); 0 disables clipping.
        mixup: Reference ``mixing_augs``: mix each batch with a permutation of itself,
            λ ~ Beta(``mixup_beta``, ``mixup_beta``); with ``mixup_identity`` half the
            iterations are left unmixed.
        seed: Run seed (reference ``manual_seed``: 100).
        deterministic: Deterministic kernels (``torch.use_deterministic_algorithms``); slower
            on GPU. CPU runs are reproducible either way.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ...
        cpu_threads: torch intra-op threads for this run (0 = torch's default). On a shared or
            oversubscribed CPU, 1 is often much faster than several spinning threads.
        amp: Mixed precision: ``none`` (fp32, reference), ``bf16`` (``torch.autocast``, CPU or
            GPU), ``fp16`` (CUDA, with a ``GradScaler``), ``auto`` (bf16 where supported).
        channels_last: Use the channels-last memory format (faster convolutions on GPUs).
        compile: ``torch.compile`` the model.
        grad_accum_steps: Micro-batches accumulated per optimizer step (for small GPUs).
        log_every: Iterations between log records and progress-bar updates.
        checkpoint_every: Iterations between saves of ``latest`` weights + training state.
        keep_states: Training-state files kept (the newest N).
        nan_policy: On a NaN/inf loss, ``stop`` (save the last good state and raise naming the
            iteration) or ``skip`` the step.
        max_skipped_steps: With ``skip``, give up after this many consecutive bad steps.
        tensorboard: Also log to TensorBoard (``run_dir/tensorboard``; needs ``tensorboard``).
        progress: Show a progress bar (iteration, loss, lr, it/s, ETA).
    """

    num_iters: int = 300_000
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    loss: Literal["l1", "mse"] = "l1"
    schedule: Literal["cosine", "cosine_restart", "constant"] = "cosine"
    min_lr: float = 1e-6
    restart_periods: tuple[int, ...] = (92_000, 208_000)
    restart_min_lrs: tuple[float, ...] = (3e-4, 1e-6)
    restart_weights: tuple[float, ...] = (1.0, 1.0)
    warmup_iters: int = 0
    grad_clip_norm: float = 0.0
    mixup: bool = False
    mixup_beta: float = 1.2
    mixup_identity: bool = True
    seed: int = 100
    deterministic: bool = False
    device: str = "auto"
    cpu_threads: int = 0
    amp: Literal["none", "bf16", "fp16", "auto"] = "none"
    channels_last: bool = False
    compile: bool = False
    grad_accum_steps: int = 1
    log_every: int = 100
    checkpoint_every: int = 4000
    keep_states: int = 3
    nan_policy: Literal["stop", "skip"] = "stop"
    max_skipped_steps: int = 100
    tensorboard: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("num_iters", "grad_accum_steps", "log_every", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        if self.keep_states < 1:
            raise ValueError(f"train.keep_states must be >= 1, got {self.keep_states}")
        if self.lr <= 0 or self.grad_clip_norm < 0 or self.mixup_beta <= 0:
            raise ValueError("train.lr and train.mixup_beta must be > 0, grad_clip_norm >= 0")

    def lr_schedule(self) -> LRSchedule:
        """The :class:`~clipdenoise.training.schedule.LRSchedule` these settings describe."""
        restart = self.schedule == "cosine_restart"
        return LRSchedule(
            kind=self.schedule,
            lr=self.lr,
            num_iters=self.num_iters,
            min_lr=self.min_lr,
            periods=self.restart_periods if restart else (),
            period_min_lrs=self.restart_min_lrs if restart else (),
            restart_weights=self.restart_weights if restart else (),
            warmup_iters=self.warmup_iters,
        )


@dataclass(frozen=True)
class EvalConfig:
    """Validation during training.

    Attributes:
        val_dir: Folder of clean validation images (relative to the data root); ``""`` turns
            validation off. For ``format = "mayo"``: the Mayo folder (the test patient's
            quarter-dose/full-dose pairs are used).
        format: ``images`` (clean images + synthetic ``noise``), ``paired`` (noisy/clean
            pairs in any layout :func:`clipdenoise.data.find_image_pairs` knows, e.g. the
            reference's SIDD ``noisy``/``GT`` PNG folders) or ``mayo``.
        noise: Synthetic validation noise, added with the reference test protocol
            (:func:`clipdenoise.noise.add_reference_noise`, numpy seed = ``seed``).
        every: Iterations between validations (reference ``val_freq``: 4000).
        max_images: Validate on the first N images only; 0 = all.
        seed: Seed of the validation noise.
    """

    val_dir: str = "CBSD68"
    format: Literal["images", "paired", "mayo"] = "images"
    noise: str = "gaussian:50"
    every: int = 4000
    max_images: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.every <= 0 or self.max_images < 0:
            raise ValueError("eval.every must be positive and eval.max_images >= 0")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole training recipe: ``model``, ``data``, ``noise``, ``train`` and ``eval`` sections.

    ``network`` chooses what is trained (:mod:`clipdenoise.networks`): ``clipdenoiser`` (the
    ``model`` section), or a learned baseline, ``dncnn`` / ``restormer``, sized by its own
    section; data, noise, mixup, schedule, checkpoints and resume are the same for all.
    ``model.encoder_weights`` takes ``"openai"``, a file path, or ``"random"`` (random
    initialisation, which :class:`~clipdenoise.model.ModelConfig` stores as ``None``).
    """

    name: str = "experiment"
    description: str = ""
    network: NetworkKind = "clipdenoiser"
    model: ModelConfig = field(default_factory=ModelConfig)
    dncnn: DnCNNConfig = field(default_factory=DnCNNConfig)
    restormer: RestormerConfig = field(default_factory=RestormerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        bad = config_io.non_finite_fields(self)
        if bad:
            raise ValueError(f"{', '.join(bad)}: must be finite numbers (NaN or inf given)")
        if self.data.channels != network_channels(self):
            field_name = {"dncnn": "dncnn.channels", "restormer": "restormer.in_channels"}
            raise ValueError(
                f"data.channels ({self.data.channels}) must equal "
                f"{field_name.get(self.network, 'model.in_channels')} ({network_channels(self)})"
            )

    @property
    def global_batch_per_process(self) -> int:
        return self.data.batch_size * self.train.grad_accum_steps


def list_presets() -> list[str]:
    """Names of the recipes shipped in ``clipdenoise/configs``."""
    folder = resources.files("clipdenoise") / "configs"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML text of preset ``name``."""
    presets = list_presets()
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r}; presets are: {', '.join(presets)}")
    return (resources.files("clipdenoise") / "configs" / f"{name}.toml").read_text("utf-8")


def load_experiment_config(
    source: str | Path | ExperimentConfig, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """Load a recipe: a preset name, a TOML file, or a config; then apply ``section.key=value``.

    Raises:
        ConfigError: unknown preset/file, unknown keys (the message lists the valid ones),
            values of the wrong type or out of range.
    """
    if isinstance(source, ExperimentConfig):
        config = source
    else:
        text_source = str(source)
        if text_source in list_presets():
            data = config_io.tomllib.loads(preset_text(text_source))
            config = config_io.from_dict(ExperimentConfig, data, where=f"preset {text_source}")
        elif Path(text_source).is_file() or text_source.endswith(".toml"):
            config = config_io.load_toml(ExperimentConfig, text_source)
        else:
            raise ConfigError(
                f"{text_source!r} is neither a preset ({', '.join(list_presets())}) nor a TOML file"
            )
    return config_io.apply_overrides(config, list(overrides)) if overrides else config


def describe_config(config: ExperimentConfig) -> str:
    """The resolved config as TOML (what ``clipdenoise train --print-config`` shows)."""
    return config_io.dumps_toml(config)


__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "NoiseConfig",
    "TrainConfig",
    "describe_config",
    "list_presets",
    "load_experiment_config",
    "preset_text",
]
