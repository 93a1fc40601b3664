"""One call that runs the whole feature analysis and writes its tables and figures.

``clipdenoise analyze`` is a thin layer over :func:`run_analysis`; everything it does is
available here with an :class:`AnalysisConfig`.
"""

from __future__ import annotations

import gc
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from clipdenoise import __version__
from clipdenoise.analysis.corruption import (
    PAPER_GAUSSIAN_STDS,
    apply_corruption,
    draw_generator,
    gaussian_std_spec,
    noise_id,
    noise_label,
    parse_corruption,
)
from clipdenoise.analysis.extractors import (
    EncoderSpec,
    load_feature_extractor,
    parse_encoder_spec,
)
from clipdenoise.analysis.figures import (
    plot_image_grid,
    plot_similarity_by_encoder,
    plot_similarity_by_noise,
    plot_tsne,
)
from clipdenoise.analysis.images import AnalysisImage, center_crop, load_analysis_images, to_tensor
from clipdenoise.analysis.invariance import (
    METRICS,
    SimilarityResult,
    SimilaritySummary,
    analyze_similarity,
)
from clipdenoise.analysis.outputs import (
    TSNE_POINT_COLUMNS,
    TSNE_SCORE_COLUMNS,
    slugify,
    summary_dicts,
    tsne_point_rows,
    tsne_score_rows,
    write_csv,
    write_json,
    write_similarity_records,
    write_similarity_summary,
)
from clipdenoise.analysis.tsne import TSNEResult, analyze_tsne
from clipdenoise.atomic import atomic_write_text
from clipdenoise.config import dumps_toml
from clipdenoise.devices import resolve_device
from clipdenoise.encoder import FEATURE_NAMES
from clipdenoise.errors import ClipDenoiseError, ConfigError, WeightsNotFoundError
from clipdenoise.weights import resolve_clip_weights

