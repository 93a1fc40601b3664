"""Multi-scale feature extractors compared by the analysis: the adapter protocol and its encoders.

A :class:`FeatureExtractor` turns a ``(B, C, H, W)`` float image in [0, 1] into a list of dense
feature maps ``(B, C_i, H_i, W_i)``, one per named scale (``F1``...), shallow to deep. Adapters:

* :class:`CLIPFeatureExtractor`: a CLIP ResNet trunk (:class:`~clipdenoise.encoder.CLIPResNetEncoder`)
  with OpenAI weights, a weights file, random initialisation (a control), or the (possibly
  fine-tuned) encoder of a trained CLIPDenoiser checkpoint.
* :class:`ModuleFeatureExtractor`: any module whose forward returns a list or dict of maps.
* :class:`HookFeatureExtractor`: any ``torch.nn.Module``, features read from named submodules
  by forward hooks (the forward stops after the deepest one). Used for the ImageNet ResNet of
  the paper's Fig. 2 and usable for other trained denoisers (e.g. a Restormer's encoder levels).
* :func:`restormer_feature_extractor`: the encoder levels of a trained Restormer (Fig. 2).
* :class:`AvgPoolPyramid`: the image itself average-pooled by 2, 4, ... 32, a fixed, weight-free
  control whose similarity falls with noise in a known way.

:func:`parse_encoder_spec` / :func:`load_feature_extractor` build them from short strings (the
CLI's ``--encoder``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipdenoise.analysis.imagenet_resnet import (
    IMAGENET_MEAN,
    IMAGENET_RESNET_FEATURE_LAYERS,
    IMAGENET_STD,
    load_imagenet_resnet,
)
from clipdenoise.baselines import load_baseline
from clipdenoise.checkpoints import load_model
from clipdenoise.encoder import CLIP_ARCHS, FEATURE_NAMES, CLIPResNetEncoder, arch_layers_width
from clipdenoise.errors import ConfigError
from clipdenoise.weights import load_clip_encoder_weights


class FeatureExtractor(nn.Module):
    """Adapter protocol: an image → multi-scale dense features (subclass and implement
    :meth:`extract`).

    Args:
        label: Human-readable name used in tables and figure legends.
        feature_names: Names of the returned scales, shallow to deep (``("F1", ..., "F5")``).
        in_channels: Channels the extractor expects (1 or 3); images are converted to it.
        input_multiple: Images are centre-cropped so H and W are multiples of this (the deepest
            stride), so no feature sees padding.
        control: ``True`` marks a control (random or weight-free) in tables and legends.
    """

    def __init__(
        self,
        label: str,
        feature_names: Sequence[str],
        *,
        in_channels: int = 3,
        input_multiple: int = 32,
        control: bool = False,
    ) -> None:
        super().__init__()
        if not feature_names:
            raise ValueError("a feature extractor needs at least one feature name")
        self.label = label
        self.feature_names = tuple(feature_names)
        self.in_channels = in_channels
        self.input_multiple = input_multiple
        self.control = control

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return one ``(B, C_i, H_i, W_i)`` tensor per name of :attr:`feature_names`."""
        raise NotImplementedError

    def _register_input_statistics(
        self, mean: Sequence[float] | None, std: Sequence[float] | None
    ) -> None:
        """Keep the per-channel ``mean`` / ``std`` the wrapped module's training normalised its
        inputs with (both or neither), as non-persistent buffers that follow ``.to()``."""
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.normalized = mean is not None
        shape = (1, self.in_channels, 1, 1)
        self.register_buffer(
            "mean", torch.tensor(mean or [0.0] * self.in_channels).view(shape), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std or [1.0] * self.in_channels).view(shape), persistent=False
        )

    def _normalize_input(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` in the buffers' dtype, normalised when statistics were given."""
        x = images.to(self.mean.dtype)
        return (x - self.mean) / self.std if self.normalized else x

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features of ``images`` ``(B, in_channels, H, W)`` in [0, 1], without a graph."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.label}: expected a (B, {self.in_channels}, H, W) tensor, "
                f"got {tuple(images.shape)}"
            )
        with torch.no_grad():
            features = self.extract(images)
        if len(features) != len(self.feature_names):
            raise RuntimeError(
                f"{self.label}: returned {len(features)} feature maps for "
                f"{len(self.feature_names)} names {self.feature_names}"
            )
        for name, feature in zip(self.feature_names, features):
            if feature.dim() != 4:
                raise RuntimeError(
                    f"{self.label}: feature {name} has shape {tuple(feature.shape)}; dense "
                    "(B, C, H, W) maps are required"
                )
        return features


class CLIPFeatureExtractor(FeatureExtractor):
    """Features F1..F5 of a CLIP ResNet trunk (optionally behind a CLIPDenoiser's 1×1 adapter).

    Args:
        encoder: The trunk; its ``feature_names`` are the returned scales.
        label: Legend name.
        input_adapter: The 1×1 conv of a single-channel CLIPDenoiser (its images are grey).
        control: Mark as a control (random initialisation).
    """

    def __init__(
        self,
        encoder: CLIPResNetEncoder,
        *,
        label: str,
        input_adapter: nn.Module | None = None,
        control: bool = False,
    ) -> None:
        in_channels = 3 if input_adapter is None else int(input_adapter.in_channels)
        deepest_stride = max(info.stride for info in encoder.feature_info)
        super().__init__(
            label,
            encoder.feature_names,
            in_channels=in_channels,
            input_multiple=deepest_stride,
            control=control,
        )
        self.encoder = encoder.eval()
        self.input_adapter = input_adapter

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images if self.input_adapter is None else self.input_adapter(images)
        return self.encoder(x)


class HookFeatureExtractor(FeatureExtractor):
    """Features of any module, read from the outputs of named submodules by forward hooks.

    The module's forward is stopped as soon as the last hooked output is known, so deeper layers
    (classifier heads, decoders) cost nothing.

    Args:
        module: Any ``nn.Module`` whose ``forward(image)`` takes the (normalised) image.
        layers: ``feature name -> submodule path`` (``dict(module.named_modules())`` keys), in
            shallow-to-deep order, e.g. ``{"F1": "relu", "F2": "layer1", ...}``. A submodule
            returning a tuple contributes its first tensor.
        label: Legend name.
        mean: Per-channel mean subtracted before ``module`` (its training normalisation).
        std: Per-channel std divided by after subtracting ``mean``.
        in_channels: Channels of the images the module takes.
        input_multiple: H and W are cropped to multiples of this (the deepest stride).
        control: Mark as a control.

    Example:
        >>> from clipdenoise.analysis.imagenet_resnet import ImageNetResNet
        >>> net = ImageNetResNet((1, 1, 1, 1), num_classes=0)
        >>> extractor = HookFeatureExtractor(net, {"F2": "layer1", "F3": "layer2"}, label="demo")
        >>> [tuple(f.shape) for f in extractor(torch.rand(1, 3, 64, 64))]
        [(1, 256, 16, 16), (1, 512, 8, 8)]
    """

    def __init__(
        self,
        module: nn.Module,
        layers: Mapping[str, str],
        *,
        label: str,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        in_channels: int = 3,
        input_multiple: int = 32,
        control: bool = False,
    ) -> None:
        super().__init__(
            label,
            list(layers),
            in_channels=in_channels,
            input_multiple=input_multiple,
            control=control,
        )
        available = dict(module.named_modules())
        unknown = [path for path in layers.values() if path not in available]
        if unknown:
            raise ConfigError(
                f"{label}: no submodule named {', '.join(unknown)}; the module has: "
                + ", ".join(name for name in available if name)
            )
        self.module = module.eval()
        self.layer_paths = dict(layers)
        self._hooked = {path: available[path] for path in self.layer_paths.values()}
        self._register_input_statistics(mean, std)

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        wanted = set(self.layer_paths.values())

        def capture(path: str):
            def hook(_module: nn.Module, _inputs, output) -> None:
                if path in captured:  # a reused submodule: keep its first call
                    return
                tensor = output[0] if isinstance(output, (tuple, list)) else output
                # clone: an in-place op later in the forward (ReLU(inplace)) must not alter it
                captured[path] = tensor.clone()
                if wanted.issubset(captured):
                    raise _FeaturesCaptured

            return hook

        handles = [
            submodule.register_forward_hook(capture(path))
            for path, submodule in self._hooked.items()
        ]
        x = self._normalize_input(images)
        try:
            self.module(x)
        except _FeaturesCaptured:
            pass
        finally:
            for handle in handles:
                handle.remove()
        missing = wanted.difference(captured)
        if missing:
            raise RuntimeError(
                f"{self.label}: the forward never ran submodule(s) {', '.join(sorted(missing))}"
            )
        return [captured[self.layer_paths[name]] for name in self.feature_names]


class _FeaturesCaptured(Exception):
    """Raised by a hook to stop a forward pass once every wanted feature is captured."""


class ModuleFeatureExtractor(FeatureExtractor):
    """Features of a module whose forward already returns multi-scale maps.

    For backbones built as feature extractors (a ``features_only`` timm model, a
    :class:`~clipdenoise.encoder.CLIPResNetEncoder`, a U-Net encoder returning its skips):
    ``module(image)`` returns a list / tuple of ``(B, C_i, H_i, W_i)`` tensors (shallow to
    deep) or a dict of them.

    Args:
        module: The backbone.
        feature_names: Names of the returned scales. For a list output, the i-th name labels
            the i-th map (``select`` picks a subset of positions first); for a dict output, the
            names are its keys to read.
        label: Legend name.
        select: Positions of the list output to keep (default: all, in order).
        mean: Per-channel mean subtracted first (its training normalisation), with ``std``.
        std: Per-channel std.
        in_channels: Channels of the images the module takes.
        input_multiple: H and W are cropped to multiples of this (the deepest stride).
        control: Mark as a control.

    Example:
        >>> trunk = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F2"))
        >>> extractor = ModuleFeatureExtractor(trunk, ["F1", "F2"], label="tiny trunk")
        >>> [tuple(f.shape) for f in extractor(torch.rand(1, 3, 32, 32))]
        [(1, 8, 16, 16), (1, 32, 8, 8)]
    """

    def __init__(
        self,
        module: nn.Module,
        feature_names: Sequence[str],
        *,
        label: str,
        select: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        in_channels: int = 3,
        input_multiple: int = 32,
        control: bool = False,
    ) -> None:
        super().__init__(
            label,
            feature_names,
            in_channels=in_channels,
            input_multiple=input_multiple,
            control=control,
        )
        if select is not None and len(select) != len(self.feature_names):
            raise ValueError(
                f"{label}: select has {len(select)} positions for {len(self.feature_names)} names"
            )
        self._register_input_statistics(mean, std)
        self.module = module.eval()
        self.select = None if select is None else tuple(select)

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self._normalize_input(images)
        output = self.module(x)
        if isinstance(output, Mapping):
            missing = [name for name in self.feature_names if name not in output]
            if missing:
                raise RuntimeError(
                    f"{self.label}: output has keys {', '.join(map(str, output))}, not "
                    f"{', '.join(missing)}"
                )
            return [output[name] for name in self.feature_names]
        if not isinstance(output, (list, tuple)):
            raise RuntimeError(
                f"{self.label}: forward returned {type(output).__name__}; a list, tuple or dict "
                "of feature maps is required (use HookFeatureExtractor for other modules)"
            )
        positions = self.select or range(len(self.feature_names))
        if max(positions) >= len(output):
            raise RuntimeError(
                f"{self.label}: forward returned {len(output)} maps, position {max(positions)} "
                "was asked for"
            )
        return [output[index] for index in positions]


class AvgPoolPyramid(FeatureExtractor):
    """The image average-pooled by 2, 4, 8, 16, 32 (scales F1..F5): a weight-free control.

    Pooling by ``k`` averages ``k²`` pixels, so i.i.d. noise shrinks by ``k`` and the cosine
    similarity of clean and noisy "features" rises with depth and falls with the noise level.
    """

    def __init__(self, feature_names: Sequence[str] = FEATURE_NAMES, in_channels: int = 3):
        unknown = [name for name in feature_names if name not in FEATURE_NAMES]
        if unknown:
            raise ConfigError(f"unknown scale(s) {unknown}; valid: {', '.join(FEATURE_NAMES)}")
        names = tuple(sorted(set(feature_names), key=FEATURE_NAMES.index))
        deepest = 2 ** (FEATURE_NAMES.index(names[-1]) + 1)
        super().__init__(
            "average-pool pyramid (control)",
            names,
            in_channels=in_channels,
            input_multiple=deepest,
            control=True,
        )

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        kernels = [2 ** (FEATURE_NAMES.index(name) + 1) for name in self.feature_names]
        return [torch.nn.functional.avg_pool2d(images, kernel) for kernel in kernels]


# ---------------------------------------------------------------------- specs and loading
ENCODER_KINDS = ("clip", "checkpoint", "imagenet", "restormer", "avgpool")

#: Restormer submodules read as scales (shallow to deep; strides 1, 2, 4, 8).
RESTORMER_FEATURE_LAYERS = {
    "F1": "encoder_level1",
    "F2": "encoder_level2",
    "F3": "encoder_level3",
    "F4": "latent",
}


@dataclass(frozen=True)
class EncoderSpec:
    """Which encoder to analyse.

    Attributes:
        kind: ``"clip"`` (a CLIP ResNet trunk), ``"checkpoint"`` (the encoder of a trained
            CLIPDenoiser), ``"imagenet"`` (a torchvision-layout ImageNet ResNet state dict),
            ``"restormer"`` (the encoder levels of a trained Restormer, Fig. 2) or
            ``"avgpool"`` (the weight-free pooling control).
        arch: CLIP ResNet size for ``clip`` (``RN50`` ... ``RN50x64``).
        weights: ``clip``: ``"openai"`` (found by :mod:`clipdenoise.weights`), a file path, or
            ``None`` for random initialisation (a control). ``checkpoint``: a path or an imported
            model name. ``imagenet`` / ``restormer``: the weights path.
        label: Legend name; derived from the other fields when ``None``.
    """

    kind: str
    arch: str | None = None
    weights: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ConfigError(
                f"unknown encoder kind {self.kind!r}; valid: {', '.join(ENCODER_KINDS)}"
            )
        if self.kind == "clip" and self.arch not in CLIP_ARCHS:
            raise ConfigError(f"unknown CLIP ResNet {self.arch!r}; valid: {', '.join(CLIP_ARCHS)}")
        if self.kind in ("checkpoint", "imagenet", "restormer") and not self.weights:
            raise ConfigError(f"encoder kind {self.kind!r} needs a path")

    @property
    def display_label(self) -> str:
        if self.label:
            return self.label
        if self.kind == "clip":
            if self.weights is None:
                return f"{self.arch} (random init, control)"
            if self.weights == "openai":
                return f"CLIP {self.arch}"
            return f"CLIP {self.arch} ({Path(self.weights).name})"
        if self.kind == "checkpoint":
            return f"denoiser encoder ({Path(str(self.weights)).stem})"
        if self.kind == "imagenet":
            return f"ImageNet ResNet ({Path(str(self.weights)).name})"
        if self.kind == "restormer":
            return f"Restormer encoder ({Path(str(self.weights)).stem})"
        return "average-pool pyramid (control)"


def parse_encoder_spec(text: str) -> EncoderSpec:
    """Parse the CLI's encoder syntax.

    ==============================  =====================================================
    ``RN50`` (any CLIP size)        CLIP weights "openai", found by ``clipdenoise.weights``
    ``RN50:random``                 random initialisation: a control
    ``RN50:PATH``                   CLIP weights read from PATH
    ``checkpoint:PATH_OR_NAME``     the encoder of a trained CLIPDenoiser
    ``imagenet:PATH``               torchvision-layout ImageNet ResNet-50/101/152 weights
    ``restormer:PATH``              encoder levels of a trained Restormer (F1..F4 = its
                                    levels 1-3 and latent, strides 1, 2, 4, 8)
    ``avgpool``                     average-pool pyramid (weight-free control)
    ==============================  =====================================================

    A trailing ``@LABEL`` sets the legend name (``imagenet:r50.pth@ResNet-50 ImageNet``).

    Raises:
        ConfigError: the text matches none of these forms.
    """
    body, label = text, None
    if "@" in text:
        head, tail = text.rsplit("@", 1)
        if tail and "/" not in tail:
            body, label = head, tail
    kind, _, argument = body.partition(":")
    if kind in CLIP_ARCHS:
        if argument in ("", "openai"):
            return EncoderSpec("clip", arch=kind, weights="openai", label=label)
        if argument == "random":
            return EncoderSpec("clip", arch=kind, weights=None, label=label)
        return EncoderSpec("clip", arch=kind, weights=argument, label=label)
    if kind in ("checkpoint", "imagenet", "restormer") and argument:
        return EncoderSpec(kind, weights=argument, label=label)
    if kind == "avgpool" and not argument:
        return EncoderSpec("avgpool", label=label)
    raise ConfigError(
        f"cannot parse encoder {text!r}; use one of: {', '.join(CLIP_ARCHS)} (optionally "
        "':random' or ':PATH'), 'checkpoint:PATH', 'imagenet:PATH', 'restormer:PATH', 'avgpool'"
    )


def clip_feature_extractor(
    arch: str,
    weights: str | None = "openai",
    *,
    features: Sequence[str] = FEATURE_NAMES,
    seed: int = 0,
    label: str | None = None,
    normalize: bool = False,
) -> CLIPFeatureExtractor:
    """A CLIP ResNet trunk returning ``features`` (default F1..F5), in eval mode.

    Args:
        arch: ``RN50``, ``RN101``, ``RN50x4``, ``RN50x16`` or ``RN50x64``.
        weights: ``"openai"``, a weights file, or ``None`` for random initialisation (seeded by
            ``seed``), which is a control.
        features: Scales to return; deeper stages are not built.
        seed: Seed of the random initialisation.
        label: Legend name (default from the arch and weights).
        normalize: Apply CLIP's mean/std normalisation first. Off by default, as in the
            reference denoiser, which feeds [0, 1] images to the trunk.

    Raises:
        clipdenoise.errors.WeightsNotFoundError: CLIP weights are not available; the message
            says where they were looked for and how to provide them.
    """
    spec = EncoderSpec("clip", arch=arch, weights=weights, label=label)
    layers, width = arch_layers_width(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPResNetEncoder(layers, width, features=features, normalize=normalize)
    if weights is not None:
        load_clip_encoder_weights(encoder, weights, arch=arch)
    return CLIPFeatureExtractor(encoder, label=spec.display_label, control=weights is None)


def checkpoint_feature_extractor(
    spec: str | Path,
    *,
    features: Sequence[str] = FEATURE_NAMES,
    label: str | None = None,
) -> CLIPFeatureExtractor:
    """The encoder (and 1×1 input adapter, if any) of a trained CLIPDenoiser.

    Only the scales that the checkpoint's encoder computes are available (F1..F4 for the
    released models, F5 as well with ``use_f5``).

    Raises:
        ConfigError: none of ``features`` is computed by this encoder.
    """
    model = load_model(spec)
    encoder = model.encoder
    kept = [name for name in encoder.feature_names if name in features]
    if not kept:
        raise ConfigError(
            f"{spec}: its encoder computes {', '.join(encoder.feature_names)}, none of the "
            f"requested scales {', '.join(features)}"
        )
    if tuple(kept) != encoder.feature_names:
        # Rebuild a trunk with only the kept stages and copy the weights (cheaper forward).
        trimmed = CLIPResNetEncoder(
            encoder.layers, encoder.width, features=kept, normalize=encoder.normalize
        )
        trimmed.load_state_dict(encoder.state_dict(), strict=False)
        encoder = trimmed
    default = EncoderSpec("checkpoint", weights=str(spec)).display_label
    return CLIPFeatureExtractor(encoder, label=label or default, input_adapter=model.input_adapter)


def imagenet_feature_extractor(
    path: str | Path,
    *,
    features: Sequence[str] = FEATURE_NAMES,
    label: str | None = None,
    normalize: bool = True,
) -> HookFeatureExtractor:
    """A torchvision-layout ImageNet ResNet (the paper's Fig. 2 contrast) as a feature extractor.

    Args:
        path: torchvision state dict (``.pth``) or safetensors file; depth 50/101/152 is read
            from the keys.
        features: Scales to return (F1 = stem output, F2..F5 = ``layer1..4``).
        label: Legend name.
        normalize: Apply ImageNet mean/std first, as the weights were trained with.
    """
    network = load_imagenet_resnet(path)
    names = [name for name in FEATURE_NAMES if name in features]
    if not names:
        raise ConfigError(f"no known scale in {features}; valid: {', '.join(FEATURE_NAMES)}")
    depth = sum(network.layers) * 3 + 2
    return HookFeatureExtractor(
        network,
        {name: IMAGENET_RESNET_FEATURE_LAYERS[name] for name in names},
        label=label or f"ImageNet ResNet-{depth}",
        mean=IMAGENET_MEAN if normalize else None,
        std=IMAGENET_STD if normalize else None,
        input_multiple=2 ** (FEATURE_NAMES.index(names[-1]) + 1),
    )


def restormer_feature_extractor(
    path: str | Path,
    *,
    features: Sequence[str] = FEATURE_NAMES,
    label: str | None = None,
) -> HookFeatureExtractor:
    """The encoder levels of a trained Restormer (the paper's Fig. 2 contrast) as scales.

    F1..F4 are ``encoder_level1..3`` and ``latent`` (strides 1, 2, 4, 8: not CLIP's 2..16);
    there is no F5. Weights: our ``.safetensors`` or the official ``.pth``
    (:func:`clipdenoise.baselines.load_baseline`).
    """
    names = [
        name for name in FEATURE_NAMES if name in features and name in RESTORMER_FEATURE_LAYERS
    ]
    if not names:
        raise ConfigError(
            f"a Restormer has scales {', '.join(RESTORMER_FEATURE_LAYERS)}; none of "
            f"{', '.join(features)} was requested"
        )
    network = load_baseline("restormer", path)
    return HookFeatureExtractor(
        network,
        {name: RESTORMER_FEATURE_LAYERS[name] for name in names},
        label=label or EncoderSpec("restormer", weights=str(path)).display_label,
        in_channels=network.config.in_channels,
        input_multiple=8,
    )


def load_feature_extractor(
    spec: EncoderSpec | str,
    *,
    features: Sequence[str] = FEATURE_NAMES,
    seed: int = 0,
    clip_normalize: bool = False,
) -> FeatureExtractor:
    """Build the extractor described by ``spec`` (an :class:`EncoderSpec` or its CLI string).

    Args:
        spec: What to load (see :func:`parse_encoder_spec`).
        features: Scales to compute (subset of F1..F5).
        seed: Seed of random initialisation (``RN50:random``).
        clip_normalize: CLIP trunks (``clip`` kind) apply CLIP's mean/std normalisation first
            (a checkpoint's encoder keeps its own setting; ImageNet ResNets always normalise).
    """
    if isinstance(spec, str):
        spec = parse_encoder_spec(spec)
    unknown = [name for name in features if name not in FEATURE_NAMES]
    if unknown or not features:
        raise ConfigError(
            f"scales must be a non-empty subset of {', '.join(FEATURE_NAMES)}, got "
            f"{', '.join(features) or 'none'}"
        )
    if spec.kind == "clip":
        return clip_feature_extractor(
            str(spec.arch),
            spec.weights,
            features=features,
            seed=seed,
            label=spec.display_label,
            normalize=clip_normalize,
        )
    if spec.kind == "checkpoint":
        return checkpoint_feature_extractor(str(spec.weights), features=features, label=spec.label)
    if spec.kind == "imagenet":
        return imagenet_feature_extractor(str(spec.weights), features=features, label=spec.label)
    if spec.kind == "restormer":
        return restormer_feature_extractor(str(spec.weights), features=features, label=spec.label)
    extractor = AvgPoolPyramid(features)
    if spec.label:
        extractor.label = spec.label
    return extractor


__all__ = [
    "ENCODER_KINDS",
    "AvgPoolPyramid",
    "CLIPFeatureExtractor",
    "EncoderSpec",
    "FeatureExtractor",
    "HookFeatureExtractor",
    "ModuleFeatureExtractor",
    "checkpoint_feature_extractor",
    "clip_feature_extractor",
    "imagenet_feature_extractor",
    "load_feature_extractor",
    "parse_encoder_spec",
    "restormer_feature_extractor",
]
