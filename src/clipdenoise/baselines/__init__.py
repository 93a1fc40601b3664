"""Baselines the paper compares with, under the package's denoiser contract.

Every baseline is an ``nn.Module`` whose ``forward(x)`` takes a ``(B, C, H, W)`` float tensor in
[0, 1] and returns the restored image of the same shape, so training, evaluation and inference
never special-case them:

* :class:`~clipdenoise.baselines.dncnn.DnCNN` — 17-layer residual CNN (Zhang et al., 2017).
* :class:`~clipdenoise.baselines.restormer.Restormer` — the published transformer (Zamir et al.,
  CVPR 2022), size configurable.
* :class:`~clipdenoise.baselines.classical.BM3DDenoiser`,
  :class:`~clipdenoise.baselines.classical.NLMDenoiser` — training-free, σ given or estimated.
* :class:`~clipdenoise.baselines.classical.NoisyInput` — the noisy input (the floor).

Submodules are imported lazily (``bm3d`` and scikit-image are optional extras).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipdenoise.errors import ConfigError
from clipdenoise.extras import lazy_exports

_EXPORTS = {
    "DnCNN": "clipdenoise.baselines.dncnn",
    "DnCNNConfig": "clipdenoise.baselines.dncnn",
    "Restormer": "clipdenoise.baselines.restormer",
    "RestormerConfig": "clipdenoise.baselines.restormer",
    "BM3DDenoiser": "clipdenoise.baselines.classical",
    "NLMDenoiser": "clipdenoise.baselines.classical",
    "NoisyInput": "clipdenoise.baselines.classical",
    "estimate_noise_sigma": "clipdenoise.baselines.classical",
}

LEARNED_BASELINES = ("dncnn", "restormer")

__all__ = [*_EXPORTS, "LEARNED_BASELINES", "build_baseline", "load_baseline", "save_baseline"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


def _module_for(kind: str):
    kind = kind.lower()
    if kind not in LEARNED_BASELINES:
        raise ConfigError(
            f"unknown learned baseline {kind!r}; valid: {', '.join(LEARNED_BASELINES)}"
        )
    return importlib.import_module(f"clipdenoise.baselines.{kind}")


def build_baseline(kind: str, **config: Any) -> nn.Module:
    """A freshly initialised learned baseline: ``build_baseline("dncnn", channels=3)``."""
    return _module_for(kind).build(**config)


def load_baseline(
    kind: str, path: str | Path, *, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Load DnCNN / Restormer weights: our ``.safetensors`` (config in the metadata) or the
    authors' published ``.pth`` layouts (the config is inferred from the tensor shapes)."""
    return _module_for(kind).load(Path(path), map_location=map_location)


def save_baseline(
    model: nn.Module, path: str | Path, *, metadata: Mapping[str, str] | None = None
) -> Path:
    """Save a learned baseline as ``.safetensors`` with its config (atomic write).

    ``metadata`` adds string entries (e.g. the training recipe) beside the config.
    """
    kind = type(model).__name__.lower()
    return _module_for(kind).save(model, Path(path), metadata=metadata)
