"""The distortion-invariance experiment (paper Sec. 3.1, Fig. 1; supplement Figs. 9–11).

For every encoder, clean image, noise and draw: features ``F_c`` of the clean image and
``F_n`` of the noisy one, and per scale their cosine similarity and linear CKA
(:mod:`clipdenoise.analysis.similarity`). Memory stays at one image's features per encoder:
clean features are computed once per image, each noisy draw is compared and dropped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clipdenoise.analysis.corruption import (
    CorruptionLike,
    apply_corruption,
    draw_generator,
    noise_id,
    noise_label,
)
from clipdenoise.analysis.extractors import FeatureExtractor
from clipdenoise.analysis.images import AnalysisImage, crop_to_multiple, to_tensor
from clipdenoise.analysis.similarity import cosine_similarity, feature_cka

METRICS = ("cosine", "cka")


@dataclass(frozen=True)
class SimilarityRecord:
    """One number: ``metric`` between clean and noisy features of one image, draw and scale."""

    encoder: str
    noise: str
    image: str
    draw: int
    scale: str
    metric: str
    value: float


@dataclass(frozen=True)
class SimilaritySummary:
    """A metric for one encoder, noise and scale, averaged over images (and draws).

    Attributes:
        mean: Mean over images of each image's mean over draws.
        std_images: Standard deviation across images of those per-image means (ddof 1; 0 for
            one image).
        std_draws: Mean over images of the standard deviation across draws (ddof 1; 0 for one
            draw).
        min: Smallest single value.
        max: Largest single value.
        num_images: Images averaged.
        num_draws: Noise draws per image.
    """

    encoder: str
    noise: str
    noise_label: str
    scale: str
    metric: str
    mean: float
    std_images: float
    std_draws: float
    min: float
    max: float
    num_images: int
    num_draws: int

    @property
    def spread(self) -> float:
        """Error bar: the spread over images, or over draws when there is a single image."""
        return self.std_images if self.num_images > 1 else self.std_draws


@dataclass
class SimilarityResult:
    """Every record of a similarity analysis, with the encoders' and noises' display names."""

    records: list[SimilarityRecord]
    encoder_labels: list[str]
    noise_ids: list[str]
    noise_labels: dict[str, str]
    scales: dict[str, list[str]]  # encoder label -> its scales

    def summarize(self) -> list[SimilaritySummary]:
        """Mean and spread per (encoder, noise, scale, metric), in run order."""
        groups: dict[tuple[str, str, str, str], dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for record in self.records:
            key = (record.encoder, record.noise, record.scale, record.metric)
            groups[key][record.image].append(record.value)
        summaries = []
        for (encoder, noise, scale, metric), per_image in groups.items():
            summaries.append(_summarize_group(encoder, noise, scale, metric, per_image, self))
        return summaries


def _summarize_group(
    encoder: str,
    noise: str,
    scale: str,
    metric: str,
    per_image: dict[str, list[float]],
    result: SimilarityResult,
) -> SimilaritySummary:
    image_means = np.array([np.mean(values) for values in per_image.values()])
    draw_stds = [
        np.std(values, ddof=1) if len(values) > 1 else 0.0 for values in per_image.values()
    ]
    every = np.concatenate([np.asarray(values) for values in per_image.values()])
    return SimilaritySummary(
        encoder=encoder,
        noise=noise,
        noise_label=result.noise_labels.get(noise, noise),
        scale=scale,
        metric=metric,
        mean=float(np.mean(image_means)),
        std_images=float(np.std(image_means, ddof=1)) if len(image_means) > 1 else 0.0,
        std_draws=float(np.mean(draw_stds)),
        min=float(np.min(every)),
        max=float(np.max(every)),
        num_images=len(image_means),
        num_draws=max(len(values) for values in per_image.values()),
    )


def prepare_clean(
    image: AnalysisImage,
    extractor: FeatureExtractor,
    crop_size: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """The clean image as the extractor takes it: ``(1, C, H, W)`` float32 on CPU, channels
    matched and centre-cropped to multiples of its stride (at most ``crop_size``)."""
    tensor = to_tensor(image.pixels, extractor.in_channels)
    try:
        return crop_to_multiple(tensor, extractor.input_multiple, crop_size)
    except ValueError as error:
        raise ValueError(f"image {image.name!r}: {error}") from None


def extract_features(extractor: FeatureExtractor, image: torch.Tensor) -> list[torch.Tensor]:
    """Features of one ``(1, C, H, W)`` CPU image on the extractor's device, batch dim dropped."""
    return [feature[0] for feature in extractor(image.to(extractor.device))]


def extract_batch_features(
    extractor: FeatureExtractor, images: torch.Tensor
) -> list[list[torch.Tensor]]:
    """Features of a ``(B, C, H, W)`` CPU batch: one list of per-scale ``(C_i, H_i, W_i)`` maps
    per image."""
    features = extractor(images.to(extractor.device))
    return [[feature[index] for feature in features] for index in range(images.shape[0])]


