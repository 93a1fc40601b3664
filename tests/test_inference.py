"""Tests of the inference module: tiling (equality with untiled, no seams), memory planning, the
Denoiser / denoise() API round trips for every input type and dtype, channel handling."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import clipdenoise
from clipdenoise import inference
from clipdenoise.acceleration import prepare_for_inference
from clipdenoise.decoder import CLIPDecoder, Window
from clipdenoise.errors import ChannelMismatchError, ConfigError, ImageTooSmallError
from clipdenoise.inference import (
    Denoiser,
    axis_weights,
    blend_ramp,
    denoise,
    iter_tiles,
    parse_memory_size,
    plan_tiles,
    tile_layout,
    tile_starts,
    tiled_forward,
)
from clipdenoise.model import CLIPDenoiser, ModelConfig, tiny_config


def calibrated(model: CLIPDenoiser) -> CLIPDenoiser:
    """Scale the output head so a random-init model's output spans ~[0, 1] like a trained one
    (random weights give outputs of std ~0.01, which would make absolute tolerances vacuous)."""
    with torch.no_grad():
        probe = model(torch.rand(1, model.config.in_channels, 64, 64, generator=_gen(5)))
        model.decoder.head.weight.mul_(0.25 / float(probe.std()))
    return model.eval()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Pointwise(nn.Module):
    """A translation-invariant per-pixel model (1×1 conv): a constant image stays constant."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 0.9)
            self.mix.bias.fill_(0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


# ------------------------------------------------------------------------------ tiling
@pytest.mark.parametrize(
    ("batch", "height", "width", "tile", "overlap", "tile_batch"),
    [
        (1, 150, 200, 128, 64, 3),
        (2, 64, 333, 96, 32, 3),  # two images, batches of tiles spanning both
        (1, 130, 64, 64, 32, 1),
        (1, 257, 199, 128, 32, 4),  # odd sizes, reflect padding inside border tiles
    ],
)
def test_tiled_equals_untiled_tiny_model(batch, height, width, tile, overlap, tile_batch):
    model = calibrated(CLIPDenoiser(tiny_config()))
    image = torch.rand(batch, 3, height, width, generator=_gen(0))
    with torch.inference_mode():
        untiled = model(image)
        tiled = tiled_forward(
            model, image, tile_size=tile, tile_overlap=overlap, tile_batch_size=tile_batch
        )
    assert float(untiled.std()) > 0.1  # a meaningful output scale
    assert tiled.shape == untiled.shape
    assert float((tiled - untiled).abs().max()) <= 1e-4


@pytest.mark.parametrize("channels_last", [False, True])
def test_tiled_equals_untiled_prepared_float32_batch_of_tiles(channels_last):
    model = calibrated(CLIPDenoiser(tiny_config()))
    prepared = prepare_for_inference(model, dtype="float32", channels_last=channels_last)
    image = torch.rand(1, 3, 171, 229, generator=_gen(6))
    with torch.inference_mode():
        untiled = model(image)
    tiled = tiled_forward(prepared, image, tile_size=96, tile_overlap=32, tile_batch_size=4)
    assert float((tiled - untiled).abs().max()) <= 1e-4


def test_tiled_equals_untiled_bfloat16_psnr():
    model = calibrated(CLIPDenoiser(tiny_config()))
    prepared = prepare_for_inference(model, dtype="bfloat16")
    image = torch.rand(1, 3, 160, 224, generator=_gen(7))
    untiled = prepared(image)
    tiled = tiled_forward(prepared, image, tile_size=96, tile_overlap=32, tile_batch_size=3)
    mse = float(((tiled - untiled).double() ** 2).mean())
    assert 10 * np.log10(1.0 / mse) >= 50.0


def test_tiled_equals_untiled_rn50_architecture():
    # The real RN50 trunk + decoder (random init), an odd-sized image, overlap 64 covers its
    # effective receptive field at these weights; several tiles per forward.
    model = calibrated(CLIPDenoiser(ModelConfig(encoder_weights=None)))
    image = torch.rand(1, 3, 137, 211, generator=_gen(1))
    with torch.inference_mode():
        untiled = model(image)
    denoiser = Denoiser(
        model, device="cpu", tile_size=128, tile_overlap=64, tile_batch_size=2, clip=False
    )
    tiled = denoiser(image)
    assert denoiser.last_plan.tile_size == 128
    assert float((tiled - untiled).abs().max()) <= 1e-3


def test_global_decoding_matters():
    """Decoding a tile on its own shifts the align_corners upsampling grid; a window does not."""
    model = calibrated(CLIPDenoiser(tiny_config()))
    image = torch.rand(1, 3, 192, 192, generator=_gen(2))
    with torch.inference_mode():
        untiled = model(image)
        alone = model(image[..., 64:, 64:])[..., 32:, 32:]
        ours = model(image[..., 64:, 64:], window=Window.of([(64, 64)], (192, 192)))
    reference = untiled[..., 96:, 96:]
    naive_error = float((alone - reference).abs().max())
    ours_error = float((ours[..., 32:, 32:] - reference).abs().max())
    assert ours_error < 1e-5 and naive_error > 50 * ours_error


def test_batch_of_windows_at_different_offsets():
    model = calibrated(CLIPDenoiser(tiny_config()))
    image = torch.rand(1, 3, 192, 256, generator=_gen(8))
    offsets = [(0, 0), (64, 128), (128, 32)]
    tiles = torch.cat([image[..., t : t + 64, s : s + 128] for t, s in offsets])
    with torch.inference_mode():
        untiled = model(image)
        batched = model(tiles, window=Window.of(offsets, (192, 256)))
    for tile, (top, left) in zip(batched, offsets):
        inner = tile[:, 16:-16, 16:-16]
        expected = untiled[0, :, top + 16 : top + 48, left + 16 : left + 112]
        assert float((inner - expected).abs().max()) < 1e-5


def test_single_tile_equals_model_exactly():
    model = CLIPDenoiser(tiny_config(in_channels=1)).eval()
    image = torch.rand(1, 1, 64, 96, generator=_gen(3))
    with torch.inference_mode():
        expected = model(image)
        got = model(image, window=Window.of([(0, 0)], (64, 96)))
    assert float((got - expected).abs().max()) < 1e-5


def test_window_needs_tiles_of_the_padding_multiple():
    model = CLIPDenoiser(tiny_config()).eval()
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 40, 64), window=Window.of([(0, 0)], (64, 64)))


