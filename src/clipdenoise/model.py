"""CLIPDenoiser: frozen CLIP ResNet encoder + progressive feature augmentation + learnable decoder.

Paper Sec. 3.2 (architecture, Fig. 4) and Sec. 3.3 (progressive feature augmentation, Eq. 2).
``model(noisy)`` maps a ``(B, C, H, W)`` float image in [0, 1] (C = ``in_channels``) to the
restored image of the same shape (not clamped; clamp to [0, 1] for display and metrics).

``CLIPDenoiser.forward`` is the only implementation of the network's computation. Training runs
it with a BatchNorm-folded encoder swapped in
(:func:`clipdenoise.acceleration.convert_for_training`), inference runs it on a converted copy
(:func:`clipdenoise.acceleration.convert_for_inference`), and tiled inference runs it with a
:class:`~clipdenoise.decoder.Window` saying where each tile lies in the whole image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from clipdenoise.decoder import CLIPDecoder, Window
from clipdenoise.encoder import CLIP_ARCHS, FEATURE_NAMES, CLIPResNetEncoder, arch_layers_width
from clipdenoise.weights import load_clip_encoder_weights

#: ``encoder_weights`` spellings meaning random initialisation (TOML cannot write None).
RANDOM_INIT = ("random", "none")
#: Upper bounds of ``layers`` (blocks per stage) and ``width``: well above CLIP's largest
#: ResNet (RN50x64: 36 blocks, width 128), low enough that a config cannot describe a model
#: that exhausts memory before its weights are even compared with a file.
MAX_BLOCKS = 64
MAX_WIDTH = 512


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and ablation switches of a CLIPDenoiser.

    Attributes:
        arch: CLIP ResNet size (``RN50``, ``RN101``, ``RN50x4``, ``RN50x16``, ``RN50x64``) or
            ``custom`` with ``layers`` and ``width`` (tests use tiny custom encoders).
        layers: Blocks per stage; overrides ``arch``'s when given.
        width: Base width; overrides ``arch``'s when given.
        in_channels: 3 for RGB, 1 for single-channel data (CT), which passes through a learnable
            1×1 conv to 3 channels before the encoder (paper Sec. 4.1).
        out_channels: Channels of the output; ``None`` means ``in_channels``.
        encoder_weights: Where the encoder's initial weights come from: ``"openai"`` (CLIP's
            released weights for ``arch``, found by :mod:`clipdenoise.weights`), a file path, or
            ``None`` (also written ``"random"``) for random initialisation (a control, and the
            "from scratch" ablation).
        encoder_trainable: ``False`` keeps the encoder frozen (paper); ``True`` fine-tunes it
            (Table 4 "+finetune", or "+random" with ``encoder_weights=None``).
        encoder_batchnorm: ``"eval"`` keeps encoder BatchNorm statistics fixed (default for a
            frozen encoder); ``"train"`` lets them follow the module mode and drift, as in the
            reference's training; ``"auto"`` = eval when frozen, train when trainable.
        normalize_input: Apply CLIP's mean/std normalisation before the encoder (the reference
            does not).
        use_noisy_input: Concatenate the noisy image at decoder level 1 (Table 4 ablation).
        use_f5: Also use F5 (stride 32); the decoder gains a level (Table 4 ablation).
        aug_gamma: γ of progressive feature augmentation, α_i ~ N(1, (γ·i)²); 0 disables it.
        conv_bias: Bias in decoder convs and the 1×1 adapter (released models: none).
        leaky_slope: Negative slope of the decoder's LeakyReLUs.
        init_seed: Seed of the random initialisation of every learnable (and random-init) layer.
    """

    arch: str = "RN50"
    layers: tuple[int, ...] | None = None
    width: int | None = None
    in_channels: int = 3
    out_channels: int | None = None
    encoder_weights: str | None = field(default="openai", metadata={"toml_none": "random"})
    encoder_trainable: bool = False
    encoder_batchnorm: Literal["auto", "eval", "train"] = "auto"
    normalize_input: bool = False
    use_noisy_input: bool = True
    use_f5: bool = False
    aug_gamma: float = 0.025
    conv_bias: bool = False
    leaky_slope: float = 0.2
    init_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.encoder_weights, str) and self.encoder_weights.lower() in RANDOM_INIT:
            object.__setattr__(self, "encoder_weights", None)  # TOML has no null
        if self.arch != "custom" and self.arch not in CLIP_ARCHS:
            valid = ", ".join([*CLIP_ARCHS, "custom"])
            raise ValueError(f"model.arch: unknown {self.arch!r}; valid values are: {valid}")
        if self.arch == "custom" and (self.layers is None or self.width is None):
            raise ValueError("model.arch 'custom' needs both model.layers and model.width")
        if self.layers is not None and len(self.layers) != 4:
            raise ValueError(f"model.layers needs 4 block counts, got {self.layers}")
        if self.layers is not None and not all(1 <= n <= MAX_BLOCKS for n in self.layers):
            raise ValueError(
                f"model.layers: each stage needs 1 to {MAX_BLOCKS} blocks, got {self.layers}"
            )
        if self.width is not None and not (2 <= self.width <= MAX_WIDTH and self.width % 2 == 0):
            raise ValueError(
                f"model.width must be an even number from 2 to {MAX_WIDTH}, got {self.width}"
            )
        if self.in_channels not in (1, 3):
            raise ValueError(f"model.in_channels must be 1 or 3, got {self.in_channels}")
        if self.out_channels not in (None, 1, 3):
            raise ValueError(f"model.out_channels must be 1 or 3, got {self.out_channels}")
        if not (math.isfinite(self.aug_gamma) and self.aug_gamma >= 0):
            raise ValueError(f"model.aug_gamma must be a finite number >= 0, got {self.aug_gamma}")
        if not math.isfinite(self.leaky_slope):
            raise ValueError(f"model.leaky_slope must be finite, got {self.leaky_slope}")

    @property
    def resolved_layers(self) -> tuple[int, ...]:
        return tuple(self.layers) if self.layers is not None else arch_layers_width(self.arch)[0]

    @property
    def resolved_width(self) -> int:
        return int(self.width) if self.width is not None else arch_layers_width(self.arch)[1]

    @property
    def resolved_out_channels(self) -> int:
        return self.out_channels if self.out_channels is not None else self.in_channels

    @property
    def resolved_batchnorm(self) -> Literal["eval", "train"]:
        if self.encoder_batchnorm == "auto":
            return "train" if self.encoder_trainable else "eval"
        return self.encoder_batchnorm

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES if self.use_f5 else FEATURE_NAMES[:4]

    @property
    def pad_multiple(self) -> int:
        """Input sides are padded to this multiple: twice the deepest feature's stride."""
        return 64 if self.use_f5 else 32


