"""The learnable convolutional decoder of CLIPDenoising (paper Sec. 3.2, Fig. 4).

Starting from the deepest encoder feature (F4, or F5 in the ablation), a conv block halves its
channels; each following level upsamples ×2 (bilinear, ``align_corners=True``), concatenates the
next shallower feature (centre-cropped to the upsampled size) and applies a conv block that halves
the channels again. The last level upsamples to full resolution and concatenates the (padded,
3-channel) noisy image itself before its conv block; a final 3×3 conv maps to the output channels.
There is no global residual: the decoder predicts the clean image directly.

Channels for RN50 (width 64): F4 1024 → 512; [512 ⊕ F3 512] → 256; [256 ⊕ F2 256] → 128;
[128 ⊕ F1 64] → 64; [64 ⊕ image 3] → 64; head 64 → 3.

Tiles of a larger image are decoded with a :class:`Window`: ``align_corners=True`` upsampling
samples positions that depend on the size of the whole map (output ``J`` reads input
``J·(N-1)/(2N-1)``), so a tile upsampled on its own would be shifted by up to half a feature
pixel against the whole image. With a window, each ×2 upsampling evaluates the whole map's
positions for the tile's part of it (:func:`upsample2x`), batched over tiles at different
offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, out_channels: int, *, bias: bool, slope: float) -> nn.Sequential:
    """Conv3×3 → LeakyReLU → Conv3×3 → LeakyReLU (indices 0 and 2 hold the convs)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
        nn.LeakyReLU(slope, inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
        nn.LeakyReLU(slope, inplace=True),
    )


