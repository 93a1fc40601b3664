"""Camera (ISP) pipeline for realistic sRGB noise, after CBDNet (Guo et al., CVPR 2019).

The paper (Sec. 4.1) trains its sRGB model on clean images whose noise is synthesised in the raw
domain of a simulated camera, as the reference's data preparation
(``basicsr/data/ISP_implement.py``, ``cbdnet_noise_generate_srgb(..., is_strict=True)``) does:

    sRGB --inverse camera response (one of 201 DoRF curves)--> "linear" RGB
         --sRGB->XYZ--> XYZ --XYZ->camera (random convex mix of 4 CBDNet matrices)--> camera RGB
         --Bayer mosaic (RGGB/BGGR/GRBG/GBRG)--> raw --inverse white balance--> raw
         --Poisson-Gaussian noise--> noisy raw
         --white balance--> --Malvar-He-Cutler 2004 demosaic--> camera RGB
         --camera->XYZ--> XYZ --XYZ->sRGB--> --camera response--> noisy sRGB

The numpy path is vectorised; :func:`add_camera_noise_torch` runs the same pipeline batched in
torch on any device (one camera per sample, equal to the numpy path to 1e-5) for online
synthesis during training. Every random choice comes from an explicit ``np.random.Generator``
and is recorded in a :class:`CameraParams`, so :func:`unprocess` / :func:`process` reproduce a
run from its parameters.

:class:`CameraNoiseConfig` holds the conventions. The defaults follow CBDNet's noise model and
exact curve inverses; ``CameraNoiseConfig.reference()`` restores every convention of the
reference code, its random draws (:class:`ReferenceDraws`) and its 8-bit output, reproducing
its images exactly. Each convention, the measured noise strength and round-trip error are
described in ``docs/srgb.md``; speed in ``docs/performance.md``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import ndimage

from clipdenoise.errors import ConfigError

if TYPE_CHECKING:
    import torch

BAYER_PATTERNS: tuple[str, ...] = ("GRBG", "RGGB", "GBRG", "BGGR")
"""The four Bayer layouts, in the reference's index order; each letter is a 2x2 cell read
row by row (top-left, top-right, bottom-left, bottom-right)."""

XYZ_TO_CAMERA_MATRICES = np.array(
    [
        [1.0234, -0.2969, -0.2266, -0.5625, 1.6328, -0.0469, -0.0703, 0.2188, 0.6406],
        [0.4913, -0.0541, -0.0202, -0.6130, 1.3513, 0.2906, -0.1564, 0.2151, 0.7183],
        [0.8380, -0.2630, -0.0639, -0.2887, 1.0725, 0.2496, -0.0627, 0.1427, 0.5438],
        [0.6596, -0.2079, -0.0562, -0.4782, 1.3016, 0.1933, -0.0970, 0.1581, 0.5181],
    ]
).reshape(4, 3, 3)
"""The four XYZ -> camera RGB matrices of CBDNet's ISP (row-major 3x3 each; four real cameras)."""

SRGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ]
)
"""Linear sRGB (D65) -> CIE XYZ, the matrix scikit-image's ``rgb2xyz`` uses."""

XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)

NUM_CRF_CURVES = 201
WHITE_BALANCE_GAIN_RANGE = (0.75, 1.0)
REFERENCE_SIGMA_S_RANGE = (1e-4, 0.16)
REFERENCE_SIGMA_C_RANGE = (1e-4, 0.06)

NoiseForm = Literal["heteroscedastic", "reference"]
InverseCRF = Literal["exact", "tabulated"]
CurveLookup = Literal["interpolate", "nearest_bin"]
DemosaicBorder = Literal["mirror", "reflect"]
CameraDraws = Literal["generator", "reference"]

# The reference's nearest-bin search starts near floor(value * 1024 - 1) for values above this.
_NEAREST_BIN_WIDTH = 9.7656e-04
_NEAREST_BIN_MIN = 0.0039

_CURVES_RESOURCE = "dorf_crf.npz"
_RANGE_SLACK = 1e-3

