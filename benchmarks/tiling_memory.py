"""Peak memory of ``clipdenoise denoise`` on a large photo under ``--max-memory`` budgets.

For each budget a fresh process runs the real CLI path (read PNG -> tile plan -> tiled RN50
inference -> write PNG) on a synthetic ``--megapixels`` image with the real RN50 architecture
(random weights: memory and time do not depend on the weights' values) and reports its peak
resident set size (``ru_maxrss``), the tile size the planner chose and the wall time.

    nice python benchmarks/tiling_memory.py --megapixels 24 --budgets 6GB --dtype float32

Results go to ``benchmarks/results/tiling_memory.{json,md}`` (appended per run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def make_inputs(folder: Path, megapixels: float, arch: str) -> tuple[Path, Path]:
    """A smooth noisy 3:2 photo of ``megapixels`` and a random-init checkpoint of ``arch``
    (``RN50``, or ``tiny`` to check the image-size-dependent part cheaply)."""
    from PIL import Image

    import _perf
    from clipdenoise.checkpoints import save_checkpoint
    from clipdenoise.model import CLIPDenoiser, ModelConfig, tiny_config

    image = folder / "photo.png"
    Image.fromarray(_perf.synthetic_photo(megapixels)).save(image, compress_level=1)
    config = tiny_config() if arch == "tiny" else ModelConfig(arch=arch, encoder_weights=None)
    weights = save_checkpoint(CLIPDenoiser(config).eval(), folder / "model.safetensors", full=True)
    return image, weights


def worker(args: argparse.Namespace) -> None:
    """Run the CLI once in this process and print its peak RSS as JSON."""
    import torch

    from clipdenoise.cli import main
    from clipdenoise.image_io import load_image
    from clipdenoise.inference import parse_memory_size

    torch.set_num_threads(args.threads)
    output = Path(args.image).with_name(f"restored_{args.budget}.png")
    log = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(log):
        code = main(
            ["denoise", args.image, "-o", str(output), "--weights", args.weights, "--device",
             "cpu", "--dtype", args.dtype, "--max-memory", args.budget, "--tile-overlap",
             str(args.overlap), "--overwrite", "--no-progress"]
        )  # fmt: skip
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    tiles = re.search(r"tiles of (\d+) px", log.getvalue())
    height, width = load_image(output).pixels.shape[:2]
    print(
        json.dumps(
            {
                "exit_code": code,
                "budget": args.budget,
                "budget_bytes": parse_memory_size(args.budget),
                "peak_rss_bytes": peak,
                "seconds": round(seconds, 1),
                "tile_size": int(tiles.group(1)) if tiles else None,
                "height": height,
                "width": width,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--budgets", nargs="+", default=["6GB"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--arch", default="RN50", help="RN50 (default) or tiny")
    parser.add_argument("--overlap", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        image, weights = make_inputs(Path(folder), args.megapixels, args.arch)
        for budget in args.budgets:
            command = [sys.executable, __file__, "--worker", "--image", str(image),
                       "--weights", str(weights), "--budget", budget, "--dtype", args.dtype,
                       "--overlap", str(args.overlap), "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row.update(arch=args.arch, dtype=args.dtype, overlap=args.overlap, threads=args.threads)
            rows.append(row)
            print(
                f"{args.arch} {row['width']}x{row['height']} budget {budget}: "
                f"tile {row['tile_size']}, "
                f"peak RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB "
                f"(budget {row['budget_bytes'] / 2**30:.2f} GiB), {row['seconds']} s"
            )
    RESULTS.mkdir(exist_ok=True)
    record = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    path = RESULTS / "tiling_memory.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    history.append(record)
    path.write_text(json.dumps(history, indent=2) + "\n")
    table_path = RESULTS / "tiling_memory.md"
    if not table_path.is_file():
        table_path.write_text(
            "| model | image | dtype | budget | tile | budget (GiB) | peak RSS | time | date |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
        )
    with table_path.open("a") as table:
        for row in rows:
            table.write(
                f"| {row['arch']} | {row['width']}x{row['height']} | {row['dtype']} | "
                f"{row['budget']} | "
                f"{row['tile_size']} | {row['budget_bytes'] / 2**30:.2f} GiB | "
                f"{row['peak_rss_bytes'] / 2**30:.2f} GiB | {row['seconds']} s | "
                f"{record['date']} |\n"
            )


if __name__ == "__main__":
    main()
