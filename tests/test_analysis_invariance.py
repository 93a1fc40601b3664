"""The distortion-invariance experiment (paper Sec. 3.1, Fig. 1): similarity of clean and noisy
features per scale, reproducible noise draws, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipdenoise.analysis.corruption import draw_generator, gaussian_std_spec, noise_id
from clipdenoise.analysis.extractors import AvgPoolPyramid, CLIPFeatureExtractor
from clipdenoise.analysis.invariance import analyze_similarity
from clipdenoise.analysis.tsne import analyze_tsne
from clipdenoise.encoder import CLIPResNetEncoder
from clipdenoise.noise import NoiseSpec


@pytest.fixture
def tiny_extractor() -> CLIPFeatureExtractor:
    """A width-8 CLIP ResNet trunk, one block per stage, random weights, F1..F5."""
    torch.manual_seed(0)
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F2", "F3", "F4", "F5"))
    return CLIPFeatureExtractor(encoder, label="tiny random", control=True)


def test_zero_noise_gives_similarity_one_at_every_scale(analysis_images, tiny_extractor):
    result = analyze_similarity(
        analysis_images, [tiny_extractor, AvgPoolPyramid()], [NoiseSpec("gaussian", 0.0)], draws=2
    )
    summaries = result.summarize()
    assert (
        len(result.records) == 2 * 3 * 2 * 5 * 2
    )  # encoders, analysis_images, draws, scales, metrics
    assert {s.scale for s in summaries} == {"F1", "F2", "F3", "F4", "F5"}
    for summary in summaries:
        assert summary.mean == pytest.approx(1.0, abs=1e-9), summary
        assert summary.min == pytest.approx(1.0, abs=1e-9)


def test_similarity_decreases_monotonically_with_noise(analysis_images):
    stds = (0.05, 0.1, 0.2, 0.4)
    result = analyze_similarity(
        analysis_images, [AvgPoolPyramid()], [gaussian_std_spec(s) for s in stds], draws=4, seed=7
    )
    means = {(s.noise, s.scale, s.metric): s.mean for s in result.summarize()}
    for metric in ("cosine", "cka"):
        for scale in ("F1", "F2", "F3"):
            curve = [means[(noise_id(gaussian_std_spec(s)), scale, metric)] for s in stds]
            assert all(a > b for a, b in zip(curve, curve[1:])), (metric, scale, curve)
    # deeper pooling averages more noise away: similarity rises with the scale
    cosine = [means[("gaussian:51", f"F{i}", "cosine")] for i in range(1, 6)]
    assert all(a < b for a, b in zip(cosine, cosine[1:])), cosine


def test_noise_draws_are_reproducible_and_shared_across_encoders(analysis_images, tiny_extractor):
    noise = gaussian_std_spec(0.2)
    first = analyze_similarity(analysis_images[:1], [tiny_extractor], [noise], draws=2, seed=3)
    again = analyze_similarity(analysis_images[:1], [tiny_extractor], [noise], draws=2, seed=3)
    other = analyze_similarity(analysis_images[:1], [tiny_extractor], [noise], draws=2, seed=4)
    values = [r.value for r in first.records]
    assert values == [r.value for r in again.records]
    assert values != [r.value for r in other.records]
    a = torch.randn(3, generator=draw_generator(0, 1, 2))
    assert torch.equal(a, torch.randn(3, generator=draw_generator(0, 1, 2)))
    assert not torch.equal(a, torch.randn(3, generator=draw_generator(0, 2, 1)))


def test_batched_draws_give_the_same_numbers(analysis_images, tiny_extractor):
    noise = gaussian_std_spec(0.3)
    single = analyze_similarity(analysis_images[:2], [tiny_extractor], [noise], draws=5, seed=2)
    batched = analyze_similarity(
        analysis_images[:2], [tiny_extractor], [noise], draws=5, seed=2, batch_size=3
    )
    assert [(r.image, r.draw, r.scale, r.metric) for r in single.records] == [
        (r.image, r.draw, r.scale, r.metric) for r in batched.records
    ]
    np.testing.assert_allclose(
        [r.value for r in batched.records], [r.value for r in single.records], atol=1e-6
    )
    options = {"draws": 3, "max_dim": 256, "max_iter": 250, "seed": 1}
    one = analyze_tsne(analysis_images, AvgPoolPyramid(("F2",)), noise, **options)
    two = analyze_tsne(analysis_images, AvgPoolPyramid(("F2",)), noise, batch_size=2, **options)
    np.testing.assert_array_equal(one.draw, two.draw)
    np.testing.assert_allclose(one.scales[0].embedding, two.scales[0].embedding, atol=1e-4)


def test_poisson_noise_and_callables_are_accepted(analysis_images):
    def halve(clean, generator):
        return clean * 0.5

    result = analyze_similarity(
        analysis_images[:1],
        [AvgPoolPyramid(("F1",))],
        [NoiseSpec("poisson", 3.5), halve],
        metrics=["cosine"],
    )
    by_noise = {r.noise: r.value for r in result.records}
    assert by_noise["halve"] == pytest.approx(1.0, abs=1e-9)  # cosine ignores scaling
    assert 0.5 < by_noise["poisson:3.5"] < 1.0