def test_tiled_inference_runs_the_models_own_forward(monkeypatch):
    """No second implementation of the decoder: tiles go through CLIPDenoiser.forward."""
    calls = []
    original = CLIPDecoder.forward

    def spy(self, features, image, window=None):
        calls.append(window)
        return original(self, features, image, window)

    monkeypatch.setattr(CLIPDecoder, "forward", spy)
    model = CLIPDenoiser(tiny_config()).eval()
    tiled_forward(
        prepare_for_inference(model), torch.rand(1, 3, 96, 160), tile_size=64, tile_overlap=32
    )
    assert len(calls) == 2 * 4 and all(isinstance(w, Window) for w in calls)
    assert not any(name.startswith("clip_tile") for name in dir(inference))


def test_constant_image_has_no_seams():
    image = torch.full((1, 3, 173, 301), 0.37)
    with torch.inference_mode():
        out = tiled_forward(Pointwise(), image, tile_size=64, tile_overlap=32)
    expected = 0.9 * 0.37 + 0.05
    assert float((out - expected).abs().max()) < 1e-6


def test_tiles_with_real_model_have_no_seams_on_constant_image():
    model = calibrated(CLIPDenoiser(tiny_config()))
    image = torch.full((1, 3, 96, 128), 0.5)
    with torch.inference_mode():
        untiled = model(image)
        tiled = tiled_forward(model, image, tile_size=64, tile_overlap=32)
    # The untiled output of a constant is not constant (zero padding at the image border reaches
    # far into F4); a seam would show as a difference along the tile borders.
    assert float((tiled - untiled).abs().max()) < 1e-4


