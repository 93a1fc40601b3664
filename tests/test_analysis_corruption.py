"""Noisy versions of the analysis images: paper units of Gaussian noise, noise ids and labels,
seeded draws.
"""

from __future__ import annotations

import pytest
import torch

from clipdenoise.analysis import gaussian_std_spec
from clipdenoise.analysis.corruption import (
    apply_corruption,
    draw_generator,
    noise_id,
    noise_label,
    parse_corruption,
)
from clipdenoise.noise import NoiseSpec


def test_paper_gaussian_units():
    assert gaussian_std_spec(0.1) == NoiseSpec("gaussian", 25.5)
    assert gaussian_std_spec(0.5) == NoiseSpec("gaussian", 127.5)
    assert noise_label(gaussian_std_spec(0.1)) == "Gaussian std 0.1 (σ₂₅₅=25.5)"
    assert noise_id(NoiseSpec("poisson", 3.5)) == "poisson:3.5"


def test_negative_gaussian_std_is_refused():
    with pytest.raises(ValueError, match="std must be >= 0"):
        gaussian_std_spec(-0.1)


def test_draws_are_seeded_per_seed_image_and_draw():
    def first_values(*key: int) -> torch.Tensor:
        return torch.rand(4, generator=draw_generator(*key))

    assert torch.equal(first_values(0, 1, 2), first_values(0, 1, 2))
    others = [first_values(1, 1, 2), first_values(0, 2, 2), first_values(0, 1, 3)]
    assert all(not torch.equal(first_values(0, 1, 2), other) for other in others)


def test_gaussian_draw_has_the_papers_std_and_is_not_clipped():
    clean = torch.full((1, 3, 128, 128), 0.5)
    noisy = apply_corruption(gaussian_std_spec(0.2), clean, draw_generator(0, 0, 0))
    assert noisy.dtype == torch.float32 and noisy.shape == clean.shape
    assert float((noisy - clean).std()) == pytest.approx(0.2, rel=0.02)
    assert float(noisy.min()) < 0.0 < 1.0 < float(noisy.max())  # unclipped by default
    clipped = apply_corruption(gaussian_std_spec(0.2), clean, draw_generator(0, 0, 0), clip=True)
    assert torch.equal(clipped, noisy.clamp(0, 1))


def test_callables_are_corruptions_and_must_keep_the_shape():
    def darken(clean, generator):
        return clean * 0.5

    clean = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    noisy = apply_corruption(darken, clean, draw_generator(0, 0, 0))
    assert noisy.dtype == torch.float32 and float(noisy.max()) == 0.5
    assert noise_id(darken) == "darken" and noise_label(darken) == "darken"
    with pytest.raises(ValueError, match=r"changed the shape \(1, 1, 4, 4\) -> \(1, 1, 2, 2\)"):
        apply_corruption(lambda c, g: c[..., :2, :2], clean, draw_generator(0, 0, 0))
    with pytest.raises(TypeError, match="neither a noise spec nor a callable"):
        apply_corruption(3, clean, draw_generator(0, 0, 0))


def test_parsed_specs_round_trip_through_their_id():
    spec = parse_corruption("poisson:3.5")
    assert spec == NoiseSpec("poisson", 3.5)
    assert parse_corruption(noise_id(spec)) == spec
