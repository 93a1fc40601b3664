"""``clipdenoise denoise`` end to end on a large JPEG with default settings.

A fresh process runs the real CLI (decode JPEG -> tile plan -> tiled inference -> blend ->
encode JPEG) on a synthetic ``--megapixels`` photo with the RN50 architecture (random weights:
time and memory do not depend on the weights' values; the only option given besides input and
output is ``--weights``, because the default named model needs downloaded weights). Reported:
wall time of the CLI call, the process's peak RSS, the time spent inside the network (every
call of the prepared model's forward, timed by wrapping it) and the share spent outside it
(decode, tiling, blending, encode, model preparation; target ≤ 15 %).

    nice python benchmarks/denoise_end_to_end.py --megapixels 24

Writes ``benchmarks/results/denoise_end_to_end.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _perf  # noqa: E402


def make_inputs(folder: Path, megapixels: float) -> tuple[Path, Path]:
    """A smooth noisy 3:2 JPEG photo of ``megapixels`` and a random-init RN50 checkpoint."""
    from PIL import Image

    from clipdenoise.checkpoints import save_checkpoint
    from clipdenoise.model import CLIPDenoiser, ModelConfig

    image = folder / "photo.jpg"
    Image.fromarray(_perf.synthetic_photo(megapixels)).save(image, quality=92)
    model = CLIPDenoiser(ModelConfig(arch="RN50", encoder_weights=None)).eval()
    weights = save_checkpoint(model, folder / "rn50.safetensors", full=True)
    return image, weights


def worker(image: str, weights: str) -> dict:
    """Run the CLI once in this process, timing the network's forward calls."""
    from clipdenoise import acceleration
    from clipdenoise.cli import main

    network = {"seconds": 0.0, "calls": 0, "dtype": None}
    forward = acceleration.InferenceModel.forward

    def timed(self, noisy, window=None):
        started = time.perf_counter()
        try:
            return forward(self, noisy, window)
        finally:
            network["seconds"] += time.perf_counter() - started
            network["calls"] += 1
            network["dtype"] = str(self.dtype).replace("torch.", "")

    acceleration.InferenceModel.forward = timed
    output = Path(image).with_name("photo_denoised.jpg")
    log = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stderr(log):
        code = main(["denoise", image, "-o", str(output), "--weights", weights, "--overwrite"])
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "exit_code": code,
        "cli_seconds": round(seconds, 2),
        "network_seconds": round(network["seconds"], 2),
        "network_calls": network["calls"],
        "outside_network_share": round(1 - network["seconds"] / seconds, 4),
        "compute_dtype": network["dtype"],
        "peak_rss_gib": round(peak / 2**30, 3),
        "stderr_tail": log.getvalue()[-600:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--worker", nargs=2, metavar=("IMAGE", "WEIGHTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    machine = _perf.machine_description()
    with tempfile.TemporaryDirectory() as folder:
        image, weights = make_inputs(Path(folder), args.megapixels)
        from PIL import Image

        with Image.open(image) as opened:
            width, height = opened.size
        started = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, __file__, "--worker", str(image), str(weights)],
            capture_output=True,
            text=True,
            check=True,
        )
        process_seconds = time.perf_counter() - started
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    payload = {
        "benchmark": "denoise_end_to_end",
        "machine": machine,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "image": f"{width}x{height} JPEG ({width * height / 1e6:.1f} MP)",
        "command": "clipdenoise denoise photo.jpg -o photo_denoised.jpg --weights rn50.safetensors",
        "model": "RN50 CLIPDenoiser, random weights",
        "process_seconds_with_imports": round(process_seconds, 2),
        **result,
        "megapixels_per_s": round(width * height / 1e6 / result["cli_seconds"], 4),
    }
    _perf.publish("denoise_end_to_end", payload, render_markdown(payload), save=not args.no_save)
    return 0 if result["exit_code"] == 0 else 1


def render_markdown(payload: dict) -> str:
    share = payload["outside_network_share"]
    lines = [
        "# `clipdenoise denoise` end to end (default settings)",
        "",
        f"{payload['image']}, {payload['model']}, `{payload['command']}` (every other option "
        f"at its default: device auto, dtype auto → {payload['compute_dtype']}, "
        "--max-memory auto, tile overlap 128).",
        "",
        "| wall time (CLI) | process incl. imports | MP/s | network | outside the network "
        "| peak RSS |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {payload['cli_seconds']:.1f} s | {payload['process_seconds_with_imports']:.1f} s | "
        f"{payload['megapixels_per_s']:.3f} | {payload['network_seconds']:.1f} s "
        f"({payload['network_calls']} forward calls) | **{100 * share:.1f} %** (target ≤ 15 %) | "
        f"{payload['peak_rss_gib']:.2f} GiB |",
        "",
        "Outside the network: JPEG decode and encode, model loading and preparation, tile "
        "extraction, blending. Load average at the end of the run: "
        f"{payload['load_average_1m_at_end']}.",
    ]
    return _perf.finish_report(lines, payload)


if __name__ == "__main__":
    raise SystemExit(main())