def test_blend_ramp_is_partition_of_unity_and_smooth():
    overlap = 64
    left = blend_ramp(128, overlap, before=False, after=True)
    right = blend_ramp(128, overlap, before=True, after=False)
    shared = left[-overlap:] + right[:overlap]
    assert torch.allclose(shared, torch.ones(overlap, dtype=torch.float64))
    assert float(left[: 128 - overlap].min()) == 1.0
    assert float(right[: overlap // 4].max()) == 0.0  # border effects are discarded
    assert float(right.diff().abs().max()) < 0.05  # smooth (no step)


@pytest.mark.parametrize("size", [32, 64, 96, 480, 512, 1024 + 64, 3008, 4000])
@pytest.mark.parametrize(("tile", "overlap"), [(256, 64), (1024, 128), (96, 48)])
def test_tile_layout_equal_tiles_spread_evenly(size, tile, overlap):
    length, starts = tile_layout(size, min(tile, size), overlap)
    assert starts == tile_starts(size, min(tile, size), overlap)
    assert length <= min(tile, size) and length % 32 == 0
    assert starts[0] == 0 and starts[-1] + length == size
    assert all(s % 32 == 0 for s in starts)
    steps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(length - step >= overlap for step in steps)  # overlap at least the requested
    assert not steps or max(steps) - min(steps) <= 32  # spread evenly
    # the fewest tiles of at most ``tile`` (overlap rounded up to 32): one fewer could not
    # cover the axis
    count, overlap_32 = len(starts), -(-overlap // 32) * 32
    if count > 1:
        assert (count - 1) * tile - (count - 2) * overlap_32 < size


def test_tile_layout_of_a_12_megapixel_photo():
    # 4000x3000 padded to 4000x3008: 5x4 tiles of 928x864 (not 1024x1024 pinned to the border)
    assert tile_layout(4000, 1024, 128) == (928, [0, 768, 1536, 2304, 3072])
    assert tile_layout(3008, 1024, 128) == (864, [0, 704, 1408, 2144])


def test_axis_weights_sum_to_one():
    length, starts = tile_layout(1000 // 32 * 32, 256, 64)
    weights = axis_weights(992, length, starts)
    total = torch.zeros(992, dtype=torch.float64)
    for start, weight in zip(starts, weights):
        total[start : start + length] += weight
    assert torch.allclose(total, torch.ones_like(total))


def test_identity_model_tiling_reproduces_image_exactly():
    image = torch.rand(1, 3, 137, 250, generator=_gen(4))
    tiles = list(iter_tiles(160, 256, 96, 48))
    assert all(t.top % 32 == 0 and t.left % 32 == 0 for t in tiles)
    with torch.inference_mode():
        out = tiled_forward(nn.Identity(), image, tile_size=96, tile_overlap=48)
    assert float((out - image).abs().max()) < 1e-6


def test_bad_tiling_options_are_config_errors():
    model = CLIPDenoiser(tiny_config())
    with pytest.raises(ConfigError, match="overlap"):
        Denoiser(model, device="cpu", tile_size=128, tile_overlap=100)
    with pytest.raises(ConfigError, match="at least 64"):
        Denoiser(model, device="cpu", tile_size=32)


# ------------------------------------------------------------------------------ memory
def test_parse_memory_size():
    assert parse_memory_size("8GB") == 8 * 10**9
    assert parse_memory_size("6GiB") == parse_memory_size("6G") == 6 * 2**30
    assert parse_memory_size("512 MiB") == 512 * 2**20
    assert parse_memory_size(1234) == 1234
    with pytest.raises(ConfigError, match="bad memory size"):
        parse_memory_size("lots")


def test_plan_tiles_fits_budget_and_prefers_untiled():
    model = CLIPDenoiser(ModelConfig(encoder_weights=None)).eval()
    whole = plan_tiles(model, 512, 512, max_memory=64 * 2**30)
    assert whole.tile_size is None
    budget = 2 * 2**30
    plan = plan_tiles(model, 6000, 4000, max_memory=budget, tile_overlap=128)
    assert plan.tile_size is not None and plan.tile_size % 32 == 0
    assert 256 <= plan.tile_size < 4000 and plan.estimated_bytes <= budget
    bigger = plan_tiles(model, 6000, 4000, max_memory=2 * budget, tile_overlap=128)
    assert bigger.tile_size > plan.tile_size
    with pytest.raises(ConfigError, match="too small"):
        plan_tiles(model, 6000, 4000, max_memory=200 * 2**20)


def test_max_memory_makes_the_denoiser_tile():
    model = CLIPDenoiser(tiny_config()).eval()
    per_pixel = inference.activation_bytes_per_pixel(model)
    image = torch.rand(1, 3, 256, 256, generator=_gen(6))
    denoiser = Denoiser(model, device="cpu", max_memory=2**40, tile_overlap=32, clip=False)
    # The CPU budget covers the whole process: what it holds now, image buffers, activations.
    resident = inference.process_memory_bytes()
    assert resident is None or resident > inference._parameter_bytes(model)
    baseline = resident or inference._parameter_bytes(model) + 400 * 2**20
    denoiser.max_memory = int(baseline + 256 * 256 * 76 + per_pixel * 128**2 * 1.2)
    out = denoiser(image)
    assert denoiser.last_plan.tile_size == 128
    with torch.inference_mode():
        assert float((out - model(image)).abs().max()) < 1e-5


# ------------------------------------------------------------------------------ precision
def test_bfloat16_inference_is_close_to_float32():
    model = calibrated(CLIPDenoiser(tiny_config()))
    image = torch.rand(1, 3, 64, 64, generator=_gen(7))
    full = Denoiser(model, device="cpu", clip=False)(image)
    half = Denoiser(model, device="cpu", dtype="bfloat16", clip=False)(image)
    assert half.dtype == torch.float32
    assert float((half - full).abs().max()) < 0.05


def test_denoiser_does_not_modify_the_callers_model():
    model = CLIPDenoiser(tiny_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    Denoiser(model, device="cpu", dtype="bfloat16")(torch.rand(3, 40, 40))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(model.parameters()).dtype == torch.float32


# ------------------------------------------------------------------------------ API round trips
@pytest.fixture
def rgb_model():
    return calibrated(CLIPDenoiser(tiny_config()))


@pytest.fixture
def grey_model():
    return calibrated(CLIPDenoiser(tiny_config(in_channels=1)))


def _expected(model, planes01: np.ndarray) -> np.ndarray:
    """``planes01`` (H, W, C) float → model output (H, W, C) float32 clipped to [0, 1]."""
    tensor = torch.from_numpy(planes01.transpose(2, 0, 1).copy()).float()[None]
    with torch.inference_mode():
        out = model(tensor)
    return out[0].permute(1, 2, 0).clamp(0, 1).numpy()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.float16])
def test_numpy_rgb_round_trip(rgb_model, make_image, dtype):
    clean = make_image(40, 52, 3)
    if np.issubdtype(dtype, np.integer):
        scale = np.iinfo(dtype).max
        image = np.round(clean * scale).astype(dtype)
        planes = image.astype(np.float32) / scale
    else:
        image = clean.astype(dtype)
        planes = image.astype(np.float32)
    out = denoise(rgb_model, image, device="cpu")
    assert isinstance(out, np.ndarray) and out.shape == image.shape and out.dtype == image.dtype
    expected = _expected(rgb_model, planes)
    if np.issubdtype(dtype, np.integer):
        assert np.abs(out.astype(np.float64) - np.round(expected * scale)).max() <= 1
    else:
        assert out.min() >= 0 and out.max() <= 1
        assert np.abs(out.astype(np.float32) - expected).max() <= (
            1e-2 if dtype == np.float16 else 1e-5
        )


@pytest.mark.parametrize("shape", [(40, 52), (40, 52, 1)])
def test_numpy_grey_uses_one_channel_model(grey_model, make_image, shape):
    image = np.round(make_image(40, 52, 1) * 65535).astype(np.uint16).reshape(shape)
    out = denoise(grey_model, image, device="cpu")
    assert out.shape == shape and out.dtype == np.uint16
    expected = _expected(grey_model, image.reshape(40, 52, 1).astype(np.float32) / 65535)
    assert np.abs(out.reshape(40, 52, 1).astype(np.float64) - np.round(expected * 65535)).max() <= 1


def test_alpha_is_passed_through_untouched(rgb_model, grey_model, rng):
    rgba = rng.integers(0, 256, (36, 44, 4), dtype=np.uint8)
    out = denoise(rgb_model, rgba, device="cpu")
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])
    la = rng.integers(0, 65536, (36, 44, 2), dtype=np.uint16)
    out = denoise(grey_model, la, device="cpu")
    assert np.array_equal(out[..., 1], la[..., 1])
    tensor = torch.rand(2, 4, 36, 44, generator=_gen(8))
    out = denoise(rgb_model, tensor)
    assert torch.equal(out[:, 3], tensor[:, 3])


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((3, 40, 52), torch.float32),
        ((2, 3, 40, 52), torch.float32),
        ((3, 40, 52), torch.uint8),
        ((1, 3, 40, 52), torch.bfloat16),
        ((3, 40, 52), torch.float64),
    ],
)
def test_tensor_round_trip(rgb_model, shape, dtype):
    values = torch.rand(shape, generator=_gen(9))
    image = (values * 255).round().to(dtype) if dtype == torch.uint8 else values.to(dtype)
    out = denoise(rgb_model, image)
    assert isinstance(out, torch.Tensor)
    assert out.shape == image.shape and out.dtype == image.dtype and out.device == image.device
    batch = values.reshape(-1, 3, 40, 52)
    if dtype == torch.uint8:
        batch = image.reshape(-1, 3, 40, 52).float() / 255
    with torch.inference_mode():
        expected = rgb_model(batch.float()).clamp(0, 1)
    got = out.reshape(expected.shape).float()
    if dtype == torch.uint8:
        assert float((got - (expected * 255).round()).abs().max()) <= 1
    else:
        assert float(got.min()) >= 0 and float(got.max()) <= 1
        tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-5
        assert float((got - expected).abs().max()) <= tolerance


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16", "P"])
def test_pil_round_trip(rgb_model, make_image, mode):
    base = Image.fromarray(np.round(make_image(40, 52, 3) * 255).astype(np.uint8), "RGB")
    if mode == "I;16":
        image = Image.fromarray(np.round(make_image(40, 52, 1)[..., 0] * 65535).astype(np.uint16))
    elif mode == "P":
        image = base.convert("P")
    else:
        image = base.convert(mode)
    out = denoise(rgb_model, image, device="cpu")
    assert isinstance(out, Image.Image) and out.size == image.size
    assert out.mode == {"P": "RGB"}.get(mode, mode)
    if mode in ("RGBA", "LA"):
        assert np.array_equal(np.asarray(out)[..., -1], np.asarray(image)[..., -1])
    if mode == "I;16":
        assert np.asarray(out).dtype == np.uint16


