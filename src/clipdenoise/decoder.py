"""The learnable convolutional decoder of CLIPDenoising (paper Sec. 3.2, Fig. 4).

Starting from the deepest encoder feature (F4, or F5 in the ablation), a conv block halves its
channels; each following level upsamples ×2 (bilinear, ``align_corners=True``), concatenates the
next shallower feature (centre-cropped to the upsampled size) and applies a conv block that halves
the channels again. The last level upsamples to full resolution and concatenates the (padded,
3-channel) noisy image itself before its conv block; a final 3×3 conv maps to the output channels.
There is no global residual: the decoder predicts the clean image directly.

Channels for RN50 (width 64): F4 1024 → 512; [512 ⊕ F3 512] → 256; [256 ⊕ F2 256] → 128;
[128 ⊕ F1 64] → 64; [64 ⊕ image 3] → 64; head 64 → 3.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear ×2 upsampling with ``align_corners=True`` (the reference's choice)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


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

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        """Decode.

        Args:
            features: Encoder features shallow to deep, each ``(B, C_i, H/2^i, W/2^i)``.
            image: The (padded, adapted) noisy image ``(B, image_channels, H, W)``.

        Returns:
            ``(B, out_channels, H, W)``, the restored image (not clamped).
        """
        x = self.blocks[0](features[-1])
        skips = [*reversed(features[:-1]), image if self.use_image else None]
        for block, skip in zip(self.blocks[1:], skips):
            x = upsample2x(x)
            if skip is not None:
                skip = center_crop(skip, x.shape[-2], x.shape[-1]).to(x.dtype)
                x = torch.cat([x, skip], dim=1)
            x = block(x)
        return self.head(x)
