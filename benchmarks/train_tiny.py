"""Benchmark: train the ``tiny-cpu`` recipe from scratch on CBSD432, score it on Kodak24.

Reports the PSNR/SSIM on Kodak24 with Gaussian σ = 15 (the reference test protocol: numpy
seed 0, unclipped noisy input) of the trained model versus the noisy input, and the training
throughput (iterations per second) in fp32 and with bf16 autocast.

    nice -n 10 python benchmarks/train_tiny.py --data-root ../shared/data

Results go to ``benchmarks/results/train_tiny.{json,md}``. This is a script, not a test: it
takes a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clipdenoise import metrics
from clipdenoise.checkpoints import load_checkpoint
from clipdenoise.image_io import read_image
from clipdenoise.noise import add_reference_noise
from clipdenoise.training import load_experiment_config, train

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help="folder holding CBSD432/, CBSD68/ and Kodak24/ (default: ../shared/data)",
    )
    parser.add_argument("--iters", type=int, default=None, help="training iterations (preset: 400)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--throughput-iters", type=int, default=30, help="iterations of each it/s measurement"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="it/s measurements per setting (best is kept)"
    )
    parser.add_argument("--sigma", type=float, default=15.0, help="test noise σ on [0, 255]")
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="results folder"
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="keep the run here")
    return parser.parse_args()


@torch.no_grad()
def score_kodak(checkpoint: Path, folder: Path, sigma: float) -> dict[str, float]:
    """Mean PSNR/SSIM of the noisy input and of the model's output on every image of ``folder``."""
    model = load_checkpoint(checkpoint)
    scores: dict[str, list[float]] = {k: [] for k in ("noisy_psnr", "noisy_ssim", "psnr", "ssim")}
    files = sorted(folder.glob("*.png"))
    for path in files:
        clean = read_image(path)
        noisy = add_reference_noise(clean, f"gaussian:{sigma:g}", seed=0).astype(np.float32)
        batch = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]
        restored = model(batch)[0].permute(1, 2, 0).numpy()
        reference = metrics.to_metric_scale(clean)
        for prefix, image in (("noisy_", noisy), ("", restored)):
            scaled = metrics.to_metric_scale(image)
            scores[f"{prefix}psnr"].append(metrics.psnr(reference, scaled))
            scores[f"{prefix}ssim"].append(metrics.ssim(reference, scaled))
    result = {key: float(np.mean(values)) for key, values in scores.items()}
    result["images"] = len(files)
    return result


def measure_throughput(data_root: Path, threads: int, iters: int, amp: str) -> float:
    """Iterations per second of tiny-cpu training (no validation, no checkpoints in between)."""
    config = load_experiment_config(
        "tiny-cpu",
        [
            f"train.num_iters={iters}",
            f"train.amp={amp}",
            f"train.cpu_threads={threads}",
            "train.progress=false",
            f"train.log_every={iters}",
            f"train.checkpoint_every={iters}",
            "eval.val_dir=",
            "data.max_images=64",
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        result = train(config, Path(folder) / "run", data_root=data_root)
    return float(result.summary["it_per_s"])


def main() -> int:
    args = parse_args()
    load_start = os.getloadavg()[0]
    overrides = [f"train.cpu_threads={args.threads}"]
    if args.iters:
        overrides.append(f"train.num_iters={args.iters}")
    config = load_experiment_config("tiny-cpu", overrides)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run_dir or Path(scratch) / "tiny-cpu"
        started = time.perf_counter()
        result = train(config, run_dir, data_root=args.data_root, overwrite=True)
        wall = time.perf_counter() - started
        kodak = score_kodak(result.latest_checkpoint, args.data_root / "Kodak24", args.sigma)
    # alternate the two settings and keep each one's best run: the machine may be shared
    runs: dict[str, list[float]] = {"none": [], "bf16": []}
    for _ in range(args.repeats):
        for amp in runs:
            runs[amp].append(
                measure_throughput(args.data_root, args.threads, args.throughput_iters, amp)
            )
    throughput = {amp: max(values) for amp, values in runs.items()}
    report = {
        "recipe": "tiny-cpu",
        "iterations": result.iteration,
        "train_wall_s": round(wall, 1),
        "train_loop_s": result.summary["train_time_s"],
        "final_train_loss": result.summary["final_loss"],
        "val_cbsd68_psnr": result.summary["last_val"],
        "kodak24_sigma": args.sigma,
        "kodak24": kodak,
        "gain_db": kodak["psnr"] - kodak["noisy_psnr"],
        "training_amp": result.summary["amp"],
        "it_per_s": {"fp32": throughput["none"], "bf16_autocast": throughput["bf16"]},
        "it_per_s_runs": {"fp32": runs["none"], "bf16_autocast": runs["bf16"]},
        "throughput_iters": args.throughput_iters,
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "patch_size": config.data.patch_size,
        "batch_size": config.data.batch_size,
        "model_width": config.model.width,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_tiny.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "train_tiny.md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0


def render_markdown(report: dict) -> str:
    kodak = report["kodak24"]
    speed = report["it_per_s"]
    return (
        "# tiny-cpu training benchmark\n\n"
        f"Recipe `tiny-cpu` (width {report['model_width']}, random frozen encoder, "
        f"{report['iterations']} iterations, batch {report['batch_size']} × "
        f"{report['patch_size']}² patches of CBSD432 + Gaussian σ = 15), trained from scratch "
        f"on CPU ({report['threads']} thread, mixed precision: {report['training_amp']} "
        f"(`train.amp = auto`), torch {report['torch']}), {report['date']}; the machine was shared "
        f"(1-min load average {report['load_average_1min']['start']:.1f} at the start on 2 "
        "cores), so times are indicative.\n\n"
        f"| Kodak24, σ = {report['kodak24_sigma']:g} ({kodak['images']} images) | PSNR (dB) | SSIM |\n"
        "|---|---|---|\n"
        f"| noisy input | {kodak['noisy_psnr']:.2f} | {kodak['noisy_ssim']:.4f} |\n"
        f"| tiny-cpu, trained | {kodak['psnr']:.2f} | {kodak['ssim']:.4f} |\n"
        f"| gain | **+{report['gain_db']:.2f}** | |\n\n"
        f"Training wall time {report['train_wall_s']:.0f} s (loop {report['train_loop_s']:.0f} s). "
        f"Throughput (best of {len(report['it_per_s_runs']['fp32'])} runs of "
        f"{report['throughput_iters']} iterations): {speed['fp32']:.2f} it/s fp32, "
        f"{speed['bf16_autocast']:.2f} it/s with bf16 autocast.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
