"""A plain ImageNet ResNet (torchvision's layout and key names), written without torchvision.

The paper's Fig. 2 contrasts CLIP's ResNet with a ResNet-50 trained for ImageNet classification.
This module rebuilds torchvision's ``resnet50`` / ``resnet101`` / ``resnet152`` (v1.5: the
stride of a downsampling Bottleneck sits on its 3×3 conv) so that a torchvision state dict
(``resnet50-11ad3fa6.pth`` and friends) loads strictly, key for key, without torchvision.

Dense features, taken before each pooling as for CLIP (paper Sec. 3.1):

====  ================  ========  ======
name  taken after       channels  stride
====  ================  ========  ======
F1    stem conv+BN+ReLU  64        2
F2    ``layer1``         256       4
F3    ``layer2``         512       8
F4    ``layer3``         1024      16
F5    ``layer4``         2048      32
====  ================  ========  ======
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from clipdenoise.errors import WeightsMismatchError, WeightsNotFoundError

#: Blocks per stage of torchvision's Bottleneck ResNets.
IMAGENET_RESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}

#: The normalisation torchvision's ImageNet weights were trained with (RGB, [0, 1] input).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Submodule whose output is each dense feature (for :class:`HookFeatureExtractor`).
IMAGENET_RESNET_FEATURE_LAYERS = {
    "F1": "relu",
    "F2": "layer1",
    "F3": "layer2",
    "F4": "layer3",
    "F5": "layer4",
}


class TorchvisionBottleneck(nn.Module):
    """torchvision's Bottleneck (expansion 4, stride on the 3×3 conv)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ImageNetResNet(nn.Module):
    """torchvision's Bottleneck ResNet with identical parameter names.

    Args:
        layers: Blocks per stage (``(3, 4, 6, 3)`` for ResNet-50).
        num_classes: Size of the ``fc`` classifier; ``0`` builds no classifier (features only).

    ``forward(image)`` takes an ImageNet-normalised ``(B, 3, H, W)`` tensor and returns logits
    (or the pooled 2048-d embedding without ``fc``); :meth:`forward_features` returns F1..F5.
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        self.layers = tuple(int(n) for n in layers)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, blocks in enumerate(self.layers):
            planes = 64 * 2**stage
            stride = 1 if stage == 0 else 2
            modules = [TorchvisionBottleneck(channels, planes, stride)]
            channels = planes * TorchvisionBottleneck.expansion
            modules += [TorchvisionBottleneck(channels, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*modules))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Linear | None = nn.Linear(channels, num_classes) if num_classes else None

    def forward_features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Dense features F1..F5 (see the module docstring) of a normalised image."""
        x = self.relu(self.bn1(self.conv1(image)))
        features = [x]
        x = self.maxpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = torch.flatten(self.avgpool(self.forward_features(image)[-1]), 1)
        return pooled if self.fc is None else self.fc(pooled)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth`` / ``.pt`` (tensors only, no pickled code) or safetensors.

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``, ``{"params": ...}``) and a
    ``module.`` prefix (DataParallel) are removed.

    Raises:
        WeightsNotFoundError: the file does not exist.
        WeightsMismatchError: the file is not a readable state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt files raise many different types
        raise WeightsMismatchError(f"{path}: not a readable state dict ({error})") from error
    for wrapper in ("state_dict", "model", "params"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise WeightsMismatchError(f"{path}: expected a mapping of parameter names to tensors")
    return {key.removeprefix("module."): value for key, value in state.items()}


def infer_resnet_layers(state: Mapping[str, torch.Tensor]) -> tuple[int, int, int, int]:
    """Blocks per stage of a torchvision-layout ResNet state dict (from its key names)."""
    counts = []
    for stage in range(1, 5):
        indices = {
            int(key.split(".")[1])
            for key in state
            if key.startswith(f"layer{stage}.") and key.split(".")[1].isdigit()
        }
        counts.append(max(indices) + 1 if indices else 0)
    return tuple(counts)  # type: ignore[return-value]


def load_imagenet_resnet(path: str | Path) -> ImageNetResNet:
    """Load a torchvision-layout ImageNet ResNet (50/101/152) state dict, strictly, in eval mode.

    The depth is read from the keys; the classifier is built when ``fc.weight`` is present.

    Raises:
        WeightsNotFoundError: the file does not exist.
        WeightsMismatchError: the file is not such a state dict; the message lists missing,
            unexpected or mis-shaped tensors.
    """
    state = read_state_dict(path)
    layers = infer_resnet_layers(state)
    if min(layers) < 1 or "conv1.weight" not in state:
        raise WeightsMismatchError(
            f"{path}: not a torchvision-layout ResNet state dict (expected keys conv1.weight, "
            f"layer1.0.conv1.weight ... layer4.*; found blocks per stage {layers})"
        )
    num_classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 0
    model = ImageNetResNet(layers, num_classes=num_classes)
    expected = model.state_dict()
    # num_batches_tracked is bookkeeping that some exports drop; it does not change outputs.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or misshaped:
        details = []
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ):
            if names:
                shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
                details.append(f"{len(names)} {label}: {shown}")
        raise WeightsMismatchError(
            f"{path}: does not match a torchvision ResNet with blocks {layers} ("
            + "; ".join(details)
            + ")"
        )
    model.load_state_dict(state, strict=False)
    return model.eval()


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_RESNET_FEATURE_LAYERS",
    "IMAGENET_RESNET_LAYERS",
    "IMAGENET_STD",
    "ImageNetResNet",
    "infer_resnet_layers",
    "load_imagenet_resnet",
    "read_state_dict",
]
