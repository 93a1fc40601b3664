"""``clipdenoise analyze``: are an encoder's features noise-invariant and content-related?

Reproduces the feature analysis of the paper's Sec. 3.1: Fig. 1 (cosine similarity of clean vs
noisy features F1..F5 per noise level and per CLIP model size), the supplement's CKA, Poisson
and other-image variants, Fig. 2's ImageNet-ResNet contrast, and Fig. 3 (t-SNE of noisy
features coloured by image, here with silhouette separation scores). A thin layer over
:func:`clipdenoise.analysis.run_analysis`.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

from clipdenoise.analysis.runner import AnalysisConfig, run_analysis
from clipdenoise.cli import print_failures
from clipdenoise.config import from_dict, load_toml, to_dict
from clipdenoise.encoder import CLIP_ARCHS, FEATURE_NAMES

if TYPE_CHECKING:
    from clipdenoise.analysis.runner import AnalysisConfig, AnalysisReport

DESCRIPTION = """\
Feature analysis of the paper's Sec. 3.1 (Figs. 1-3). For each encoder, clean image, noise and
noise draw: features F1..F5 of the clean and of the noisy image, and per scale their cosine
similarity (features flattened per image, Fig. 1) and linear CKA (Kornblith et al. 2019;
spatial positions as samples, channels as features), averaged over images with their spread.
With --tsne, also a t-SNE of the features of several images under several noisy draws,
coloured by image (Fig. 3), with silhouette scores measuring how well images separate.

Noise levels: the paper states Gaussian noise as a std on [0, 1] images (0.1 ... 0.5). Give
those with --gaussian-std 0.1 0.2 (= gaussian:25.5, gaussian:51 in the noise module's 0-255
units), or any noise spec with --noise (gaussian:25, poisson:3.5, speckle:0.03, ...).
Default: the paper's std 0.1, 0.2, 0.3, 0.4, 0.5.

Writes to --out: similarity_records.csv (every number), similarity_summary.csv (mean, spread
per encoder/noise/scale/metric), analysis.json (config, summaries, t-SNE scores, failures,
peak memory), PNG figures (similarity vs scale per noise level for each encoder, per encoder
for each noise when several encoders are given, for each metric; t-SNE per scale; the first
image under each noise), and with --tsne tsne_points.csv and tsne_scores.csv.
"""

EPILOG = f"""\
encoders (--encoder, repeatable):
  RN50 | RN101 | RN50x4 | RN50x16 | RN50x64   CLIP ResNet with OpenAI's weights (found in the
                               cache; see `clipdenoise weights --help` to provide them)
  RN50:random                  random initialisation of that architecture: a control
  RN50:PATH                    CLIP weights from a file (OpenAI .pt or open_clip)
  checkpoint:PATH_OR_NAME      the encoder of a trained CLIPDenoiser checkpoint
  imagenet:PATH                torchvision-layout ImageNet ResNet-50/101/152 state dict (Fig. 2)
  restormer:PATH               encoder levels of a trained Restormer (Fig. 2): F1..F4 at
                               strides 1, 2, 4, 8
  avgpool                      the image average-pooled by 2..32: a weight-free control
  append @LABEL to name the legend entry, e.g. imagenet:resnet50.pth@ResNet-50-ImageNet

examples:
  # Fig. 1 left: RN50 on Lena under Gaussian std 0.1 ... 0.5
  clipdenoise analyze lena.png --encoder RN50 --out fig1_left
  # Fig. 1 right: the five CLIP sizes at std 0.1
  clipdenoise analyze lena.png {" ".join("--encoder " + a for a in CLIP_ARCHS)} \\
      --gaussian-std 0.1 --out fig1_right
  # supplement: Poisson noise and CKA on another image; Fig. 3: t-SNE of four images
  clipdenoise analyze baboon.png --noise poisson:2.5 --noise poisson:3.5 --out poisson
  clipdenoise analyze lena.png baboon.png f16.png peppers.png --tsne --tsne-draws 10 --out fig3