def test_grey_on_rgb_model_is_replicated_and_converted_back(rgb_model, make_image):
    grey = make_image(40, 52, 1)
    out = denoise(rgb_model, grey, device="cpu", clip=False)
    assert out.shape == (40, 52, 1)
    replicated = torch.from_numpy(grey.transpose(2, 0, 1).copy())[None].expand(1, 3, 40, 52)
    with torch.inference_mode():
        rgb = rgb_model(replicated)[0].permute(1, 2, 0).numpy()
    luma = (rgb * np.array(inference.LUMA_WEIGHTS, dtype=np.float32)).sum(-1, keepdims=True)
    assert np.abs(out - luma).max() < 1e-5
    with pytest.raises(ChannelMismatchError, match="grey"):
        denoise(rgb_model, grey, device="cpu", channel_conversion="strict")


def test_rgb_on_grey_model_needs_a_conversion(grey_model, make_image):
    rgb = make_image(40, 52, 3)
    with pytest.raises(ChannelMismatchError, match="per-channel"):
        denoise(grey_model, rgb, device="cpu")
    per_channel = denoise(grey_model, rgb, device="cpu", channel_conversion="per-channel")
    assert per_channel.shape == rgb.shape
    for c in range(3):
        expected = _expected(grey_model, rgb[..., c : c + 1])
        assert np.abs(per_channel[..., c : c + 1] - expected).max() < 1e-5
    luma = denoise(grey_model, rgb, device="cpu", channel_conversion="luma")
    assert luma.shape == (40, 52, 1)


