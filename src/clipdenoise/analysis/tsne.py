"""The content-relatedness experiment (paper Sec. 3.1, Fig. 3): t-SNE of per-scale features.

Several clean images, each under several noisy draws; every noisy image's feature map at a scale
becomes one vector, embedded in 2-D by t-SNE (van der Maaten & Hinton 2008, scikit-learn) and
coloured by image. The claim "features of different images stay distinct under noise" is made a
number by the **silhouette score** of the image labels (Rousseeuw 1987, in [-1, 1]; 1 = tight,
well separated clusters), computed both in the feature space (cosine distance) and in the 2-D
embedding (Euclidean). Clean images' features can be embedded too (drawn as stars) but are left
out of the scores.

Memory: a full feature map of a 512×512 image is up to 4 M values (F1), so each vector keeps at
most ``max_dim`` values: the same random spatial positions (all channels) for every sample
(``reduction="subsample"``, which keeps per-position noise as it is) or an average-pooled grid
(``reduction="pool"``, which also averages noise away). Images are centre-cropped to a common
size so vectors align.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from clipdenoise.analysis.corruption import (
    CorruptionLike,
    draw_generator,
    noise_id,
    noise_label,
)
from clipdenoise.analysis.extractors import FeatureExtractor
from clipdenoise.analysis.images import AnalysisImage, common_size
from clipdenoise.analysis.invariance import (
    extract_batch_features,
    extract_features,
    noisy_batch,
    prepare_clean,
)
from clipdenoise.extras import missing_extra_error

Reduction = Literal["subsample", "pool"]


@dataclass
class TSNEScale:
    """The embedding of one scale.

    Attributes:
        scale: ``F1``...
        embedding: ``(n, 2)`` float64 t-SNE coordinates of every sample.
        silhouette_features: Silhouette of the noisy samples' image labels in feature space
            (cosine distance).
        silhouette_embedding: The same in the 2-D embedding (Euclidean distance).
        dim: Length of each feature vector that was embedded.
    """

    scale: str
    embedding: np.ndarray
    silhouette_features: float
    silhouette_embedding: float
    dim: int


@dataclass
class TSNEResult:
    """t-SNE of one encoder's features under one noise.

    Attributes:
        encoder: Encoder label.
        noise: Noise id (``gaussian:25.5``).
        noise_label: Legend name of the noise.
        images: Image names; ``image_index`` refers to them.
        image_index: ``(n,)`` int, which image each sample comes from.
        draw: ``(n,)`` int, the noise draw of each sample; ``-1`` for the clean image.
        scales: One :class:`TSNEScale` per scale, shallow to deep.
        perplexity: t-SNE perplexity used.
        seed: Seed of the noise draws, sub-sampling and t-SNE.
    """

    encoder: str
    noise: str
    noise_label: str
    images: list[str]
    image_index: np.ndarray
    draw: np.ndarray
    scales: list[TSNEScale] = field(default_factory=list)
    perplexity: float = 0.0
    seed: int = 0


def reduce_feature(
    feature: torch.Tensor,
    max_dim: int | None,
    reduction: Reduction = "subsample",
    positions: torch.Tensor | None = None,
) -> np.ndarray:
    """Flatten a ``(C, H, W)`` map to a float32 vector of at most ``max_dim`` values (or C when
    C exceeds it), keeping ``positions`` (subsample) or pooling to a grid (pool)."""
    channels, height, width = feature.shape
    if max_dim is None or channels * height * width <= max_dim:
        return feature.reshape(-1).float().cpu().numpy()
    if reduction == "pool":
        cells = max(1, max_dim // channels)
        grid_h = max(1, min(height, round(math.sqrt(cells * height / width))))
        grid_w = max(1, min(width, cells // grid_h))
        pooled = torch.nn.functional.adaptive_avg_pool2d(feature[None], (grid_h, grid_w))[0]
        return pooled.reshape(-1).float().cpu().numpy()
    if positions is None:
        raise ValueError("subsample reduction needs positions")
    flat = feature.reshape(channels, -1)[:, positions.to(feature.device)]
    return flat.reshape(-1).float().cpu().numpy()


def _positions(count: int, keep: int, seed: int, scale_index: int) -> torch.Tensor:
    generator = draw_generator(seed + 2, scale_index, 0)
    return torch.randperm(count, generator=generator)[:keep].sort().values


def collect_feature_vectors(
    images: Sequence[AnalysisImage],
    extractor: FeatureExtractor,
    noise: CorruptionLike,
    *,
    draws: int = 8,
    seed: int = 0,
    clip: bool = False,
    crop_size: int | Sequence[int] | None = None,
    max_dim: int | None = 16384,
    reduction: Reduction = "subsample",
    include_clean: bool = True,
    batch_size: int = 1,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per-scale feature vectors of every clean image and its noisy draws.

    Returns:
        ``(vectors, image_index, draw)``: ``vectors[scale]`` is ``(n, d)`` float32, one row per
        sample; ``image_index`` and ``draw`` (``-1`` = clean) are ``(n,)`` int arrays.
    """
    from tqdm.auto import tqdm

    size = common_size(images)
    if crop_size is not None:
        limit_h, limit_w = _pair(crop_size)
        size = (min(size[0], limit_h), min(size[1], limit_w))
    rows: dict[str, list[np.ndarray]] = {name: [] for name in extractor.feature_names}
    image_index, draw_index = [], []
    positions: dict[str, torch.Tensor] = {}
    samples = draws + (1 if include_clean else 0)
    with tqdm(
        total=len(images) * samples,
        desc=f"t-SNE features ({extractor.label})",
        unit="pass",
        disable=not progress,
    ) as bar:
        for index, image in enumerate(images):
            clean = prepare_clean(image, extractor, size)
            if include_clean:
                samples_features = [(-1, extract_features(extractor, clean))]
                _add_rows(rows, positions, samples_features, extractor, max_dim, reduction, seed)
                image_index.append(index)
                draw_index.append(-1)
                bar.update()
            for first in range(0, draws, batch_size):
                chunk = range(first, min(first + batch_size, draws))
                noisy = noisy_batch(noise, clean, seed, index, chunk, clip)
                samples_features = list(zip(chunk, extract_batch_features(extractor, noisy)))
                _add_rows(rows, positions, samples_features, extractor, max_dim, reduction, seed)
                image_index += [index] * len(chunk)
                draw_index += list(chunk)
                bar.update(len(chunk))
    vectors = {name: np.stack(values) for name, values in rows.items()}
    return vectors, np.asarray(image_index), np.asarray(draw_index)


