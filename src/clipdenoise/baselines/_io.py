"""Atomic ``.safetensors`` writing shared by the learned baselines."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def save_safetensors(model: nn.Module, path: Path, metadata: dict[str, str]) -> Path:
    """Write ``model``'s state dict with ``metadata`` to ``path`` (temp file, fsync, replace)."""
    from safetensors.torch import save_file

    from clipdenoise.atomic import atomic_output

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
    return path
