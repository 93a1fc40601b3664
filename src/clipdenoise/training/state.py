"""Resumable training-state files: written atomically, kept last-N, loadable with ``weights_only``.

A state file (``states/state_00001000.pt``) holds everything needed to continue a run exactly:
the model's tensors, the optimizer (and fp16 grad scaler) state, the iteration, the global RNG
states of Python, NumPy and torch (CPU and CUDA) stored as tensors, and a copy of the resolved
config. Model *weights* for use are written separately, in the checkpoint format of
:mod:`clipdenoise.checkpoints`.

Files are written atomically by :mod:`clipdenoise.atomic` (temporary file in the same folder,
fsync, rename), so a killed process never leaves a half-written state behind.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipdenoise.atomic import atomic_write
from clipdenoise.errors import ConfigError

STATE_FORMAT = "clipdenoise-training-state"
STATE_VERSION = 1
STATES_DIRNAME = "states"
_STATE_NAME = re.compile(r"^state_(\d+)\.pt$")


def state_path(run_dir: Path, iteration: int) -> Path:
    """Path of the state file of ``iteration`` in ``run_dir``."""
    return Path(run_dir) / STATES_DIRNAME / f"state_{iteration:08d}.pt"


def list_states(run_dir: Path) -> list[Path]:
    """State files of ``run_dir``, oldest first."""
    folder = Path(run_dir) / STATES_DIRNAME
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STATE_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_state(run_dir: Path) -> Path | None:
    """The newest state file of ``run_dir``, or ``None``."""
    states = list_states(run_dir)
    return states[-1] if states else None


def prune_states(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` state files; returns the deleted paths."""
    states = list_states(run_dir)
    doomed = states[:-keep_last] if keep_last > 0 else []
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def capture_rng_states() -> dict[str, Any]:
    """Global RNG states of Python, NumPy and torch (CPU and every CUDA device), as tensors."""
    version, python_state, gauss_next = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python_version": int(version),
        "python_state": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss_next": gauss_next,
        "numpy_kind": str(kind),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_position": int(position),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch_cuda"] = list(torch.cuda.get_rng_state_all())
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_states`."""
    random.setstate(
        (
            states["python_version"],
            tuple(int(v) for v in states["python_state"].tolist()),
            states["python_gauss_next"],
        )
    )
    np.random.set_state(
        (
            states["numpy_kind"],
            states["numpy_keys"].numpy().astype(np.uint32),
            states["numpy_position"],
            states["numpy_has_gauss"],
            states["numpy_cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch_cpu"])
    cuda_states = states.get("torch_cuda")
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])


def save_training_state(
    run_dir: Path,
    *,
    iteration: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scaler_state: dict[str, Any] | None,
    extra: dict[str, Any],
    config_json: str,
    keep_last: int,
) -> Path:
    """Write the state after ``iteration`` completed iterations, then prune to ``keep_last``.

    Args:
        run_dir: The run folder.
        iteration: Completed iterations (training continues at this index).
        model_state: The model's ``state_dict`` (CPU tensors are not required).
        optimizer_state: ``optimizer.state_dict()``.
        scaler_state: The fp16 ``GradScaler`` state, or ``None``.
        extra: Small loop counters (best validation PSNR, skipped steps, ...), plain types only.
        config_json: The resolved experiment config as JSON.
        keep_last: How many state files to keep (older ones are deleted after the write).

    Returns:
        The path written.
    """
    payload = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "iteration": int(iteration),
        "model": model_state,
        "optimizer": optimizer_state,
        "scaler": scaler_state,
        "rng": capture_rng_states(),
        "extra": extra,
        "config_json": config_json,
    }
    path = atomic_write(state_path(run_dir, iteration), lambda stream: torch.save(payload, stream))
    prune_states(run_dir, keep_last)
    return path


def load_training_state(path: Path) -> dict[str, Any]:
    """Load a state file safely (``weights_only=True``) and check its format.

    Raises:
        ConfigError: the file is missing or is not a clipdenoise training state.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: training state not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or foreign file: say which
        raise ConfigError(f"{path}: not a readable training state ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise ConfigError(f"{path}: not a clipdenoise training state")
    if payload.get("version") != STATE_VERSION:
        raise ConfigError(
            f"{path}: training state version {payload.get('version')} is not supported "
            f"(expected {STATE_VERSION})"
        )
    return payload


__all__ = [
    "STATES_DIRNAME",
    "capture_rng_states",
    "latest_state",
    "list_states",
    "load_training_state",
    "prune_states",
    "restore_rng_states",
    "save_training_state",
    "state_path",
]
