"""``.safetensors`` checkpoints of the learned baselines: atomic writing, checked reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipdenoise.errors import WeightsMismatchError

_LABELS = {"dncnn": "DnCNN", "restormer": "Restormer"}


def save_safetensors(model: nn.Module, path: Path, metadata: dict[str, str]) -> Path:
    """Write ``model``'s state dict with ``metadata`` to ``path`` (temp file, fsync, replace)."""
    from safetensors.torch import save_file

    from clipdenoise.atomic import atomic_output

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
    return path


def load_safetensors(
    path: Path, kind: str, *, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config (from the metadata) and tensors of a checkpoint :func:`save_safetensors` wrote.

    Raises:
        WeightsMismatchError: the file was written for another ``kind`` of model.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("kind") != kind:
        raise WeightsMismatchError(
            f"{path}: not a {_LABELS.get(kind, kind)} checkpoint (kind {metadata.get('kind')!r})"
        )
    return json.loads(metadata["config"]), load_file(str(path), device=str(map_location))