def noisy_batch(
    noise: CorruptionLike,
    clean: torch.Tensor,
    seed: int,
    image_index: int,
    draws: Sequence[int],
    clip: bool,
) -> torch.Tensor:
    """The noisy draws ``draws`` of one ``(1, C, H, W)`` clean image, stacked ``(len, C, H, W)``;
    each draw from its own generator, so batching never changes the noise."""
    return torch.cat(
        [
            apply_corruption(noise, clean, draw_generator(seed, image_index, draw), clip=clip)
            for draw in draws
        ]
    )


def analyze_similarity(
    images: Sequence[AnalysisImage],
    extractors: Sequence[FeatureExtractor],
    noises: Sequence[CorruptionLike],
    *,
    draws: int = 1,
    seed: int = 0,
    metrics: Sequence[str] = METRICS,
    clip: bool = False,
    crop_size: int | Sequence[int] | None = None,
    max_positions: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
) -> SimilarityResult:
    """Cosine similarity and/or linear CKA between clean and noisy features (paper Fig. 1).

    Args:
        images: Clean images.
        extractors: Encoders (already on their device, see :func:`load_feature_extractor`).
        noises: Noise specs (``clipdenoise.noise.NoiseSpec``) or callables
            ``(clean, generator) -> noisy``.
        draws: Noise realisations per image and noise (averaged; spread reported).
        seed: Base seed of the noise (see :mod:`clipdenoise.analysis.corruption`).
        metrics: Subset of ``("cosine", "cka")``.
        clip: Clip noisy images to [0, 1] (off: the paper's unclipped Gaussian noise).
        crop_size: Centre-crop images to at most this size (int: square) to bound memory.
        max_positions: CKA: sub-sample at most this many spatial positions per scale (the same
            on both sides); ``None`` uses every position.
        batch_size: Noisy draws per forward pass (faster on a GPU; memory grows with it).
            Results equal those of ``batch_size=1`` up to floating-point rounding.
        progress: Show a progress bar (on stderr) over noisy images.

    Returns:
        A :class:`SimilarityResult` with one record per encoder, noise, image, draw, scale and
        metric.
    """
    unknown = [metric for metric in metrics if metric not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {list(metrics)}")
    if draws < 1 or batch_size < 1:
        raise ValueError(f"draws and batch_size must be >= 1, got {draws} and {batch_size}")
    if not images or not extractors or not noises:
        raise ValueError("need at least one image, one encoder and one noise")
    from tqdm.auto import tqdm

    ids = [noise_id(noise) for noise in noises]
    result = SimilarityResult(
        records=[],
        encoder_labels=[extractor.label for extractor in extractors],
        noise_ids=ids,
        noise_labels={noise_id(noise): noise_label(noise) for noise in noises},
        scales={extractor.label: list(extractor.feature_names) for extractor in extractors},
    )
    total = len(extractors) * len(images) * (1 + len(noises) * draws)
    with tqdm(total=total, desc="features", unit="pass", disable=not progress) as bar:
        for extractor in extractors:
            for image_index, image in enumerate(images):
                bar.set_postfix_str(f"{extractor.label} / {image.name}", refresh=False)
                clean = prepare_clean(image, extractor, crop_size)
                clean_features = extract_features(extractor, clean)
                bar.update()
                for noise, name in zip(noises, ids):
                    for first in range(0, draws, batch_size):
                        chunk = range(first, min(first + batch_size, draws))
                        noisy = noisy_batch(noise, clean, seed, image_index, chunk, clip)
                        for draw, noisy_features in zip(
                            chunk, extract_batch_features(extractor, noisy)
                        ):
                            result.records += _compare(
                                clean_features,
                                noisy_features,
                                extractor,
                                metrics,
                                max_positions,
                                (name, image.name, draw, seed, image_index),
                            )
                        bar.update(len(chunk))
    return result


def _compare(
    clean_features: Sequence[torch.Tensor],
    noisy_features: Sequence[torch.Tensor],
    extractor: FeatureExtractor,
    metrics: Sequence[str],
    max_positions: int | None,
    where: tuple[str, str, int, int, int],
) -> list[SimilarityRecord]:
    noise, image, draw, seed, image_index = where
    records = []
    for scale, clean, noisy in zip(extractor.feature_names, clean_features, noisy_features):
        for metric in metrics:
            if metric == "cosine":
                value = cosine_similarity(clean, noisy)
            else:
                # Positions for CKA sub-sampling depend only on the image, so they are the same
                # for every noise and draw.
                positions_generator = draw_generator(seed + 1, image_index, 0)
                value = feature_cka(
                    clean, noisy, max_positions=max_positions, generator=positions_generator
                )
            records.append(
                SimilarityRecord(
                    extractor.label, noise, image, draw, scale, metric, _finite_or_nan(value)
                )
            )
    return records


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else math.nan


__all__ = [
    "METRICS",
    "SimilarityRecord",
    "SimilarityResult",
    "SimilaritySummary",
    "analyze_similarity",
    "extract_batch_features",
    "extract_features",
    "noisy_batch",
    "prepare_clean",
]
