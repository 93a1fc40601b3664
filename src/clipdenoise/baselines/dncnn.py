"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", TIP 2017): a residual CNN baseline.

``depth`` 3×3 conv layers with ``features`` channels: Conv-ReLU, ``depth - 2`` × Conv-BN-ReLU,
Conv. The network predicts the noise and the module returns ``x - noise`` (residual learning).
The paper's Table 1 trains it on Gaussian σ = 15 like CLIPDenoising.

Modules are numbered as in KAIR (``cszn/KAIR``, whose ``dncnn_*.pth`` files are the commonly
used released weights): ``model.0`` is the first conv, and each middle block contributes conv,
BatchNorm, ReLU (or conv, ReLU when the BatchNorm was merged into the conv, as in KAIR's released
files). :func:`load` reads those files, DnCNN-PyTorch's ``dncnn.*`` files (bias-free convs) and
our ``.safetensors``; the configuration is inferred from the tensor shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipdenoise.baselines.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint
from clipdenoise.errors import WeightsMismatchError

__all__ = ["CHECKPOINT_FORMAT", "DnCNN", "DnCNNConfig", "build", "load", "save"]


@dataclass(frozen=True)
class DnCNNConfig:
    """Architecture of a DnCNN.

    Attributes:
        channels: Image channels (3 RGB, 1 grey).
        features: Channels of the hidden layers (64).
        depth: Number of conv layers (17 in the paper's non-blind and colour models).
        batchnorm: BatchNorm in the middle layers (``False`` when merged into the convs).
        bias: Bias in the convs (KAIR: yes; DnCNN-PyTorch: no).
    """

    channels: int = 3
    features: int = 64
    depth: int = 17
    batchnorm: bool = True
    bias: bool = True


class DnCNN(nn.Module):
    """The DnCNN denoiser; ``forward(x)`` on ``(B, C, H, W)`` in [0, 1], any H and W.

    Example:
        >>> model = DnCNN(DnCNNConfig(channels=3, depth=5, features=8))
        >>> model(torch.rand(2, 3, 20, 24)).shape
        torch.Size([2, 3, 20, 24])
    """

    def __init__(self, config: DnCNNConfig | None = None) -> None:
        super().__init__()
        config = config or DnCNNConfig()
        if config.depth < 3:
            raise ValueError(f"DnCNN depth must be >= 3, got {config.depth}")
        self.config = config
        layers: list[nn.Module] = [
            nn.Conv2d(config.channels, config.features, 3, padding=1, bias=config.bias),
            nn.ReLU(inplace=True),
        ]
        for _ in range(config.depth - 2):
            layers.append(
                nn.Conv2d(config.features, config.features, 3, padding=1, bias=config.bias)
            )
            if config.batchnorm:
                layers.append(nn.BatchNorm2d(config.features, momentum=0.1, eps=1e-4))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(config.features, config.channels, 3, padding=1, bias=config.bias))
        self.model = nn.Sequential(*layers)
        self._initialise()

    def _initialise(self) -> None:
        # Orthogonal init as in the DnCNN paper's released training code.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.orthogonal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.model(x)


def build(**config: object) -> DnCNN:
    """A freshly initialised DnCNN: ``build(channels=3, depth=17)``."""
    return DnCNN(DnCNNConfig(**config))  # type: ignore[arg-type]


def infer_config(state: dict[str, torch.Tensor]) -> DnCNNConfig:
    """The :class:`DnCNNConfig` that a KAIR-layout state dict was saved from."""
    conv_keys = sorted(
        (int(m.group(1)), k)
        for k in state
        if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and state[k].ndim == 4
    )
    if not conv_keys:
        raise WeightsMismatchError("no 'model.<i>.weight' conv tensors: not a DnCNN state dict")
    first = state[conv_keys[0][1]]
    return DnCNNConfig(
        channels=first.shape[1],
        features=first.shape[0],
        depth=len(conv_keys),
        batchnorm=any(k.endswith("running_mean") for k in state),
        bias="model.0.bias" in state,
    )


#: How DnCNN checkpoints are stored (DnCNN-PyTorch names its modules ``dncnn.*``).
CHECKPOINT_FORMAT = CheckpointFormat(
    kind="dncnn",
    label="DnCNN",
    model_class=DnCNN,
    config_class=DnCNNConfig,
    infer_config=infer_config,
    key_renames=((r"^module\.", ""), (r"^dncnn\.", "model.")),
)


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> DnCNN:
    """Load a DnCNN checkpoint (ours, KAIR or DnCNN-PyTorch layout), strictly, in eval mode.

    See :func:`~clipdenoise.baselines.checkpoint.load_checkpoint` (and its errors).
    """
    return load_checkpoint(path, CHECKPOINT_FORMAT, map_location=map_location)


def save(model: DnCNN, path: str | Path, *, metadata: Mapping[str, str] | None = None) -> Path:
    """Save as ``.safetensors`` with the config (and ``metadata``) in the metadata (atomic)."""
    return save_checkpoint(model, path, CHECKPOINT_FORMAT, metadata=metadata)
