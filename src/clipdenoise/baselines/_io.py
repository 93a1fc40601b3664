"""Atomic ``.safetensors`` writing shared by the learned baselines."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from torch import nn


def save_safetensors(model: nn.Module, path: Path, metadata: dict[str, str]) -> Path:
    """Write ``model``'s state dict with ``metadata`` to ``path`` (temp file, fsync, replace)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        save_file(state, temp_name, metadata=metadata)
        with open(temp_name, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
