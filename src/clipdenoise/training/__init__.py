"""Training: recipes, patches, the loop, resumable states, schedules and DDP.

* :mod:`~clipdenoise.training.recipe` — :class:`ExperimentConfig` and the presets shipped as TOML.
* :mod:`~clipdenoise.training.patches` — training patches addressed by their position in the
  run, and the validation set.
* :mod:`~clipdenoise.training.loop` — :func:`train` and the :class:`Trainer` behind it.
* :mod:`~clipdenoise.training.state` — resumable training-state files.
* :mod:`~clipdenoise.training.schedule` — learning rates as pure functions of the iteration.
* :mod:`~clipdenoise.training.distributed` — torchrun process groups.

Python::

    from clipdenoise.training import load_experiment_config, train
    config = load_experiment_config("tiny-cpu", ["train.num_iters=100"])
    result = train(config, "runs/tiny", data_root="/data")

The public names below are imported lazily, so that reading a recipe does not load the loop.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "DataConfig": "clipdenoise.training.recipe",
    "EvalConfig": "clipdenoise.training.recipe",
    "ExperimentConfig": "clipdenoise.training.recipe",
    "NoiseConfig": "clipdenoise.training.recipe",
    "TrainConfig": "clipdenoise.training.recipe",
    "describe_config": "clipdenoise.training.recipe",
    "list_presets": "clipdenoise.training.recipe",
    "load_experiment_config": "clipdenoise.training.recipe",
    "preset_text": "clipdenoise.training.recipe",
    "ValidationSet": "clipdenoise.training.patches",
    "build_train_store": "clipdenoise.training.patches",
    "build_validation_set": "clipdenoise.training.patches",
    "resolve_data_path": "clipdenoise.training.patches",
    "RUN_CONFIG_NAME": "clipdenoise.training.loop",
    "StepContext": "clipdenoise.training.loop",
    "TrainResult": "clipdenoise.training.loop",
    "Trainer": "clipdenoise.training.loop",
    "TrainingError": "clipdenoise.training.loop",
    "mix_batch": "clipdenoise.training.loop",
    "prepare_run_dir": "clipdenoise.training.loop",
    "train": "clipdenoise.training.loop",
    "train_step": "clipdenoise.training.loop",
    "validate": "clipdenoise.training.loop",
    "LRSchedule": "clipdenoise.training.schedule",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'clipdenoise.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