@dataclass(frozen=True)
class Window:
    """Where each image of a batch of tiles lies in a larger image.

    Attributes:
        offsets: ``(B, 2)`` int64 tensor, ``(top, left)`` of each tile in the whole image, in
            pixels of the level it describes.
        full_size: ``(H, W)`` of the whole image at that level.

    Build one with :meth:`of`; :meth:`at_stride` gives the window of a feature level.
    """

    offsets: torch.Tensor
    full_size: tuple[int, int]

    @classmethod
    def of(
        cls,
        offsets: Sequence[tuple[int, int]] | torch.Tensor,
        full_size: tuple[int, int],
        device: torch.device | str | None = None,
    ) -> Window:
        """A window from ``(top, left)`` pairs (one per tile) and the whole image's size."""
        offsets = torch.as_tensor(offsets, dtype=torch.int64, device=device).reshape(-1, 2)
        return cls(offsets, (int(full_size[0]), int(full_size[1])))

    @property
    def batch_size(self) -> int:
        return int(self.offsets.shape[0])

    def to(self, device: torch.device | str) -> Window:
        return Window(self.offsets.to(device, non_blocking=True), self.full_size)

    def at_stride(self, stride: int) -> Window:
        """The window on a map ``stride`` times smaller (offsets are multiples of it)."""
        return Window(
            torch.div(self.offsets, stride, rounding_mode="floor"),
            (self.full_size[0] // stride, self.full_size[1] // stride),
        )


def upsample2x(
    x: torch.Tensor, window: Window | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Bilinear ×2 upsampling with ``align_corners=True`` (the reference's choice).

    Args:
        x: ``(B, C, h, w)``.
        window: ``None`` when ``x`` is the whole map; otherwise where each sample of ``x`` lies
            in the whole map (offsets and size at ``x``'s resolution): the result then holds the
            whole map's upsampled values at ``[2·top, 2·top + 2h) × [2·left, 2·left + 2w)``,
            exactly except on the tile's outermost output row/column at a side shared with
            the rest of the image (where the missing neighbour is replaced by the edge value).
        out: Where to write the result (e.g. the first channels of a concatenation buffer, so
            that no concatenation copy is needed), or ``None`` for a new tensor.

    Returns:
        ``(B, C, 2h, 2w)`` in ``x``'s dtype and memory format (``out`` when given and used).
    """
    if window is None:
        upsampled = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return upsampled if out is None else out.copy_(upsampled)
    offsets = window.offsets.to(x.device)
    x = _upsample_axis(x, 2, offsets[:, 0], window.full_size[0])
    return _upsample_axis(x, 3, offsets[:, 1], window.full_size[1], out)


def _upsample_axis(
    x: torch.Tensor, dim: int, offset: torch.Tensor, full: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """×2 linear upsampling of ``x`` along ``dim`` at a whole map's ``align_corners`` positions.

    For a whole map of ``N`` samples, output ``2k`` reads input ``k - k/(2N-1)`` and output
    ``2k+1`` reads ``k + (N-1-k)/(2N-1)``; so ``out[2k] = lerp(x[k], x[k-1], k/(2N-1))`` and
    ``out[2k+1] = lerp(x[k], x[k+1], (N-1-k)/(2N-1))`` with ``k`` the global index
    (``offset + local index``). Both are shifted-slice operations written straight into the
    even and odd positions of the output: batched over samples (one offset each), no gathers,
    no Python loop, any memory layout and device.
    """
    size = x.shape[dim]
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], size
    index = offset.view(-1, 1) + torch.arange(size, device=x.device)
    # float32 is exact for the integer positions (one rounding in the division); the weights
    # are then rounded to x's dtype, which lerp needs (bf16: within the tested 50 dB bound)
    span = float(2 * full - 1)
    to_previous = (index.float() / span).to(x.dtype).view(shape)
    to_next = ((full - 1 - index).float() / span).to(x.dtype).view(shape)
    if out is None:
        out_shape = list(x.shape)
        out_shape[dim] = 2 * size
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device, memory_format=_layout(x))
    pairs = out.unflatten(dim, (size, 2))
    even, odd = pairs.select(dim + 1, 0), pairs.select(dim + 1, 1)
    if size > 1:
        rest = size - 1
        torch.lerp(
            x.narrow(dim, 1, rest),
            x.narrow(dim, 0, rest),
            to_previous.narrow(dim, 1, rest),
            out=even.narrow(dim, 1, rest),
        )
        torch.lerp(
            x.narrow(dim, 0, rest),
            x.narrow(dim, 1, rest),
            to_next.narrow(dim, 0, rest),
            out=odd.narrow(dim, 0, rest),
        )
    # the neighbour beyond the tile is unknown: the edge value stands in (exact at the
    # whole map's own edges, where the weight is 0)
    even.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
    odd.narrow(dim, size - 1, 1).copy_(x.narrow(dim, size - 1, 1))
    return out


def _layout(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the spatial centre of ``x`` to ``height``×``width`` (offsets rounded down)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class CLIPDecoder(nn.Module):
    """Decoder over encoder features, shallow to deep, plus the noisy image.

    Args:
        feature_channels: Channels of the encoder features in shallow-to-deep order (e.g.
            ``[64, 256, 512, 1024]`` for RN50's F1..F4).
        image_channels: Channels of the image concatenated at level 1 (3; the 1-channel model
            concatenates its 3-channel adapted image, as the reference does).
        out_channels: Channels of the restored image.
        use_image: Concatenate the noisy image at level 1 (paper); ``False`` is the ablation
            "w/o input I_n" of Table 4.
        bias: Whether convolutions have a bias (the released models have none).
        slope: Negative slope of the LeakyReLUs.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        *,
        image_channels: int = 3,
        out_channels: int = 3,
        use_image: bool = True,
        bias: bool = False,
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.use_image = use_image
        channels = list(feature_channels)
        deepest = channels[-1]
        blocks = [conv_block(deepest, deepest // 2, bias=bias, slope=slope)]
        current = deepest // 2
        for skip in reversed(channels[:-1]):
            blocks.append(conv_block(current + skip, current // 2, bias=bias, slope=slope))
            current //= 2
        image_in = current + (image_channels if use_image else 0)
        blocks.append(conv_block(image_in, current, bias=bias, slope=slope))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(current, out_channels, 3, padding=1, bias=bias)

    def forward(
        self,
        features: Sequence[torch.Tensor],
        image: torch.Tensor,
        window: Window | None = None,
    ) -> torch.Tensor:
        """Decode.

        Args:
            features: Encoder features shallow to deep, each ``(B, C_i, H/2^i, W/2^i)``.
            image: The (padded, adapted) noisy image ``(B, image_channels, H, W)``.
            window: Where each sample lies in a larger image, in input pixels (offsets
                multiples of the deepest feature's stride), or ``None`` for whole images; see
                :func:`upsample2x`.

        Returns:
            ``(B, out_channels, H, W)``, the restored image (not clamped), in the head's dtype
            (the head runs in its own weights' dtype: a float32 head on a reduced-precision
            decoder keeps the output's rounding error down).
        """
        x = self.blocks[0](features[-1])
        skips = [*reversed(features[:-1]), image if self.use_image else None]
        stride = 2 ** len(skips)  # resolution of blocks[0]: the deepest feature's stride
        for block, skip in zip(self.blocks[1:], skips):
            if window is None:
                x = upsample2x(x)
                if skip is not None:
                    skip = center_crop(skip, x.shape[-2], x.shape[-1]).to(x.dtype)
                    x = torch.cat([x, skip], dim=1)
            else:
                x = self._upsample_and_concat(x, skip, window.at_stride(stride))
            stride //= 2
            x = block(x)
        return self.head(x.to(self.head.weight.dtype))

    @staticmethod
    def _upsample_and_concat(
        x: torch.Tensor, skip: torch.Tensor | None, window: Window
    ) -> torch.Tensor:
        """``cat([upsample2x(x, window), skip])``, the upsampling written into the buffer."""
        batch, channels, height, width = x.shape
        if skip is None:
            return upsample2x(x, window)
        skip = center_crop(skip, 2 * height, 2 * width)
        buffer = torch.empty(
            batch,
            channels + skip.shape[1],
            2 * height,
            2 * width,
            dtype=x.dtype,
            device=x.device,
            memory_format=_layout(x),
        )
        upsample2x(x, window, out=buffer[:, :channels])
        buffer[:, channels:].copy_(skip)
        return buffer
