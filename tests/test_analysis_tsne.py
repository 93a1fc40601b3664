"""The content-relatedness experiment (paper Sec. 3.1, Fig. 3): t-SNE embeddings, silhouette
scores, feature vector reduction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipdenoise.analysis import (
    CLIPFeatureExtractor,
    analyze_tsne,
    embed_tsne,
    gaussian_std_spec,
    separation_score,
)
from clipdenoise.analysis.tsne import reduce_feature
from clipdenoise.encoder import CLIPResNetEncoder


def test_tsne_shape_reproducibility_and_separation(analysis_images):
    torch.manual_seed(0)
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F3"))
    extractor = CLIPFeatureExtractor(encoder, label="tiny random", control=True)
    noise = gaussian_std_spec(0.1)
    options = {"draws": 3, "max_dim": 512, "max_iter": 250}
    result = analyze_tsne(analysis_images, extractor, noise, seed=5, **options)
    assert result.images == ["img0", "img1", "img2"]
    assert len(result.draw) == 3 * 4 and (result.draw == -1).sum() == 3
    assert [s.scale for s in result.scales] == ["F1", "F3"]
    for scale in result.scales:
        assert scale.embedding.shape == (12, 2) and np.isfinite(scale.embedding).all()
        assert scale.dim <= 512
        assert -1.0 <= scale.silhouette_embedding <= 1.0
    again = analyze_tsne(analysis_images, extractor, noise, seed=5, **options)
    other = analyze_tsne(analysis_images, extractor, noise, seed=6, **options)
    for a, b, c in zip(result.scales, again.scales, other.scales):
        np.testing.assert_array_equal(a.embedding, b.embedding)
        assert not np.allclose(a.embedding, c.embedding)


def test_embed_tsne_and_silhouette_on_known_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10.0, size=(3, 20))
    labels = np.repeat(np.arange(3), 6)
    points = centers[labels] + 0.1 * rng.normal(size=(18, 20))
    embedding = embed_tsne(points, seed=0)
    assert embedding.shape == (18, 2)
    np.testing.assert_array_equal(embedding, embed_tsne(points, seed=0))
    assert separation_score(points, labels) > 0.95
    assert separation_score(embedding, labels) > 0.8
    assert math.isnan(separation_score(points, np.zeros(18)))
    with pytest.raises(ValueError, match="perplexity"):
        embed_tsne(points, perplexity=18)


def test_reduce_feature_bounds_the_vector_length():
    feature = torch.arange(8 * 16 * 16, dtype=torch.float32).reshape(8, 16, 16)
    positions = torch.tensor([0, 5, 17])
    assert reduce_feature(feature, None).shape == (2048,)
    assert reduce_feature(feature, 100, "subsample", positions).shape == (24,)
    pooled = reduce_feature(feature, 128, "pool")
    assert pooled.size <= 128 and pooled.size == 8 * 16
