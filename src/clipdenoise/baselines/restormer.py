"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image
Restoration", CVPR 2022), the published architecture with a configurable size.

A 4-level U-shaped transformer: overlapped 3×3 patch embedding; transformer blocks of multi-Dconv
head *transposed* attention (MDTA: attention across channels, queries/keys L2-normalised, a
learned temperature per head) and gated-Dconv feed-forward networks (GDFN: GELU gate, expansion
γ = 2.66); pixel-unshuffle downsampling and pixel-shuffle upsampling; skip connections by
concatenation (a 1×1 channel reduction at levels 3 and 2, none at level 1); refinement blocks at
full resolution; a global residual (the output conv's result is added to the input).

Parameter names match the official code (``swz30/Restormer``), so its released ``.pth``
checkpoints (``{'params': state_dict}``) load strictly; :func:`load` infers the size (width,
blocks, heads, expansion, bias, LayerNorm type) from the tensor shapes. ``forward`` pads the
input by reflection to a multiple of 8 (three 2× downsamplings) and crops back, so any H, W works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from clipdenoise.baselines.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint
from clipdenoise.errors import WeightsMismatchError
from clipdenoise.model import pad_to_multiple

__all__ = ["CHECKPOINT_FORMAT", "Restormer", "RestormerConfig", "build", "load", "save"]


@dataclass(frozen=True)
class RestormerConfig:
    """Size of a Restormer (defaults: the published model, 26.1 M parameters).

    Attributes:
        in_channels: Image channels in (3 RGB, 1 grey).
        out_channels: Image channels out.
        dim: Width of level 1 (levels 2–4: 2×, 4×, 8×).
        num_blocks: Transformer blocks at levels 1–4 (the decoder mirrors levels 1–3).
        num_refinement_blocks: Blocks of the full-resolution refinement stage.
        heads: Attention heads at levels 1–4.
        ffn_expansion_factor: GDFN hidden width = ``int(width * factor)``.
        bias: Bias in the convs.
        layernorm: ``"WithBias"`` or ``"BiasFree"`` (the released Gaussian denoisers use
            BiasFree).
    """

    in_channels: int = 3
    out_channels: int = 3
    dim: int = 48
    num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8)
    num_refinement_blocks: int = 4
    heads: tuple[int, int, int, int] = (1, 2, 4, 8)
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    layernorm: str = "WithBias"

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_blocks", tuple(self.num_blocks))
        object.__setattr__(self, "heads", tuple(self.heads))
        if len(self.num_blocks) != 4 or len(self.heads) != 4:
            raise ValueError("Restormer num_blocks and heads need 4 entries (one per level)")
        if self.layernorm not in ("WithBias", "BiasFree"):
            raise ValueError(f"layernorm must be 'WithBias' or 'BiasFree', got {self.layernorm!r}")
        for level, heads in enumerate(self.heads):
            width = self.dim * 2**level
            if width % heads:
                raise ValueError(
                    f"level {level + 1} width {width} is not divisible by {heads} heads"
                )


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over channels at every pixel (the official ``LayerNorm`` on 4-D tensors)."""

    def __init__(self, channels: int, with_bias: bool) -> None:
        super().__init__()
        self.body = _LayerNormBody(channels, with_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _LayerNormBody(nn.Module):
    def __init__(self, channels: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.var(-1, keepdim=True, unbiased=False)
        if self.bias is None:  # BiasFree: scale only, the mean is not removed
            return x / torch.sqrt(variance + 1e-5) * self.weight
        mean = x.mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(variance + 1e-5) * self.weight + self.bias


class _GatedDconvFeedForward(nn.Module):
    def __init__(self, dim: int, expansion: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class _TransposedAttention(nn.Module):
    """MDTA: attention between channels (C/heads × C/heads per head), linear in pixels."""

    def __init__(self, dim: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        shape = (batch, self.heads, channels // self.heads, height * width)
        q = F.normalize(q.reshape(shape), dim=-1)
        k = F.normalize(k.reshape(shape), dim=-1)
        attention = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        out = (attention @ v.reshape(shape)).reshape(batch, channels, height, width)
        return self.project_out(out)


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, config: RestormerConfig) -> None:
        super().__init__()
        with_bias = config.layernorm == "WithBias"
        self.norm1 = _ChannelLayerNorm(dim, with_bias)
        self.attn = _TransposedAttention(dim, heads, config.bias)
        self.norm2 = _ChannelLayerNorm(dim, with_bias)
        self.ffn = _GatedDconvFeedForward(dim, config.ffn_expansion_factor, config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """The Restormer denoiser; ``forward(x)`` on ``(B, C, H, W)`` in [0, 1], any H and W.

    Example:
        >>> config = RestormerConfig(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
        >>> Restormer(config)(torch.rand(1, 3, 20, 27)).shape
        torch.Size([1, 3, 20, 27])
    """

    def __init__(self, config: RestormerConfig | None = None) -> None:
        super().__init__()
        config = config or RestormerConfig()
        self.config = config
        dim, blocks, heads = config.dim, config.num_blocks, config.heads

        def stage(width: int, level_heads: int, count: int) -> nn.Sequential:
            return nn.Sequential(
                *[_TransformerBlock(width, level_heads, config) for _ in range(count)]
            )

        self.patch_embed = _PatchEmbed(config.in_channels, dim, config.bias)
        self.encoder_level1 = stage(dim, heads[0], blocks[0])
        self.down1_2 = _Downsample(dim)
        self.encoder_level2 = stage(dim * 2, heads[1], blocks[1])
        self.down2_3 = _Downsample(dim * 2)
        self.encoder_level3 = stage(dim * 4, heads[2], blocks[2])
        self.down3_4 = _Downsample(dim * 4)
        self.latent = stage(dim * 8, heads[3], blocks[3])
        self.up4_3 = _Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=config.bias)
        self.decoder_level3 = stage(dim * 4, heads[2], blocks[2])
        self.up3_2 = _Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=config.bias)
        self.decoder_level2 = stage(dim * 2, heads[1], blocks[1])
        self.up2_1 = _Upsample(dim * 2)
        self.decoder_level1 = stage(dim * 2, heads[0], blocks[0])
        self.refinement = stage(dim * 2, heads[0], config.num_refinement_blocks)
        self.output = nn.Conv2d(dim * 2, config.out_channels, 3, padding=1, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, (height, width) = pad_to_multiple(x, 8)
        level1 = self.encoder_level1(self.patch_embed(padded))
        level2 = self.encoder_level2(self.down1_2(level1))
        level3 = self.encoder_level3(self.down2_3(level2))
        latent = self.latent(self.down3_4(level3))
        decoded = self.reduce_chan_level3(torch.cat([self.up4_3(latent), level3], 1))
        decoded = self.decoder_level3(decoded)
        decoded = self.reduce_chan_level2(torch.cat([self.up3_2(decoded), level2], 1))
        decoded = self.decoder_level2(decoded)
        decoded = self.decoder_level1(torch.cat([self.up2_1(decoded), level1], 1))
        decoded = self.refinement(decoded)
        residual = self.output(decoded)
        if self.config.in_channels == self.config.out_channels:
            residual = residual + padded
        return residual[..., :height, :width]


def build(**config: object) -> Restormer:
    """A freshly initialised Restormer: ``build(dim=48, num_blocks=(4, 6, 6, 8))``."""
    return Restormer(RestormerConfig(**config))  # type: ignore[arg-type]


def _count_blocks(state: dict[str, torch.Tensor], stage: str) -> int:
    indices = {int(m.group(1)) for k in state if (m := re.match(rf"{stage}\.(\d+)\.", k))}
    return max(indices) + 1 if indices else 0


def infer_config(state: dict[str, torch.Tensor]) -> RestormerConfig:
    """The :class:`RestormerConfig` a state dict in the official layout was saved from."""
    if "patch_embed.proj.weight" not in state or "output.weight" not in state:
        raise WeightsMismatchError(
            "no 'patch_embed.proj.weight' / 'output.weight': not a Restormer state dict"
        )
    embed = state["patch_embed.proj.weight"]
    dim = embed.shape[0]
    stages = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
    blocks = tuple(_count_blocks(state, s) for s in stages)
    heads = tuple(state[f"{s}.0.attn.temperature"].shape[0] for s in stages)
    hidden = [state[f"{s}.0.ffn.project_out.weight"].shape[1] for s in stages]
    candidates = [2.66, 2.0, 4.0, 1.0, (hidden[0] + 0.5) / dim, hidden[0] / dim]
    factor = next(
        (c for c in candidates if all(int(dim * 2**i * c) == h for i, h in enumerate(hidden))),
        None,
    )
    if factor is None:
        raise WeightsMismatchError(f"Restormer FFN widths {hidden} match no expansion factor")
    return RestormerConfig(
        in_channels=embed.shape[1],
        out_channels=state["output.weight"].shape[0],
        dim=dim,
        num_blocks=blocks,  # type: ignore[arg-type]
        num_refinement_blocks=_count_blocks(state, "refinement"),
        heads=heads,  # type: ignore[arg-type]
        ffn_expansion_factor=factor,
        bias="encoder_level1.0.attn.qkv.bias" in state,
        layernorm="WithBias" if "encoder_level1.0.norm1.body.bias" in state else "BiasFree",
    )


#: How Restormer checkpoints are stored (the official files nest the tensors under ``params``).
CHECKPOINT_FORMAT = CheckpointFormat(
    kind="restormer",
    label="Restormer",
    model_class=Restormer,
    config_class=RestormerConfig,
    infer_config=infer_config,
)


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Restormer:
    """Load a Restormer checkpoint (ours or the official ``{'params': ...}``), strictly.

    See :func:`~clipdenoise.baselines.checkpoint.load_checkpoint` (and its errors).
    """
    return load_checkpoint(path, CHECKPOINT_FORMAT, map_location=map_location)


def save(model: Restormer, path: str | Path, *, metadata: Mapping[str, str] | None = None) -> Path:
    """Save as ``.safetensors`` with the config (and ``metadata``) in the metadata (atomic)."""
    return save_checkpoint(model, path, CHECKPOINT_FORMAT, metadata=metadata)