exit status: 0 on success, 1 when some images could not be read (they are listed and skipped),
2 on a usage error, missing weights or no readable image.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="feature similarity / CKA / t-SNE analysis of encoders under noise (paper Sec. 3.1)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,  # only given flags override --config / defaults
    )
    parser.add_argument("inputs", nargs="*", metavar="IMAGE", help="clean image files or folders")
    parser.add_argument("--out", "-o", required=True, help="output folder (created)")
    parser.add_argument(
        "--config",
        metavar="TOML",
        help="load settings from a TOML file (e.g. a previous run's analysis_config.toml); "
        "flags given on the command line override it",
    )
    parser.add_argument(
        "--encoder",
        dest="encoders",
        action="append",
        metavar="SPEC",
        help="encoder to analyse, repeatable (see below; default RN50)",
    )
    noise = parser.add_argument_group("noise")
    noise.add_argument(
        "--gaussian-std",
        dest="gaussian_stds",
        type=float,
        nargs="+",
        metavar="STD",
        help="i.i.d. Gaussian noise std on [0, 1] images, the paper's unit (0.1 = σ 25.5/255)",
    )
    noise.add_argument(
        "--noise",
        dest="noises",
        action="append",
        metavar="SPEC",
        help="noise spec of clipdenoise.noise, repeatable: gaussian:SIGMA_255, poisson:ALPHA, "
        "spatial_gaussian:SIGMA_255, speckle:VAR, salt_pepper:DENSITY, ...",
    )
    noise.add_argument("--draws", type=int, help="noise draws per image (default 1)")
    noise.add_argument("--clip", action="store_true", help="clip noisy images to [0, 1]")
    what = parser.add_argument_group("what to compute")
    what.add_argument(
        "--scales", nargs="+", choices=FEATURE_NAMES, help="feature scales (default F1..F5)"
    )
    what.add_argument(
        "--metrics",
        nargs="+",
        choices=["cosine", "cka"],
        help="similarity measures (default both)",
    )
    what.add_argument("--tsne", action="store_true", help="also run the t-SNE analysis (Fig. 3)")
    what.add_argument(
        "--tsne-gaussian-std",
        dest="tsne_gaussian_stds",
        type=float,
        nargs="+",
        metavar="STD",
        help="Gaussian std on [0, 1] for t-SNE (default the paper's 0.1 0.2)",
    )
    what.add_argument(
        "--tsne-noise",
        dest="tsne_noises",
        action="append",
        metavar="SPEC",
        help="noise spec for t-SNE, repeatable",
    )
    what.add_argument("--tsne-draws", type=int, help="noisy draws per image for t-SNE (default 8)")
    what.add_argument("--perplexity", type=float, help="t-SNE perplexity (default from n)")
    what.add_argument("--tsne-max-iter", type=int, help="t-SNE iterations (default 1000, min 250)")
    memory = parser.add_argument_group("size and memory")
    memory.add_argument(
        "--crop",
        dest="crop_size",
        type=int,
        metavar="SIZE",
        help="centre-crop images to at most SIZE x SIZE",
    )
    memory.add_argument("--max-images", type=int, help="use at most N images")
    memory.add_argument(
        "--max-positions",
        type=int,
        help="CKA: sub-sample at most N spatial positions per scale (default all)",
    )
    memory.add_argument(
        "--tsne-max-dim",
        type=int,
        help="values kept per t-SNE feature vector (default 16384; 0 = whole map)",
    )
    memory.add_argument(
        "--tsne-reduction",
        choices=["subsample", "pool"],
        help="how t-SNE vectors are shrunk: random positions (default) or average pooling",
    )
    what.add_argument(
        "--clip-normalize",
        action="store_true",
        help="feed CLIP trunks mean/std-normalised images (default: [0, 1] images, as the "
        "denoiser does)",
    )
    run = parser.add_argument_group("run")
    run.add_argument("--recursive", action="store_true", help="search folders recursively")
    run.add_argument("--seed", type=int, help="seed of noise, random init, t-SNE (default 0)")
    run.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    run.add_argument(
        "--batch-size",
        type=int,
        help="noisy draws per forward pass (default 1; larger is faster on a GPU, needs more "
        "memory)",
    )
    run.add_argument("--no-figures", dest="figures", action="store_false", help="write tables only")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=run_command)


#: Namespace entries that are not AnalysisConfig fields.
_NOT_CONFIG = {"out", "config", "quiet", "func", "command"}


def build_config(args: argparse.Namespace) -> AnalysisConfig:
    """The :class:`AnalysisConfig` of ``--config`` (if any) with the given flags applied."""
    data = to_dict(load_toml(AnalysisConfig, args.config)) if "config" in args else {}
    given = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    if not given.get("inputs"):
        given.pop("inputs", None)  # none on the command line: keep the config file's
    data.update(given)
    data.setdefault("inputs", [])
    return from_dict(AnalysisConfig, data)


def run_command(args: argparse.Namespace) -> int:
    config = build_config(args)
    quiet = getattr(args, "quiet", False)
    log = (lambda message: None) if quiet else (lambda m: print(m, file=sys.stderr))
    report = run_analysis(config, args.out, progress=not quiet, log=log)
    if not quiet:
        print(format_summary(report))
    return print_failures(report.failures, "image(s) could not be read")


def format_summary(report: AnalysisReport) -> str:
    """A plain-text table: mean similarity per encoder, noise and scale (one block per metric)."""
    blocks = []
    grouped: dict[tuple[str, str], dict] = defaultdict(dict)
    for row in report.summaries:
        grouped[(row.metric, row.encoder)][(row.noise_label, row.scale)] = row
    for (metric, encoder), cells in grouped.items():
        scales = [s for s in FEATURE_NAMES if any(key[1] == s for key in cells)]
        noises = list(dict.fromkeys(key[0] for key in cells))
        width = max(len(n) for n in noises)
        lines = [f"{metric} — {encoder}", " " * width + "".join(f"{s:>16}" for s in scales)]
        for noise in noises:
            values = []
            for scale in scales:
                row = cells.get((noise, scale))
                values.append(f"{row.mean:.4f} ± {row.spread:.4f}" if row else "")
            lines.append(f"{noise:<{width}}" + "".join(f"{v:>16}" for v in values))
        blocks.append("\n".join(lines))
    for result in report.tsne:
        scores = ", ".join(
            f"{s.scale} {s.silhouette_embedding:.2f} ({s.silhouette_features:.2f})"
            for s in result.scales
        )
        blocks.append(
            f"t-SNE silhouette, embedding (features) — {result.encoder}, {result.noise_label}: "
            + scores
        )
    blocks.append(
        f"wrote {sum(len(p) for p in report.files.values())} files to {report.out_dir} "
        f"in {report.seconds:.1f} s (peak memory {report.peak_memory_mb:.0f} MB)"
    )
    return "\n\n".join(blocks)
