"""The convolutional decoder (paper Sec. 3.2, Fig. 4): its channel plan, the noisy image at level
1, windowed ×2 upsampling that reproduces the whole map's ``align_corners`` grid on a tile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipdenoise.decoder import CLIPDecoder, Window, center_crop, upsample2x

RN50_CHANNELS = [64, 256, 512, 1024]


def _features(channels, height, width, batch=1, seed=0):
    """Random F1.. features of a ``height`` × ``width`` image (strides 2, 4, 8, ...)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.rand(batch, c, height // 2 ** (i + 1), width // 2 ** (i + 1), generator=generator)
        for i, c in enumerate(channels)
    ]


def _conv_channels(block) -> tuple[int, int]:
    return block[0].in_channels, block[2].out_channels


def test_rn50_channel_plan_of_the_module_docstring():
    decoder = CLIPDecoder(RN50_CHANNELS)
    assert [_conv_channels(block) for block in decoder.blocks] == [
        (1024, 512),
        (512 + 512, 256),
        (256 + 256, 128),
        (128 + 64, 64),
        (64 + 3, 64),
    ]
    assert (decoder.head.in_channels, decoder.head.out_channels) == (64, 3)
    assert all(conv.bias is None for conv in decoder.modules() if isinstance(conv, torch.nn.Conv2d))


def test_output_is_full_resolution_and_not_residual():
    torch.manual_seed(0)
    decoder = CLIPDecoder([8, 32, 64, 128], out_channels=1).eval()
    image = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        restored = decoder(_features([8, 32, 64, 128], 64, 96, batch=2), image)
        torch.nn.init.zeros_(decoder.head.weight)
        zeroed = decoder(_features([8, 32, 64, 128], 64, 96, batch=2), image)
    assert restored.shape == (2, 1, 64, 96)
    assert torch.count_nonzero(zeroed) == 0  # no skip from the input to the output


def test_without_the_image_the_noisy_input_is_ignored():
    torch.manual_seed(0)
    decoder = CLIPDecoder([8, 32, 64, 128], use_image=False).eval()
    assert _conv_channels(decoder.blocks[-1]) == (8, 8)
    features = _features([8, 32, 64, 128], 32, 32)
    with torch.no_grad():
        first = decoder(features, torch.rand(1, 3, 32, 32))
        second = decoder(features, torch.rand(1, 3, 32, 32))
    assert torch.equal(first, second)


def test_a_float32_head_gives_float32_output_from_a_bfloat16_decoder():
    decoder = CLIPDecoder([8, 32, 64, 128]).eval().to(torch.bfloat16)
    decoder.head.float()
    features = [f.bfloat16() for f in _features([8, 32, 64, 128], 32, 32)]
    with torch.no_grad():
        restored = decoder(features, torch.rand(1, 3, 32, 32).bfloat16())
    assert restored.dtype == torch.float32


def test_center_crop_rounds_the_offsets_down():
    x = torch.arange(5 * 7).reshape(1, 1, 5, 7)
    assert torch.equal(center_crop(x, 2, 4), x[..., 1:3, 1:5])
    assert torch.equal(center_crop(x, 5, 7), x)


def test_upsampling_without_a_window_is_bilinear_align_corners():
    x = torch.rand(2, 3, 5, 7)
    expected = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
    torch.testing.assert_close(upsample2x(x), expected, rtol=0, atol=0)
    buffer = torch.empty(2, 3, 10, 14)
    assert upsample2x(x, out=buffer).data_ptr() == buffer.data_ptr()
    torch.testing.assert_close(buffer, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("top", "left"), [(0, 0), (2, 4), (4, 6)])
def test_a_windowed_tile_matches_the_whole_maps_upsampling(top, left):
    whole = torch.rand(1, 4, 8, 12, generator=torch.Generator().manual_seed(top + left))
    expected = upsample2x(whole)[..., 2 * top : 2 * top + 8, 2 * left : 2 * left + 12]
    tile = whole[..., top : top + 4, left : left + 6]
    got = upsample2x(tile, Window.of([(top, left)], (8, 12)))
    assert got.shape == (1, 4, 8, 12)
    # exact inside; the outermost row/column facing the rest of the image lacks its neighbour
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(got[inner], expected[inner], rtol=0, atol=1e-6)
    naive = upsample2x(tile)
    if (top, left) != (0, 0):
        assert float((naive[inner] - expected[inner]).abs().max()) > 1e-3
    # the whole map's own edges are exact too
    if top == 0:
        torch.testing.assert_close(got[..., 0, 1:-1], expected[..., 0, 1:-1], rtol=0, atol=1e-6)
    if top + 4 == 8:
        torch.testing.assert_close(got[..., -1, 1:-1], expected[..., -1, 1:-1], rtol=0, atol=1e-6)


def test_a_batch_of_tiles_at_different_offsets():
    whole = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    offsets = [(0, 0), (4, 4), (2, 0)]
    tiles = torch.cat([whole[..., t : t + 4, s : s + 4] for t, s in offsets])
    got = upsample2x(tiles, Window.of(offsets, (8, 8)))
    full = upsample2x(whole)
    for sample, (top, left) in zip(got, offsets):
        expected = full[0, :, 2 * top : 2 * top + 8, 2 * left : 2 * left + 8]
        torch.testing.assert_close(
            sample[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-6, rtol=0
        )


def test_window_at_a_coarser_stride():
    window = Window.of([(64, 32), (0, 96)], (192, 256))
    assert window.batch_size == 2 and window.offsets.dtype == torch.int64
    coarse = window.at_stride(32)
    assert coarse.offsets.tolist() == [[2, 1], [0, 3]] and coarse.full_size == (6, 8)
    assert Window.of([(16, 16)], (64, 64)).at_stride(32).offsets.tolist() == [[0, 0]]
