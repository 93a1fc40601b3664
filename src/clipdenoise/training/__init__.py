"""Training: recipes, patches, the loop, resumable states, schedules and DDP.

* :mod:`~clipdenoise.training.recipe` — :class:`ExperimentConfig` and the presets shipped as TOML.
* :mod:`~clipdenoise.training.patches` — training patches addressed by their position in the
  run, paired stores, online noise, the validation set.
* :mod:`~clipdenoise.training.loop` — :func:`train`, :func:`train_step` and the :class:`Trainer`
  behind them.
* :mod:`~clipdenoise.training.state` — resumable training-state files.
* :mod:`~clipdenoise.training.schedule` — learning rates as pure functions of the iteration.
* :mod:`~clipdenoise.training.distributed` — torchrun process groups and collectives.

Python::

    from clipdenoise.training import load_experiment_config, train
    config = load_experiment_config("tiny-cpu", ["train.num_iters=100"])
    result = train(config, "runs/tiny", data_root="/data")

The modules import each other by their own paths, never through this package.
"""

from __future__ import annotations

from clipdenoise.training.distributed import (
    DistInfo,
    any_rank,
    barrier,
    broadcast_int,
    init_distributed,
    launched_by_torchrun,
    mean_over_ranks,
    parameters_in_sync,
    shutdown_distributed,
)
from clipdenoise.training.loop import (
    CHECKPOINTS_DIRNAME,
    LOG_NAME,
    RUN_CONFIG_NAME,
    SUMMARY_NAME,
    StepContext,
    Trainer,
    TrainingError,
    TrainResult,
    check_step_memory,
    iteration_seed,
    make_loss,
    mix_batch,
    prepare_run_dir,
    reference_log_psnr,
    train,
    train_step,
    validate,
)
from clipdenoise.training.patches import (
    ImageStore,
    PairedImageStore,
    RunSampler,
    TrainImages,
    TrainPatchDataset,
    ValidationSet,
    add_training_noise,
    build_train_store,
    build_validation_set,
    resolve_data_path,
    seed_worker,
)
from clipdenoise.training.recipe import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    NoiseConfig,
    TrainConfig,
    describe_config,
    list_presets,
    load_experiment_config,
    preset_text,
)
from clipdenoise.training.schedule import LRSchedule, ScheduleKind, cosine_between, schedule_values
from clipdenoise.training.state import (
    STATES_DIRNAME,
    capture_rng_states,
    latest_state,
    list_states,
    load_training_state,
    prune_states,
    restore_rng_states,
    save_training_state,
    state_path,
)

__all__ = [
    "CHECKPOINTS_DIRNAME",
    "LOG_NAME",
    "RUN_CONFIG_NAME",
    "STATES_DIRNAME",
    "SUMMARY_NAME",
    "DataConfig",
    "DistInfo",
    "EvalConfig",
    "ExperimentConfig",
    "ImageStore",
    "LRSchedule",
    "NoiseConfig",
    "PairedImageStore",
    "RunSampler",
    "ScheduleKind",
    "StepContext",
    "TrainConfig",
    "TrainImages",
    "TrainPatchDataset",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "ValidationSet",
    "add_training_noise",
    "any_rank",
    "barrier",
    "broadcast_int",
    "build_train_store",
    "build_validation_set",
    "capture_rng_states",
    "check_step_memory",
    "cosine_between",
    "describe_config",
    "init_distributed",
    "iteration_seed",
    "latest_state",
    "launched_by_torchrun",
    "list_presets",
    "list_states",
    "load_experiment_config",
    "load_training_state",
    "make_loss",
    "mean_over_ranks",
    "mix_batch",
    "parameters_in_sync",
    "prepare_run_dir",
    "preset_text",
    "prune_states",
    "reference_log_psnr",
    "resolve_data_path",
    "restore_rng_states",
    "save_training_state",
    "schedule_values",
    "seed_worker",
    "shutdown_distributed",
    "state_path",
    "train",
    "train_step",
    "validate",
]
