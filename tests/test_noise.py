"""Noise models: reference-protocol parity, empirical statistics, seeding, the spec parser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipdenoise.errors import ClipDenoiseError, ConfigError, NoiseSpecError
from clipdenoise.noise import (
    NOISE_KINDS,
    NoiseSpec,
    _box_filter_3x3,
    add_noise,
    add_reference_noise,
    parse_noise_spec,
)
from conftest import fixture_files

PROTOCOL_LEVELS = {
    "gauss": (15, 25, 50),
    "spatial_gauss": (40, 45, 50, 55),
    "poisson": (2, 2.5, 3, 3.5),
}
SPEC_PER_KIND = {
    "gaussian": "gaussian:25",
    "spatial_gaussian": "spatial_gaussian:50",
    "poisson": "poisson:3",
    "speckle": "speckle:0.04",
    "salt_pepper": "salt_pepper:0.02",
    "poisson_gaussian": "poisson_gaussian:0.04,0.03",
    "srgb_camera": "srgb_camera:0.04,0.03",
}
TORCH_KINDS = [kind for kind in SPEC_PER_KIND if kind != "srgb_camera"]


def _has_camera_pipeline() -> bool:
    try:
        from clipdenoise.isp import add_camera_noise  # noqa: F401
    except ImportError:
        return False
    return True


def _kinds_available() -> list[str]:
    return TORCH_KINDS + (["srgb_camera"] if _has_camera_pipeline() else [])


def _constant(value: float, shape=(4, 3, 128, 128), dtype=torch.float64) -> torch.Tensor:
    return torch.full(shape, value, dtype=dtype)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- reference protocol parity


def test_the_fixture_folder_holds_every_protocol_case():
    (path,) = [p for p in fixture_files("*_test_noise.npz") if p.name == "official_test_noise.npz"]
    keys = set(np.load(path).files)
    expected = {
        f"noisy_{index}_{kind}_{level}"
        for index in (0, 1)
        for kind, levels in PROTOCOL_LEVELS.items()
        for level in levels
    }
    assert expected <= keys


@pytest.mark.parametrize("path", fixture_files("*_test_noise.npz"), ids=lambda path: path.name)
def test_reference_protocol_is_bit_exact(path):
    """Every noisy image of every protocol fixture (``noisy_<index>_<kind>_<level>``)."""
    protocol = np.load(path)
    cases = [key for key in protocol.files if key.startswith("noisy_")]
    assert cases, f"{path.name} holds no noisy_* arrays"
    for key in cases:
        index, case = key[len("noisy_") :].split("_", 1)
        kind, level = case.rsplit("_", 1)
        clean = protocol[f"clean_{index}"]
        noisy = add_reference_noise(clean, f"{kind}:{level}", seed=0)
        assert noisy.dtype == np.float64 and noisy.shape == clean.shape, key
        np.testing.assert_array_equal(noisy, protocol[key].astype(np.float64), err_msg=key)


def test_reference_noise_leaves_global_numpy_state_alone():
    np.random.seed(123)
    expected = np.random.random_sample(5)
    np.random.seed(123)
    add_reference_noise(np.full((8, 8, 3), 0.5, np.float32), "gaussian:25", seed=0)
    np.testing.assert_array_equal(np.random.random_sample(5), expected)


def test_reference_noise_equals_global_legacy_generator():
    # The reference seeds numpy's global generator; a private RandomState gives the same stream.
    clean = np.linspace(0, 1, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
    np.random.seed(7)
    expected = clean + np.random.normal(0, 50 / 255.0, clean.shape)
    np.testing.assert_array_equal(add_reference_noise(clean, "gauss:50", seed=7), expected)


def test_reference_gaussian_is_not_clipped_and_poisson_is():
    clean = np.full((32, 32, 3), 0.98, np.float32)
    assert add_reference_noise(clean, "gaussian:50").max() > 1.0
    assert add_reference_noise(clean, "poisson:3.5").max() <= 1.0


def test_reference_rejects_integer_images():
    with pytest.raises(ValueError, match="float array"):
        add_reference_noise(np.zeros((4, 4, 3), np.uint8), "gaussian:15")


# ------------------------------------------------------------------------- statistics (torch)


def test_gaussian_statistics():
    clean = _constant(0.5)
    noise = add_noise(clean, "gaussian:25", _generator(0)) - clean
    sigma = 25 / 255
    assert abs(noise.mean().item()) < 4 * sigma / math.sqrt(noise.numel())
    assert noise.std().item() == pytest.approx(sigma, rel=0.01)


def test_gaussian_is_not_clipped():
    noisy = add_noise(_constant(0.99), "gaussian:50", _generator(0))
    assert noisy.max().item() > 1.0


def test_spatial_gaussian_statistics():
    clean = _constant(0.5)
    noise = (add_noise(clean, "spatial_gaussian:50", _generator(0)) - clean)[..., 1:-1, 1:-1]
    sigma = 50 / 255
    # Mean of 9 i.i.d. values: variance / 9; neighbours share 6 of their 9 values.
    assert noise.std().item() == pytest.approx(sigma / 3, rel=0.015)
    lag_x = torch.corrcoef(torch.stack([noise[..., :-1].flatten(), noise[..., 1:].flatten()]))
    lag_y = torch.corrcoef(torch.stack([noise[..., :-1, :].flatten(), noise[..., 1:, :].flatten()]))
    assert lag_x[0, 1].item() == pytest.approx(6 / 9, abs=0.01)
    assert lag_y[0, 1].item() == pytest.approx(6 / 9, abs=0.01)


def test_box_filter_matches_scipy_reflect_borders():
    from scipy.ndimage import convolve

    noise = torch.randn(2, 3, 9, 11, generator=_generator(3), dtype=torch.float64)
    filtered = _box_filter_3x3(noise)
    kernel = np.ones((3, 3)) / 9.0
    for b in range(2):
        for c in range(3):
            expected = convolve(noise[b, c].numpy(), kernel)  # mode="reflect" by default
            np.testing.assert_allclose(filtered[b, c].numpy(), expected, rtol=0, atol=1e-15)


def _poisson_test_image(value: float, batch: int = 4) -> torch.Tensor:
    # First row holds all 256 levels so the reference's level count gives vals = 256.
    clean = _constant(value, (batch, 3, 128, 128))
    clean[..., 0, :] = (torch.arange(128, dtype=torch.float64) * 2 / 255).expand(batch, 3, 128)
    clean[..., 1, :] = ((torch.arange(128, dtype=torch.float64) * 2 + 1) / 255).expand(
        batch, 3, 128
    )
    return clean


@pytest.mark.parametrize("alpha", [2.0, 3.5])
def test_poisson_statistics(alpha):
    clean = _poisson_test_image(128 / 255)
    noise = (add_noise(clean, f"poisson:{alpha}", _generator(0)) - clean)[..., 2:, :]
    level = 128 / 255
    # Poisson(level * 256) / 256 - level, scaled by alpha: mean 0, variance alpha² level / 256.
    expected_std = alpha * math.sqrt(level / 256)
    assert abs(noise.mean().item()) < 4 * expected_std / math.sqrt(noise.numel())
    assert noise.std().item() == pytest.approx(expected_std, rel=0.015)
    # The noisy value is level + alpha (k / 256 - level) for an integer count k.
    steps = (noise / alpha + level) * 256
    unclipped = (noise + level > 0) & (noise + level < 1)
    assert unclipped.double().mean().item() > 0.99
    assert torch.allclose(steps[unclipped], steps[unclipped].round(), atol=1e-6)


def test_poisson_counts_levels_per_sample():
    # A flat image has one level -> vals = 1 -> noise in multiples of alpha (then clipped).
    flat = _constant(128 / 255, (1, 3, 32, 32))
    rich = _poisson_test_image(128 / 255, batch=1)[..., :32, :32]
    rich[..., 0, :] = torch.arange(32, dtype=torch.float64).expand(1, 3, 32) / 255
    noisy = add_noise(torch.cat([flat, rich]), "poisson:1", _generator(0))
    flat_values = set(np.round(noisy[0].flatten().numpy() * 255).astype(int).tolist())
    assert flat_values <= {0, 255, 128}
    assert len(set(np.round(noisy[1, :, 2:].flatten().numpy() * 1e6).tolist())) > 3


def test_poisson_is_clipped():
    noisy = add_noise(_poisson_test_image(250 / 255), "poisson:3.5", _generator(0))
    assert noisy.min().item() >= 0.0 and noisy.max().item() == 1.0


@pytest.mark.parametrize("variance", [0.02, 0.04])
def test_speckle_statistics(variance):
    clean = _constant(0.5)
    noise = add_noise(clean, f"speckle:{variance}", _generator(0)) - clean
    # x + x u, u ~ U(-sqrt(3 v), sqrt(3 v)): noise = 0.5 u, variance 0.25 v, bounded.
    assert abs(noise.mean().item()) < 4 * math.sqrt(0.25 * variance / noise.numel())
    assert noise.var().item() == pytest.approx(0.25 * variance, rel=0.015)
    assert noise.abs().max().item() <= 0.5 * math.sqrt(3 * variance) + 1e-12
    assert noise.abs().max().item() > 0.49 * math.sqrt(3 * variance)


def test_speckle_is_multiplicative_and_clipped():
    clean = _constant(0.0, (1, 3, 16, 16))
    assert torch.equal(add_noise(clean, "speckle:0.04", _generator(0)), clean)
    bright = add_noise(_constant(0.95), "speckle:0.04", _generator(0))
    assert bright.max().item() == 1.0


@pytest.mark.parametrize("density", [0.012, 0.02])
def test_salt_pepper_statistics(density):
    clean = _constant(0.5)
    noisy = add_noise(clean, f"salt_pepper:{density}", _generator(0))
    count = noisy.numel()
    tolerance = 4 * math.sqrt(count * density / 2) / count
    assert (noisy == 0).double().mean().item() == pytest.approx(density / 2, abs=tolerance)
    assert (noisy == 1).double().mean().item() == pytest.approx(density / 2, abs=tolerance)
    # Everything else is untouched, and channels are corrupted independently.
    assert torch.all((noisy == 0) | (noisy == 1) | (noisy == 0.5))
    corrupted = (noisy != 0.5).double()
    all_three = corrupted.prod(dim=1).mean().item()
    assert all_three < 10 * density**3 + 1e-4


def test_poisson_gaussian_statistics():
    clean = _constant(0.2)
    clean[:, :, 64:] = 0.8
    noise = add_noise(clean, "poisson_gaussian:0.04,0.03", _generator(0)) - clean
    for value, part in ((0.2, noise[:, :, :64]), (0.8, noise[:, :, 64:])):
        expected = math.sqrt(0.04**2 * value + 0.03**2)
        assert abs(part.mean().item()) < 4 * expected / math.sqrt(part.numel())
        assert part.std().item() == pytest.approx(expected, rel=0.015)


# --------------------------------------------------------------- statistics (reference path)


def test_reference_speckle_and_salt_pepper_statistics():
    clean = np.full((256, 256, 3), 0.5, np.float32)
    speckle = add_reference_noise(clean, "speckle:0.03") - 0.5
    assert speckle.var() == pytest.approx(0.25 * 0.03, rel=0.015)
    assert abs(speckle.mean()) < 4 * math.sqrt(0.25 * 0.03 / speckle.size)
    noisy = add_reference_noise(clean, "salt_pepper:0.016")
    tolerance = 4 * math.sqrt(noisy.size * 0.008) / noisy.size
    assert (noisy == 0).mean() == pytest.approx(0.008, abs=tolerance)
    assert (noisy == 1).mean() == pytest.approx(0.008, abs=tolerance)
    assert np.all((noisy == 0) | (noisy == 1) | (noisy == 0.5))


def test_reference_poisson_gaussian_statistics():
    clean = np.full((256, 256, 3), 0.5)
    noise = add_reference_noise(clean, "poisson_gaussian:0.04,0.03") - clean
    assert noise.std() == pytest.approx(math.sqrt(0.04**2 * 0.5 + 0.03**2), rel=0.015)


# ---------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("kind", _kinds_available())
def test_same_seed_same_noise_different_seed_differs(kind, make_image):
    clean = torch.from_numpy(make_image(32, 32)).permute(2, 0, 1).unsqueeze(0).repeat(2, 1, 1, 1)
    spec = parse_noise_spec(SPEC_PER_KIND[kind])
    first = add_noise(clean, spec, _generator(11))
    again = spec.apply(clean, _generator(11))
    other = add_noise(clean, spec, _generator(12))
    assert first.shape == clean.shape and first.dtype == clean.dtype
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # Samples of a batch get independent noise even for identical images.
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize("kind", _kinds_available())
def test_reference_same_seed_same_noise(kind, make_image):
    clean = make_image(32, 32)
    spec = SPEC_PER_KIND[kind]
    first = add_reference_noise(clean, spec, seed=0)
    assert first.dtype == np.float64 and first.shape == clean.shape
    np.testing.assert_array_equal(first, add_reference_noise(clean, spec, seed=0))
    assert not np.array_equal(first, add_reference_noise(clean, spec, seed=1))


def test_unbatched_and_dtypes_are_preserved():
    clean = torch.rand(3, 16, 16, generator=_generator(0))
    assert add_noise(clean, "gaussian:15", _generator(0)).shape == (3, 16, 16)
    batched = add_noise(clean.unsqueeze(0), "gaussian:15", _generator(0))
    assert torch.equal(batched[0], add_noise(clean, "gaussian:15", _generator(0)))
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        assert add_noise(clean.to(dtype), "poisson:2", _generator(0)).dtype == dtype


def test_grey_images_work_for_every_torch_kind():
    clean = torch.rand(2, 1, 16, 16, generator=_generator(0))
    for kind in TORCH_KINDS:
        assert add_noise(clean, SPEC_PER_KIND[kind], _generator(0)).shape == clean.shape


def test_zero_level_is_identity():
    clean = torch.rand(2, 3, 16, 16, generator=_generator(0))
    for spec in ("gaussian:0", "spatial_gaussian:0", "speckle:0", "salt_pepper:0"):
        assert torch.allclose(add_noise(clean, spec, _generator(0)), clean, atol=1e-7)


def test_add_noise_rejects_bad_tensors():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        add_noise(torch.zeros(16, 16), "gaussian:15")
    with pytest.raises(ValueError, match="float"):
        add_noise(torch.zeros(3, 16, 16, dtype=torch.uint8), "gaussian:15")


@pytest.mark.skipif(not _has_camera_pipeline(), reason="clipdenoise.isp not available")
def test_srgb_camera_noise_goes_through_the_camera_pipeline(make_image):
    clean = torch.from_numpy(make_image(32, 32)).permute(2, 0, 1).unsqueeze(0)
    noisy = add_noise(clean, "srgb_camera", _generator(0))
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    assert noisy.min().item() >= 0.0 and noisy.max().item() <= 1.0
    assert 0.005 < (noisy - clean).std().item() < 0.3
    with pytest.raises(ValueError, match="3 channels"):
        add_noise(clean[:, :1], "srgb_camera", _generator(0))


# ---------------------------------------------------------------------------- spec & parser


def test_registry_lists_every_kind_of_the_paper():
    assert set(NOISE_KINDS) == set(SPEC_PER_KIND)
    for kind in NOISE_KINDS.values():
        assert kind.summary and kind.units and kind.paper_levels


@pytest.mark.parametrize(
    "text",
    [
        "gaussian:15",
        "gaussian:2.5",
        "spatial_gaussian:55",
        "poisson:3.5",
        "speckle:0.02",
        "salt_pepper:0.012",
        "salt_pepper:1e-05",
        "poisson_gaussian:0.04,0.03",
        "srgb_camera:0.02,0.01",
    ],
)
def test_str_round_trips_through_the_parser(text):
    spec = parse_noise_spec(text)
    assert str(spec) == text
    assert parse_noise_spec(str(spec)) == spec
    assert hash(parse_noise_spec(str(spec))) == hash(spec)


def test_aliases_case_and_separators_are_normalised():
    assert parse_noise_spec("gauss:25") == NoiseSpec("gaussian", 25)
    assert parse_noise_spec(" Spatial-Gauss : 40 ") == NoiseSpec("spatial_gaussian", 40.0)
    assert parse_noise_spec("s&p:0.02").kind == "salt_pepper"
    assert parse_noise_spec("poisson_gaussian: 0.04 , 0.03").level == (0.04, 0.03)
    assert NoiseSpec("pg", [0.04, 0.03]).level == (0.04, 0.03)
    spec = parse_noise_spec("srgb_camera")
    assert spec.level == (0.04, 0.03) and str(spec) == "srgb_camera:0.04,0.03"
    assert parse_noise_spec(spec) is spec


def test_spec_is_frozen():
    spec = NoiseSpec("gaussian", 15)
    with pytest.raises(AttributeError):
        spec.level = 25  # type: ignore[misc]


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(NoiseSpecError) as info:
        parse_noise_spec("pink:3")
    message = str(info.value)
    assert "'pink'" in message
    for kind in NOISE_KINDS:
        assert kind in message
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, ClipDenoiseError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gaussian", r"has no level.*15, 25, 50"),
        ("gaussian:abc", r"'abc' is not a number"),
        ("gaussian:-5", r"sigma_255=-5.0 .*outside \[0, inf\].*paper levels 15, 25, 50"),
        ("gaussian:nan", r"outside"),
        ("salt_pepper:1.5", r"density=1.5 .*outside \[0, 1\].*0.012, 0.016, 0.02"),
        ("poisson_gaussian:0.04", r"takes 2 level parameter\(s\) \(sigma_s, sigma_c\), got 1"),
        ("poisson:2,3", r"takes 1 level parameter"),
        ("speckle:", r"has no level.*0.02, 0.03, 0.04"),
    ],
)
def test_bad_levels_are_clear_errors(text, expected):
    with pytest.raises(NoiseSpecError, match=expected):
        parse_noise_spec(text)


@pytest.mark.parametrize(
    ("text", "level", "level_max"),
    [
        ("gaussian:0..55", 0.0, 55.0),
        ("poisson_gaussian:0..0.16,0..0.06", (0.0, 0.0), (0.16, 0.06)),
        ("poisson_gaussian:0.04,0..0.06", (0.04, 0.0), (0.04, 0.06)),
        ("salt_pepper:0.01..0.02", 0.01, 0.02),
    ],
)
def test_level_ranges_parse_and_round_trip(text, level, level_max):
    spec = parse_noise_spec(text)
    assert spec.level == level and spec.level_max == level_max and spec.is_random_level
    assert str(spec) == text and parse_noise_spec(str(spec)) == spec
    assert "level_max=" in repr(spec)


def test_degenerate_and_empty_ranges():
    spec = parse_noise_spec("gaussian:5..5")
    assert spec == NoiseSpec("gaussian", 5) and not spec.is_random_level
    assert str(spec) == "gaussian:5" and repr(spec) == "NoiseSpec(kind='gaussian', level=5.0)"
    with pytest.raises(
        NoiseSpecError, match="range of 'gaussian' is empty: upper end 5 is below 50"
    ):
        parse_noise_spec("gaussian:50..5")
    with pytest.raises(NoiseSpecError, match=r"not a number or range \(low..high\)"):
        parse_noise_spec("gaussian:0..x")
    with pytest.raises(NoiseSpecError, match="outside"):
        parse_noise_spec("salt_pepper:0..2")


def test_random_level_is_drawn_per_sample():
    clean = _constant(0.5, (64, 1, 32, 32))
    spec = parse_noise_spec("gaussian:0..50")
    noisy = add_noise(clean, spec, _generator(0))
    stds = (noisy - clean).flatten(1).std(dim=1) * 255
    assert stds.min().item() < 8 and stds.max().item() > 42
    assert stds.max().item() < 50 * 1.1
    assert torch.equal(noisy, add_noise(clean, spec, _generator(0)))
    # Every kind accepts per-sample levels.
    for text in (
        "spatial_gaussian:40..55",
        "poisson:2..3.5",
        "speckle:0.02..0.04",
        "salt_pepper:0.012..0.02",
        "poisson_gaussian:0..0.16,0..0.06",
    ):
        out = add_noise(clean[:4].expand(4, 3, 32, 32), text, _generator(1))
        assert out.shape == (4, 3, 32, 32)
    if _has_camera_pipeline():
        out = add_noise(
            clean[:2].expand(2, 3, 32, 32), "srgb_camera:0..0.16,0..0.06", _generator(1)
        )
        assert out.shape == (2, 3, 32, 32)


def test_reference_random_level_is_seeded():
    clean = np.full((64, 64, 3), 0.5)
    first = add_reference_noise(clean, "gaussian:0..50", seed=3)
    np.testing.assert_array_equal(first, add_reference_noise(clean, "gaussian:0..50", seed=3))
    level = np.random.RandomState(3).uniform(0, 50)
    assert (first - clean).std() * 255 == pytest.approx(level, rel=0.05)


def test_non_string_specs_are_rejected():
    with pytest.raises(NoiseSpecError, match="string"):
        parse_noise_spec(15)  # type: ignore[arg-type]
    with pytest.raises(NoiseSpecError, match="string"):
        NoiseSpec(3, 15)  # type: ignore[arg-type]


def test_docstring_examples_run():
    import doctest

    import clipdenoise.noise

    result = doctest.testmod(clipdenoise.noise)
    assert result.failed == 0 and result.attempted >= 4


def test_generator_on_another_device_is_a_clear_error():
    from types import SimpleNamespace

    # Stands in for a CUDA generator on this CPU-only machine; only .device is looked at first.
    cuda_generator = SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(ValueError, match="generator is on cuda:0 but the image on cpu"):
        add_noise(torch.zeros(3, 4, 4), "gaussian:15", cuda_generator)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_itself_and_the_statistics():
    clean = _constant(0.5, dtype=torch.float32).cuda()
    for kind in TORCH_KINDS:
        spec = SPEC_PER_KIND[kind]
        first = add_noise(clean, spec, torch.Generator("cuda").manual_seed(0))
        again = add_noise(clean, spec, torch.Generator("cuda").manual_seed(0))
        assert first.device.type == "cuda" and torch.equal(first, again)
    noise = add_noise(clean, "gaussian:25", torch.Generator("cuda").manual_seed(0)) - clean
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.01)


def test_a_noise_mixture_draws_one_spec_per_image_reproducibly():
    from clipdenoise.noise import NoiseMixture, parse_noise

    mixture = parse_noise("gaussian:25 + salt_pepper:0.5")
    assert isinstance(mixture, NoiseMixture) and str(mixture) == "gaussian:25 + salt_pepper:0.5"
    clean = torch.full((64, 1, 16, 16), 0.5)
    noisy = mixture.apply(clean, torch.Generator().manual_seed(3))
    again = mixture.apply(clean, torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)
    # salt & pepper at d = 0.5 sets about half the pixels to exactly 0 or 1; Gaussian never does
    extreme = ((noisy == 0) | (noisy == 1)).float().mean(dim=(1, 2, 3))
    salted = extreme > 0.3
    assert 16 < int(salted.sum()) < 48
    assert torch.all(extreme[~salted] == 0)
    gaussian = noisy[~salted] - 0.5
    assert abs(float(gaussian.std()) - 25 / 255) < 0.01
    single = mixture.apply(clean[0], torch.Generator().manual_seed(3))
    assert single.shape == (1, 16, 16)
    assert parse_noise("gaussian:15") == parse_noise_spec("gaussian:15")
