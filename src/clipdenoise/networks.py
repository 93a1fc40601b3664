"""The networks the one training loop can train, chosen by an experiment's ``network`` key.

Every network follows the package's denoiser contract — ``model(noisy)`` on a ``(B, C, H, W)``
float tensor in [0, 1] returns the restored image of the same shape — so the trainer needs only
three things per kind: how to build it from the experiment's config, how many image channels it
takes, and how to save its weights.

* ``clipdenoiser``: :class:`~clipdenoise.model.CLIPDenoiser` from the ``[model]`` section,
  saved by :func:`clipdenoise.checkpoints.save_checkpoint` (loadable by name or path).
* ``dncnn``, ``restormer``: the learned baselines from the ``[dncnn]`` / ``[restormer]``
  sections, saved by :func:`clipdenoise.baselines.save_baseline` (loadable as
  ``dncnn:PATH`` / ``restormer:PATH`` by ``clipdenoise evaluate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from torch import nn

from clipdenoise.baselines import build_baseline, save_baseline
from clipdenoise.checkpoints import save_checkpoint
from clipdenoise.model import CLIPDenoiser, build_model

if TYPE_CHECKING:
    from clipdenoise.training.recipe import ExperimentConfig

NetworkKind = Literal["clipdenoiser", "dncnn", "restormer"]
NETWORK_KINDS: tuple[str, ...] = ("clipdenoiser", "dncnn", "restormer")


def network_channels(config: ExperimentConfig) -> int:
    """Image channels the experiment's network takes."""
    if config.network == "dncnn":
        return config.dncnn.channels
    if config.network == "restormer":
        return config.restormer.in_channels
    return config.model.in_channels


def build_network(config: ExperimentConfig) -> nn.Module:
    """A freshly initialised network of ``config.network`` (CLIP weights loaded if asked)."""
    if config.network == "clipdenoiser":
        return build_model(config.model, load_encoder_weights=True)

    section = config.dncnn if config.network == "dncnn" else config.restormer
    return build_baseline(config.network, **asdict(section))


def is_clip_denoiser(model: nn.Module) -> bool:
    return isinstance(model, CLIPDenoiser)


def save_network(model: nn.Module, path: str | Path, metadata: Mapping[str, str]) -> Path:
    """Save ``model``'s weights in its kind's checkpoint format, with ``metadata`` (atomic)."""
    if is_clip_denoiser(model):
        return save_checkpoint(model, path, metadata=dict(metadata))

    return save_baseline(model, path, metadata=metadata)


__all__ = [
    "NETWORK_KINDS",
    "NetworkKind",
    "build_network",
    "is_clip_denoiser",
    "network_channels",
    "save_network",
]
