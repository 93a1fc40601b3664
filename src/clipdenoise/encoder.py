"""CLIP's modified ResNet image trunk as a multi-scale feature extractor (paper Sec. 3.1, Fig. 4).

The trunk follows OpenAI CLIP's ``ModifiedResNet``: a 3-conv stem (BatchNorm + ReLU after each
conv, the first with stride 2), a 2x2 average pool, then Bottleneck stages whose stride-2 blocks
downsample with an average pool placed before the 1x1 expansion conv, and on the shortcut before
its 1x1 conv ("anti-aliased" strided convolutions). Parameter names equal CLIP's ``visual.*``
names so that OpenAI / open_clip weights load without renaming. The attention-pool head is not
part of the trunk.

Dense features (the paper's F1..F5; ``width`` is the base width, 64 for RN50):

====  =======================  ==========  ========
name  taken after              channels    stride
====  =======================  ==========  ========
F1    stem (before avg pool)   width       2
F2    stage 1 (``layer1``)     4·width     4
F3    stage 2 (``layer2``)     8·width     8
F4    stage 3 (``layer3``)     16·width    16
F5    stage 4 (``layer4``)     32·width    32
====  =======================  ==========  ========

Only the stages that a requested feature needs are built and run (the reference computes stage 4
and throws it away).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

#: CLIP ResNet sizes: name -> (blocks per stage, base width).
CLIP_ARCHS: dict[str, tuple[tuple[int, int, int, int], int]] = {
    "RN50": ((3, 4, 6, 3), 64),
    "RN101": ((3, 4, 23, 3), 64),
    "RN50x4": ((4, 6, 10, 6), 80),
    "RN50x16": ((6, 8, 18, 8), 96),
    "RN50x64": ((3, 15, 36, 10), 128),
}

FEATURE_NAMES = ("F1", "F2", "F3", "F4", "F5")

# CLIP's preprocessing statistics (RGB), used only when ``normalize=True``.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

BatchNormMode = Literal["eval", "train"]


@dataclass(frozen=True)
class FeatureInfo:
    """Description of one dense feature map: its name, channel count and stride (reduction)."""

    name: str
    channels: int
    stride: int


class Bottleneck(nn.Module):
    """CLIP's Bottleneck block (expansion 4); stride > 1 downsamples by average pooling."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride > 1 or in_channels != out_channels:
            # Named "-1", "0", "1" as in CLIP so state-dict keys are downsample.0.* / downsample.1.*
            self.downsample = nn.Sequential()
            self.downsample.add_module("-1", nn.AvgPool2d(stride) if stride > 1 else nn.Identity())
            self.downsample.add_module("0", nn.Conv2d(in_channels, out_channels, 1, bias=False))
            self.downsample.add_module("1", nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu3(out + identity)


class CLIPResNetEncoder(nn.Module):
    """CLIP ResNet trunk returning dense features F1..F5 (see the module docstring).

    Args:
        layers: Bottleneck blocks per stage (4 values, e.g. ``(3, 4, 6, 3)`` for RN50); entries
            of stages that are not needed are ignored.
        width: Base width (64 for RN50, 80 / 96 / 128 for RN50x4 / x16 / x64).
        features: Names of the features to return, a subset of ``F1..F5``. Stages deeper than
            the deepest requested feature are not built.
        in_channels: Channels of the input image (3 for CLIP weights).
        trainable: ``False`` (the paper) freezes the trunk: its parameters do not require grad
            and, unless gradients must flow back to the input, it runs without building a graph.
        batchnorm: ``"eval"`` keeps every BatchNorm in eval mode (running statistics used and
            never updated) even when a parent module is put in ``train()``. ``"train"``
            reproduces the reference implementation, whose BatchNorm layers follow the parent's
            mode so their statistics drift during training although the weights are "frozen".
        normalize: Apply CLIP's mean/std normalisation to the input. The reference feeds [0, 1]
            images without it (the default here).

    Input: ``(B, in_channels, H, W)`` float, values in [0, 1]; H and W multiples of the deepest
    stride avoid border effects (the denoiser pads for you). Output: a list of tensors, one per
    distinct name of ``features``, shallow to deep (F1 before F4); ``feature_info`` describes
    them.
    """

    def __init__(
        self,
        layers: Sequence[int],
        width: int,
        *,
        features: Sequence[str] = ("F1", "F2", "F3", "F4"),
        in_channels: int = 3,
        trainable: bool = False,
        batchnorm: BatchNormMode = "eval",
        normalize: bool = False,
    ) -> None:
        super().__init__()
        unknown = [name for name in features if name not in FEATURE_NAMES]
        if unknown or not features:
            raise ValueError(
                f"features must be a non-empty subset of {FEATURE_NAMES}, got {features}"
            )
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        if batchnorm not in ("eval", "train"):
            raise ValueError(f"batchnorm must be 'eval' or 'train', got {batchnorm!r}")
        self.layers = tuple(int(n) for n in layers)
        self.width = int(width)
        self.feature_names = tuple(sorted(set(features), key=FEATURE_NAMES.index))
        self.num_stages = FEATURE_NAMES.index(self.feature_names[-1])  # F1 needs 0 stages
        self.trainable = trainable
        self.batchnorm = batchnorm
        self.normalize = normalize

        half = width // 2
        self.conv1 = nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)

        channels = width
        for stage in range(self.num_stages):
            planes = width * 2**stage
            blocks = [Bottleneck(channels, planes, stride=1 if stage == 0 else 2)]
            channels = planes * Bottleneck.expansion
            blocks += [Bottleneck(channels, planes) for _ in range(1, self.layers[stage])]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))

        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.set_trainable(trainable)
        self.train(self.training)  # apply the BatchNorm policy from the start, not only on .train()

    # ------------------------------------------------------------------ properties
    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Name, channels and stride of each returned feature, in output order."""
        return [feature_info_for(name, self.width) for name in self.feature_names]

    def stages(self) -> list[nn.Sequential]:
        """The built residual stages (``layer1``...), in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    # ------------------------------------------------------------------ modes
    def set_trainable(self, trainable: bool) -> None:
        """Freeze (``False``) or unfreeze the trunk's parameters."""
        self.trainable = trainable
        for parameter in self.parameters():
            parameter.requires_grad_(trainable)

    def train(self, mode: bool = True) -> CLIPResNetEncoder:
        super().train(mode)
        if self.batchnorm == "eval":
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        # A frozen trunk builds no graph, unless an upstream learnable layer (the 1-channel
        # adapter) needs gradients through it.
        build_graph = torch.is_grad_enabled() and (self.trainable or image.requires_grad)
        with torch.set_grad_enabled(build_graph):
            return self._features(image)

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = image.to(self.conv1.weight.dtype)
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        found = {"F1": x}
        x = self.avgpool(x)
        for index, stage in enumerate(self.stages()):
            x = stage(x)
            found[FEATURE_NAMES[index + 1]] = x
        return [found[name] for name in self.feature_names]


def feature_info_for(name: str, width: int) -> FeatureInfo:
    """The :class:`FeatureInfo` of feature ``name`` (``F1``..``F5``) for base ``width``."""
    index = FEATURE_NAMES.index(name)
    channels = width if index == 0 else width * 2 ** (index - 1) * Bottleneck.expansion
    return FeatureInfo(name=name, channels=channels, stride=2 ** (index + 1))


def arch_layers_width(arch: str) -> tuple[tuple[int, int, int, int], int]:
    """Blocks per stage and base width of a CLIP ResNet ``arch`` name (e.g. ``"RN50"``)."""
    try:
        return CLIP_ARCHS[arch]
    except KeyError:
        valid = ", ".join(CLIP_ARCHS)
        raise ValueError(f"unknown CLIP ResNet {arch!r}; valid names are: {valid}") from None
