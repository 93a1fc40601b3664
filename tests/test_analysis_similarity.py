"""Similarity measures of the feature analysis (paper Sec. 3.1): cosine similarity and linear
CKA, their identities and invariances, subsampled CKA.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipdenoise.analysis import cosine_similarity, feature_cka, linear_cka


def _naive_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA through HSIC with the centring matrix H (Kornblith et al. 2019, Eq. 3 / linear)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


matrix_shapes = st.tuples(st.integers(4, 24), st.integers(1, 12), st.integers(1, 12))


@settings(max_examples=25, deadline=None)
@given(shape=matrix_shapes, seed=st.integers(0, 2**16))
def test_cka_is_one_for_identical_inputs(shape, seed):
    n, p, _ = shape
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, p)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-10)


@settings(max_examples=25, deadline=None)
@given(
    shape=matrix_shapes,
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
)
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(shape, seed, scale):
    n, p, q = shape
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    y = x[:, :1] @ rng.normal(size=(1, q)) + 0.5 * rng.normal(size=(n, q))
    rotation, _ = np.linalg.qr(rng.normal(size=(p, p)))  # a random orthogonal matrix
    reference = linear_cka(torch.from_numpy(x), torch.from_numpy(y))
    transformed = linear_cka(torch.from_numpy(scale * x @ rotation), torch.from_numpy(y))
    assert transformed == pytest.approx(reference, abs=1e-9)
    assert reference == pytest.approx(_naive_cka(x, y), abs=1e-9)
    assert 0.0 <= reference <= 1.0 + 1e-12


def test_cka_feature_and_gram_forms_agree():
    rng = np.random.default_rng(3)
    wide = rng.normal(size=(6, 40))  # n < p: Gram form
    tall = rng.normal(size=(40, 6))  # n > p: feature-space form
    for x in (wide, tall):
        y = x + 0.3 * rng.normal(size=x.shape)
        assert linear_cka(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(
            _naive_cka(x, y), abs=1e-10
        )


@settings(max_examples=25, deadline=None)
@given(size=st.integers(2, 64), seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_cosine_similarity_is_symmetric_and_scale_invariant(size, seed, scale):
    rng = np.random.default_rng(seed)
    a, b = (torch.from_numpy(rng.normal(size=size)) for _ in range(2))
    value = cosine_similarity(a, b)
    assert value == pytest.approx(cosine_similarity(b, a), abs=1e-12)
    assert value == pytest.approx(cosine_similarity(scale * a, b), abs=1e-9)
    assert -1.0 - 1e-12 <= value <= 1.0 + 1e-12


def test_cosine_similarity_values():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert cosine_similarity(x, x) == pytest.approx(1.0, abs=1e-12)
    assert cosine_similarity(x, -x) == pytest.approx(-1.0, abs=1e-12)
    assert cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == 0.0
    assert math.isnan(cosine_similarity(torch.zeros(3), torch.ones(3)))
    with pytest.raises(ValueError, match="equal sizes"):
        cosine_similarity(torch.ones(3), torch.ones(4))


def test_feature_cka_subsampling_uses_same_positions():
    feature = torch.randn(4, 32, 32, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    assert feature_cka(feature, feature, max_positions=50, generator=generator) == pytest.approx(
        1.0, abs=1e-12
    )
    noisy = feature + 0.5 * torch.randn(feature.shape, generator=generator)
    full = feature_cka(feature, noisy)
    sampled = feature_cka(feature, noisy, max_positions=512, generator=generator)
    assert sampled == pytest.approx(full, abs=0.05)
