"""Checkpoints of the learned baselines: one loader and one saver for DnCNN and Restormer.

A baseline module describes its files with a :class:`CheckpointFormat` (its model and config
classes, how to infer the config from bare tensors, how the published files name their keys);
:func:`load_checkpoint` then reads either our ``.safetensors`` (the config in the metadata,
written by :func:`save_checkpoint`) or a published PyTorch file (``.pth``; the config is inferred
from the tensor shapes), loads it strictly and returns the model in eval mode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipdenoise.atomic import atomic_output
from clipdenoise.errors import WeightsMismatchError, WeightsNotFoundError

#: Keys under which published files nest their state dict (BasicSR, KAIR, plain trainers).
STATE_DICT_KEYS = ("params", "params_ema", "state_dict", "model_state_dict")


@dataclass(frozen=True)
class CheckpointFormat:
    """How one learned baseline is stored.

    Attributes:
        kind: The name in our files' metadata (``"dncnn"``).
        label: The name in messages (``"DnCNN"``).
        model_class: Builds the model from a config.
        config_class: The model's config dataclass (rebuilt from our files' metadata).
        infer_config: The config a bare state dict was saved from (published files); raises
            ``KeyError`` or :class:`~clipdenoise.errors.WeightsMismatchError` when it cannot.
        key_renames: ``(pattern, replacement)`` regex substitutions applied in order to the keys
            of published files (``DataParallel``'s ``module.`` prefix, other naming schemes).
    """

    kind: str
    label: str
    model_class: Callable[[Any], nn.Module]
    config_class: Callable[..., Any]
    infer_config: Callable[[dict[str, torch.Tensor]], Any]
    key_renames: tuple[tuple[str, str], ...] = ((r"^module\.", ""),)


def load_checkpoint(
    path: str | Path, fmt: CheckpointFormat, *, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Load a baseline checkpoint (ours or a published layout), strictly, in eval mode.

    Args:
        path: A ``.safetensors`` file :func:`save_checkpoint` wrote, or a PyTorch file holding
            the state dict (bare or under one of :data:`STATE_DICT_KEYS`).
        fmt: The baseline's :class:`CheckpointFormat`.
        map_location: Device the tensors and the returned model go to.

    Returns:
        The model, on ``map_location``, in eval mode.

    Raises:
        WeightsNotFoundError: The file does not exist.
        WeightsMismatchError: The file was written for another model, or its tensors do not form
            this one (the message names the file and the keys).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: {fmt.label} checkpoint not found")
    if path.suffix == ".safetensors":
        config_data, state = load_safetensors(path, fmt, map_location=map_location)
        config = fmt.config_class(**config_data)
    else:
        raw = torch.load(path, map_location=map_location, weights_only=True)
        state = _published_state_dict(raw, path, fmt)
        try:
            config = fmt.infer_config(state)
        except (KeyError, WeightsMismatchError) as error:
            raise WeightsMismatchError(f"{path}: {error}") from error
    model = fmt.model_class(config)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsMismatchError(
            f"{path}: {fmt.label} weights do not match the architecture {config}: missing "
            f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(map_location).eval()


def _published_state_dict(
    raw: object, path: Path, fmt: CheckpointFormat
) -> dict[str, torch.Tensor]:
    if isinstance(raw, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsMismatchError(f"{path}: not a {fmt.label} state dict")
    state = dict(raw)
    for pattern, replacement in fmt.key_renames:
        state = {re.sub(pattern, replacement, key): value for key, value in state.items()}
    return state


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    fmt: CheckpointFormat,
    *,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Save ``model`` as ``.safetensors`` with its config in the metadata (atomic write).

    Args:
        model: A baseline with a dataclass ``config`` attribute.
        path: The output file.
        fmt: The baseline's :class:`CheckpointFormat`.
        metadata: String entries (e.g. the training recipe) stored beside the config.

    Returns:
        ``path``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    entries = {**(metadata or {}), "kind": fmt.kind, "config": json.dumps(asdict(model.config))}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(path) as temporary:
        save_file(state, str(temporary), metadata=entries)
    return path


def load_safetensors(
    path: Path, fmt: CheckpointFormat, *, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config (from the metadata) and tensors of a file :func:`save_checkpoint` wrote.

    Raises:
        WeightsMismatchError: the file was written for another kind of model.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("kind") != fmt.kind:
        raise WeightsMismatchError(
            f"{path}: not a {fmt.label} checkpoint (kind {metadata.get('kind')!r})"
        )
    return json.loads(metadata["config"]), load_file(str(path), device=str(map_location))


__all__ = [
    "STATE_DICT_KEYS",
    "CheckpointFormat",
    "load_checkpoint",
    "load_safetensors",
    "save_checkpoint",
]