def test_bad_inputs_have_clear_errors(rgb_model):
    with pytest.raises(ImageTooSmallError, match="at least 8x8"):
        denoise(rgb_model, np.zeros((5, 40, 3), np.uint8), device="cpu")
    with pytest.raises(TypeError, match="numpy array"):
        denoise(rgb_model, [[0.5]], device="cpu")
    with pytest.raises(ValueError, match="unsupported array dtype"):
        denoise(rgb_model, np.zeros((40, 40, 3), np.int32), device="cpu")
    with pytest.raises(ChannelMismatchError, match="5"):
        denoise(rgb_model, np.zeros((40, 40, 5), np.float32), device="cpu")


def test_denoise_is_exported_at_package_level():
    assert clipdenoise.denoise is denoise and clipdenoise.Denoiser is Denoiser


def test_docstring_examples_run():
    result = doctest.testmod(inference, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


class _OverflowsInLowPrecision(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * float("inf") if x.dtype != torch.float32 else x


def test_non_finite_tiles_are_recomputed_with_the_float32_fallback():
    image = torch.rand(1, 3, 96, 128, generator=_gen(10))
    with pytest.warns(RuntimeWarning, match="recomputing it in float32"):
        out = tiled_forward(
            _OverflowsInLowPrecision(),
            image,
            tile_size=64,
            tile_overlap=32,
            dtype=torch.bfloat16,
            fallback=nn.Identity,
        )
    assert float((out - image.bfloat16().float()).abs().max()) < 1e-6


def test_f5_model_tiles_at_multiples_of_64():
    model = calibrated(CLIPDenoiser(tiny_config(use_f5=True)))
    assert all(
        t.top % 64 == 0 and t.left % 64 == 0 and t.height % 64 == 0
        for t in iter_tiles(448, 448, 192, 64, multiple=64)
    )
    image = torch.rand(1, 3, 200, 300, generator=_gen(9))
    with torch.inference_mode():
        untiled = model(image)
        tiled = tiled_forward(model, image, tile_size=192, tile_overlap=64, tile_batch_size=2)
    assert float((tiled - untiled).abs().max()) <= 1e-4