#: Gaussian std (on [0, 1]) of the paper's t-SNE figure (Fig. 3).
PAPER_TSNE_GAUSSIAN_STDS = (0.1, 0.2)


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything a feature analysis run needs.

    Attributes:
        inputs: Clean image files and/or folders.
        encoders: Encoder specs (see :func:`~clipdenoise.analysis.parse_encoder_spec`).
        noises: Noise spec strings (``gaussian:25.5``, ``poisson:3.5`` …; σ on 0–255).
        gaussian_stds: Extra Gaussian noises as std on [0, 1] (the paper's unit). With neither
            ``noises`` nor ``gaussian_stds`` the paper's 0.1, 0.2, 0.3, 0.4, 0.5 are used.
        draws: Noise draws per image and noise.
        scales: Feature scales to analyse.
        metrics: ``cosine`` and/or ``cka``.
        crop_size: Centre-crop images to at most this square size (memory); ``None``: whole
            image (cropped to a multiple of the deepest stride).
        clip: Clip noisy images to [0, 1].
        max_positions: CKA spatial sub-sampling (see :func:`analyze_similarity`).
        max_images: Use at most this many images.
        recursive: Search input folders recursively.
        tsne: Also run the t-SNE / separation analysis (needs 2+ images).
        tsne_noises: Noise specs for t-SNE; with neither these nor ``tsne_gaussian_stds``, the
            paper's std 0.1 and 0.2.
        tsne_gaussian_stds: Gaussian std on [0, 1] for t-SNE.
        tsne_draws: Noisy draws per image for t-SNE.
        tsne_max_dim: Values kept per t-SNE feature vector (``0``: the whole map).
        tsne_reduction: ``subsample`` or ``pool``.
        perplexity: t-SNE perplexity (default from the sample count).
        tsne_max_iter: t-SNE optimisation iterations (at least 250).
        seed: Seed of noise, sub-sampling, random-init encoders and t-SNE.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` …
        figures: Write PNG figures.
        batch_size: Noisy draws per forward pass (faster on a GPU, more memory; the numbers
            equal those of 1 up to floating-point rounding).
        clip_normalize: Feed CLIP trunks mean/std-normalised images (the reference denoiser
            feeds [0, 1] images unnormalised, the default).
    """

    inputs: tuple[str, ...]
    encoders: tuple[str, ...] = ("RN50",)
    noises: tuple[str, ...] = ()
    gaussian_stds: tuple[float, ...] = ()
    draws: int = 1
    scales: tuple[str, ...] = FEATURE_NAMES
    metrics: tuple[str, ...] = METRICS
    crop_size: int | None = None
    clip: bool = False
    max_positions: int | None = None
    max_images: int | None = None
    recursive: bool = False
    tsne: bool = False
    tsne_noises: tuple[str, ...] = ()
    tsne_gaussian_stds: tuple[float, ...] = ()
    tsne_draws: int = 8
    tsne_max_dim: int = 16384
    tsne_reduction: str = "subsample"
    perplexity: float | None = None
    tsne_max_iter: int = 1000
    seed: int = 0
    device: str = "auto"
    figures: bool = True
    clip_normalize: bool = False
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no input images given")
        if not self.encoders:
            raise ConfigError("no encoder given")
        if self.draws < 1 or self.tsne_draws < 1 or self.batch_size < 1:
            raise ConfigError("draws, tsne_draws and batch_size must be >= 1")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ConfigError(f"metrics must be among {', '.join(METRICS)}, got {self.metrics}")
        bad_scales = [s for s in self.scales if s not in FEATURE_NAMES]
        if bad_scales or not self.scales:
            raise ConfigError(f"scales must be among {', '.join(FEATURE_NAMES)}, got {self.scales}")
        if self.tsne and self.tsne_draws < 2:
            raise ConfigError(
                f"t-SNE needs at least 2 noisy draws per image, got {self.tsne_draws}"
            )
        if self.tsne_max_iter < 250:
            raise ConfigError(f"tsne_max_iter must be >= 250, got {self.tsne_max_iter}")
        if self.tsne_reduction not in ("subsample", "pool"):
            raise ConfigError(
                f"tsne_reduction must be subsample or pool, got {self.tsne_reduction}"
            )
        if any(std < 0 for std in (*self.gaussian_stds, *self.tsne_gaussian_stds)):
            raise ConfigError("Gaussian std must be >= 0")

    def similarity_noises(self) -> list[Any]:
        """The noise specs of the similarity analysis, in order (duplicates dropped)."""
        return _noises(self.noises, self.gaussian_stds, PAPER_GAUSSIAN_STDS)

    def tsne_noise_specs(self) -> list[Any]:
        """The noise specs of the t-SNE analysis."""
        return _noises(self.tsne_noises, self.tsne_gaussian_stds, PAPER_TSNE_GAUSSIAN_STDS)


def _noises(texts, stds, default_stds) -> list[Any]:
    specs = [parse_corruption(text) for text in texts]
    specs += [gaussian_std_spec(std) for std in stds]
    if not specs:
        specs = [gaussian_std_spec(std) for std in default_stds]
    unique = {noise_id(spec): spec for spec in specs}
    return list(unique.values())


@dataclass
class AnalysisReport:
    """What :func:`run_analysis` produced.

    Attributes:
        out_dir: Output folder.
        files: Written files by role (``records_csv``, ``summary_csv``, ``report_json``,
            figures …).
        summaries: Similarity summaries.
        tsne: t-SNE results.
        failures: ``(path, message)`` of unreadable images (skipped).
        seconds: Wall time.
        peak_memory_mb: Peak memory: CUDA allocator peak on GPU, process max RSS on CPU.
    """

    out_dir: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    summaries: list[SimilaritySummary] = field(default_factory=list)
    tsne: list[TSNEResult] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    peak_memory_mb: float = 0.0

    def add_file(self, role: str, path: Path) -> None:
        self.files.setdefault(role, []).append(path)


def check_encoder_available(spec: EncoderSpec) -> None:
    """Fail fast, before any computation, when an encoder's weights cannot be found."""
    if spec.kind == "clip" and spec.weights is not None:
        try:
            resolve_clip_weights(spec.weights, arch=spec.arch)
        except WeightsNotFoundError as error:
            raise WeightsNotFoundError(
                f"{error}\nIn the analysis, a weights file is given as --encoder "
                f"{spec.arch}:/path/to/{spec.arch}.pt; --encoder {spec.arch}:random analyses "
                "the architecture at random initialisation (a control)."
            ) from error
    elif spec.kind in ("imagenet", "restormer") and not Path(str(spec.weights)).is_file():
        what = "ImageNet ResNet" if spec.kind == "imagenet" else "Restormer"
        raise WeightsNotFoundError(f"{spec.weights}: {what} weights file not found")


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    except ImportError:  # pragma: no cover - Windows
        return float("nan")


def run_analysis(
    config: AnalysisConfig,
    out_dir: str | Path,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    images: list[AnalysisImage] | None = None,
) -> AnalysisReport:
    """Run the similarity (and optionally t-SNE) analysis and write every table and figure.

    Encoders are loaded one at a time (and released) so memory holds one model at most.

    Args:
        config: What to analyse.
        out_dir: Output folder (created).
        progress: Progress bars on stderr.
        log: Called with one-line status messages.
        images: Already loaded images (then ``config.inputs`` only documents them).

    Returns:
        An :class:`AnalysisReport`.

    Raises:
        ClipDenoiseError: no readable image, missing weights, bad specs.
    """
    say = log or (lambda message: None)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = AnalysisReport(out_dir=out_dir)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    specs = [parse_encoder_spec(text) for text in config.encoders]
    for spec in specs:
        check_encoder_available(spec)
    noises = config.similarity_noises()
    tsne_noises = config.tsne_noise_specs() if config.tsne else []
    if images is None:
        images, report.failures = load_analysis_images(
            config.inputs, recursive=config.recursive, limit=config.max_images
        )
    images = _drop_too_small(images, config.scales, report.failures)
    for path, message in report.failures:
        say(f"skipped {path}: {message}")
    if not images:
        raise ClipDenoiseError(
            f"no readable image among {', '.join(map(str, config.inputs))}"
            + (f" ({len(report.failures)} unreadable)" if report.failures else "")
        )
    if config.tsne and len(images) < 2:
        raise ConfigError(f"t-SNE needs at least 2 images, got {len(images)}")
    say(f"{len(images)} image(s), {len(specs)} encoder(s), {len(noises)} noise(s), on {device}")

    merged: SimilarityResult | None = None
    for spec in specs:
        result, tsne_results = _analyze_encoder(
            spec, config, images, noises, tsne_noises, device, progress
        )
        merged = result if merged is None else _merge(merged, result)
        report.tsne += tsne_results
        # The encoder went out of scope with _analyze_encoder: free it before the next loads.
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    assert merged is not None
    report.summaries = merged.summarize()
    report.peak_memory_mb = _peak_memory_mb(device)
    _write_tables(report, merged, config)
    if config.figures:
        _write_figures(report, merged, config, images, noises)
    report.seconds = time.perf_counter() - started
    _write_report_json(report, config, device, images, merged)
    return report


def _drop_too_small(
    images: list[AnalysisImage], scales: tuple[str, ...], failures: list[tuple[str, str]]
) -> list[AnalysisImage]:
    """Move images smaller than the deepest scale's stride to ``failures``."""
    stride = 2 ** (max(FEATURE_NAMES.index(name) for name in scales) + 1)
    kept = []
    for image in images:
        height, width = image.pixels.shape[:2]
        if min(height, width) < stride:
            failures.append(
                (
                    image.name,
                    f"image is {width}x{height}, smaller than the stride {stride} of the deepest scale",
                )
            )
        else:
            kept.append(image)
    return kept


def _merge(first: SimilarityResult, second: SimilarityResult) -> SimilarityResult:
    labels = first.encoder_labels + second.encoder_labels
    if len(set(labels)) != len(labels):
        raise ConfigError(f"two encoders share the label {labels[-1]!r}; give one a @LABEL")
    return SimilarityResult(
        records=first.records + second.records,
        encoder_labels=labels,
        noise_ids=first.noise_ids,
        noise_labels={**first.noise_labels, **second.noise_labels},
        scales={**first.scales, **second.scales},
    )


def _analyze_encoder(
    spec: EncoderSpec,
    config: AnalysisConfig,
    images: list[AnalysisImage],
    noises: list[Any],
    tsne_noises: list[Any],
    device: torch.device,
    progress: bool,
) -> tuple[SimilarityResult, list[TSNEResult]]:
    """Load one encoder, run the similarity and t-SNE analyses with it; it is freed on return."""
    extractor = load_feature_extractor(
        spec, features=config.scales, seed=config.seed, clip_normalize=config.clip_normalize
    ).to(device)
    result = analyze_similarity(
        images,
        [extractor],
        noises,
        draws=config.draws,
        seed=config.seed,
        metrics=config.metrics,
        clip=config.clip,
        crop_size=config.crop_size,
        max_positions=config.max_positions,
        batch_size=config.batch_size,
        progress=progress,
    )
    tsne_results = [
        analyze_tsne(
            images,
            extractor,
            noise,
            draws=config.tsne_draws,
            seed=config.seed,
            perplexity=config.perplexity,
            clip=config.clip,
            crop_size=config.crop_size,
            max_dim=config.tsne_max_dim or None,
            reduction=config.tsne_reduction,  # type: ignore[arg-type]
            max_iter=config.tsne_max_iter,
            batch_size=config.batch_size,
            progress=progress,
        )
        for noise in tsne_noises
    ]
    return result, tsne_results


def _write_tables(report: AnalysisReport, merged: SimilarityResult, config: AnalysisConfig) -> None:
    out = report.out_dir
    # The resolved settings, re-runnable with `clipdenoise analyze --config`.
    report.add_file(
        "config_toml", atomic_write_text(out / "analysis_config.toml", dumps_toml(config))
    )
    report.add_file("records_csv", write_similarity_records(out / "similarity_records.csv", merged))
    report.add_file(
        "summary_csv", write_similarity_summary(out / "similarity_summary.csv", report.summaries)
    )
    if report.tsne:
        report.add_file(
            "tsne_points_csv",
            write_csv(out / "tsne_points.csv", TSNE_POINT_COLUMNS, tsne_point_rows(report.tsne)),
        )
        report.add_file(
            "tsne_scores_csv",
            write_csv(out / "tsne_scores.csv", TSNE_SCORE_COLUMNS, tsne_score_rows(report.tsne)),
        )


def _write_figures(
    report: AnalysisReport,
    merged: SimilarityResult,
    config: AnalysisConfig,
    images: list[AnalysisImage],
    noises: list[Any],
) -> None:
    out = report.out_dir
    for metric in config.metrics:
        for encoder in merged.encoder_labels:
            path = out / f"similarity_{metric}_by_noise_{slugify(encoder)}.png"
            report.add_file(
                "figures",
                plot_similarity_by_noise(
                    report.summaries, encoder=encoder, metric=metric, path=path
                ),
            )
        if len(merged.encoder_labels) > 1:
            for noise in merged.noise_ids:
                path = out / f"similarity_{metric}_by_encoder_{slugify(noise)}.png"
                report.add_file(
                    "figures",
                    plot_similarity_by_encoder(
                        report.summaries, noise=noise, metric=metric, path=path
                    ),
                )
    for result in report.tsne:
        path = out / f"tsne_{slugify(result.encoder)}_{slugify(result.noise)}.png"
        report.add_file("figures", plot_tsne(result, path))
    # Fig. 1(a): the first image under each noise (draw 0), as the encoders saw it.
    first = images[0]
    clean = to_tensor(first.pixels, first.pixels.shape[2])
    if config.crop_size:
        clean = center_crop(clean, config.crop_size, config.crop_size)
    shown = [clean[0].permute(1, 2, 0).numpy()]
    titles = ["clean"]
    for noise in noises:
        noisy = apply_corruption(noise, clean, draw_generator(config.seed, 0, 0), clip=config.clip)
        shown.append(noisy[0].permute(1, 2, 0).numpy())
        titles.append(noise_label(noise))
    report.add_file(
        "figures",
        plot_image_grid(
            shown,
            titles,
            out / "noisy_examples.png",
            suptitle=f"{first.name} under the analysed noises (display clipped to [0, 1])",
        ),
    )


def _write_report_json(
    report: AnalysisReport,
    config: AnalysisConfig,
    device: torch.device,
    images: list[AnalysisImage],
    merged: SimilarityResult,
) -> None:
    payload = {
        "clipdenoise_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "config": asdict(config),
        "images": [
            {"name": image.name, "height": image.pixels.shape[0], "width": image.pixels.shape[1]}
            for image in images
        ],
        "encoders": merged.encoder_labels,
        "noises": [{"id": n, "label": merged.noise_labels[n]} for n in merged.noise_ids],
        "similarity_summary": summary_dicts(report.summaries),
        "tsne": [
            {
                "encoder": result.encoder,
                "noise": result.noise,
                "perplexity": result.perplexity,
                "num_samples": len(result.draw),
                "scales": [
                    {
                        "scale": scale.scale,
                        "silhouette_embedding": scale.silhouette_embedding,
                        "silhouette_features": scale.silhouette_features,
                        "dim": scale.dim,
                    }
                    for scale in result.scales
                ],
            }
            for result in report.tsne
        ],
        "failures": [{"path": p, "error": m} for p, m in report.failures],
        "seconds": round(report.seconds, 3),
        "peak_memory_mb": round(report.peak_memory_mb, 1),
        "files": {role: [p.name for p in paths] for role, paths in report.files.items()},
    }
    path = write_json(report.out_dir / "analysis.json", payload)
    report.add_file("report_json", path)


__all__ = [
    "PAPER_TSNE_GAUSSIAN_STDS",
    "AnalysisConfig",
    "AnalysisReport",
    "check_encoder_available",
    "run_analysis",
]