def _add_rows(
    rows: dict[str, list[np.ndarray]],
    positions: dict[str, torch.Tensor],
    samples: list[tuple[int, list[torch.Tensor]]],
    extractor: FeatureExtractor,
    max_dim: int | None,
    reduction: Reduction,
    seed: int,
) -> None:
    """Append each sample's reduced per-scale vectors; positions are drawn once per scale."""
    for _draw, features in samples:
        for scale_index, (name, feature) in enumerate(zip(extractor.feature_names, features)):
            channels, height, width = feature.shape
            if name not in positions:
                keep = max(1, (max_dim or channels * height * width) // channels)
                positions[name] = _positions(height * width, keep, seed, scale_index)
            rows[name].append(reduce_feature(feature, max_dim, reduction, positions[name]))


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def default_perplexity(num_samples: int) -> float:
    """scikit-learn's default 30, lowered for small sample counts (it must stay below n)."""
    return float(min(30.0, max(2.0, (num_samples - 1) / 3.0)))


def embed_tsne(
    vectors: np.ndarray,
    *,
    seed: int = 0,
    perplexity: float | None = None,
    max_iter: int = 1000,
) -> np.ndarray:
    """2-D t-SNE of ``(n, d)`` vectors (scikit-learn, PCA init, deterministic for a seed).

    ``max_iter`` is scikit-learn's number of optimisation iterations (at least 250).

    Returns:
        ``(n, 2)`` float64 embedding.
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise missing_extra_error("sklearn", "t-SNE", "analysis") from error
    count = vectors.shape[0]
    if count < 3:
        raise ValueError(f"t-SNE needs at least 3 samples, got {count}")
    perplexity = default_perplexity(count) if perplexity is None else float(perplexity)
    if not 0 < perplexity < count:
        raise ValueError(f"perplexity must be in (0, {count}), got {perplexity}")
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
        max_iter=max_iter,
        method="exact" if count <= 500 else "barnes_hut",
    )
    return tsne.fit_transform(np.asarray(vectors, dtype=np.float64)).astype(np.float64)


def separation_score(points: np.ndarray, labels: np.ndarray, metric: str = "euclidean") -> float:
    """Silhouette score of ``labels`` over ``points`` ``(n, d)``; ``nan`` when undefined (fewer
    than 2 labels, or no label with 2+ samples)."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    distinct = np.unique(labels).size
    if distinct < 2 or distinct >= len(labels):
        return math.nan
    return float(silhouette_score(points, labels, metric=metric))


def analyze_tsne(
    images: Sequence[AnalysisImage],
    extractor: FeatureExtractor,
    noise: CorruptionLike,
    *,
    draws: int = 8,
    seed: int = 0,
    perplexity: float | None = None,
    clip: bool = False,
    crop_size: int | Sequence[int] | None = None,
    max_dim: int | None = 16384,
    reduction: Reduction = "subsample",
    include_clean: bool = True,
    max_iter: int = 1000,
    batch_size: int = 1,
    progress: bool = False,
) -> TSNEResult:
    """t-SNE embedding and separation scores of per-scale features (paper Fig. 3).

    Args:
        images: At least 2 clean images (the paper: Lena, Baboon, F16, Peppers).
        extractor: Encoder.
        noise: Noise spec or callable.
        draws: Noisy draws per image (at least 2).
        seed: Seed of the noise, the position sub-sampling and t-SNE.
        perplexity: t-SNE perplexity; default :func:`default_perplexity` of the sample count.
        clip: Clip noisy images to [0, 1].
        crop_size: Centre-crop to at most this size (all images are cropped to a common size).
        max_dim: Values kept per feature vector (memory); ``None`` keeps the whole map.
        reduction: ``"subsample"`` positions or ``"pool"`` to a grid (see the module doc).
        include_clean: Also embed the clean images (not scored).
        max_iter: t-SNE iterations (scikit-learn's default 1000; at least 250).
        batch_size: Noisy draws per forward pass (faster on a GPU; more memory).
        progress: Show a progress bar.
    """
    if len(images) < 2:
        raise ValueError(f"t-SNE separation needs at least 2 images, got {len(images)}")
    if draws < 2:
        raise ValueError(f"t-SNE separation needs at least 2 noisy draws per image, got {draws}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if reduction not in ("subsample", "pool"):
        raise ValueError(f"reduction must be 'subsample' or 'pool', got {reduction!r}")
    vectors, image_index, draw = collect_feature_vectors(
        images,
        extractor,
        noise,
        draws=draws,
        seed=seed,
        clip=clip,
        crop_size=crop_size,
        max_dim=max_dim,
        reduction=reduction,
        include_clean=include_clean,
        batch_size=batch_size,
        progress=progress,
    )
    count = len(image_index)
    result = TSNEResult(
        encoder=extractor.label,
        noise=noise_id(noise),
        noise_label=noise_label(noise),
        images=[image.name for image in images],
        image_index=image_index,
        draw=draw,
        perplexity=default_perplexity(count) if perplexity is None else float(perplexity),
        seed=seed,
    )
    noisy = draw >= 0
    for scale, matrix in vectors.items():
        embedding = embed_tsne(matrix, seed=seed, perplexity=result.perplexity, max_iter=max_iter)
        result.scales.append(
            TSNEScale(
                scale=scale,
                embedding=embedding,
                silhouette_features=separation_score(
                    matrix[noisy], image_index[noisy], metric="cosine"
                ),
                silhouette_embedding=separation_score(embedding[noisy], image_index[noisy]),
                dim=int(matrix.shape[1]),
            )
        )
    return result


__all__ = [
    "TSNEResult",
    "TSNEScale",
    "analyze_tsne",
    "collect_feature_vectors",
    "default_perplexity",
    "embed_tsne",
    "reduce_feature",
    "separation_score",
]
