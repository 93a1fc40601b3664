"""Inference: padding, tiled processing of large images, and the :class:`Denoiser` API.

Images inside this module are ``(B, C, H, W)`` float tensors with values in [0, 1]. The public
entry points accept and return what users hold — torch tensors, numpy arrays, PIL images — in the
same type, dtype and shape:

>>> import numpy as np
>>> from clipdenoise.model import CLIPDenoiser, tiny_config
>>> from clipdenoise.inference import Denoiser, denoise
>>> model = CLIPDenoiser(tiny_config())          # or clipdenoise.load_model("rn50.synthetic-gaussian15")
>>> photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
>>> restored = denoise(model, photo)
>>> restored.shape, restored.dtype
((48, 64, 3), dtype('uint8'))
>>> denoiser = Denoiser(model, device="cpu", tile_size=64, tile_overlap=32)
>>> denoiser(photo.astype(np.float32) / 255).dtype
dtype('float32')

Large images are cut into overlapping tiles of equal size spread evenly over each axis (sides
and offsets multiples of 32, see :func:`tile_layout`) that are blended with a smooth window. For
:class:`~clipdenoise.model.CLIPDenoiser` models each batch of tiles runs through the model's own
forward with a :class:`~clipdenoise.decoder.Window` (``model(tiles, window=...)``), which decodes
*in the coordinates of the whole image*: the decoder's bilinear ``align_corners=True``
upsampling samples positions that depend on the whole image's size, so a tile decoded on its own
would be shifted by up to half a feature pixel. With an overlap larger than the effective
receptive field the tiled result equals untiled inference to float precision.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from clipdenoise.acceleration import prepare_for_inference
from clipdenoise.decoder import CLIPDecoder, Window
from clipdenoise.devices import resolve_device, resolve_dtype
from clipdenoise.errors import (
    ChannelMismatchError,
    ConfigError,
    ImageTooSmallError,
    NonFiniteOutputError,
)
from clipdenoise.model import pad_to_multiple, reflect_indices

#: Tile sides and offsets are multiples of this (the model pads inputs to 32, or 64 with F5).
TILE_MULTIPLE = 32
#: Default overlap of neighbouring tiles, in pixels (the outer quarter of it is discarded).
DEFAULT_TILE_OVERLAP = 128
#: Images smaller than this on either side are refused: the stride-2 stem would keep too little.
MIN_IMAGE_SIDE = 8
#: BT.601 luma weights, used to turn a replicated-grey RGB output back into grey.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

ChannelConversion = Literal["auto", "strict", "per-channel", "luma"]
CHANNEL_CONVERSIONS: tuple[str, ...] = ("auto", "strict", "per-channel", "luma")


# ============================================================================ memory
_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_memory_size(text: str | int | float) -> int:
    """Parse a memory size: ``"8GB"`` (10⁹), ``"6GiB"`` / ``"6G"`` (2³⁰), ``"512MiB"``, bytes.

    Raises:
        ConfigError: not a size.
    """
    if isinstance(text, int | float):
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _MEMORY_UNITS:
        raise ConfigError(
            f"bad memory size {text!r}; write e.g. 8GB, 6GiB, 512MiB or a number of bytes"
        )
    return int(float(match.group(1)) * _MEMORY_UNITS[unit])


def available_memory(device: torch.device) -> int:
    """Bytes available now for inference on ``device`` (free GPU memory, or RAM available)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        if recommended is not None:
            return int(recommended() - torch.mps.current_allocated_memory())
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def process_memory_bytes() -> int | None:
    """Resident memory of this process now (Linux ``/proc/self/statm``), or ``None``."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )


def activation_bytes_per_pixel(model: nn.Module, dtype: torch.dtype = torch.float32) -> float:
    """Estimated peak activation memory of one forward pass, in bytes per input pixel.

    For a :class:`~clipdenoise.model.CLIPDenoiser` the estimate follows the architecture: the
    peak is reached in a decoder level (the upsampled map, its concatenation with the skip, the
    two conv outputs) while the shallower skip features are still alive, plus the encoder's
    stem. For other models, the largest activation of a probe pass on a 64×64 input is taken
    four times. Multiplied by a safety factor of 2 calibrated with
    ``benchmarks/tiling_memory.py`` (allocator fragmentation, oneDNN/cuDNN workspaces).
    """
    element = torch.empty((), dtype=dtype).element_size()
    if _is_clip_denoiser(model):
        channels = _clip_peak_channels_per_pixel(model)
    else:
        channels = _probe_peak_channels_per_pixel(model)
    return 2.0 * channels * element


def _clip_peak_channels_per_pixel(model: nn.Module) -> float:
    model = _unwrap(model)
    decoder: CLIPDecoder = model.decoder
    infos = model.encoder.feature_info
    strides = [info.stride for info in infos]
    in_channels = int(model.config.in_channels)
    image_channels = 3 + in_channels  # the (adapted) image is kept for the last level
    # The encoder keeps every feature until the decoder consumes it.
    stem = 3 * infos[0].channels / 4 + image_channels
    peak = stem
    previous = 0
    levels = [*strides[::-1], 1]  # block k runs at the stride of level k
    for index, block in enumerate(decoder.blocks):
        stride = levels[index]
        area = 1.0 / stride**2
        conv_in = block[0].in_channels
        conv_out = block[0].out_channels
        alive_skips = sum(
            info.channels / info.stride**2 for info in infos if info.stride < stride
        ) + (image_channels if stride > 1 else 0)
        level = (previous + conv_in + 2 * conv_out) * area + alive_skips
        peak = max(peak, level)
        previous = conv_out
    return peak + decoder.head.out_channels


def _probe_peak_channels_per_pixel(model: nn.Module) -> float:
    largest = 0
    hooks = []

    def record(_module, _inputs, output):
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output[0].numel())

    for module in model.modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(record))
    channels = _model_in_channels(model) or 3
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    try:
        with torch.inference_mode():
            output = model(torch.zeros(1, channels, 64, 64, device=device, dtype=dtype))
        largest = max(largest, output[0].numel())
    finally:
        for hook in hooks:
            hook.remove()
    return 4.0 * largest / (64 * 64)


@dataclass(frozen=True)
class TilePlan:
    """How one image is processed: whole (``tile_size is None``) or in tiles.

    Attributes:
        tile_size: Side of the square tiles (a multiple of 32), or ``None`` for no tiling.
        tile_overlap: Pixels shared by neighbouring tiles.
        estimated_bytes: Estimated peak memory of the plan (model, activations, image buffers).
    """

    tile_size: int | None
    tile_overlap: int
    estimated_bytes: int


def plan_tiles(
    model: nn.Module,
    height: int,
    width: int,
    *,
    channels: int = 3,
    batch: int = 1,
    max_memory: int,
    tile_overlap: int = 128,
    tile_batch_size: int = 1,
    dtype: torch.dtype = torch.float32,
    host_buffers: bool = True,
    baseline_bytes: int | None = None,
) -> TilePlan:
    """Choose the largest tiling whose estimated peak memory stays under ``max_memory`` bytes.

    The estimate is ``baseline_bytes`` (what the process already holds — on the CPU its resident
    memory: Python, torch, the model; default: the model's parameters), the activations
    (:func:`activation_bytes_per_pixel` times the pixels processed at once) and, when
    ``host_buffers`` (inference on the CPU, where everything shares the same RAM), the float32
    copies of the image and the blending accumulators.

    Raises:
        ConfigError: even the smallest tiling (``2·overlap`` or 64 px) does not fit.
    """
    per_pixel = activation_bytes_per_pixel(model, dtype)
    fixed = _parameter_bytes(model) if baseline_bytes is None else int(baseline_bytes)
    padded_h = math.ceil(height / TILE_MULTIPLE) * TILE_MULTIPLE
    padded_w = math.ceil(width / TILE_MULTIPLE) * TILE_MULTIPLE
    if host_buffers:
        # float32 copies alive at the peak of the file path: the decoded image, its batch,
        # the padded batch, the output accumulator, two conversion temporaries; + weight map
        fixed += batch * padded_h * padded_w * (6 * channels * 4 + 4)
    whole = fixed + per_pixel * batch * padded_h * padded_w
    if whole <= max_memory:
        return TilePlan(None, tile_overlap, int(whole))
    available = (max_memory - fixed) / (per_pixel * tile_batch_size)
    side = int(math.sqrt(max(available, 0)) // TILE_MULTIPLE * TILE_MULTIPLE)
    smallest = max(2 * tile_overlap, 2 * TILE_MULTIPLE)
    if side < smallest:
        need = fixed + per_pixel * tile_batch_size * smallest**2
        if fixed + per_pixel * tile_batch_size * (2 * TILE_MULTIPLE) ** 2 > max_memory:
            # even the smallest tiles do not fit: the whole-image buffers are the problem
            advice = "raise --max-memory, or crop or downscale the image; smaller tiles cannot help"
        else:
            advice = "lower --tile-overlap or raise --max-memory"
        raise ConfigError(
            f"a memory budget of {max_memory / 2**20:.0f} MiB is too small for a "
            f"{width}x{height} image with tile overlap {tile_overlap}: about "
            f"{need / 2**20:.0f} MiB is needed, of which {fixed / 2**20:.0f} MiB for the "
            f"process and the whole image's buffers ({advice})"
        )
    estimate = fixed + per_pixel * tile_batch_size * side**2
    return TilePlan(side, tile_overlap, int(estimate))


# ============================================================================ tiling
def tile_layout(
    size: int, tile: int, overlap: int, multiple: int = TILE_MULTIPLE
) -> tuple[int, list[int]]:
    """Equal tiles spread evenly over an axis of ``size`` pixels: ``(tile_length, starts)``.

    Uses the fewest tiles of at most ``tile`` pixels that cover ``size`` with neighbours
    sharing at least ``overlap`` pixels, then the shortest common length (a multiple of
    ``multiple``) that still covers it, and spreads the starts (multiples of ``multiple``) as
    evenly as possible; the first tile starts at 0 and the last ends at ``size``. So little is
    computed twice: 4000 px with tiles of 1024 and overlap 128 gives 5 tiles of 928 (not 5 of
    1024 with the last one pinned to the border).

    Args:
        size: Length of the (padded) axis, a multiple of ``multiple``.
        tile: Largest tile length, a multiple of ``multiple``.
        overlap: Smallest overlap of neighbours (rounded up to a multiple of ``multiple``);
            at most half of ``tile``.
    """
    if tile >= size:
        return size, [0]
    step_units = (tile - _round_up(overlap, multiple)) // multiple
    if step_units < 1:
        raise ConfigError(f"tile overlap {overlap} leaves no room in tiles of {tile}")
    size_units, tile_units = size // multiple, tile // multiple
    overlap_units = tile_units - step_units
    count = -(-(size_units - overlap_units) // step_units)
    length_units = -(-(size_units + (count - 1) * overlap_units) // count)
    slack = size_units - length_units  # spread over count - 1 steps
    starts = [(i * slack // (count - 1)) * multiple for i in range(count)]
    return length_units * multiple, starts


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def tile_starts(size: int, tile: int, overlap: int, multiple: int = TILE_MULTIPLE) -> list[int]:
    """Start offsets of the tiles :func:`tile_layout` lays over an axis of ``size``."""
    return tile_layout(size, tile, overlap, multiple)[1]


def blend_ramp(length: int, overlap: int, before: bool, after: bool) -> torch.Tensor:
    """1-D blending weights of a tile of ``length``: a raised-cosine ramp over each shared side.

    On a side shared with a neighbour the weight is 0 over the outer quarter of the overlap
    (where the tile's border effects live), rises as a raised cosine over its middle half and is
    1 beyond. Two neighbours overlapping by exactly ``overlap`` sum to 1 everywhere (a
    partition of unity), so blending never changes a constant image. Sides at the image border
    keep weight 1.
    """
    return _ramp_weights(length, overlap if before else 0, overlap if after else 0)


def _ramp_weights(length: int, before: int, after: int) -> torch.Tensor:
    """Float64 weights of a tile with ``before`` / ``after`` pixels shared with neighbours."""
    weights = torch.ones(length, dtype=torch.float64)
    for shared, at_start in ((before, True), (after, False)):
        if shared <= 0:
            continue
        guard = shared // 4
        distance = torch.arange(shared, dtype=torch.float64)
        phase = ((distance - guard + 0.5) / (shared - 2 * guard)).clamp(0.0, 1.0)
        ramp = (0.5 - 0.5 * torch.cos(math.pi * phase))[: min(shared, length)]
        if at_start:
            weights[: ramp.numel()] *= ramp
        else:
            weights[length - ramp.numel() :] *= ramp.flip(0)
    return weights


def axis_weights(size: int, length: int, starts: Sequence[int]) -> list[torch.Tensor]:
    """Blending weights (float64, one vector of ``length`` per tile) that sum to 1 along the axis.

    Each tile ramps over what it shares with each neighbour (:func:`blend_ramp`), then the
    weights are divided by their sum at every position: the 2-D windows (outer products of a
    row and a column vector) then sum to exactly 1 at every pixel, so no weight map of the
    image is needed.
    """
    ramps = []
    for index, start in enumerate(starts):
        before = starts[index - 1] + length - start if index > 0 else 0
        after = start + length - starts[index + 1] if index + 1 < len(starts) else 0
        ramps.append(_ramp_weights(length, max(before, 0), max(after, 0)))
    total = torch.zeros(size, dtype=torch.float64)
    for start, ramp in zip(starts, ramps):
        total[start : start + length] += ramp
    if float(total.min()) <= 0:  # impossible with overlap <= tile/2; guards the invariant
        raise RuntimeError("tile blending left pixels without weight")
    return [ramp / total[start : start + length] for start, ramp in zip(starts, ramps)]


@dataclass(frozen=True)
class Tile:
    """One tile of a padded image: its top-left offset, size and blending weights.

    ``row_weights`` / ``col_weights`` (float32) are the tile's separable blending window; over
    all tiles the windows sum to 1 at every pixel.
    """

    top: int
    left: int
    height: int
    width: int
    row_weights: torch.Tensor
    col_weights: torch.Tensor


def iter_tiles(
    height: int, width: int, tile_size: int, overlap: int, multiple: int = TILE_MULTIPLE
) -> Iterator[Tile]:
    """Tiles covering a ``height``×``width`` (padded) image, row by row (:func:`tile_layout`;
    sides and offsets are multiples of ``multiple``, the model's padding multiple)."""
    tile_h, rows = tile_layout(height, tile_size, overlap, multiple)
    tile_w, cols = tile_layout(width, tile_size, overlap, multiple)
    row_weights = [w.float() for w in axis_weights(height, tile_h, rows)]
    col_weights = [w.float() for w in axis_weights(width, tile_w, cols)]
    for top, row_weight in zip(rows, row_weights):
        for left, col_weight in zip(cols, col_weights):
            yield Tile(top, left, tile_h, tile_w, row_weight, col_weight)


def _unwrap(model: Any) -> Any:
    """The network inside an :class:`~clipdenoise.acceleration.InferenceModel` (or ``model``)."""
    inner = getattr(model, "network", None)
    return inner if isinstance(inner, nn.Module) else model


def _is_clip_denoiser(model: Any) -> bool:
    model = _unwrap(model)
    return (
        isinstance(getattr(model, "decoder", None), CLIPDecoder)
        and isinstance(getattr(model, "encoder", None), nn.Module)
        and hasattr(getattr(model, "config", None), "pad_multiple")
    )


def _model_in_channels(model: Any) -> int | None:
    config = getattr(model, "config", None)
    return int(config.in_channels) if hasattr(config, "in_channels") else None


def _model_multiple(model: Any) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "pad_multiple", TILE_MULTIPLE))


def _run_tiles(model: Any, tiles: torch.Tensor, window: Window | None) -> torch.Tensor:
    return model(tiles) if window is None else model(tiles, window=window)


def _source_indices(size: int, padded: int) -> torch.Tensor | None:
    """Where each pixel of an axis padded (bottom/right reflection) to ``padded`` comes from."""
    return None if padded == size else reflect_indices(size, 0, padded - size, torch.device("cpu"))


def _crop(
    image: torch.Tensor,
    top: int,
    left: int,
    height: int,
    width: int,
    rows: torch.Tensor | None,
    cols: torch.Tensor | None,
) -> torch.Tensor:
    """``image`` reflect-padded bottom/right, cropped to a tile, without padding all of it."""
    tile = image
    if rows is not None and top + height > image.shape[-2]:
        tile = tile.index_select(-2, rows[top : top + height].to(image.device))
    else:
        tile = tile[..., top : top + height, :]
    if cols is not None and left + width > image.shape[-1]:
        return tile.index_select(-1, cols[left : left + width].to(image.device))
    return tile[..., left : left + width]


def tiled_forward(
    model: nn.Module,
    image: torch.Tensor,
    *,
    tile_size: int,
    tile_overlap: int = 128,
    tile_batch_size: int = 1,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    fallback: Callable[[], nn.Module] | None = None,
) -> torch.Tensor:
    """Denoise ``image`` tile by tile and blend the tiles with a smooth window.

    The image is seen reflect-padded (bottom/right, like untiled inference) to a multiple of
    the model's padding multiple (only the tiles at the border are padded); equal tiles of at
    most ``tile_size`` spread evenly over it (:func:`tile_layout`) are run ``tile_batch_size``
    at a time on ``device`` and blended on the image's device in float32 into the output, whose
    separable windows sum to 1 (no weight map, no normalisation pass).

    Args:
        model: A denoiser following the package contract. One whose forward takes a tile
            window (``model.accepts_window``: a CLIPDenoiser or its prepared form) decodes
            tiles in whole-image coordinates (``model(tiles, window=...)``); others run on
            each tile.
        image: ``(B, C, H, W)`` float in [0, 1] (kept where it is, e.g. in host memory).
        tile_size: Largest tile side in pixels (rounded down to a multiple of 32, at least 64).
        tile_overlap: Smallest number of pixels shared by neighbouring tiles; at most half the
            tile side. It should cover the model's effective receptive field (see docs/cli.md).
        tile_batch_size: Tiles per forward pass.
        device: Where the model runs (default: the model's device).
        dtype: Compute dtype of the tiles (default: the model's parameter dtype).
        on_tile: Called as ``on_tile(done, total)`` after each batch of tiles.
        fallback: Returns a float32 model to recompute a batch of tiles whose reduced-precision
            output is not finite (float16 overflow), with a warning.

    Returns:
        ``(B, out_channels, H, W)`` float32 on ``image``'s device, not clamped.

    Raises:
        ConfigError: the tile size / overlap are inconsistent.
    """
    multiple = _model_multiple(model)
    tile_size = int(tile_size) // multiple * multiple
    if tile_size < 2 * multiple:
        raise ConfigError(f"tile size must be at least {2 * multiple} pixels, got {tile_size}")
    if tile_overlap < 0 or 2 * tile_overlap > tile_size:
        raise ConfigError(
            f"tile overlap {tile_overlap} must be between 0 and half the tile size ({tile_size})"
        )
    parameter = next(_unwrap(model).parameters(), None)
    device = device or (parameter.device if parameter is not None else image.device)
    dtype = dtype or (parameter.dtype if parameter is not None else torch.float32)
    batch_size, _, height, width = image.shape
    full_h, full_w = _round_up(height, multiple), _round_up(width, multiple)
    rows, cols = _source_indices(height, full_h), _source_indices(width, full_w)
    tiles = list(iter_tiles(full_h, full_w, tile_size, tile_overlap, multiple))
    windowed = bool(getattr(model, "accepts_window", False))
    channels_last = bool(getattr(model, "channels_last", False))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    output = None
    jobs = [(b, tile) for b in range(batch_size) for tile in tiles]
    for start in range(0, len(jobs), tile_batch_size):
        chunk = jobs[start : start + tile_batch_size]
        batch = torch.stack(
            [_crop(image[b], t.top, t.left, t.height, t.width, rows, cols) for b, t in chunk]
        ).to(device=device, dtype=dtype, memory_format=memory_format)
        window = Window.of([(t.top, t.left) for _, t in chunk], (full_h, full_w))
        window = window if windowed else None
        restored = _run_tiles(model, batch, window)
        if fallback is not None and not bool(torch.isfinite(restored).all()):
            warnings.warn(
                f"{dtype} inference overflowed on a tile (non-finite output); recomputing it "
                "in float32",
                RuntimeWarning,
                stacklevel=2,
            )
            restored = _run_tiles(fallback(), batch.float(), window)
        restored = restored.to(device=image.device, dtype=torch.float32)
        if output is None:
            output = torch.zeros(batch_size, restored.shape[1], height, width, device=image.device)
        for (b, tile), result in zip(chunk, restored):
            keep_h = min(tile.height, height - tile.top)
            keep_w = min(tile.width, width - tile.left)
            window_2d = torch.outer(
                tile.row_weights[:keep_h].to(image.device),
                tile.col_weights[:keep_w].to(image.device),
            )
            target = output[b, :, tile.top : tile.top + keep_h, tile.left : tile.left + keep_w]
            target.addcmul_(result[:, :keep_h, :keep_w], window_2d)
        if on_tile is not None:
            on_tile(min(start + tile_batch_size, len(jobs)), len(jobs))
    return output


# ============================================================================ user types
@dataclass
class _Prepared:
    """A user image turned into a float batch, and how to turn the result back."""

    batch: torch.Tensor  # (B, C, H, W) float32, colour channels only
    restore: Callable[[torch.Tensor], Any]


def _split_alpha(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Channels-first ``(B, C, H, W)`` with C in 1..4 → colour planes and alpha (C 2 or 4)."""
    channels = planes.shape[1]
    if channels not in (1, 2, 3, 4):
        raise ChannelMismatchError(
            f"images need 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) channels, got {channels}"
        )
    if channels in (2, 4):
        return planes[:, :-1], planes[:, -1:]
    return planes, None


def _tensor_scale(dtype: torch.dtype) -> float | None:
    if dtype.is_floating_point:
        return None
    if dtype == torch.uint8:
        return 255.0
    if dtype == torch.uint16:
        return 65535.0
    raise ValueError(f"unsupported tensor dtype {dtype}: use a float tensor in [0, 1] or uint8")


def _numpy_scale(dtype: np.dtype) -> float | None:
    if np.issubdtype(dtype, np.floating):
        return None
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    raise ValueError(
        f"unsupported array dtype {dtype}: use uint8, uint16 or float (values in [0, 1])"
    )


def _prepare_tensor(image: torch.Tensor, clip: bool) -> _Prepared:
    if image.dim() not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got {tuple(image.shape)}")
    scale = _tensor_scale(image.dtype)
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    colour, alpha = _split_alpha(batch)
    values = colour.float() if scale is None else colour.float() / scale

    def restore(restored: torch.Tensor) -> torch.Tensor:
        restored = restored.to(image.device)
        if scale is not None:
            restored = (restored.clamp(0, 1) * scale).round()
        elif clip:
            restored = restored.clamp(0, 1)
        if alpha is not None:
            restored = torch.cat([restored.to(alpha.dtype), alpha], dim=1)
        restored = restored.to(image.dtype)
        return restored if image.dim() == 4 else restored.squeeze(0)

    return _Prepared(values, restore)


def _prepare_numpy(image: np.ndarray, clip: bool) -> _Prepared:
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {image.shape}")
    scale = _numpy_scale(image.dtype)
    hwc = image if image.ndim == 3 else image[..., None]
    planes = torch.from_numpy(np.array(hwc.transpose(2, 0, 1)))[None]
    colour, alpha = _split_alpha(planes)
    values = colour.float() if scale is None else colour.float() / scale

    def restore(restored: torch.Tensor) -> np.ndarray:
        array = restored[0].permute(1, 2, 0).cpu().numpy()
        if scale is not None:
            array = np.round(np.clip(array, 0.0, 1.0) * scale)
        elif clip:
            array = np.clip(array, 0.0, 1.0)
        if alpha is not None:
            array = np.concatenate([array, alpha[0].permute(1, 2, 0).numpy()], axis=-1)
        array = array.astype(image.dtype, copy=False)
        return array if image.ndim == 3 else array[..., 0]

    return _Prepared(values, restore)


# PIL modes we accept and the mode of the returned image.
_PIL_OUTPUT_MODES = {
    "L": "L",
    "LA": "LA",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "I;16": "I;16",
    "1": "L",
    "P": "RGB",
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "RGBX": "RGB",
}


def _prepare_pil(image: Any, clip: bool) -> _Prepared:
    from PIL import Image

    mode = image.mode
    if mode in ("I;16B", "I;16L", "I;16N"):
        mode = "I;16"
    if mode not in _PIL_OUTPUT_MODES:
        raise ValueError(f"unsupported PIL image mode {image.mode!r}")
    target = _PIL_OUTPUT_MODES[mode]
    if mode == "I;16":
        array = np.asarray(image, dtype=np.uint16)
    elif mode == "P" and "transparency" in image.info:
        target = "RGBA"
        array = np.asarray(image.convert("RGBA"))
    else:
        array = np.asarray(image.convert(target) if mode != target else image)
    prepared = _prepare_numpy(array, clip)

    def restore(restored: torch.Tensor) -> Any:
        pixels = prepared.restore(restored)
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        # uint16 (H, W) gives I;16; uint8 (H, W[, 2|3|4]) gives L, LA, RGB, RGBA
        return Image.fromarray(np.ascontiguousarray(pixels))

    return _Prepared(prepared.batch, restore)


def _prepare_image(image: Any, clip: bool) -> _Prepared:
    if isinstance(image, torch.Tensor):
        return _prepare_tensor(image, clip)
    if isinstance(image, np.ndarray):
        return _prepare_numpy(image, clip)
    if type(image).__module__.startswith("PIL.") and hasattr(image, "mode"):
        return _prepare_pil(image, clip)
    raise TypeError(
        f"cannot denoise a {type(image).__name__}: pass a torch tensor (C,H,W)/(B,C,H,W), "
        "a numpy array (H,W)/(H,W,C) or a PIL image"
    )


# ============================================================================ Denoiser
class Denoiser:
    """A loaded model ready for repeated denoising on a device, in a dtype, tiled if needed.

    Args:
        model: A denoiser (``model(noisy) -> restored`` on ``(B, C, H, W)`` in [0, 1]), e.g.
            :func:`clipdenoise.checkpoints.load_model`'s result. The caller's module is never
            modified: it is copied when moving it or changing its dtype.
        device: ``auto | cpu | cuda | cuda:N | mps``
            (see :func:`~clipdenoise.devices.resolve_device`).
        dtype: ``float32 | bfloat16 | float16 | auto`` compute dtype
            (see :func:`~clipdenoise.devices.resolve_dtype`); inputs and outputs keep their own
            dtypes.
        tile_size: Tile side in pixels (multiple of 32); ``None`` chooses from ``max_memory``.
        tile_overlap: Pixels shared by neighbouring tiles; ``None`` (default) means 128, or
            half of a smaller ``tile_size``.
        tile_batch_size: Tiles per forward pass.
        batch_size: Images per forward pass when a batch is given.
        max_memory: Memory budget (bytes or ``"6GB"``) used to choose between untiled inference
            and the largest tiles that fit; ``"auto"`` uses what is available now (RAM on the
            CPU, free memory on a GPU); ``None`` never tiles unless ``tile_size`` is given.
        channel_conversion: What to do when image and model channels differ. ``"auto"``: a
            grey image on an RGB model is replicated to RGB and the result converted back to
            grey (BT.601 luma); an RGB image on a 1-channel model is an error. ``"strict"``:
            any mismatch is an error. ``"per-channel"``: an RGB image on a 1-channel model is
            denoised one channel at a time. ``"luma"``: it is converted to grey (the result is
            grey).
        clip: Clamp float outputs to [0, 1] (integer outputs are always clamped).

    Example:
        >>> import torch
        >>> from clipdenoise.model import CLIPDenoiser, tiny_config
        >>> denoiser = Denoiser(CLIPDenoiser(tiny_config()), device="cpu")
        >>> denoiser.device, denoiser.dtype
        (device(type='cpu'), torch.float32)
        >>> denoiser(torch.rand(2, 3, 40, 40)).shape
        torch.Size([2, 3, 40, 40])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float32",
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        tile_batch_size: int = 1,
        batch_size: int = 4,
        max_memory: int | str | None = "auto",
        channel_conversion: ChannelConversion = "auto",
        clip: bool = True,
    ) -> None:
        if channel_conversion not in CHANNEL_CONVERSIONS:
            raise ConfigError(
                f"unknown channel conversion {channel_conversion!r}; valid: "
                f"{', '.join(CHANNEL_CONVERSIONS)}"
            )
        if tile_size is not None and tile_size < 2 * TILE_MULTIPLE:
            raise ConfigError(f"tile size must be at least {2 * TILE_MULTIPLE}, got {tile_size}")
        if tile_overlap is not None and tile_overlap < 0:
            raise ConfigError(f"tile overlap must be at least 0, got {tile_overlap}")
        if tile_overlap is None:
            tile_overlap = DEFAULT_TILE_OVERLAP
            if tile_size is not None:
                tile_overlap = min(tile_overlap, tile_size // 2 // TILE_MULTIPLE * TILE_MULTIPLE)
        if tile_size is not None and (tile_overlap < 0 or 2 * tile_overlap > tile_size):
            raise ConfigError(
                f"tile overlap {tile_overlap} must be between 0 and half the tile size "
                f"({tile_size})"
            )
        if batch_size < 1 or tile_batch_size < 1:
            raise ConfigError("batch sizes must be at least 1")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.tile_size = tile_size
        self.tile_overlap = int(tile_overlap)
        self.tile_batch_size = int(tile_batch_size)
        self.batch_size = int(batch_size)
        self.max_memory = (
            max_memory if max_memory in (None, "auto") else parse_memory_size(max_memory)
        )
        self.channel_conversion = channel_conversion
        self.clip = clip
        self.model = self.prepare_model(model)
        self._source_model = model if self.dtype == torch.float16 else None
        self._fallback_model: nn.Module | None = None
        self.in_channels = _model_in_channels(self.model)
        self.last_plan: TilePlan | None = None

    # ------------------------------------------------------------------ model
    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The one place a model is made ready for inference: a copy with the encoder's
        BatchNorm folded, cast to the compute dtype, channels-last, in eval mode (see
        :func:`clipdenoise.acceleration.prepare_for_inference`); the caller's model is left
        as it is."""
        return prepare_for_inference(model, device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ public API
    def __call__(self, image: Any) -> Any:
        """Denoise a tensor, array or PIL image; returns the same type, dtype and shape."""
        prepared = _prepare_image(image, self.clip)
        restored = self.denoise_batch(prepared.batch)
        return prepared.restore(restored)

    def denoise_batch(
        self, batch: torch.Tensor, on_tile: Callable[[int, int], None] | None = None
    ) -> torch.Tensor:
        """Denoise ``(B, C, H, W)`` float in [0, 1] (C = 1 or 3); returns float32, same shape
        and device as ``batch``, not clamped. Channel conversion follows ``channel_conversion``.

        Raises:
            ChannelMismatchError: channels do not fit the model and no conversion applies.
            ImageTooSmallError: a side is shorter than :data:`MIN_IMAGE_SIDE`.
        """
        if batch.dim() != 4:
            raise ValueError(f"expected a (B, C, H, W) tensor, got {tuple(batch.shape)}")
        height, width = batch.shape[-2:]
        if min(height, width) < MIN_IMAGE_SIDE:
            raise ImageTooSmallError(
                f"image is {width}x{height} pixels; at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} "
                "is needed"
            )
        channels = batch.shape[1]
        model_channels = self.in_channels or channels
        if channels == model_channels:
            return self._run(batch.float(), on_tile)
        if channels == 1 and model_channels == 3:
            if self.channel_conversion == "strict":
                raise ChannelMismatchError(
                    "the model expects RGB (3 channels) but the image is grey; allow "
                    "replication with channel_conversion='auto' (CLI: --channel-conversion auto)"
                )
            restored = self._run(batch.float().expand(-1, 3, -1, -1), on_tile)
            weights = torch.tensor(LUMA_WEIGHTS, device=restored.device).view(1, 3, 1, 1)
            return (restored * weights).sum(dim=1, keepdim=True)
        if channels == 3 and model_channels == 1:
            if self.channel_conversion == "per-channel":
                flat = batch.float().reshape(-1, 1, height, width)
                return self._run(flat, on_tile).reshape(batch.shape[0], 3, height, width)
            if self.channel_conversion == "luma":
                weights = torch.tensor(LUMA_WEIGHTS, device=batch.device).view(1, 3, 1, 1)
                return self._run((batch.float() * weights).sum(1, keepdim=True), on_tile)
            raise ChannelMismatchError(
                "the model is single-channel (greyscale/CT) but the image is RGB; use "
                "channel_conversion='per-channel' or 'luma' (CLI: --channel-conversion "
                "per-channel|luma), or an RGB model"
            )
        raise ChannelMismatchError(
            f"the model expects {model_channels} channel(s), the image has {channels}"
        )

    def plan(self, batch_shape: Sequence[int]) -> TilePlan:
        """The tiling used for a ``(B, C, H, W)`` batch (see :func:`plan_tiles`)."""
        batch, channels, height, width = (int(v) for v in batch_shape)
        if self.tile_size is not None:
            return TilePlan(self.tile_size, self.tile_overlap, 0)
        if self.max_memory is None:
            return TilePlan(None, self.tile_overlap, 0)
        budget = available_memory(self.device) if self.max_memory == "auto" else self.max_memory
        if self.max_memory == "auto":
            budget = int(budget * (0.5 if self.device.type == "cpu" else 0.8))
        on_cpu = self.device.type == "cpu"
        return plan_tiles(
            self.model,
            height,
            width,
            channels=channels,
            batch=batch,
            max_memory=budget,
            tile_overlap=self.tile_overlap,
            tile_batch_size=self.tile_batch_size,
            dtype=self.dtype,
            host_buffers=on_cpu,
            baseline_bytes=self._baseline_bytes() if on_cpu else None,
        )

    def _float32_model(self) -> nn.Module:
        """A float32 copy of the model, made on first need (float16 overflow on a tile)."""
        if self._fallback_model is None:
            self._fallback_model = prepare_for_inference(
                self._source_model, device=self.device, dtype="float32"
            )
        return self._fallback_model

    def _baseline_bytes(self) -> int:
        # On the CPU the budget covers the whole process: the interpreter, torch and the model
        # are already resident (~0.3-0.5 GB), which parameter bytes alone would miss.
        resident = process_memory_bytes()
        if resident is None:
            resident = _parameter_bytes(self.model) + 400 * 2**20
        return resident

    # ------------------------------------------------------------------ internals
    def _run(self, batch: torch.Tensor, on_tile) -> torch.Tensor:
        outputs = []
        with torch.inference_mode():
            for chunk in batch.split(self.batch_size):
                plan = self.plan(chunk.shape)
                self.last_plan = plan
                multiple = _model_multiple(self.model)
                padded_side = max(
                    math.ceil(side / multiple) * multiple for side in chunk.shape[-2:]
                )
                if plan.tile_size is None or plan.tile_size >= padded_side:
                    restored = self.model(chunk.to(device=self.device, dtype=self.dtype))
                    outputs.append(restored.to(device=batch.device, dtype=torch.float32))
                else:
                    outputs.append(
                        tiled_forward(
                            self.model,
                            chunk,
                            tile_size=plan.tile_size,
                            tile_overlap=plan.tile_overlap,
                            tile_batch_size=self.tile_batch_size,
                            device=self.device,
                            dtype=self.dtype,
                            on_tile=on_tile,
                            fallback=self._float32_model if self.dtype == torch.float16 else None,
                        )
                    )
        restored = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        if not bool(torch.isfinite(restored).all()):
            raise NonFiniteOutputError(
                "the denoised image holds NaN or infinite values: the model's weights are "
                "damaged or diverged (check them with `clipdenoise weights verify`)"
            )
        return restored


def denoise(model: nn.Module, image: Any, **options: Any) -> Any:
    """Denoise one image (or a batch) with ``model``; same type, dtype and shape as ``image``.

    A convenience around :class:`Denoiser` (build one yourself for repeated calls: this copies
    the model when it moves it).

    Args:
        model: A denoiser, e.g. ``clipdenoise.load_model("rn50.synthetic-gaussian15")``.
        image: A torch tensor ``(C, H, W)`` / ``(B, C, H, W)`` (float in [0, 1], or uint8), a
            numpy array ``(H, W)`` / ``(H, W, C)`` (uint8, uint16 or float in [0, 1]) or a PIL
            image. A fourth (or second, for grey) channel is alpha: passed through untouched.
        **options: :class:`Denoiser` options (``device``, ``dtype``, ``tile_size``, ...).

    Returns:
        The restored image, same type, dtype, shape (and device for tensors).

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> from clipdenoise.model import CLIPDenoiser, tiny_config
        >>> model = CLIPDenoiser(tiny_config(in_channels=1))
        >>> scan = np.full((40, 50), 30000, dtype=np.uint16)
        >>> denoise(model, scan, device="cpu").dtype
        dtype('uint16')
        >>> denoise(model, Image.new("LA", (50, 40)), device="cpu").mode
        'LA'
    """
    if isinstance(image, torch.Tensor):
        options.setdefault("device", image.device)
    return Denoiser(model, **options)(image)


__all__ = [
    "CHANNEL_CONVERSIONS",
    "MIN_IMAGE_SIDE",
    "TILE_MULTIPLE",
    "Denoiser",
    "TilePlan",
    "activation_bytes_per_pixel",
    "available_memory",
    "axis_weights",
    "denoise",
    "iter_tiles",
    "pad_to_multiple",
    "parse_memory_size",
    "plan_tiles",
    "reflect_indices",
    "tile_layout",
    "tile_starts",
    "tiled_forward",
]
