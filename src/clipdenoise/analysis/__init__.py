"""Feature analysis: are CLIP ResNet features noise-invariant and content-related? (paper Sec. 3.1)

* Distortion invariance (Fig. 1; supplement Figs. 9–11): per scale F1..F5, the cosine
  similarity and linear CKA between features of clean and noisy images, for any noise spec,
  any CLIP ResNet size (or its random-init control), a trained denoiser's encoder, an ImageNet
  ResNet or a Restormer (Fig. 2), or any module through :class:`HookFeatureExtractor`.
* Content relatedness (Fig. 3): t-SNE of per-scale features of several images under several
  noise draws, with silhouette separation scores.

Quick start::

    from clipdenoise.analysis import AnalysisConfig, run_analysis
    report = run_analysis(
        AnalysisConfig(inputs=("lena.png",), encoders=("RN50",), gaussian_stds=(0.1, 0.3, 0.5)),
        "analysis_out",
    )

or, piece by piece::

    from clipdenoise.analysis import analyze_similarity, load_analysis_images, load_feature_extractor
    from clipdenoise.analysis import gaussian_std_spec
    images, failures = load_analysis_images(["kodak/"], limit=4)
    encoder = load_feature_extractor("RN50:random")        # a random-init control
    result = analyze_similarity(images, [encoder], [gaussian_std_spec(0.1)])
    for row in result.summarize():
        print(row.scale, row.metric, row.mean, row.std_images)

matplotlib and scikit-learn (``pip install 'clipdenoise[analysis]'``) are imported only by
figures and t-SNE.
"""

from __future__ import annotations

from clipdenoise.analysis.corruption import (
    PAPER_GAUSSIAN_STDS,
    apply_corruption,
    draw_generator,
    gaussian_std_spec,
    noise_id,
    noise_label,
)
from clipdenoise.analysis.extractors import (
    AvgPoolPyramid,
    CLIPFeatureExtractor,
    EncoderSpec,
    FeatureExtractor,
    HookFeatureExtractor,
    ModuleFeatureExtractor,
    checkpoint_feature_extractor,
    clip_feature_extractor,
    imagenet_feature_extractor,
    load_feature_extractor,
    parse_encoder_spec,
    restormer_feature_extractor,
)
from clipdenoise.analysis.imagenet_resnet import ImageNetResNet, load_imagenet_resnet
from clipdenoise.analysis.images import AnalysisImage, load_analysis_images
from clipdenoise.analysis.invariance import (
    METRICS,
    SimilarityRecord,
    SimilarityResult,
    SimilaritySummary,
    analyze_similarity,
)
from clipdenoise.analysis.runner import AnalysisConfig, AnalysisReport, run_analysis
from clipdenoise.analysis.similarity import cosine_similarity, feature_cka, linear_cka
from clipdenoise.analysis.tsne import (
    TSNEResult,
    TSNEScale,
    analyze_tsne,
    embed_tsne,
    separation_score,
)

__all__ = [
    "METRICS",
    "PAPER_GAUSSIAN_STDS",
    "AnalysisConfig",
    "AnalysisImage",
    "AnalysisReport",
    "AvgPoolPyramid",
    "CLIPFeatureExtractor",
    "EncoderSpec",
    "FeatureExtractor",
    "HookFeatureExtractor",
    "ModuleFeatureExtractor",
    "ImageNetResNet",
    "SimilarityRecord",
    "SimilarityResult",
    "SimilaritySummary",
    "TSNEResult",
    "TSNEScale",
    "analyze_similarity",
    "analyze_tsne",
    "apply_corruption",
    "checkpoint_feature_extractor",
    "clip_feature_extractor",
    "cosine_similarity",
    "draw_generator",
    "embed_tsne",
    "feature_cka",
    "gaussian_std_spec",
    "imagenet_feature_extractor",
    "linear_cka",
    "load_analysis_images",
    "load_feature_extractor",
    "load_imagenet_resnet",
    "noise_id",
    "noise_label",
    "parse_encoder_spec",
    "restormer_feature_extractor",
    "run_analysis",
    "separation_score",
]
