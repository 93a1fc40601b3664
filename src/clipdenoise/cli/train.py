"""``clipdenoise train``: train a denoiser from a recipe (preset or TOML), resumable, multi-GPU."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from clipdenoise.errors import ConfigError
from clipdenoise.training import (
    RUN_CONFIG_NAME,
    describe_config,
    list_presets,
    load_experiment_config,
    preset_text,
    train,
)

_EPILOG = """\
examples:
  clipdenoise train --config tiny-cpu --run-dir runs/tiny --data-root /data
  clipdenoise train --config synthetic-gaussian15 --run-dir runs/g15 --data-root /data \\
      --set train.schedule=cosine_restart --set data.num_workers=16
  clipdenoise train --run-dir runs/g15 --resume auto          # continue after a stop or crash
  clipdenoise train --config synthetic-gaussian15 --network dncnn --run-dir runs/dncnn \
      --data-root /data                                        # Table 1's DnCNN, same recipe
  torchrun --nproc_per_node 4 -m clipdenoise train --config synthetic-gaussian15 \\
      --run-dir runs/g15-4gpu --data-root /data                # global batch = 4 x batch_size

Relative data paths in a config (data.train_dir, eval.val_dir) are resolved against
--data-root, else $CLIPDENOISE_DATA, else the current folder. SIGINT/SIGTERM save a training
state and exit; the message says how to resume. Exit status: 0 done (or paused by
--stop-after), 2 bad input or a diverged run (NaN/inf loss; the last good
state is kept), 130/143 stopped by SIGINT/SIGTERM.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a denoiser from a recipe (preset or TOML config)",
        description=(
            "Train a CLIPDenoiser (frozen CLIP encoder, learnable decoder), or a learned "
            "baseline (--network dncnn|restormer) with the same recipe, as a recipe says. "
            "Presets reproduce the paper's recipes (synthetic-gaussian15, srgb-poissongaussian, "
            "ldct-gaussian5) plus tiny-cpu, a few-minute CPU demo that needs no CLIP weights. "
            "The run folder receives config.toml (resolved config), log.jsonl, "
            "checkpoints/latest|best.safetensors, states/state_<iteration>.pt and summary.json."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="PRESET|TOML",
        help="recipe: a preset name (see --list-presets) or a TOML file; optional with "
        "--resume (the run's own config.toml is used)",
    )
    parser.add_argument(
        "-o",
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="run folder to create (default: runs/<config name>); an existing one is refused "
        "unless --resume or --overwrite is given",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="root of relative data paths in the config (default: $CLIPDENOISE_DATA or .)",
    )
    parser.add_argument(
        "-s",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, typed by the field (repeatable), e.g. "
        "--set train.num_iters=1000 --set train.betas=[0.9,0.99]",
    )
    parser.add_argument(
        "--network",
        choices=["clipdenoiser", "dncnn", "restormer"],
        help="the network to train (= --set network=...); baselines are sized by their "
        "[dncnn] / [restormer] config sections",
    )
    parser.add_argument(
        "--encoder",
        metavar="openai|random|PATH",
        help="initial encoder weights: CLIP's released 'openai' weights, 'random' (no "
        "download; the random-encoder control) or a weights file (= --set model.encoder_weights=...)",
    )
    parser.add_argument(
        "--resume",
        metavar="auto|STATE",
        help="continue a run: 'auto' = from the newest state in --run-dir (starts fresh if it "
        "has none), or the path of a states/state_<iteration>.pt file",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an existing run folder (only one holding config.toml) and start over",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop once N iterations are complete, saving a state (for time-limited jobs)",
    )
    parser.add_argument(
        "--device",
        metavar="DEVICE",
        help="auto, cpu, cuda, cuda:1 ... (= --set train.device=...)",
    )
    parser.add_argument(
        "--amp",
        choices=["none", "bf16", "fp16", "auto"],
        help="mixed precision (= --set train.amp=...): bf16 autocast on CPU/GPU, fp16 with a "
        "grad scaler on CUDA, auto = bf16 where supported",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (the log is still written)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as TOML and exit without training",
    )
    parser.add_argument(
        "--list-presets", action="store_true", help="list the shipped recipes and exit"
    )
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.network:
        overrides.append(f"network={args.network}")
    if args.encoder:
        overrides.append(f"model.encoder_weights={args.encoder}")
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.amp:
        overrides.append(f"train.amp={args.amp}")
    if args.no_progress:
        overrides.append("train.progress=false")
    return overrides


def _config_source(args: argparse.Namespace) -> str | Path:
    if args.config:
        return args.config
    if args.resume and args.run_dir and (args.run_dir / RUN_CONFIG_NAME).is_file():
        return args.run_dir / RUN_CONFIG_NAME
    if args.resume and args.resume != "auto":
        candidate = Path(args.resume).resolve().parent.parent / RUN_CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "give --config PRESET|TOML (or --resume with a run folder holding config.toml)"
    )


def run(args: argparse.Namespace) -> int:
    if args.list_presets:
        for name in list_presets():
            first = next(
                (
                    line.split("=", 1)[1].strip().strip('"')
                    for line in preset_text(name).splitlines()
                    if line.startswith("description")
                ),
                "",
            )
            print(f"{name:24s} {first}")
        return 0
    config = load_experiment_config(_config_source(args), _overrides(args))
    if args.print_config:
        sys.stdout.write(describe_config(config))
        return 0
    run_dir = args.run_dir
    if run_dir is None:
        if args.resume and args.resume != "auto":
            run_dir = Path(args.resume).resolve().parent.parent
        else:
            run_dir = Path("runs") / config.name
    result = train(
        config,
        run_dir,
        data_root=args.data_root,
        resume=args.resume,
        overwrite=args.overwrite,
        stop_after=args.stop_after,
    )
    if result.status == "interrupted":
        return 128 + (result.signal or signal.SIGINT)
    summary = result.summary
    if result.status == "completed" and _is_main():
        best = summary.get("best_val_psnr")
        best_text = f", best validation PSNR {best:.2f} dB" if best is not None else ""
        print(
            f"done: {result.iteration} iterations in {summary['train_time_s']:.1f} s"
            f"{best_text}; weights: {result.latest_checkpoint}"
        )
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
