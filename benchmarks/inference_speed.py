"""Inference speed: the reference-equivalent path vs the optimised default, untiled and tiled.

RN50-size CLIPDenoiser with random weights (speed does not depend on the values) at 256², 512²,
1024² and a 12-MP (4000×3000) image processed in tiles (1024, overlap 128). Paths, interleaved
in one process:

* **(a) reference-equivalent**: float32, contiguous NCHW, encoder stage 4 computed and thrown
  away, BatchNorm as separate ops, ``torch.no_grad`` (what the reference test scripts do; no
  inference mode) — :func:`clipdenoise.acceleration.build_reference_equivalent`;
* **(b) optimised default**: :func:`clipdenoise.acceleration.prepare_for_inference` with its
  defaults — BatchNorm folded, weights cast once to bf16 on CPUs with native bf16 (float32 output
  head), channels-last, ``torch.inference_mode``;
* **(c) optimised float32**: the same with ``dtype="float32"`` (must match (a) to 1e-4).

The headline of the tiled case is the **tiled/untiled throughput ratio**: MP/s of the optimised
default on the 12-MP image in tiles over its MP/s untiled at 1024², same run (target ≥ 0.65),
both on wall clock and on process CPU time (the latter robust to other jobs on the machine).
Tiled = untiled is checked on a 1536×1152 image (2×2 tiles) with the RN50 architecture in
float32 (max abs difference; bound 1e-3).

At 512² the levers are also measured one at a time. Reported per size: megapixels/s (median
wall clock and CPU time), peak RSS increase during a forward, output difference of (b) and (c)
against (a) (max abs, PSNR with data range 1, and PSNR over the reference output's own range,
which is small for random weights), and achieved GFLOP/s (FLOPs counted with
``torch.utils.flop_counter.FlopCounterMode`` on meta tensors) as a fraction of this machine's
measured float32 and bf16 matmul peaks.

Usage: ``python benchmarks/inference_speed.py [--quick] [--skip-12mp] [--only-tiled]``
Writes ``benchmarks/results/inference_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from clipdenoise.acceleration import (
    build_reference_equivalent,
    count_flops,
    prepare_for_inference,
)
from clipdenoise.inference import TILE_MULTIPLE, tile_layout, tiled_forward
from clipdenoise.model import CLIPDenoiser, ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _perf  # noqa: E402

TILE_SIZE = 1024
TILE_OVERLAP = 128
TWELVE_MP = (3000, 4000)  # H, W
PARITY_IMAGE = (1152, 1536)  # H, W: 2x2 tiles of 1024 at most


def test_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic scene plus Gaussian noise σ=25/255, ``(1, 3, H, W)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 64), max(2, width // 64), generator=generator)
    clean = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    noise = torch.randn(1, 3, height, width, generator=generator) * (25 / 255)
    return (clean + noise).clamp(0, 1)


def import_seconds(statement: str, repeats: int = 3) -> float:
    """Median in-process time of ``statement`` (an import) in fresh interpreters."""
    code = (
        f"import time; start = time.perf_counter(); {statement}; print(time.perf_counter() - start)"
    )
    times = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        times.append(float(output.strip().splitlines()[-1]))
    return round(_perf.median(times), 3)


def forward_reference(reference: CLIPDenoiser):
    def run(image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return reference(image)

    return run


def forward_plain(model: CLIPDenoiser):
    """The model as built (stage 4 skipped), float32 NCHW, ``no_grad`` — one lever at a time."""
    return forward_reference(model)


def tiled(model, dtype: torch.dtype, no_grad_only: bool):
    def run(image: torch.Tensor) -> torch.Tensor:
        context = torch.no_grad() if no_grad_only else torch.inference_mode()
        with context:
            return tiled_forward(
                model, image, tile_size=TILE_SIZE, tile_overlap=TILE_OVERLAP, dtype=dtype
            )

    return run


def measure(
    cases: dict, image: torch.Tensor, rounds: int, warmup: bool = True
) -> tuple[dict, dict]:
    """Interleaved timing of ``cases`` (name -> run(image)); outputs of the first call.

    Without ``warmup`` the first (output-producing) call is the one timed: for the 12-MP case,
    where one-off setup is negligible next to tens of tile forwards.
    """
    outputs: dict[str, torch.Tensor] = {}
    peaks: dict[str, int] = {}

    def timed(name):
        def once():
            with _perf.PeakRSS() as memory:
                result = cases[name](image)
            outputs.setdefault(name, result)
            peaks[name] = max(peaks.get(name, 0), memory.peak_delta)

        return once

    if warmup:
        outputs.update({name: run(image) for name, run in cases.items()})
    times = _perf.interleaved_times({name: timed(name) for name in cases}, rounds, warmup=0)
    pixels = image.shape[-2] * image.shape[-1]
    rows = {}
    for name, measured in times.items():
        wall = _perf.median(measured["wall"])
        cpu = _perf.median(measured["cpu"])
        rows[name] = {
            "median_s": round(wall, 4),
            "median_cpu_s": round(cpu, 4),
            "megapixels_per_s": round(pixels / 1e6 / wall, 4),
            "all_wall_s": [round(t, 4) for t in measured["wall"]],
            "peak_rss_increase_mib": round(peaks.get(name, 0) / 2**20, 1),
        }
    return rows, outputs


def add_ratios_and_flops(rows: dict, outputs: dict, flops: dict, peaks: dict) -> None:
    reference = rows["reference"]
    for name, row in rows.items():
        row["speedup_wall"] = round(reference["median_s"] / row["median_s"], 2)
        row["speedup_cpu_time"] = round(reference["median_cpu_s"] / row["median_cpu_s"], 2)
        if name != "reference":
            row["vs_reference"] = _perf.output_difference(outputs["reference"], outputs[name])
        if name in flops:
            gflops = flops[name] / 1e9
            achieved = gflops / row["median_s"]
            row["gflop"] = round(gflops, 2)
            row["achieved_gflop_per_s"] = round(achieved, 1)
            per_cpu = gflops / row["median_cpu_s"]
            row["gflop_per_cpu_s"] = round(per_cpu, 1)
            # Compute efficiency: model and matmul both per CPU second (robust to sharing).
            row["fraction_of_fp32_peak"] = round(per_cpu / peaks["float32_per_cpu_s"], 3)
            row["fraction_of_bf16_peak"] = round(per_cpu / peaks["bfloat16_per_cpu_s"], 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, no 12-MP case")
    parser.add_argument("--skip-12mp", action="store_true", help="no 12-MP tiled case")
    parser.add_argument(
        "--only-tiled",
        action="store_true",
        help="only what the tiled/untiled ratio needs: 1024² untiled and the 12-MP tiled case, "
        "optimised default only",
    )
    parser.add_argument(
        "--name", default="inference_speed", help="results file stem in benchmarks/results/"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    machine = _perf.machine_description()
    imports = {
        "import clipdenoise": import_seconds("import clipdenoise"),
        "import clipdenoise.inference (pulls torch)": import_seconds(
            "import clipdenoise.inference"
        ),
    }
    print(f"import times (s): {imports}", flush=True)
    peaks = None if args.only_tiled else _perf.matmul_peaks()
    print(f"matmul peaks (GFLOP/s): {peaks}", flush=True)

    model = CLIPDenoiser(ModelConfig(arch="RN50", encoder_weights=None)).eval()
    reference = build_reference_equivalent(model).eval()
    optimised = prepare_for_inference(model)  # the default: dtype auto, channels-last
    optimised_fp32 = prepare_for_inference(model, dtype="float32")
    print(f"optimised default: dtype {optimised.dtype}, channels_last {optimised.channels_last}")
    sizes = {}
    rounds = {256: 5, 512: 4, 1024: 2} if not args.quick else {256: 2, 512: 2, 1024: 1}
    if args.only_tiled:
        rounds = {1024: 2}

    for side, count in rounds.items():
        image = test_image(side, side, seed=side)
        cases = {
            "reference": forward_reference(reference),
            "optimised": optimised,
            "optimised_fp32": optimised_fp32,
        }
        if args.only_tiled:
            cases = {"optimised": optimised}
        if side == 512:  # one lever at a time
            cases = {
                "reference": forward_reference(reference),
                "skip_stage4": forward_plain(model),
                "fold_bn_inference_mode": prepare_for_inference(
                    model, dtype="float32", channels_last=False
                ),
                "optimised_fp32": optimised_fp32,
                "optimised": optimised,
            }
        rows, outputs = measure(cases, image, count)
        if args.only_tiled:
            sizes[f"{side}x{side}"] = rows
            continue
        shape = (1, 3, side, side)
        flops = {"reference": count_flops(reference, shape)}
        for name in rows:
            if name != "reference":
                flops[name] = count_flops(model, shape)
        add_ratios_and_flops(rows, outputs, flops, peaks)
        sizes[f"{side}x{side}"] = rows
        print(f"{side}²: " + ", ".join(f"{n} x{r['speedup_wall']}" for n, r in rows.items()))

    tiling = {"tile_size": TILE_SIZE, "tile_overlap": TILE_OVERLAP}
    if not (args.quick or args.skip_12mp):
        height, width = TWELVE_MP
        image = test_image(height, width, seed=12)
        cases = {
            "reference": tiled(reference, torch.float32, no_grad_only=True),
            "optimised": tiled(optimised, optimised.dtype, no_grad_only=False),
        }
        if args.only_tiled:
            cases.pop("reference")
        rows, outputs = measure(cases, image, rounds=1, warmup=False)
        plan = tile_plan(height, width)
        tile_shape = (1, 3, plan["tile_height"], plan["tile_width"])
        flops = {
            "reference": plan["tiles"] * count_flops(reference, tile_shape),
            "optimised": plan["tiles"] * count_flops(model, tile_shape),
        }
        if not args.only_tiled:
            add_ratios_and_flops(rows, outputs, flops, peaks)
        sizes[f"{width}x{height} tiled"] = rows
        untiled = sizes["1024x1024"]["optimised"]
        tiled_row = rows["optimised"]
        tiling.update(plan)
        tiling["tiled_vs_untiled_1024"] = {
            "wall": round(tiled_row["megapixels_per_s"] / untiled["megapixels_per_s"], 3),
            "cpu_time": round(
                untiled["median_cpu_s"] / 1024**2 / (tiled_row["median_cpu_s"] / (height * width)),
                3,
            ),
            "target": 0.65,
        }
        print(
            f"12 MP tiled: plan {plan}; tiled/untiled throughput {tiling['tiled_vs_untiled_1024']}",
            flush=True,
        )
    if not args.quick:
        tiling["tiled_equals_untiled"] = tiled_parity(model)
        print(f"tiled = untiled: {tiling['tiled_equals_untiled']}", flush=True)

    payload = {
        "benchmark": "inference_speed",
        "machine": machine,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "matmul_peak_gflop_per_s": peaks,
        "import_seconds": imports,
        "model": "RN50 CLIPDenoiser (F1-F4, decoder as in the paper), random weights",
        "optimised_default": {
            "dtype": str(optimised.dtype).replace("torch.", ""),
            "channels_last": optimised.channels_last,
            "batchnorm_folded": True,
            "inference_mode": True,
            "head_dtype": "float32",
        },
        "tiling": tiling,
        "sizes": sizes,
        "benchmark_seconds": round(time.perf_counter() - started, 1),
    }
    _perf.publish(args.name, payload, render_markdown(payload), save=not args.no_save)
    return 0


def tile_plan(height: int, width: int) -> dict:
    """The tiles :func:`clipdenoise.inference.tiled_forward` lays over a ``height``×``width`` image."""
    padded_h = -(-height // TILE_MULTIPLE) * TILE_MULTIPLE
    padded_w = -(-width // TILE_MULTIPLE) * TILE_MULTIPLE
    tile_h, rows = tile_layout(padded_h, TILE_SIZE, TILE_OVERLAP)
    tile_w, cols = tile_layout(padded_w, TILE_SIZE, TILE_OVERLAP)
    computed = len(rows) * len(cols) * tile_h * tile_w
    return {
        "tiles": len(rows) * len(cols),
        "grid": f"{len(cols)}x{len(rows)}",
        "tile_width": tile_w,
        "tile_height": tile_h,
        "computed_over_image_pixels": round(computed / (height * width), 3),
    }


def tiled_parity(model: CLIPDenoiser) -> dict:
    """Tiled vs untiled output of the float32 optimised form on a 1536×1152 image (2×2 tiles).

    The random-weight head is rescaled so the output spans about [0, 1] like a trained model's
    (its raw output has std ~0.01, which would make an absolute bound vacuous).
    """
    height, width = PARITY_IMAGE
    image = test_image(height, width, seed=7)
    prepared = prepare_for_inference(model, dtype="float32")
    with torch.no_grad():
        scale = 0.25 / float(prepared(image[..., :256, :256]).std())
    prepared.network.decoder.head.weight.data.mul_(scale)
    untiled = prepared(image)
    tiled_out = tiled_forward(prepared, image, tile_size=TILE_SIZE, tile_overlap=TILE_OVERLAP)
    difference = _perf.output_difference(untiled, tiled_out)
    return {
        "image": f"{width}x{height}",
        "model": "RN50 architecture, float32, random weights (head rescaled: output std 0.25)",
        "output_std": round(float(untiled.std()), 3),
        "max_abs": difference["max_abs"],
        "psnr_db": difference["psnr_db"],
        "bound_max_abs": 1e-3,
    }


LABELS = {
    "reference": "(a) reference-equivalent",
    "skip_stage4": "+ stage 4 not computed",
    "fold_bn_inference_mode": "+ BN folded, inference mode",
    "optimised_fp32": "(c) + channels-last (fp32 optimised)",
    "optimised": "(b) optimised default",
}


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _tiling_lines(tiling: dict) -> list[str]:
    lines = []
    ratio = tiling.get("tiled_vs_untiled_1024")
    if ratio:
        lines += [
            f"**Tiled/untiled throughput** (optimised default, 4000×3000 in {tiling['grid']} tiles "
            f"of {tiling['tile_width']}×{tiling['tile_height']}, "
            f"{tiling['computed_over_image_pixels']}× the image's pixels computed, against "
            f"untiled 1024²): **{ratio['wall']:.2f}** on wall clock, {ratio['cpu_time']:.2f} on "
            f"CPU time (target ≥ {ratio['target']}).",
            "",
        ]
    parity = tiling.get("tiled_equals_untiled")
    if parity:
        lines += [
            f"Tiled = untiled ({parity['image']}, {parity['model']}): max abs difference "
            f"{parity['max_abs']:.2e} (bound {parity['bound_max_abs']:.0e}), PSNR "
            f"{parity['psnr_db']} dB.",
            "",
        ]
    return lines


def render_markdown(payload: dict) -> str:
    peaks = payload["matmul_peak_gflop_per_s"]
    default = payload["optimised_default"]
    lines = [
        "# Inference speed (RN50 CLIPDenoiser, CPU)",
        "",
        f"Optimised default: {default['dtype']} weights (float32 head), channels-last, "
        "BatchNorm folded, inference mode. "
        + (
            "Measured 2048² matmul peaks: "
            f"{peaks['float32']} / {peaks['bfloat16']} GFLOP/s (float32 / bf16, wall clock), "
            f"{peaks['float32_per_cpu_s']} / {peaks['bfloat16_per_cpu_s']} GFLOP per CPU "
            "second; the % of peak columns compare GFLOP per CPU second (robust to the machine "
            "being shared). "
            if peaks
            else "Tiled/untiled run only (`--only-tiled`: no reference path, no matmul peaks). "
        )
        + f"Tiled case: tiles of at most {payload['tiling']['tile_size']}², overlap at least "
        f"{payload['tiling']['tile_overlap']}. Medians of interleaved runs.",
        "",
        *_tiling_lines(payload["tiling"]),
        "| size | path | MP/s | × vs (a) wall | × vs (a) CPU | peak RSS +MiB | max abs vs (a) "
        "| PSNR vs (a) dB | GFLOP/s wall | GFLOP/CPU-s | % fp32 peak | % bf16 peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, rows in payload["sizes"].items():
        for name, row in rows.items():
            diff = row.get("vs_reference")
            max_abs = f"{diff['max_abs']:.2e}" if diff else "—"
            psnr = f"{diff['psnr_db']}" if diff else "—"
            lines.append(
                f"| {size} | {LABELS.get(name, name)} | {row['megapixels_per_s']:.3f} | "
                + " | ".join(
                    [
                        _cell(row.get("speedup_wall"), ".2f"),
                        _cell(row.get("speedup_cpu_time"), ".2f"),
                        _cell(row["peak_rss_increase_mib"], ".0f"),
                        max_abs,
                        psnr,
                        _cell(row.get("achieved_gflop_per_s"), ".0f"),
                        _cell(row.get("gflop_per_cpu_s"), ".0f"),
                        _cell(_percent(row.get("fraction_of_fp32_peak")), ".0f"),
                        _cell(_percent(row.get("fraction_of_bf16_peak")), ".0f"),
                    ]
                )
                + " |"
            )
    lines += [
        "",
        "PSNR uses data range 1; with random weights the output range is small, so the JSON also "
        "gives PSNR over the reference output's own range (`psnr_db_rel_range`). Peak RSS is the "
        "largest resident-memory increase sampled during one forward.",
        "",
        "Import time (median of 3 fresh interpreters): "
        + "; ".join(f"`{k}` {v:.2f} s" for k, v in payload["import_seconds"].items())
        + ".",
    ]
    return _perf.finish_report(lines, payload)


if __name__ == "__main__":
    raise SystemExit(main())
