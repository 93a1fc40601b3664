"""Peak memory of denoising a 3840×2160 (4K UHD) image: untiled vs tiled.

Each configuration runs in its own subprocess (so peak RSS, ``ru_maxrss``, belongs to that run
alone) through the public API, :class:`clipdenoise.inference.Denoiser` with the optimised default
(:func:`clipdenoise.acceleration.prepare_for_inference`: bf16 on CPUs with native bf16,
channels-last, folded BatchNorm). The RN50 model has random weights drawn from a fixed seed, so
every subprocess holds the same network. Reported: peak RSS of the whole process (Python, torch,
model and image buffers included), RSS before the forward, wall time, and the PSNR / max abs
difference of every tiled output against the untiled one.

Usage: ``python benchmarks/memory.py [--tiles 512 768 1024] [--overlap 128]``
Writes ``benchmarks/results/memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _perf  # noqa: E402

WIDTH, HEIGHT = 3840, 2160


def child(args: argparse.Namespace) -> int:
    """One measured run; prints a JSON line with its numbers, saves the output as .npy."""
    if args.threads:
        torch.set_num_threads(args.threads)
    from clipdenoise.inference import Denoiser
    from clipdenoise.model import CLIPDenoiser, ModelConfig

    generator = torch.Generator().manual_seed(4)
    coarse = torch.rand(1, 3, HEIGHT // 64, WIDTH // 64, generator=generator)
    clean = torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bicubic")
    noisy = (clean + torch.randn(1, 3, HEIGHT, WIDTH, generator=generator) * (25 / 255)).clamp(0, 1)
    del clean, coarse
    model = CLIPDenoiser(ModelConfig(arch="RN50", encoder_weights=None)).eval()
    tile = None if args.tile == 0 else args.tile
    denoiser = Denoiser(
        model,
        device="cpu",
        dtype=args.dtype,
        tile_size=tile,
        tile_overlap=args.overlap,
        max_memory=None,  # exactly the tiling asked for
    )
    del model
    _perf.release_free_memory()
    rss_before = _perf.current_rss()
    start = time.perf_counter()
    restored = denoiser.denoise_batch(noisy)
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(args.out, restored[0].numpy())
    print(
        json.dumps(
            {
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "rss_before_forward_mib": round(rss_before / 2**20, 1),
                "seconds": round(elapsed, 2),
                "dtype": str(denoiser.dtype).replace("torch.", ""),
            }
        )
    )
    return 0


def run_child(tile: int, overlap: int, dtype: str, threads: int | None, out: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        "--tile",
        str(tile),
        "--overlap",
        str(overlap),
        "--dtype",
        dtype,
        "--out",
        str(out),
    ]
    if threads:
        command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"child {command} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[512, 768, 1024])
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--dtype", default="auto", help="compute dtype (default: auto)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    started = time.perf_counter()
    machine = _perf.machine_description()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="clipdenoise-memory-") as folder:
        folder = Path(folder)
        untiled_path = folder / "untiled.npy"
        rows["untiled"] = run_child(0, args.overlap, args.dtype, args.threads, untiled_path)
        print("untiled", rows["untiled"], flush=True)
        untiled = torch.from_numpy(np.load(untiled_path))
        for tile in args.tiles:
            path = folder / f"tile{tile}.npy"
            row = run_child(tile, args.overlap, args.dtype, args.threads, path)
            tiled = torch.from_numpy(np.load(path))
            row["vs_untiled"] = {
                "max_abs": float((tiled - untiled).abs().max()),
                "psnr_db": round(_perf.psnr(untiled, tiled), 2),
                "psnr_db_clamped_outputs": round(
                    _perf.psnr(untiled.clamp(0, 1), tiled.clamp(0, 1)), 2
                ),
            }
            rows[f"tile {tile}"] = row
            print(f"tile {tile}", row, flush=True)

    payload = {
        "benchmark": "memory",
        "machine": machine,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "image": f"{WIDTH}x{HEIGHT} RGB",
        "model": "RN50 CLIPDenoiser, random weights (fixed seed)",
        "dtype": rows["untiled"]["dtype"],
        "tile_overlap": args.overlap,
        "runs": rows,
        "benchmark_seconds": round(time.perf_counter() - started, 1),
    }
    _perf.publish("memory", payload, render_markdown(payload), save=not args.no_save)
    return 0


def render_markdown(payload: dict) -> str:
    lines = [
        f"# Peak memory, {payload['image']} (RN50, {payload['dtype']}, CPU)",
        "",
        "Each run in its own process; peak RSS includes Python, torch, the model and the image "
        f"buffers. Tile overlap {payload['tile_overlap']}.",
        "",
        "| run | peak RSS (MiB) | RSS before forward (MiB) | time (s) | max abs vs untiled "
        "| PSNR vs untiled (dB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in payload["runs"].items():
        diff = row.get("vs_untiled")
        lines.append(
            f"| {name} | {row['peak_rss_mib']:.0f} | {row['rss_before_forward_mib']:.0f} | "
            f"{row['seconds']:.1f} | {diff['max_abs']:.2e} | {diff['psnr_db']} |"
            if diff
            else f"| {name} | {row['peak_rss_mib']:.0f} | {row['rss_before_forward_mib']:.0f} | "
            f"{row['seconds']:.1f} | — | — |"
        )
    return _perf.finish_report(lines, payload)


if __name__ == "__main__":
    raise SystemExit(main())