def reflect_indices(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices that extend ``range(size)`` by mirror reflection (edge not repeated).

    Equal to ``torch.nn.functional.pad(mode="reflect")`` when the padding is smaller than the
    size, and keeps reflecting back and forth when it is not (tiny images), where
    ``F.pad`` would fail.
    """
    positions = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded < size, folded, period - folded)


def pad_to_multiple(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the bottom and right of ``image`` so H and W are multiples of ``multiple``.

    This is the reference test protocol (``F.pad(x, (0, pw, 0, ph), 'reflect')``, bottom/right
    only), which moves benchmark numbers slightly compared with centred padding.

    Args:
        image: ``(..., H, W)`` tensor.
        multiple: Target multiple (32 for features down to F4 at stride 16 plus decoder
            symmetry; 64 with F5).

    Returns:
        The padded tensor (``image`` itself when nothing is missing) and the original
        ``(H, W)`` to crop back to.
    """
    height, width = image.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return image, (height, width)
    if pad_h < height and pad_w < width:
        padded = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
    else:
        rows = reflect_indices(height, 0, pad_h, image.device)
        cols = reflect_indices(width, 0, pad_w, image.device)
        padded = image.index_select(-2, rows).index_select(-1, cols)
    return padded, (height, width)


def augment_features(
    features: Sequence[torch.Tensor],
    gamma: float,
    generator: torch.Generator | None = None,
    *,
    noise: Sequence[torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Progressive feature augmentation (paper Eq. 2): ``F_i * α_i``, ``α_i = 1 + γ·i·z_i``.

    ``features`` are F1, F2, ... in order (i = 1, 2, ...); ``z_i`` is standard normal with the
    shape of F_i, drawn element-wise from ``generator`` (which must live on the features'
    device) unless given.

    Args:
        features: F1, F2, ... as the encoder returns them.
        gamma: γ (0.025 in the paper).
        generator: Source of the draws.
        noise: The draws ``z_i`` themselves, one tensor per feature of its shape (e.g. the ones a
            reference run recorded, to replay its training step); ``generator`` is then unused.

    Raises:
        ValueError: ``noise`` does not match the features in number or shape.
    """
    if noise is not None:
        shapes = [tuple(f.shape) for f in features]
        if [tuple(z.shape) for z in noise] != shapes:
            raise ValueError(
                f"feature noise must hold one tensor per feature of shapes {shapes}, got "
                f"{[tuple(z.shape) for z in noise]}"
            )
    augmented = []
    for scale, feature in enumerate(features, start=1):
        if noise is None:
            z = torch.randn(
                feature.shape, generator=generator, device=feature.device, dtype=feature.dtype
            )
        else:
            z = noise[scale - 1].to(device=feature.device, dtype=feature.dtype)
        augmented.append(feature * (1.0 + gamma * scale * z))
    return augmented


class CLIPDenoiser(nn.Module):
    """The CLIPDenoising network (paper Fig. 4).

    Args:
        config: Architecture and ablations. The encoder is built with random weights here; use
            :func:`build_model` (which loads CLIP weights) or
            :func:`clipdenoise.checkpoints.load_model` for a usable model.

    Attributes:
        aug_generator: Optional ``torch.Generator`` for the feature augmentation; set it (on the
            model's device) to make training reproducible.
        feature_noise: Optional standard-normal draws ``z_1..z_n`` (one tensor per feature, of
            its shape) used by every training-mode forward instead of drawing from
            ``aug_generator``: how a recorded reference training step is replayed exactly
            (see :func:`augment_features`). ``None`` (the default) draws.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.init_seed)
            self.input_adapter: nn.Conv2d | None = None
            if config.in_channels == 1:
                self.input_adapter = nn.Conv2d(1, 3, kernel_size=1, bias=config.conv_bias)
            self.encoder = CLIPResNetEncoder(
                config.resolved_layers,
                config.resolved_width,
                features=config.feature_names,
                trainable=config.encoder_trainable,
                batchnorm=config.resolved_batchnorm,
                normalize=config.normalize_input,
            )
            self.decoder = CLIPDecoder(
                [info.channels for info in self.encoder.feature_info],
                image_channels=3,
                out_channels=config.resolved_out_channels,
                use_image=config.use_noisy_input,
                bias=config.conv_bias,
                slope=config.leaky_slope,
            )
        self.aug_generator: torch.Generator | None = None
        self.feature_noise: Sequence[torch.Tensor] | None = None

    @property
    def feature_info(self):
        return self.encoder.feature_info

    def train(self, mode: bool = True) -> CLIPDenoiser:
        super().train(mode)
        self.encoder.train(mode)  # re-applies the encoder's BatchNorm policy
        return self

    #: ``forward`` takes ``window=`` (tiled inference decodes tiles in whole-image coordinates).
    accepts_window = True

    def forward(self, noisy: torch.Tensor, window: Window | None = None) -> torch.Tensor:
        """Restore ``noisy`` ``(B, in_channels, H, W)`` in [0, 1]; returns the same shape.

        Args:
            noisy: The noisy images, or tiles of a larger image when ``window`` is given.
            window: ``None`` for whole images: sides that are not multiples of
                :attr:`ModelConfig.pad_multiple` are reflect-padded at the bottom/right (the
                reference protocol) and the output is cropped back. Otherwise where each tile
                of the batch lies in the whole (padded) image: tile sides and offsets must be
                multiples of ``pad_multiple``, and the decoder's upsampling samples the
                positions it would sample on the whole image, so away from its borders a tile
                equals the whole image's output (see :class:`~clipdenoise.decoder.Window`).

        Raises:
            ValueError: wrong shape, or a tile whose sides are not multiples of
                ``pad_multiple``.
        """
        if noisy.dim() != 4 or noisy.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected a (B, {self.config.in_channels}, H, W) tensor, got {tuple(noisy.shape)}"
            )
        multiple = self.config.pad_multiple
        if window is None:
            padded, (height, width) = pad_to_multiple(noisy, multiple)
        else:
            height, width = noisy.shape[-2:]
            if height % multiple or width % multiple or window.batch_size != noisy.shape[0]:
                raise ValueError(
                    f"tiles must have sides that are multiples of {multiple} and one window "
                    f"offset each; got {tuple(noisy.shape)} and {window.batch_size} offsets"
                )
            padded = noisy
        image = padded if self.input_adapter is None else self.input_adapter(padded)
        features = self.encoder(image)
        if self.training and self.config.aug_gamma > 0:
            features = augment_features(
                features, self.config.aug_gamma, self.aug_generator, noise=self.feature_noise
            )
        restored = self.decoder(features, image, window=window)
        if restored.shape[-2:] != (height, width):
            restored = restored[..., :height, :width]
        return restored

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimizer should see (the frozen encoder's are excluded)."""
        return [p for p in self.parameters() if p.requires_grad]


def build_model(
    config: ModelConfig | str = "RN50", *, load_encoder_weights: bool = True, **overrides
) -> CLIPDenoiser:
    """Build a CLIPDenoiser and load its encoder's initial weights.

    Args:
        config: A :class:`ModelConfig`, or a CLIP ResNet name (``"RN50"``...).
        load_encoder_weights: Load ``config.encoder_weights`` into the encoder (skip this when a
            full checkpoint will overwrite every weight anyway).
        **overrides: Fields of :class:`ModelConfig` to replace.

    Raises:
        clipdenoise.errors.WeightsNotFoundError: CLIP weights were asked for but not found; the
            message says where we looked and how to provide them.
    """
    if isinstance(config, str):
        config = ModelConfig(arch=config)
    if overrides:
        config = replace(config, **overrides)
    model = CLIPDenoiser(config)
    if load_encoder_weights and config.encoder_weights is not None:
        load_clip_encoder_weights(model.encoder, config.encoder_weights, arch=config.arch)
    return model


def tiny_config(**overrides) -> ModelConfig:
    """A tiny random-init configuration (width 8, one block per stage) for tests and demos."""
    base = ModelConfig(arch="custom", layers=(1, 1, 1, 1), width=8, encoder_weights=None)
    return replace(base, **overrides)


__all__ = [
    "CLIPDenoiser",
    "ModelConfig",
    "Window",
    "augment_features",
    "build_model",
    "pad_to_multiple",
    "reflect_indices",
    "tiny_config",
]
