"""Noise models of the paper (Sec. 4.1) as seeded value objects.

A :class:`NoiseSpec` is a kind plus a level in the paper's units, e.g. ``gaussian:15`` (σ on the
[0, 255] scale), ``poisson:3.5`` (α) or ``poisson_gaussian:0.04,0.03`` (σ_s, σ_c). It can be
applied two ways:

* :func:`add_noise` / :meth:`NoiseSpec.apply` — the training path: torch, ``(C, H, W)`` or
  ``(B, C, H, W)`` float images in [0, 1], any device, an explicit ``torch.Generator``; every
  sample of a batch gets independent noise.
* :func:`add_reference_noise` — the test protocol of the reference code
  (``Denoising/test_synthetic_denoising.py`` of alwaysuu/CLIPDenoising): numpy's legacy
  generator re-seeded with ``seed`` (0) before each image and float64 arithmetic, so that the
  benchmark noisy images are reproduced bit for bit.

The kinds (registry :data:`NOISE_KINDS`; aliases in parentheses). ``x`` is the clean image in
[0, 1]; levels of the two Gaussian kinds are on the [0, 255] scale, the others on [0, 1], as in
MaskDenoising and the paper (Sec. 4.1).

``gaussian`` (``gauss``, ``awgn``) — level σ on [0, 255]; paper: train 15, test 15/25/50.
    ``y = x + n``, ``n ~ N(0, (σ/255)²)`` i.i.d. per pixel and channel (random: ``n``).
    Not clipped (the reference's test images are not; neither are its training inputs).

``spatial_gaussian`` (``spatial_gauss``) — level σ on [0, 255]; paper: 40/45/50/55.
    ``y = x + k * n``, ``n ~ N(0, (σ/255)²)`` i.i.d. per channel, ``k`` the 3×3 mean filter
    (borders reflected as ``scipy.ndimage.convolve`` does, i.e. the edge sample repeated); the
    noise std becomes σ/3 and neighbours are 6/9 correlated (random: ``n``). Not clipped.

``poisson`` — level α (scale); paper: 2/2.5/3/3.5. The reference's ``add_poisson_noise``:
    ``x̂ = round(255 x) / 255``, ``v = 2^ceil(log2(#distinct values of x̂ in the image))``,
    ``y = clip(x + α (P(x̂ v) / v − x̂), 0, 1)`` with ``P`` Poisson draws per pixel and channel
    (random: ``P``; the count ``v`` is per image, per sample of a batch).

``speckle`` — level σ² (variance); paper: 0.02/0.03/0.04. MATLAB ``imnoise(I, 'speckle', v)``:
    ``y = clip(x + x u, 0, 1)``, ``u = √(12 σ²) (U − 0.5)``, ``U ~ U[0, 1)`` i.i.d. (random: ``U``),
    so ``u`` has mean 0 and variance σ².

``salt_pepper`` (``sp``, ``s&p``) — level d (density); paper: 0.012/0.016/0.02. MATLAB
    ``imnoise(I, 'salt & pepper', d)``: one ``U ~ U[0, 1)`` per pixel *and channel*; the value
    becomes 0 where ``U < d/2``, 1 where ``d/2 ≤ U < d``, else stays (random: ``U``). In [0, 1].

``poisson_gaussian`` (``pg``) — levels σ_s, σ_c on [0, 1]; e.g. 0.04, 0.03 (the paper's raw
    level). Heteroscedastic Gaussian in CBDNet's form: ``y = x + n``,
    ``n ~ N(0, σ_s² x + σ_c²)`` per pixel and channel (random: ``n``). Not clipped.

``srgb_camera`` (``srgb``, ``camera``) — levels σ_s, σ_c of the raw noise (default 0.04, 0.03).
    The CBDNet camera pipeline of :func:`clipdenoise.isp.add_camera_noise`: sRGB → inverse
    camera response → raw Bayer mosaic → Poisson–Gaussian noise → demosaic → sRGB (random: the
    camera response curve, colour matrix, Bayer pattern, white balance and the raw noise).
    In [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clipdenoise.errors import NoiseSpecError
from clipdenoise.isp import add_camera_noise

if TYPE_CHECKING:
    import torch

Level = float | tuple[float, float]

# The reference test protocol names kinds ``gauss`` / ``spatial_gauss`` / ``poisson``.
_ALIASES: dict[str, str] = {
    "gauss": "gaussian",
    "awgn": "gaussian",
    "spatial_gauss": "spatial_gaussian",
    "spatially_correlated_gaussian": "spatial_gaussian",
    "correlated_gaussian": "spatial_gaussian",
    "sp": "salt_pepper",
    "s&p": "salt_pepper",
    "salt_and_pepper": "salt_pepper",
    "saltpepper": "salt_pepper",
    "impulse": "salt_pepper",
    "pg": "poisson_gaussian",
    "heteroscedastic_gaussian": "poisson_gaussian",
    "srgb": "srgb_camera",
    "camera": "srgb_camera",
    "isp": "srgb_camera",
}


@dataclass(frozen=True)
class NoiseKind:
    """What the registry knows about one kind of noise.

    Attributes:
        name: canonical name used in specs (``gaussian``).
        level_names: names of the level parameters, one or two (``("sigma_255",)``).
        units: human-readable units of the level.
        paper_levels: the levels the paper / reference protocol evaluates.
        valid_range: inclusive bounds each level parameter must lie in.
        default_level: level used when a spec names the kind alone (``srgb_camera``), or None.
        clipped: whether the noisy image is clipped to [0, 1].
        summary: one line, shown in error messages and ``--help`` texts.
    """

    name: str
    level_names: tuple[str, ...]
    units: str
    paper_levels: tuple[Level, ...]
    valid_range: tuple[float, float]
    default_level: Level | None
    clipped: bool
    summary: str
    apply_torch: Callable[..., Any] = field(repr=False, compare=False, default=None)
    apply_reference: Callable[..., Any] = field(repr=False, compare=False, default=None)

    @property
    def num_levels(self) -> int:
        return len(self.level_names)

    def describe(self) -> str:
        """``name: level units (paper levels ...)`` — one line for help and error texts."""
        levels = ", ".join(_format_level(level) for level in self.paper_levels)
        return f"{self.name}:<{','.join(self.level_names)}> ({self.units}; paper levels {levels})"


NOISE_KINDS: dict[str, NoiseKind] = {}


def _register(kind: NoiseKind) -> NoiseKind:
    NOISE_KINDS[kind.name] = kind
    return kind


# --------------------------------------------------------------------------------------------
# The spec value object and its parser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class NoiseSpec:
    """A kind of noise and its level in the paper's units; immutable, hashable, printable.

    ``str(spec)`` gives the text form (``"gaussian:15"``, ``"poisson_gaussian:0.04,0.03"``) that
    :func:`parse_noise_spec` reads back to an equal spec. Aliases (``gauss``, ``sp``, ...) are
    normalised to the canonical name and levels to ``float`` (a ``tuple`` of two floats for the
    two-parameter kinds).

    A level range (blind training, e.g. Gaussian σ ∈ [0, 55] or CBDNet's σ_s ∈ [0, 0.16]) is
    written ``low..high`` (``"gaussian:0..55"``, ``"poisson_gaussian:0..0.16,0..0.06"``) or given
    as ``level_max``: every image (every sample of a batch) then gets its own level drawn
    uniformly from ``[level, level_max]`` by the same generator as the noise.

    Args:
        kind: a name or alias from :data:`NOISE_KINDS`.
        level: one number, or two for ``poisson_gaussian`` / ``srgb_camera`` (σ_s, σ_c). May be
            omitted only for kinds with a default level (``srgb_camera``: the paper's 0.04, 0.03).
        level_max: upper end of a random level range, same form as ``level``; None (default)
            means the fixed ``level``.

    Raises:
        NoiseSpecError: unknown kind, wrong number of level parameters, or a level outside the
            kind's valid range; the message lists the valid kinds or levels.

    Example:
        >>> spec = NoiseSpec("gauss", 25)
        >>> spec
        NoiseSpec(kind='gaussian', level=25.0)
        >>> str(spec)
        'gaussian:25'
    """

    kind: str
    level: Level | None = None
    level_max: Level | None = None

    def __post_init__(self) -> None:
        info = noise_kind(self.kind)
        object.__setattr__(self, "kind", info.name)
        level = _validate_level(info, self.level)
        object.__setattr__(self, "level", level)
        if self.level_max is None:
            return
        level_max = _validate_level(info, self.level_max)
        lows = level if isinstance(level, tuple) else (level,)
        highs = level_max if isinstance(level_max, tuple) else (level_max,)
        if any(high < low for low, high in zip(lows, highs)):
            raise NoiseSpecError(
                f"noise level range of {info.name!r} is empty: upper end "
                f"{_format_level(level_max)} is below {_format_level(level)}"
            )
        object.__setattr__(self, "level_max", None if highs == lows else level_max)

    def __repr__(self) -> str:
        extra = "" if self.level_max is None else f", level_max={self.level_max!r}"
        return f"NoiseSpec(kind={self.kind!r}, level={self.level!r}{extra})"

    @property
    def is_random_level(self) -> bool:
        """Whether each image draws its level from ``[level, level_max]``."""
        return self.level_max is not None

    @property
    def levels_max(self) -> tuple[float, ...]:
        """The upper ends of the level range (equal to :attr:`levels` for a fixed level)."""
        if self.level_max is None:
            return self.levels
        return self.level_max if isinstance(self.level_max, tuple) else (self.level_max,)

    @property
    def info(self) -> NoiseKind:
        """The registry entry of this kind."""
        return NOISE_KINDS[self.kind]

    @property
    def levels(self) -> tuple[float, ...]:
        """The level parameters as a tuple (one or two floats)."""
        return self.level if isinstance(self.level, tuple) else (self.level,)

    @property
    def clipped(self) -> bool:
        """Whether the noisy image is clipped to [0, 1]."""
        return self.info.clipped

    def __str__(self) -> str:
        if self.level_max is None:
            return f"{self.kind}:{_format_level(self.level)}"
        parts = [
            _format_number(low) if low == high else f"{_format_number(low)}..{_format_number(high)}"
            for low, high in zip(self.levels, self.levels_max)
        ]
        return f"{self.kind}:{','.join(parts)}"

    def apply(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Same as :func:`add_noise` ``(clean, self, generator)``."""
        return add_noise(clean, self, generator)

    def apply_reference(self, clean: np.ndarray, seed: int = 0) -> np.ndarray:
        """Same as :func:`add_reference_noise` ``(clean, self, seed)``."""
        return add_reference_noise(clean, self, seed)


def parse_noise_spec(text: str | NoiseSpec) -> NoiseSpec:
    """Parse ``"kind:level"`` (``"gaussian:15"``, ``"poisson_gaussian:0.04,0.03"``).

    Kind names are case-insensitive, ``-`` and spaces count as ``_`` and aliases are accepted
    (``gauss:25``, ``sp:0.02``). A :class:`NoiseSpec` is returned unchanged.

    Raises:
        NoiseSpecError: malformed text, unknown kind (the message lists the valid kinds) or bad
            level (the message lists the kind's valid range and the paper's levels).

    Example:
        >>> parse_noise_spec("poisson:3.5")
        NoiseSpec(kind='poisson', level=3.5)
    """
    if isinstance(text, NoiseSpec):
        return text
    if not isinstance(text, str):
        raise NoiseSpecError(f"noise spec must be a string like 'gaussian:15', got {text!r}")
    kind_text, sep, level_text = text.strip().partition(":")
    info = noise_kind(kind_text)
    if not sep or not level_text.strip():
        if info.default_level is not None:
            return NoiseSpec(info.name, info.default_level)
        raise NoiseSpecError(
            f"noise spec {text!r} has no level; expected {info.describe()}, e.g. "
            f"'{info.name}:{_format_level(info.paper_levels[0])}'"
        )
    lows: list[float] = []
    highs: list[float] = []
    try:
        for part in level_text.split(","):
            low, dots, high = part.strip().partition("..")
            lows.append(float(low))
            highs.append(float(high) if dots else float(low))
    except ValueError:
        raise NoiseSpecError(
            f"noise spec {text!r}: level {level_text!r} is not a number or range (low..high); "
            f"expected {info.describe()}"
        ) from None

    def pack(values: list[float]) -> Level:
        return values[0] if len(values) == 1 else tuple(values)

    return NoiseSpec(info.name, pack(lows), None if lows == highs else pack(highs))


@dataclass(frozen=True)
class NoiseMixture:
    """Several noise specs, one drawn per image: blind training over kinds as well as levels.

    Written as specs joined by ``+`` (``"gaussian:0..55 + poisson:1..4"``); every image (every
    sample of a batch) gets one of the specs, chosen uniformly by the same generator as the
    noise, so the draw is reproducible from the generator's seed.
    """

    specs: tuple[NoiseSpec, ...]

    def __post_init__(self) -> None:
        if len(self.specs) < 2:
            raise NoiseSpecError("a noise mixture needs at least two specs joined by '+'")

    def __str__(self) -> str:
        return " + ".join(str(spec) for spec in self.specs)

    @property
    def clipped(self) -> bool:
        """Whether every noisy image is clipped to [0, 1]."""
        return all(spec.clipped for spec in self.specs)

    def apply(self, clean: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise each image of ``clean`` (``(C, H, W)`` or ``(B, C, H, W)``) with a drawn spec."""
        import torch

        batch = clean if clean.dim() == 4 else clean.unsqueeze(0)
        choice = torch.randint(
            len(self.specs), (batch.shape[0],), generator=generator, device=batch.device
        )
        noisy = torch.empty_like(batch)
        for index, spec in enumerate(self.specs):
            chosen = (choice == index).nonzero().flatten()
            if chosen.numel():
                noisy[chosen] = add_noise(batch[chosen], spec, generator)
        return noisy if clean.dim() == 4 else noisy.squeeze(0)


def parse_noise(text: str | NoiseSpec | NoiseMixture) -> NoiseSpec | NoiseMixture:
    """A :class:`NoiseSpec`, or a :class:`NoiseMixture` for specs joined by ``+``."""
    if isinstance(text, (NoiseSpec, NoiseMixture)):
        return text
    if isinstance(text, str) and "+" in text:
        return NoiseMixture(tuple(parse_noise_spec(part) for part in text.split("+")))
    return parse_noise_spec(text)


def _normalise_name(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def noise_kind(name: str) -> NoiseKind:
    """The registered :class:`NoiseKind` for a kind name or alias (``gauss``, ``sp``...).

    Raises:
        NoiseSpecError: unknown kind; the message lists the valid kinds with their levels.
    """
    if not isinstance(name, str):
        raise NoiseSpecError(f"noise kind must be a string, got {name!r}")
    key = _ALIASES.get(_normalise_name(name), _normalise_name(name))
    if key not in NOISE_KINDS:
        valid = "; ".join(kind.describe() for kind in NOISE_KINDS.values())
        raise NoiseSpecError(f"unknown noise kind {name!r}; valid kinds: {valid}")
    return NOISE_KINDS[key]


def _validate_level(info: NoiseKind, level: Any) -> Level:
    if level is None:
        if info.default_level is None:
            raise NoiseSpecError(f"noise kind {info.name!r} needs a level: {info.describe()}")
        level = info.default_level
    values = tuple(level) if isinstance(level, (tuple, list)) else (level,)
    if len(values) != info.num_levels:
        raise NoiseSpecError(
            f"noise kind {info.name!r} takes {info.num_levels} level parameter(s) "
            f"({', '.join(info.level_names)}), got {len(values)}: {info.describe()}"
        )
    low, high = info.valid_range
    checked = []
    for name, value in zip(info.level_names, values):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NoiseSpecError(
                f"noise level {name}={value!r} of {info.name!r} is not a number: {info.describe()}"
            ) from None
        if not math.isfinite(number) or not low <= number <= high:
            raise NoiseSpecError(
                f"noise level {name}={value!r} of {info.name!r} is outside [{low:g}, {high:g}]: "
                f"{info.describe()}"
            )
        checked.append(number)
    return checked[0] if len(checked) == 1 else tuple(checked)


def _format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _format_level(level: Level | None) -> str:
    if isinstance(level, tuple):
        return ",".join(_format_number(value) for value in level)
    return _format_number(level)


# --------------------------------------------------------------------------------------------
# Training path (torch)
# --------------------------------------------------------------------------------------------


def add_noise(
    clean: torch.Tensor, spec: NoiseSpec | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add noise of ``spec`` to a clean image or batch (training path).

    Args:
        clean: ``(C, H, W)`` or ``(B, C, H, W)`` float tensor in [0, 1] on any device. Each
            sample of a batch receives independent noise (for ``poisson`` the number of grey
            levels is also counted per sample, as the reference counts it per image).
        spec: a :class:`NoiseSpec` or its text form.
        generator: a ``torch.Generator`` on ``clean``'s device; ``None`` uses torch's global
            generator (not reproducible across processes — pass one).

    Returns:
        The noisy tensor, same shape, device and dtype as ``clean``. Computation happens in
        float32 (float64 for float64 input); half / bfloat16 inputs are cast back at the end.
        Clipped to [0, 1] only for the kinds whose table entry says so (module docstring).

    Raises:
        NoiseSpecError: a bad spec.
        ValueError: ``clean`` is not a 3-D / 4-D floating tensor.
    """
    import torch

    spec = parse_noise_spec(spec)
    if not isinstance(clean, torch.Tensor) or clean.dim() not in (3, 4):
        raise ValueError(
            f"add_noise expects a (C, H, W) or (B, C, H, W) tensor, got "
            f"{getattr(clean, 'shape', type(clean).__name__)}"
        )
    if not clean.is_floating_point():
        raise ValueError(f"add_noise expects a float tensor in [0, 1], got dtype {clean.dtype}")
    if generator is not None and generator.device.type != clean.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the image on {clean.device}; "
            "create it with torch.Generator(device=clean.device)"
        )
    batch = clean if clean.dim() == 4 else clean.unsqueeze(0)
    work_dtype = torch.float64 if batch.dtype == torch.float64 else torch.float32
    work = batch.to(work_dtype)
    noisy = spec.info.apply_torch(work, _torch_levels(spec, work, generator), generator)
    noisy = noisy.to(clean.dtype)
    return noisy if clean.dim() == 4 else noisy.squeeze(0)


def _torch_levels(spec: NoiseSpec, batch: torch.Tensor, generator) -> tuple[Any, ...]:
    """Level parameters: floats for a fixed level, ``(B, 1, 1, 1)`` tensors for a range."""
    import torch

    if not spec.is_random_level:
        return spec.levels
    fractions = torch.rand(
        (len(spec.levels), batch.shape[0], 1, 1, 1),
        generator=generator,
        device=batch.device,
        dtype=batch.dtype,
    )
    return tuple(
        low + fraction * (high - low)
        for low, high, fraction in zip(spec.levels, spec.levels_max, fractions)
    )


def _randn(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _rand(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    import torch

    return torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)


# Kind implementations take the level parameters as floats or per-sample (B, 1, 1, 1) tensors.


def _gaussian_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    (sigma_255,) = levels
    return clean + _randn(clean, generator) * (sigma_255 / 255.0)


def _box_filter_3x3(noise: torch.Tensor) -> torch.Tensor:
    """Mean of each 3×3 neighbourhood, per channel, borders as ``scipy.ndimage`` 'reflect'.

    scipy's 'reflect' repeats the edge sample (d c b a | a b c d); for a one-pixel pad that is
    exactly torch's 'replicate' padding. ``avg_pool2d`` is ~3× faster than a grouped conv here.
    """
    import torch.nn.functional as F

    padded = F.pad(noise, (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(padded, kernel_size=3, stride=1)


def _spatial_gaussian_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    (sigma_255,) = levels
    noise = _randn(clean, generator) * (sigma_255 / 255.0)
    return clean + _box_filter_3x3(noise)


def _poisson_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    import torch

    (alpha,) = levels
    batch = clean.shape[0]
    codes = torch.clamp(torch.round(clean * 255.0), 0, 255)
    quantised = codes / 255.0
    # 2^ceil(log2(#distinct 8-bit values)) per image, as the reference counts np.unique per image.
    present = torch.zeros(batch, 256, dtype=torch.bool, device=clean.device)
    present.scatter_(1, codes.reshape(batch, -1).long(), True)
    distinct = present.sum(dim=1).clamp(min=1).to(clean.dtype)
    vals = torch.exp2(torch.ceil(torch.log2(distinct))).view(batch, 1, 1, 1)
    counts = torch.poisson(quantised * vals, generator=generator)
    noise = (counts / vals - quantised) * alpha
    return torch.clamp(clean + noise, 0.0, 1.0)


def _speckle_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    import torch

    (variance,) = levels
    uniform = (_rand(clean, generator) - 0.5) * (12.0 * variance) ** 0.5
    return torch.clamp(clean + clean * uniform, 0.0, 1.0)


def _salt_pepper_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    import torch

    (density,) = levels
    draw = _rand(clean, generator)
    noisy = torch.where(draw < density / 2, torch.zeros_like(clean), clean)
    noisy = torch.where((draw >= density / 2) & (draw < density), torch.ones_like(clean), noisy)
    return torch.clamp(noisy, 0.0, 1.0)


def _poisson_gaussian_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    import torch

    sigma_s, sigma_c = levels
    std = torch.sqrt(sigma_s**2 * clean.clamp(min=0.0) + sigma_c**2)
    return clean + _randn(clean, generator) * std


def _srgb_camera_torch(clean: torch.Tensor, levels, generator) -> torch.Tensor:
    import torch

    if clean.shape[1] != 3:
        raise ValueError(f"srgb_camera noise needs RGB images (3 channels), got {clean.shape[1]}")
    # The camera pipeline is numpy; one 63-bit seed per sample is drawn from the torch generator
    # so that the result still depends only on that generator.
    device = generator.device if generator is not None else torch.device("cpu")
    seeds = torch.randint(0, 2**62, (clean.shape[0],), generator=generator, device=device)
    images = clean.detach().permute(0, 2, 3, 1).cpu().numpy()
    per_sample = [
        [level if isinstance(level, float) else float(level[index]) for level in levels]
        for index in range(clean.shape[0])
    ]
    noisy = [
        _camera_noise(image, sample_levels, np.random.default_rng(int(seed)))
        for image, sample_levels, seed in zip(images, per_sample, seeds.tolist())
    ]
    stacked = torch.from_numpy(np.stack(noisy)).permute(0, 3, 1, 2)
    return stacked.to(device=clean.device, dtype=clean.dtype)


def _camera_noise(image: np.ndarray, levels, rng: np.random.Generator) -> np.ndarray:
    sigma_s, sigma_c = levels
    noisy = add_camera_noise(np.clip(image, 0.0, 1.0), sigma_s=sigma_s, sigma_c=sigma_c, rng=rng)
    return np.asarray(noisy, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Reference test protocol (numpy legacy generator, float64)
# --------------------------------------------------------------------------------------------


def add_reference_noise(clean: np.ndarray, spec: NoiseSpec | str, seed: int = 0) -> np.ndarray:
    """Add noise exactly as the reference test protocol does (bit-exact for gauss,
    spatial_gauss and poisson against the reference's outputs).

    The reference calls ``np.random.seed(0)`` before every test image and draws from numpy's
    legacy generator; a private ``np.random.RandomState(seed)`` produces the identical stream
    without touching numpy's global state. The arithmetic follows the reference's dtypes: the
    clean image is used in the dtype given (the reference loads float32 = uint8 / 255), noise is
    float64, Poisson noise goes through float32 as in the reference's ``add_poisson_noise``.

    Speckle and salt & pepper follow MATLAB ``imnoise`` semantics as MaskDenoising uses them
    (one uniform draw per element, from the same legacy generator); MATLAB's own random stream
    cannot be reproduced, so those match the reference statistically, not bit for bit.
    ``srgb_camera`` uses ``np.random.default_rng(seed)``.

    Args:
        clean: ``(H, W, C)`` (or ``(H, W)``) float array in [0, 1]; float32 for parity.
        spec: a :class:`NoiseSpec` or its text form.
        seed: the protocol re-seeds with 0 before each image.

    Returns:
        The noisy image, float64, same shape; unclipped for the Gaussian kinds (reference).

    Raises:
        NoiseSpecError: a bad spec.
        ValueError: ``clean`` is not a float array of 2 or 3 dimensions.
    """
    spec = parse_noise_spec(spec)
    clean = np.asarray(clean)
    if clean.ndim not in (2, 3) or not np.issubdtype(clean.dtype, np.floating):
        raise ValueError(
            "add_reference_noise expects an (H, W, C) float array in [0, 1], got "
            f"shape {clean.shape} dtype {clean.dtype}"
        )
    generator = np.random.RandomState(seed)
    levels = spec.levels
    if spec.is_random_level:  # drawn before the noise; fixed levels keep the reference stream
        levels = tuple(
            float(generator.uniform(low, high)) for low, high in zip(spec.levels, spec.levels_max)
        )
    noisy = spec.info.apply_reference(clean, levels, generator)
    return np.asarray(noisy, dtype=np.float64)


def _gaussian_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    (sigma_255,) = levels
    return clean + rs.normal(0, sigma_255 / 255.0, clean.shape)


def _spatial_gaussian_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    from scipy.ndimage import convolve

    (sigma_255,) = levels
    noise = rs.normal(0, sigma_255 / 255.0, clean.shape)
    kernel = np.ones((3, 3)) / 9.0
    if noise.ndim == 2:
        return clean + convolve(noise, kernel)
    for channel in range(noise.shape[-1]):
        noise[..., channel] = convolve(noise[..., channel], kernel)
    return clean + noise


def _poisson_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    # Dtypes follow the reference's add_poisson_noise step by step (float32 image, float64
    # counts cast back to float32); they matter for bit-exactness.
    quantised = np.clip((clean * 255.0).round(), 0, 255) / 255.0
    vals = 2 ** np.ceil(np.log2(len(np.unique(quantised))))
    lam = quantised * vals
    counts = np.float32(rs.poisson(lam) / float(vals))
    noise = (counts - quantised) * levels[0]
    return np.clip(clean + noise, 0, 1)


def _speckle_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    # MATLAB imnoise(I, 'speckle', v): J = I + sqrt(12 v) * I .* (rand(size(I)) - 0.5), clipped.
    uniform = rs.random_sample(clean.shape)
    return np.clip(clean + math.sqrt(12.0 * levels[0]) * clean * (uniform - 0.5), 0, 1)


def _salt_pepper_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    # MATLAB imnoise(I, 'salt & pepper', d): x = rand; J(x < d/2) = 0; J(d/2 <= x < d) = 1.
    (density,) = levels
    draw = rs.random_sample(clean.shape)
    noisy = np.array(clean, dtype=np.float64)
    noisy[draw < density / 2] = 0.0
    noisy[(draw >= density / 2) & (draw < density)] = 1.0
    return noisy


def _poisson_gaussian_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    sigma_s, sigma_c = levels
    std = np.sqrt(sigma_s**2 * np.clip(clean, 0, None) + sigma_c**2)
    return clean + rs.standard_normal(clean.shape) * std


def _srgb_camera_reference(clean: np.ndarray, levels, rs: np.random.RandomState):
    # ``rs`` was seeded with the protocol seed; derive the camera generator from its first draw
    # so that the result depends only on ``seed``.
    seed = int(rs.randint(0, 2**31 - 1))
    if clean.ndim != 3 or clean.shape[-1] != 3:
        raise ValueError(f"srgb_camera noise needs an (H, W, 3) image, got {clean.shape}")
    return _camera_noise(clean, levels, np.random.default_rng(seed))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_INF = float("inf")

_register(
    NoiseKind(
        name="gaussian",
        level_names=("sigma_255",),
        units="standard deviation on the [0, 255] scale",
        paper_levels=(15.0, 25.0, 50.0),
        valid_range=(0.0, _INF),
        default_level=None,
        clipped=False,
        summary="i.i.d. Gaussian x + N(0, (σ/255)²), not clipped (train σ=15)",
        apply_torch=_gaussian_torch,
        apply_reference=_gaussian_reference,
    )
)
_register(
    NoiseKind(
        name="spatial_gaussian",
        level_names=("sigma_255",),
        units="standard deviation on the [0, 255] scale before the 3×3 box filter",
        paper_levels=(40.0, 45.0, 50.0, 55.0),
        valid_range=(0.0, _INF),
        default_level=None,
        clipped=False,
        summary="Gaussian N(0, (σ/255)²) per channel blurred by a 3×3 mean filter, not clipped",
        apply_torch=_spatial_gaussian_torch,
        apply_reference=_spatial_gaussian_reference,
    )
)
_register(
    NoiseKind(
        name="poisson",
        level_names=("alpha",),
        units="noise scale α",
        paper_levels=(2.0, 2.5, 3.0, 3.5),
        valid_range=(0.0, _INF),
        default_level=None,
        clipped=True,
        summary="reference Poisson: α·(Poisson(x̂·v)/v − x̂), v = 2^ceil(log2 #levels), clipped",
        apply_torch=_poisson_torch,
        apply_reference=_poisson_reference,
    )
)
_register(
    NoiseKind(
        name="speckle",
        level_names=("variance",),
        units="variance σ² of the multiplicative uniform noise",
        paper_levels=(0.02, 0.03, 0.04),
        valid_range=(0.0, _INF),
        default_level=None,
        clipped=True,
        summary="MATLAB imnoise speckle: x + x·u, u uniform, mean 0, variance σ², clipped",
        apply_torch=_speckle_torch,
        apply_reference=_speckle_reference,
    )
)
_register(
    NoiseKind(
        name="salt_pepper",
        level_names=("density",),
        units="fraction d of corrupted values",
        paper_levels=(0.012, 0.016, 0.02),
        valid_range=(0.0, 1.0),
        default_level=None,
        clipped=True,
        summary="MATLAB imnoise salt & pepper: each value 0 w.p. d/2, 1 w.p. d/2",
        apply_torch=_salt_pepper_torch,
        apply_reference=_salt_pepper_reference,
    )
)
_register(
    NoiseKind(
        name="poisson_gaussian",
        level_names=("sigma_s", "sigma_c"),
        units="σ_s, σ_c on the [0, 1] scale; variance σ_s²·x + σ_c²",
        paper_levels=((0.04, 0.03),),
        valid_range=(0.0, _INF),
        default_level=None,
        clipped=False,
        summary="heteroscedastic Gaussian (CBDNet): variance σ_s²·x + σ_c², not clipped",
        apply_torch=_poisson_gaussian_torch,
        apply_reference=_poisson_gaussian_reference,
    )
)
_register(
    NoiseKind(
        name="srgb_camera",
        level_names=("sigma_s", "sigma_c"),
        units="raw-domain σ_s, σ_c on the [0, 1] scale",
        paper_levels=((0.04, 0.03),),
        valid_range=(0.0, _INF),
        default_level=(0.04, 0.03),
        clipped=True,
        summary="realistic sRGB noise through the CBDNet camera pipeline (clipdenoise.isp)",
        apply_torch=_srgb_camera_torch,
        apply_reference=_srgb_camera_reference,
    )
)