# Malvar-He-Cutler (ICASSP 2004) 5x5 gradient-corrected bilinear filters, in units of 1/8.
_G_AT_RB = np.array(
    [
        [0, 0, -1, 0, 0],
        [0, 0, 2, 0, 0],
        [-1, 2, 4, 2, -1],
        [0, 0, 2, 0, 0],
        [0, 0, -1, 0, 0],
    ],
    dtype=np.float64,
)
# R (resp. B) at a green pixel whose row neighbours are R (resp. B).
_RB_AT_G_ROW = np.array(
    [
        [0, 0, 0.5, 0, 0],
        [0, -1, 0, -1, 0],
        [-1, 4, 5, 4, -1],
        [0, -1, 0, -1, 0],
        [0, 0, 0.5, 0, 0],
    ],
    dtype=np.float64,
)
# R (resp. B) at a green pixel whose column neighbours are R (resp. B).
_RB_AT_G_COLUMN = _RB_AT_G_ROW.T
# R at a blue pixel and B at a red pixel.
_RB_AT_BR = np.array(
    [
        [0, 0, -1.5, 0, 0],
        [0, 2, 0, 2, 0],
        [-1.5, 0, 6, 0, -1.5],
        [0, 2, 0, 2, 0],
        [0, 0, -1.5, 0, 0],
    ],
    dtype=np.float64,
)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class CameraNoiseConfig:
    """How :func:`simulate_camera_noise` builds a camera and its noise.

    Attributes:
        sigma_s: signal-dependent (shot) noise level in raw units [0, 1]; 0.04 is the paper's.
        sigma_c: signal-independent (read) noise level in raw units; 0.03 is the paper's.
        sigma_s_range: if set, ``(low, high)``: sigma_s is drawn log-uniformly per image
            (the reference's random mode uses ``(1e-4, 0.16)``), overriding ``sigma_s``.
        sigma_c_range: the same for sigma_c (reference: ``(1e-4, 0.06)``).
        noise_form: ``"heteroscedastic"`` (variance sigma_s^2 x + sigma_c^2, CBDNet Eq. 2) or
            ``"reference"`` (the reference code: variance sigma_s^2 x^2 + sigma_c^2).
        white_balance: apply the reference's random inverse white balance gains to R and B.
        inverse_crf: ``"exact"`` (inverse of the forward curve) or ``"tabulated"`` (DoRF invI).
        clip_xyz: clip XYZ to [0, 1] on the way back, as the reference does.
        srgb_transfer: apply the sRGB transfer function in the XYZ conversion (scikit-image's
            ``rgb2xyz`` convention, as the reference).
        bayer_patterns: the layouts to draw from (``draws="generator"`` only; the reference
            draws from all four).
        curve_lookup: ``"interpolate"`` (linear interpolation of the curve tables) or
            ``"nearest_bin"`` (the reference's ``ICRF_Map`` / ``CRF_Map``).
        demosaic_border: ``"mirror"`` (keeps the Bayer parity) or ``"reflect"`` (the
            reference's ``scipy.ndimage.convolve`` default).
        draws: ``"generator"`` (everything from one ``np.random.Generator``) or ``"reference"``
            (Python ``random`` and numpy's legacy generator in the reference's order, see
            :class:`ReferenceDraws`).
        output_8bit: round the output to 8-bit codes, ``(x * 255).round() / 255`` in float64,
            as the reference's data preparation writes its noisy images.
    """

    sigma_s: float = 0.04
    sigma_c: float = 0.03
    sigma_s_range: tuple[float, float] | None = None
    sigma_c_range: tuple[float, float] | None = None
    noise_form: NoiseForm = "heteroscedastic"
    white_balance: bool = True
    inverse_crf: InverseCRF = "exact"
    clip_xyz: bool = False
    srgb_transfer: bool = True
    bayer_patterns: tuple[str, ...] = BAYER_PATTERNS
    curve_lookup: CurveLookup = "interpolate"
    demosaic_border: DemosaicBorder = "mirror"
    draws: CameraDraws = "generator"
    output_8bit: bool = False

    @classmethod
    def reference(cls, **overrides: object) -> CameraNoiseConfig:
        """The reference's pipeline exactly (``ISP_implement.py``,
        ``cbdnet_noise_generate_srgb(..., is_strict=True)`` and its 8-bit output): its noise
        form, the DoRF ``invI`` table, nearest-bin curve look-ups, ``reflect`` demosaicing
        borders, XYZ clipping, its random draws, at the paper's fixed level."""
        settings = {
            "noise_form": "reference",
            "inverse_crf": "tabulated",
            "clip_xyz": True,
            "curve_lookup": "nearest_bin",
            "demosaic_border": "reflect",
            "draws": "reference",
            "output_8bit": True,
        }
        return cls(**{**settings, **overrides})

    def __post_init__(self) -> None:
        for name in ("sigma_s", "sigma_c"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("sigma_s_range", "sigma_c_range"):
            bounds = getattr(self, name)
            if bounds is None:
                continue
            if len(bounds) != 2 or not (0 < bounds[0] <= bounds[1]):
                raise ConfigError(
                    f"{name} must be (low, high) with 0 < low <= high, got {bounds!r}"
                )
        if self.noise_form not in ("heteroscedastic", "reference"):
            raise ConfigError(
                f"noise_form must be 'heteroscedastic' or 'reference', got {self.noise_form!r}"
            )
        if self.inverse_crf not in ("exact", "tabulated"):
            raise ConfigError(
                f"inverse_crf must be 'exact' or 'tabulated', got {self.inverse_crf!r}"
            )
        choices = {
            "curve_lookup": ("interpolate", "nearest_bin"),
            "demosaic_border": ("mirror", "reflect"),
            "draws": ("generator", "reference"),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ConfigError(
                    f"{name} must be one of {', '.join(valid)}, got {getattr(self, name)!r}"
                )
        if not self.bayer_patterns:
            raise ConfigError("bayer_patterns must name at least one pattern")
        for pattern in self.bayer_patterns:
            _check_pattern(pattern)


@dataclass(frozen=True)
class CameraParams:
    """Every random choice of one simulated camera, enough to replay :func:`unprocess` /
    :func:`process` and to inspect a synthesised image.

    Attributes:
        crf_index: which of the 201 DoRF camera response curves (0-based).
        matrix_weights: the 4 convex weights mixing :data:`XYZ_TO_CAMERA_MATRICES`.
        bayer_pattern: one of :data:`BAYER_PATTERNS`.
        red_gain, blue_gain: inverse white-balance gains in [0.75, 1] (1 when disabled).
        sigma_s, sigma_c: the raw noise levels used.
    """

    crf_index: int
    matrix_weights: tuple[float, float, float, float]
    bayer_pattern: str
    red_gain: float = 1.0
    blue_gain: float = 1.0
    sigma_s: float = 0.04
    sigma_c: float = 0.03

    @property
    def xyz_to_camera(self) -> np.ndarray:
        """The ``(3, 3)`` float64 XYZ -> camera RGB matrix, rows normalised to sum to 1."""
        return mix_xyz_to_camera(np.asarray(self.matrix_weights))

    def to_dict(self) -> dict:
        """JSON-ready plain values."""
        values = asdict(self)
        values["matrix_weights"] = list(self.matrix_weights)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> CameraParams:
        """Inverse of :meth:`to_dict` (e.g. a ``camera`` entry of a synth manifest).

        Raises:
            ConfigError: unknown or missing keys, or an invalid Bayer pattern.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown camera parameter(s) {unknown}; valid: {sorted(names)}")
        try:
            params = cls(**{**values, "matrix_weights": tuple(values["matrix_weights"])})
        except (KeyError, TypeError) as error:
            raise ConfigError(f"incomplete camera parameters {values!r}: {error}") from error
        _check_pattern(params.bayer_pattern)
        _check_crf_index(params.crf_index)
        return params


@dataclass(frozen=True)
class CameraResponseCurves:
    """The DoRF curves: ``crf[k]`` maps irradiance ``grid`` to brightness, ``inverse_crf[k]``
    maps brightness ``grid`` to irradiance (both ``(201, 1024)`` float32, ``grid`` ``(1024,)``
    linearly spaced in [0, 1])."""

    grid: np.ndarray
    crf: np.ndarray
    inverse_crf: np.ndarray
    source: str = field(default="", repr=False)


# --------------------------------------------------------------------------- camera response


@functools.lru_cache(maxsize=1)
def load_camera_response_curves() -> CameraResponseCurves:
    """The 201 DoRF camera response curves shipped as package data (``resources/dorf_crf.npz``)."""
    resource = resources.files("clipdenoise").joinpath("resources").joinpath(_CURVES_RESOURCE)
    with resource.open("rb") as handle, np.load(handle) as data:
        curves = CameraResponseCurves(
            grid=data["grid"].astype(np.float64),
            crf=data["crf"].astype(np.float64),
            inverse_crf=data["inverse_crf"].astype(np.float64),
            source=str(data["source"]),
        )
    for array in (curves.grid, curves.crf, curves.inverse_crf):
        array.flags.writeable = False
    return curves


def convert_dorf_curves(crf_mat: str | Path, inverse_mat: str | Path, out_path: str | Path) -> Path:
    """Convert CBDNet's ``201_CRF_data.mat`` and ``dorfCurvesInv.mat`` to our ``.npz`` resource.

    This is how ``resources/dorf_crf.npz`` was made (float32, compressed); the source files'
    sha256 are stored in its ``source`` entry.

    Raises:
        ConfigError: the files do not hold the expected ``(201, 1024)`` tables on a shared grid.
    """
    import scipy.io

    crf_data = scipy.io.loadmat(str(crf_mat))
    inverse_data = scipy.io.loadmat(str(inverse_mat))
    irradiance, brightness = crf_data["I"], crf_data["B"]
    inverse_brightness, inverse_irradiance = inverse_data["invB"], inverse_data["invI"]
    for name, table in (("I", irradiance), ("B", brightness), ("invB", inverse_brightness)):
        if table.shape != (NUM_CRF_CURVES, 1024):
            raise ConfigError(f"{name} has shape {table.shape}, expected ({NUM_CRF_CURVES}, 1024)")
    if not (np.all(irradiance == irradiance[0]) and np.all(inverse_brightness == irradiance[0])):
        raise ConfigError("the DoRF tables do not share one sampling grid")
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in (crf_mat, inverse_mat)]
    source = (
        "DoRF (Grossberg & Nayar, CVPR 2003) 201 camera response curves as shipped by "
        "GuoShi28/CBDNet: 201_CRF_data.mat (I, B; sha256 "
        f"{digests[0]}) and dorfCurvesInv.mat (invI, invB; sha256 {digests[1]}). "
        "grid = I[0] = invB[0]; crf = B; inverse_crf = invI."
    )
    out_path = Path(out_path)
    np.savez_compressed(
        out_path,
        grid=irradiance[0].astype(np.float32),
        crf=brightness.astype(np.float32),
        inverse_crf=inverse_irradiance.astype(np.float32),
        source=np.array(source),
    )
    return out_path


def apply_camera_response(
    irradiance: np.ndarray, crf_index: int, *, lookup: CurveLookup = "interpolate"
) -> np.ndarray:
    """Tone-map irradiance to brightness with DoRF curve ``crf_index``.

    Args:
        irradiance: any shape, float in [0, 1] (values outside are clamped to the curve ends).
        crf_index: 0..200.
        lookup: ``"interpolate"`` (linear) or ``"nearest_bin"`` (the reference's ``CRF_Map``,
            :func:`lookup_nearest_bin`).

    Returns:
        Brightness, same shape, float64 in [0, 1].
    """
    curves = load_camera_response_curves()
    _check_crf_index(crf_index)
    if _check_lookup(lookup) == "nearest_bin":
        return lookup_nearest_bin(irradiance, curves.grid, curves.crf[crf_index])
    return np.interp(irradiance, curves.grid, curves.crf[crf_index])


def apply_inverse_camera_response(
    brightness: np.ndarray,
    crf_index: int,
    *,
    method: InverseCRF = "exact",
    lookup: CurveLookup = "interpolate",
) -> np.ndarray:
    """Invert DoRF curve ``crf_index``: brightness (e.g. an sRGB image) -> irradiance.

    Args:
        brightness: any shape, float in [0, 1].
        crf_index: 0..200.
        method: ``"exact"`` interpolates the forward curve backwards, so
            ``apply_camera_response(apply_inverse_camera_response(x, k), k) == x`` up to
            rounding; ``"tabulated"`` uses DoRF's ``invI`` table as the reference does (not an
            exact inverse: up to 0.12 off for some curves).
        lookup: how the ``"tabulated"`` table is read: ``"interpolate"`` or ``"nearest_bin"``
            (the reference's ``ICRF_Map``); the exact inverse always interpolates.

    Returns:
        Irradiance, same shape, float64 in [0, 1].
    """
    curves = load_camera_response_curves()
    _check_crf_index(crf_index)
    if method == "tabulated":
        table = curves.inverse_crf[crf_index]
        if _check_lookup(lookup) == "nearest_bin":
            return lookup_nearest_bin(brightness, curves.grid, table)
        return np.interp(brightness, curves.grid, table)
    if method != "exact":
        raise ConfigError(
            f"inverse camera response method must be 'exact' or 'tabulated', got {method!r}"
        )
    return np.interp(brightness, curves.crf[crf_index], curves.grid)


def lookup_nearest_bin(values: np.ndarray, grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The reference's curve look-up (``ICRF_Map`` / ``CRF_Map`` of CBDNet's ISP), vectorised.

    For each value ``t`` the reference scans the bins from ``floor(t / 9.7656e-4 - 1)``
    (from bin 1 when ``t <= 0.0039``) for the first bin ``b`` with ``grid[b] >= t``, steps back
    to ``b - 1`` when ``b > 1`` and ``t`` is strictly closer to ``grid[b - 1]``, and returns
    ``table[b]``. Its quirks are kept: bin 0 is never chosen (black maps to ``table[1]``), ties
    go to the upper bin, and a value above the last bin is returned unchanged.

    Args:
        values: any shape, float.
        grid: ``(N,)`` increasing sample positions (the DoRF grid).
        table: ``(N,)`` the curve at those positions.

    Returns:
        Same shape as ``values``, float64.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(-1)
    bins = grid.shape[0]
    start = np.ones(flat.shape, dtype=np.int64)
    above = flat > _NEAREST_BIN_MIN
    start[above] = np.floor(flat[above] / _NEAREST_BIN_WIDTH - 1).astype(np.int64)
    index = np.maximum(start, np.searchsorted(grid, flat, side="left"))
    found = index < bins
    index = np.minimum(index, bins - 1)
    previous = np.maximum(index - 1, 0)
    closer_below = (flat - grid[previous]) < (grid[index] - flat)
    index = np.where(found & (index > 1) & closer_below, previous, index)
    return np.where(found, table[index], flat).reshape(values.shape)


def _check_lookup(lookup: str) -> str:
    if lookup not in ("interpolate", "nearest_bin"):
        raise ConfigError(f"curve look-up must be 'interpolate' or 'nearest_bin', got {lookup!r}")
    return lookup


def _check_crf_index(crf_index: int) -> None:
    if not 0 <= int(crf_index) < NUM_CRF_CURVES:
        raise ConfigError(f"crf_index must be in 0..{NUM_CRF_CURVES - 1}, got {crf_index}")


# --------------------------------------------------------------------------- colour spaces


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """The sRGB electro-optical transfer function (IEC 61966-2-1): encoded -> linear."""
    encoded = np.asarray(encoded, dtype=np.float64)
    low = encoded / 12.92
    high = np.power(np.maximum(encoded + 0.055, 0.0) / 1.055, 2.4)
    return np.where(encoded > 0.04045, high, low)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_decode`: linear -> encoded (no clipping)."""
    linear = np.asarray(linear, dtype=np.float64)
    low = linear * 12.92
    high = 1.055 * np.power(np.maximum(linear, 0.0), 1.0 / 2.4) - 0.055
    return np.where(linear > 0.0031308, high, low)


def apply_color_matrix(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a ``(3, 3)`` matrix to every pixel: ``out[..., i] = sum_j matrix[i, j] image[..., j]``.

    Args:
        image: ``(..., 3)`` float.

    Returns:
        ``(..., 3)`` float64.
    """
    return np.asarray(image, dtype=np.float64) @ np.asarray(matrix, dtype=np.float64).T


def srgb_to_xyz(rgb: np.ndarray, *, transfer: bool = True) -> np.ndarray:
    """RGB ``(..., 3)`` -> CIE XYZ (D65), decoding the sRGB transfer function first when
    ``transfer`` (scikit-image's ``rgb2xyz``)."""
    linear = srgb_decode(rgb) if transfer else np.asarray(rgb, dtype=np.float64)
    return apply_color_matrix(linear, SRGB_TO_XYZ)


def xyz_to_srgb(xyz: np.ndarray, *, transfer: bool = True, clip: bool = True) -> np.ndarray:
    """CIE XYZ ``(..., 3)`` -> RGB, encoding the sRGB transfer function when ``transfer`` and
    clipping to [0, 1] when ``clip`` (scikit-image's ``xyz2rgb`` does both)."""
    rgb = apply_color_matrix(xyz, XYZ_TO_SRGB)
    if transfer:
        rgb = srgb_encode(rgb)
    return np.clip(rgb, 0.0, 1.0) if clip else rgb


def mix_xyz_to_camera(weights: np.ndarray) -> np.ndarray:
    """Convex mix of the four CBDNet XYZ -> camera matrices, each row normalised to sum to 1
    (so XYZ white maps to camera white).

    Args:
        weights: ``(4,)`` non-negative, summing to 1.

    Returns:
        ``(3, 3)`` float64.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (4,):
        raise ConfigError(f"matrix weights must have shape (4,), got {weights.shape}")
    # summed term by term in the reference's order, so its matrices come out bit for bit
    matrix = XYZ_TO_CAMERA_MATRICES[0] * weights[0]
    for index in range(1, 4):
        matrix = matrix + XYZ_TO_CAMERA_MATRICES[index] * weights[index]
    return matrix / matrix.sum(axis=1, keepdims=True)


def xyz_to_camera(xyz: np.ndarray, matrix: np.ndarray, *, clip: bool = True) -> np.ndarray:
    """XYZ ``(..., 3)`` -> camera RGB with a ``(3, 3)`` XYZ -> camera matrix; clipped to [0, 1]
    (sensor saturation) when ``clip``."""
    camera = apply_color_matrix(xyz, matrix)
    return np.clip(camera, 0.0, 1.0) if clip else camera


def camera_to_xyz(camera: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Camera RGB ``(..., 3)`` -> XYZ, inverting the ``(3, 3)`` XYZ -> camera ``matrix``."""
    return apply_color_matrix(camera, np.linalg.inv(matrix))


# --------------------------------------------------------------------------- Bayer mosaic


def _check_pattern(pattern: str) -> str:
    if pattern not in BAYER_PATTERNS:
        raise ConfigError(
            f"unknown Bayer pattern {pattern!r}; valid: {', '.join(sorted(BAYER_PATTERNS))}"
        )
    return pattern


def bayer_channel_map(shape: tuple[int, int], pattern: str) -> np.ndarray:
    """Which colour each sensor pixel records: ``(H, W)`` int8 with 0 = R, 1 = G, 2 = B."""
    _check_pattern(pattern)
    height, width = shape
    cell = np.array(["RGB".index(letter) for letter in pattern], dtype=np.int8).reshape(2, 2)
    tiled = np.tile(cell, ((height + 1) // 2, (width + 1) // 2))
    return tiled[:height, :width]


def mosaic_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image through a Bayer colour filter array.

    Args:
        rgb: ``(H, W, 3)`` float (any H, W >= 1).
        pattern: one of :data:`BAYER_PATTERNS`, e.g. ``"RGGB"`` (R at (0, 0)).

    Returns:
        ``(H, W)`` raw mosaic, dtype of ``rgb``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"mosaic_bayer expects an (H, W, 3) image, got shape {rgb.shape}")
    channels = bayer_channel_map(rgb.shape[:2], pattern)
    return np.take_along_axis(rgb, channels[..., None].astype(np.intp), axis=2)[..., 0]


def white_balance_mask(
    shape: tuple[int, int], pattern: str, red_gain: float, blue_gain: float
) -> np.ndarray:
    """Per-pixel gains for a raw mosaic: ``red_gain`` on R sites, ``blue_gain`` on B sites, 1 on
    G sites. ``(H, W)`` float64."""
    gains = np.array([red_gain, 1.0, blue_gain], dtype=np.float64)
    return gains[bayer_channel_map(shape, pattern)]


def demosaic_malvar2004(
    raw: np.ndarray, pattern: str, *, border: DemosaicBorder = "mirror"
) -> np.ndarray:
    """Malvar-He-Cutler (ICASSP 2004) gradient-corrected bilinear demosaicing.

    Each missing colour is bilinearly interpolated and corrected by the Laplacian of the
    colour the pixel did record, with the paper's four 5x5 filters (gains 1/2, 5/8, 3/4). By
    default the borders are mirrored (``scipy.ndimage`` mode ``"mirror"``), which keeps the Bayer
    parity, so a constant colour image is reproduced exactly, borders included; ``"reflect"``
    (the reference's) repeats the edge sample, so the 2-pixel frame mixes colours. Output is
    not clipped.

    Args:
        raw: ``(H, W)`` float mosaic.
        pattern: one of :data:`BAYER_PATTERNS`.
        border: ``"mirror"`` or ``"reflect"`` (``scipy.ndimage`` modes).

    Returns:
        ``(H, W, 3)`` float64 RGB.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2:
        raise ValueError(f"demosaic_malvar2004 expects an (H, W) mosaic, got shape {raw.shape}")
    if border not in ("mirror", "reflect"):
        raise ConfigError(f"demosaic border must be 'mirror' or 'reflect', got {border!r}")
    channels = bayer_channel_map(raw.shape, pattern)
    is_red, is_green, is_blue = (channels == 0), (channels == 1), (channels == 2)
    # A green site's row holds either red or blue samples; that decides which filter gives R.
    row_has_red = np.any(is_red, axis=1, keepdims=True) & np.ones_like(is_red)
    green_in_red_row = is_green & row_has_red
    green_in_blue_row = is_green & ~row_has_red

    def filtered(kernel: np.ndarray) -> np.ndarray:
        # the kernels are point-symmetric: correlation equals the reference's convolution
        return ndimage.correlate(raw, kernel / 8.0, mode=border)

    green_estimate = filtered(_G_AT_RB)
    along_row = filtered(_RB_AT_G_ROW)
    along_column = filtered(_RB_AT_G_COLUMN)
    diagonal = filtered(_RB_AT_BR)

    red = np.select(
        [is_red, green_in_red_row, green_in_blue_row, is_blue],
        [raw, along_row, along_column, diagonal],
    )
    green = np.where(is_green, raw, green_estimate)
    blue = np.select(
        [is_blue, green_in_blue_row, green_in_red_row, is_red],
        [raw, along_row, along_column, diagonal],
    )
    return np.stack([red, green, blue], axis=-1)


# --------------------------------------------------------------------------- raw noise


def add_raw_noise(
    raw: np.ndarray,
    sigma_s: float,
    sigma_c: float,
    rng: np.random.Generator | np.random.RandomState,
    *,
    form: NoiseForm = "heteroscedastic",
    clip: bool = True,
) -> np.ndarray:
    """Add Poisson-Gaussian noise to a raw image in [0, 1].

    ``"heteroscedastic"`` (CBDNet Eq. 2, Gaussian approximation of the Poisson part):
    ``noisy = x + sqrt(sigma_s^2 * x + sigma_c^2) * n``, one standard normal ``n`` per pixel.
    ``"reference"`` (the reference code): ``noisy = x + sigma_s * x * n1 + sigma_c * n2``.

    Args:
        raw: any shape, float in [0, 1].
        sigma_s, sigma_c: noise levels in raw units.
        rng: the generator all noise is drawn from (numpy's legacy ``RandomState`` replays the
            reference's ``np.random.normal`` draws).
        form: see above.
        clip: clip the result to [0, 1] (the sensor range), as the reference does.

    Returns:
        Same shape, float64.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if form == "heteroscedastic":
        std = np.sqrt(sigma_s**2 * np.maximum(raw, 0.0) + sigma_c**2)
        noisy = raw + std * rng.standard_normal(raw.shape)
    elif form == "reference":
        shot = rng.standard_normal(raw.shape)
        read = rng.standard_normal(raw.shape)
        noisy = raw + shot * (sigma_s * raw) + read * sigma_c
    else:
        raise ConfigError(f"noise form must be 'heteroscedastic' or 'reference', got {form!r}")
    return np.clip(noisy, 0.0, 1.0) if clip else noisy


# --------------------------------------------------------------------------- the pipeline


def sample_camera_params(
    rng: np.random.Generator, config: CameraNoiseConfig | None = None
) -> CameraParams:
    """Draw one simulated camera. The draw order is fixed (curve, matrix weights, Bayer pattern,
    white-balance gains, noise levels), so a seed always gives the same camera.

    The matrix weights are uniform draws normalised to sum to 1 (the reference's mix); the
    gains are uniform in [0.75, 1]; ranged noise levels are log-uniform.
    """
    config = config or CameraNoiseConfig()
    crf_index = int(rng.integers(NUM_CRF_CURVES))
    weights = rng.random(4)
    weights = weights / weights.sum()
    pattern = config.bayer_patterns[int(rng.integers(len(config.bayer_patterns)))]
    gains = rng.uniform(*WHITE_BALANCE_GAIN_RANGE, size=2)
    sigma_s = _draw_level(rng, config.sigma_s, config.sigma_s_range)
    sigma_c = _draw_level(rng, config.sigma_c, config.sigma_c_range)
    return _camera_from_draws(config, crf_index, weights, pattern, gains, sigma_s, sigma_c)


def _camera_from_draws(
    config: CameraNoiseConfig,
    crf_index: int,
    weights: np.ndarray,
    pattern: str,
    gains: Sequence[float],
    sigma_s: float,
    sigma_c: float,
) -> CameraParams:
    """The camera of one set of draws. The white-balance gains are drawn even when
    ``config.white_balance`` is off (then both are 1), so that every later draw of the same
    generator is the same either way."""
    red_gain, blue_gain = gains if config.white_balance else (1.0, 1.0)
    return CameraParams(
        crf_index=int(crf_index),
        matrix_weights=tuple(float(w) for w in weights),
        bayer_pattern=pattern,
        red_gain=float(red_gain),
        blue_gain=float(blue_gain),
        sigma_s=sigma_s,
        sigma_c=sigma_c,
    )


class ReferenceDraws:
    """The reference's two random sources, seeded as its test of a seed ``s`` does:
    ``random.seed(s); np.random.seed(s)`` (here as private instances, so no global state is
    touched).

    Python's ``random`` draws the curve (``randint(0, 200)``), the Bayer pattern
    (``randint(0, 3)``, :data:`BAYER_PATTERNS` order) and the two white-balance gains
    (``uniform(0.75, 1)``, red then blue); numpy's legacy generator draws the colour-matrix mix
    (``random((1, 4))``, normalised), the noise levels of the random mode (log-uniform from
    ``rand(1)``, sigma_s then sigma_c) and then the two noise maps (``normal(0, 1)``, shot then
    read). Each generator's draws come in that order, so the same seed gives the reference's
    camera and noise.

    Args:
        seed: the seed of both generators (0 <= seed < 2**32).

    Attributes:
        python: the ``random.Random`` instance.
        numpy: the ``np.random.RandomState`` instance (also the source of the noise maps).
    """

    def __init__(self, seed: int) -> None:
        import random

        self.seed = int(seed)
        self.python = random.Random(self.seed)
        self.numpy = np.random.RandomState(self.seed)

    def sample_camera_params(self, config: CameraNoiseConfig | None = None) -> CameraParams:
        """Draw a camera as the reference does (see the class docstring)."""
        config = config or CameraNoiseConfig()
        crf_index = self.python.randint(0, NUM_CRF_CURVES - 1)
        weights = self.numpy.random_sample((1, 4))
        weights = (weights / np.sum(weights))[0]
        pattern = BAYER_PATTERNS[self.python.randint(0, len(BAYER_PATTERNS) - 1)]
        red_gain = self.python.uniform(*WHITE_BALANCE_GAIN_RANGE)
        blue_gain = self.python.uniform(*WHITE_BALANCE_GAIN_RANGE)
        sigma_s = self._level(config.sigma_s, config.sigma_s_range)
        sigma_c = self._level(config.sigma_c, config.sigma_c_range)
        return _camera_from_draws(
            config, crf_index, weights, pattern, (red_gain, blue_gain), sigma_s, sigma_c
        )

    def _level(self, fixed: float, bounds: tuple[float, float] | None) -> float:
        if bounds is None:
            return float(fixed)
        low = np.log([bounds[0]])
        return float(np.exp(low + self.numpy.rand(1) * (np.log([bounds[1]]) - low))[0])


def _draw_level(
    rng: np.random.Generator, fixed: float, bounds: tuple[float, float] | None
) -> float:
    if bounds is None:
        return float(fixed)
    low, high = math.log(bounds[0]), math.log(bounds[1])
    return float(math.exp(rng.uniform(low, high)))


def unprocess(
    srgb: np.ndarray, params: CameraParams, config: CameraNoiseConfig | None = None
) -> np.ndarray:
    """The inverse ISP: an sRGB image -> the raw mosaic the simulated camera would record.

    Args:
        srgb: ``(H, W, 3)`` float in [0, 1].
        params: the camera (see :func:`sample_camera_params`).
        config: pipeline conventions (``inverse_crf``, ``srgb_transfer``).

    Returns:
        ``(H, W)`` float64 raw in [0, 1], inverse white balance applied.
    """
    config = config or CameraNoiseConfig()
    srgb = _check_rgb(srgb)
    irradiance = apply_inverse_camera_response(
        srgb, params.crf_index, method=config.inverse_crf, lookup=config.curve_lookup
    )
    xyz = srgb_to_xyz(irradiance, transfer=config.srgb_transfer)
    camera = xyz_to_camera(xyz, params.xyz_to_camera)
    raw = mosaic_bayer(camera, params.bayer_pattern)
    return raw * white_balance_mask(
        raw.shape, params.bayer_pattern, params.red_gain, params.blue_gain
    )


def process(
    raw: np.ndarray, params: CameraParams, config: CameraNoiseConfig | None = None
) -> np.ndarray:
    """The forward ISP: a raw mosaic -> sRGB (white balance, demosaic, colour, tone curve).

    Args:
        raw: ``(H, W)`` float in [0, 1].
        params: the camera that recorded it.
        config: pipeline conventions (``clip_xyz``, ``srgb_transfer``, ``curve_lookup``,
            ``demosaic_border``; ``output_8bit`` is applied by :func:`simulate_camera_noise`).

    Returns:
        ``(H, W, 3)`` float64 sRGB in [0, 1].
    """
    config = config or CameraNoiseConfig()
    gains = white_balance_mask(
        raw.shape, params.bayer_pattern, 1.0 / params.red_gain, 1.0 / params.blue_gain
    )
    balanced = np.clip(raw * gains, 0.0, 1.0)
    camera = np.clip(
        demosaic_malvar2004(balanced, params.bayer_pattern, border=config.demosaic_border), 0.0, 1.0
    )
    xyz = camera_to_xyz(camera, params.xyz_to_camera)
    if config.clip_xyz:
        xyz = np.clip(xyz, 0.0, 1.0)
    linear = xyz_to_srgb(xyz, transfer=config.srgb_transfer, clip=True)
    return apply_camera_response(linear, params.crf_index, lookup=config.curve_lookup)


@dataclass(frozen=True)
class CameraNoiseResult:
    """What :func:`simulate_camera_noise` returns.

    Attributes:
        noisy: ``(H, W, 3)`` float32 in [0, 1], the noisy sRGB image.
        params: the sampled camera and noise levels.
        processed_clean: ``(H, W, 3)`` float32, the clean image through the same camera
            without noise (demosaicing and clipping included), when requested; else None.
    """

    noisy: np.ndarray
    params: CameraParams
    processed_clean: np.ndarray | None = None


def simulate_camera_noise(
    clean: np.ndarray,
    rng: np.random.Generator | int,
    config: CameraNoiseConfig | None = None,
    *,
    params: CameraParams | None = None,
    with_processed_clean: bool = False,
) -> CameraNoiseResult:
    """Synthesise realistic sRGB noise for a clean image through a random simulated camera.

    The reference trains on ``(original clean, noisy)``, so the noisy image also carries the
    pipeline's deterministic changes (demosaicing of fine texture, gamut clipping); with
    ``with_processed_clean`` the noise-free output of the same camera is returned too, for
    pairs that differ by the noise alone. Drawing it consumes no randomness.

    With ``config.draws == "reference"`` the camera and noise come from :class:`ReferenceDraws`
    seeded with ``rng`` (an int: exactly the reference's image for ``random.seed(rng);
    np.random.seed(rng)``; a generator: a 32-bit seed drawn from it).

    Args:
        clean: ``(H, W, 3)`` float in [0, 1], sRGB.
        rng: every random choice (camera and noise) comes from it; an int seeds a new one.
        config: noise levels and pipeline conventions.
        params: a camera to reuse instead of drawing one (the noise is still drawn from ``rng``).
        with_processed_clean: also return the noise-free pipeline output.

    Returns:
        :class:`CameraNoiseResult` with the noisy image and the parameters used.

    Example:
        The reference's pipeline, as its data preparation ran it for seed 0:

        >>> clean = np.full((8, 8, 3), 0.5)
        >>> result = simulate_camera_noise(clean, 0, CameraNoiseConfig.reference())
        >>> bool(np.all(np.round(result.noisy * 255) == result.noisy * 255))  # 8-bit codes
        True
    """
    config = config or CameraNoiseConfig()
    source: np.random.Generator | np.random.RandomState
    if config.draws == "reference":
        seed = int(rng) if isinstance(rng, (int, np.integer)) else int(rng.integers(2**32))
        draws = ReferenceDraws(seed)
        params = params or draws.sample_camera_params(config)
        source = draws.numpy
    else:
        source = np.random.default_rng(rng) if isinstance(rng, (int, np.integer)) else rng
        params = params or sample_camera_params(source, config)
    raw = unprocess(clean, params, config)
    noisy_raw = add_raw_noise(raw, params.sigma_s, params.sigma_c, source, form=config.noise_form)
    noisy = _output(process(noisy_raw, params, config), config)
    processed = _output(process(raw, params, config), config) if with_processed_clean else None
    return CameraNoiseResult(noisy=noisy, params=params, processed_clean=processed)


def _output(image: np.ndarray, config: CameraNoiseConfig) -> np.ndarray:
    if config.output_8bit:
        # rounded in float64 as the reference writes it: (noisy * 255).round()
        image = np.round(image * 255.0) / 255.0
    return image.astype(np.float32)


def add_camera_noise(
    clean: np.ndarray,
    *,
    sigma_s: float = 0.04,
    sigma_c: float = 0.03,
    rng: np.random.Generator,
) -> np.ndarray:
    """Realistic sRGB camera noise at a fixed raw level (the paper's default 0.04 / 0.03).

    Shorthand for ``simulate_camera_noise(clean, rng, CameraNoiseConfig(sigma_s, sigma_c))``:
    a random DoRF curve, colour matrix mix, Bayer pattern and white balance are drawn from
    ``rng`` for every call.

    Args:
        clean: ``(H, W, 3)`` float in [0, 1], sRGB.
        sigma_s: signal-dependent raw noise level.
        sigma_c: signal-independent raw noise level.
        rng: the generator every random choice is drawn from.

    Returns:
        ``(H, W, 3)`` float32 in [0, 1].

    Example:
        >>> import numpy as np
        >>> clean = np.full((8, 8, 3), 0.5, dtype=np.float32)
        >>> noisy = add_camera_noise(clean, rng=np.random.default_rng(0))
        >>> noisy.shape, noisy.dtype
        ((8, 8, 3), dtype('float32'))
    """
    config = CameraNoiseConfig(sigma_s=sigma_s, sigma_c=sigma_c)
    return simulate_camera_noise(clean, rng, config).noisy


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"the camera pipeline expects an (H, W, 3) RGB image, got shape {image.shape}"
        )
    if image.dtype.kind != "f":
        raise ValueError(
            f"the camera pipeline expects float values in [0, 1], got dtype {image.dtype} "
            "(divide 8-bit images by 255)"
        )
    image = image.astype(np.float64, copy=False)
    low, high = float(image.min(initial=0.0)), float(image.max(initial=0.0))
    if low < -_RANGE_SLACK or high > 1.0 + _RANGE_SLACK:
        raise ValueError(
            f"the camera pipeline expects values in [0, 1], got [{low:.4g}, {high:.4g}]"
        )
    # Rounding excursions (e.g. from resampling) are clipped.
    return np.clip(image, 0.0, 1.0)


# --------------------------------------------------------------------------- batched torch path
# The same pipeline on (B, 3, H, W) tensors on any device, one camera per sample, for online
# noise synthesis during training. It follows the numpy functions above step by step (tested
# equal to float32 rounding) with our conventions; the reference's nearest-bin look-ups,
# reflect borders, draws and 8-bit output are numpy-only (use simulate_camera_noise). torch is
# imported inside the functions.


def _require_torch_conventions(config: CameraNoiseConfig) -> None:
    numpy_only = {
        "curve_lookup": "interpolate",
        "demosaic_border": "mirror",
        "draws": "generator",
        "output_8bit": False,
    }
    unsupported = [
        f"{name}={getattr(config, name)!r}"
        for name, value in numpy_only.items()
        if getattr(config, name) != value
    ]
    if unsupported:
        raise ConfigError(
            f"the torch camera pipeline does not implement {', '.join(unsupported)}; "
            "use clipdenoise.isp.simulate_camera_noise (numpy) for the reference's pipeline"
        )


def unprocess_torch(
    srgb: torch.Tensor,
    params: Sequence[CameraParams],
    config: CameraNoiseConfig | None = None,
) -> torch.Tensor:
    """Batched :func:`unprocess`: ``(B, 3, H, W)`` sRGB in [0, 1] -> ``(B, 1, H, W)`` raw.

    Args:
        srgb: float tensor on any device.
        params: one camera per sample.
        config: pipeline conventions (``inverse_crf``, ``srgb_transfer``).
    """
    import torch

    config = config or CameraNoiseConfig()
    _require_torch_conventions(config)
    batch = _torch_camera_batch(srgb, params)
    if config.inverse_crf == "exact":
        irradiance = _interp_nonuniform(srgb, batch.crf, batch.grid)
    else:
        irradiance = _interp_uniform(srgb, batch.inverse_crf)
    linear = _srgb_decode_torch(irradiance) if config.srgb_transfer else irradiance
    to_camera = batch.xyz_to_camera @ batch.srgb_to_xyz  # (B, 3, 3)
    camera = torch.einsum("bij,bjhw->bihw", to_camera, linear).clamp(0.0, 1.0)
    channels = batch.channel_map(srgb.shape[-2:])  # (B, 1, H, W) int64
    raw = torch.gather(camera, 1, channels)
    return raw * torch.gather(batch.gains, 1, channels)


def process_torch(
    raw: torch.Tensor,
    params: Sequence[CameraParams],
    config: CameraNoiseConfig | None = None,
) -> torch.Tensor:
    """Batched :func:`process`: ``(B, 1, H, W)`` raw -> ``(B, 3, H, W)`` sRGB in [0, 1]
    (H, W >= 3 for the mirrored 5x5 demosaicing filters)."""
    import torch

    config = config or CameraNoiseConfig()
    _require_torch_conventions(config)
    batch = _torch_camera_batch(raw, params)
    channels = batch.channel_map(raw.shape[-2:])
    balanced = (raw / torch.gather(batch.gains, 1, channels)).clamp(0.0, 1.0)
    camera = demosaic_malvar2004_torch(balanced, channels).clamp(0.0, 1.0)
    xyz = torch.einsum("bij,bjhw->bihw", torch.linalg.inv(batch.xyz_to_camera), camera)
    if config.clip_xyz:
        xyz = xyz.clamp(0.0, 1.0)
    linear = torch.einsum("bij,bjhw->bihw", batch.xyz_to_srgb, xyz)
    if config.srgb_transfer:
        linear = _srgb_encode_torch(linear)
    return _interp_uniform(linear.clamp(0.0, 1.0), batch.crf)


def demosaic_malvar2004_torch(raw: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """Batched :func:`demosaic_malvar2004`.

    Args:
        raw: ``(B, 1, H, W)`` float mosaic (H, W >= 3).
        channels: ``(B, 1, H, W)`` integer colour of each site (0 R, 1 G, 2 B), e.g. from
            :func:`bayer_channel_map`; patterns may differ between samples.

    Returns:
        ``(B, 3, H, W)``, not clipped.
    """
    import torch
    import torch.nn.functional as F

    kernels = np.stack([_G_AT_RB, _RB_AT_G_ROW, _RB_AT_G_COLUMN, _RB_AT_BR])[:, None] / 8.0
    weight = torch.as_tensor(kernels, dtype=raw.dtype, device=raw.device)
    # torch "reflect" excludes the edge sample, i.e. scipy's "mirror": the Bayer parity holds.
    padded = F.pad(raw, (2, 2, 2, 2), mode="reflect")
    green_estimate, along_row, along_column, diagonal = F.conv2d(padded, weight).unbind(1)
    site = channels[:, 0]
    value = raw[:, 0]
    is_red, is_green, is_blue = site == 0, site == 1, site == 2
    row_has_red = is_red.any(dim=2, keepdim=True)
    green_in_red_row = is_green & row_has_red
    green_in_blue_row = is_green & ~row_has_red
    red = torch.where(
        is_red,
        value,
        torch.where(green_in_red_row, along_row, torch.where(is_blue, diagonal, along_column)),
    )
    green = torch.where(is_green, value, green_estimate)
    blue = torch.where(
        is_blue,
        value,
        torch.where(green_in_blue_row, along_row, torch.where(is_red, diagonal, along_column)),
    )
    return torch.stack([red, green, blue], dim=1)


def add_raw_noise_torch(
    raw: torch.Tensor,
    sigma_s: torch.Tensor | float,
    sigma_c: torch.Tensor | float,
    generator: torch.Generator | None,
    *,
    form: NoiseForm = "heteroscedastic",
) -> torch.Tensor:
    """Batched :func:`add_raw_noise` (clipped to [0, 1]); ``sigma_*`` floats or tensors that
    broadcast against ``raw`` (e.g. ``(B, 1, 1, 1)``)."""
    import torch

    def normal() -> torch.Tensor:
        return torch.randn(raw.shape, generator=generator, device=raw.device, dtype=raw.dtype)

    if form == "heteroscedastic":
        noisy = raw + torch.sqrt(sigma_s**2 * raw.clamp_min(0.0) + sigma_c**2) * normal()
    elif form == "reference":
        shot = normal()
        noisy = raw + shot * (sigma_s * raw) + normal() * sigma_c
    else:
        raise ConfigError(f"noise form must be 'heteroscedastic' or 'reference', got {form!r}")
    return noisy.clamp(0.0, 1.0)


def add_camera_noise_torch(
    clean: torch.Tensor,
    generator: torch.Generator | None = None,
    config: CameraNoiseConfig | None = None,
    *,
    params: Sequence[CameraParams] | None = None,
) -> tuple[torch.Tensor, list[CameraParams]]:
    """Realistic sRGB camera noise for a batch, on the batch's device.

    Each sample gets its own camera (:func:`sample_camera_params`, drawn with a numpy generator
    seeded from ``generator``) and its own noise (drawn with ``generator``, so the generator
    must live on ``clean``'s device). Same generator state -> same output.

    Args:
        clean: ``(B, 3, H, W)`` or ``(3, H, W)`` float in [0, 1], sRGB; H, W >= 3.
        generator: the source of every random choice.
        config: noise levels and pipeline conventions.
        params: cameras to use instead of drawing them (one per sample).

    Returns:
        ``(noisy, params)``: noisy of ``clean``'s shape and dtype, in [0, 1], and the cameras.
    """
    import torch

    config = config or CameraNoiseConfig()
    _require_torch_conventions(config)
    single = clean.dim() == 3
    batch = clean[None] if single else clean
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"camera noise needs (B, 3, H, W) RGB tensors, got {tuple(clean.shape)}")
    if min(batch.shape[-2:]) < 3:
        raise ValueError(f"camera noise needs images of at least 3x3, got {tuple(clean.shape)}")
    if params is None:
        seed = torch.randint(0, 2**62, (1,), generator=generator, device=batch.device)
        rng = np.random.default_rng(int(seed.item()))
        params = [sample_camera_params(rng, config) for _ in range(batch.shape[0])]
    if len(params) != batch.shape[0]:
        raise ValueError(f"{len(params)} cameras for a batch of {batch.shape[0]}")
    # Tone curves amplify rounding up to ~250x in the shadows: never compute in 16-bit floats.
    work_dtype = torch.float64 if batch.dtype == torch.float64 else torch.float32
    work = batch.clamp(0.0, 1.0).to(work_dtype)
    raw = unprocess_torch(work, params, config)
    sigma_s = torch.tensor([p.sigma_s for p in params], dtype=work.dtype, device=work.device)
    sigma_c = torch.tensor([p.sigma_c for p in params], dtype=work.dtype, device=work.device)
    noisy_raw = add_raw_noise_torch(
        raw,
        sigma_s.view(-1, 1, 1, 1),
        sigma_c.view(-1, 1, 1, 1),
        generator,
        form=config.noise_form,
    )
    noisy = process_torch(noisy_raw, params, config).to(clean.dtype)
    return (noisy[0] if single else noisy), list(params)


@dataclass(frozen=True)
class _TorchCameraBatch:
    """Per-sample camera tables as tensors on one device and dtype."""

    grid: torch.Tensor  # (1024,)
    crf: torch.Tensor  # (B, 1024)
    inverse_crf: torch.Tensor  # (B, 1024)
    xyz_to_camera: torch.Tensor  # (B, 3, 3)
    srgb_to_xyz: torch.Tensor  # (B, 3, 3)
    xyz_to_srgb: torch.Tensor  # (B, 3, 3)
    gains: torch.Tensor  # (B, 3, 1, 1) -> gathered per site
    patterns: tuple[str, ...]

    def channel_map(self, shape: Sequence[int]) -> torch.Tensor:
        import torch

        height, width = int(shape[0]), int(shape[1])
        maps = np.stack([bayer_channel_map((height, width), p) for p in self.patterns])
        return torch.as_tensor(maps[:, None], dtype=torch.int64, device=self.crf.device)


def _torch_camera_batch(like: torch.Tensor, params: Sequence[CameraParams]) -> _TorchCameraBatch:
    import torch

    curves = load_camera_response_curves()
    indices = [p.crf_index for p in params]
    count = len(params)
    height, width = like.shape[-2:]

    def tensor(array: np.ndarray) -> torch.Tensor:
        # np.array copies: the cached curves are read-only, which torch warns about.
        return torch.as_tensor(np.array(array), dtype=like.dtype, device=like.device)

    gains = np.array([[p.red_gain, 1.0, p.blue_gain] for p in params])
    return _TorchCameraBatch(
        grid=tensor(curves.grid),
        crf=tensor(curves.crf[indices]),
        inverse_crf=tensor(curves.inverse_crf[indices]),
        xyz_to_camera=tensor(np.stack([p.xyz_to_camera for p in params])),
        srgb_to_xyz=tensor(np.broadcast_to(SRGB_TO_XYZ, (count, 3, 3))),
        xyz_to_srgb=tensor(np.broadcast_to(XYZ_TO_SRGB, (count, 3, 3))),
        gains=tensor(gains[:, :, None, None]).expand(count, 3, height, width),
        patterns=tuple(p.bayer_pattern for p in params),
    )


def _interp_uniform(values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Per-sample linear interpolation of ``table[b]`` (samples on a uniform [0, 1] grid)."""
    import torch

    bins = table.shape[1] - 1
    flat = values.reshape(values.shape[0], -1).clamp(0.0, 1.0) * bins
    left = flat.floor().clamp(0, bins - 1)
    fraction = flat - left
    left = left.long()
    low = torch.gather(table, 1, left)
    high = torch.gather(table, 1, left + 1)
    return (low + fraction * (high - low)).reshape(values.shape)


def _interp_nonuniform(values: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Per-sample ``np.interp(values[b], xp[b], fp)`` for non-decreasing ``xp[b]`` from 0 to 1."""
    import torch

    flat = values.reshape(values.shape[0], -1).clamp(0.0, 1.0).contiguous()
    right = torch.searchsorted(xp.contiguous(), flat, right=True).clamp(1, xp.shape[1] - 1)
    left = right - 1
    x0, x1 = torch.gather(xp, 1, left), torch.gather(xp, 1, right)
    y0, y1 = fp[left], fp[right]
    span = x1 - x0
    fraction = torch.where(span > 0, (flat - x0) / torch.where(span > 0, span, 1.0), 0.0)
    return (y0 + fraction.clamp(0.0, 1.0) * (y1 - y0)).reshape(values.shape)


def _srgb_decode_torch(encoded: torch.Tensor) -> torch.Tensor:
    import torch

    high = ((encoded.clamp_min(0.0) + 0.055) / 1.055) ** 2.4
    return torch.where(encoded > 0.04045, high, encoded / 12.92)


def _srgb_encode_torch(linear: torch.Tensor) -> torch.Tensor:
    import torch

    high = 1.055 * linear.clamp_min(0.0) ** (1.0 / 2.4) - 0.055
    return torch.where(linear > 0.0031308, high, linear * 12.92)
