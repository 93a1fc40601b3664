"""Training-step speed: the reference-equivalent step vs the optimised step.

The RN50 synthetic recipe step (paper / reference YAML): batch 16 of 128² patches, Gaussian
σ=15 noise synthesised on the device in one batched call, progressive feature augmentation on
(γ=0.025), L1 loss, AdamW (lr 3e-4, weight decay 1e-4), gradient clipping at 0.01. Both steps
go through :func:`clipdenoise.training.train_step`; they differ only in the forward:

* **reference-equivalent**: float32, contiguous NCHW, encoder stage 4 computed and discarded,
  BatchNorm as separate ops (eval statistics, the project's frozen-encoder semantics; the
  reference's drifting train-mode BatchNorm costs the same), no autocast;
* **optimised**: the model's own forward after :func:`clipdenoise.acceleration.convert_for_training`
  — the frozen encoder swapped for a BatchNorm-folded copy cast to bf16 (CPUs with native bf16;
  fp16/bf16 on CUDA; float32 elsewhere) and run without autograd; the decoder under autocast;
  parameters, gradients and AdamW in float32.

Before timing, one step of each on the same batch and augmentation seed checks that they
compute the same update (loss difference, cosine similarity of the gradients).

Random weights (no CLIP download): speed does not depend on the weights' values.

Usage: ``python benchmarks/train_speed.py [--rounds 5] [--device auto]``
Writes ``benchmarks/results/train_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _perf  # noqa: E402
from clipdenoise.acceleration import (  # noqa: E402
    build_reference_equivalent,
    convert_for_training,
)
from clipdenoise.devices import resolve_dtype  # noqa: E402
from clipdenoise.model import CLIPDenoiser, ModelConfig  # noqa: E402
from clipdenoise.noise import add_noise, parse_noise_spec  # noqa: E402
from clipdenoise.training import DistInfo, StepContext, make_loss, train_step  # noqa: E402

BATCH = 16
PATCH = 128
NOISE = parse_noise_spec("gaussian:15")
GRAD_CLIP = 0.01


def synthetic_clean(device: torch.device, seed: int = 0) -> torch.Tensor:
    """A fixed batch of smooth random patches ``(16, 3, 128, 128)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(BATCH, 3, PATCH // 8, PATCH // 8, generator=generator)
    clean = torch.nn.functional.interpolate(coarse, size=(PATCH, PATCH), mode="bilinear")
    return clean.to(device)


def make_step(
    model: CLIPDenoiser, forward: torch.nn.Module, device: torch.device, autocast_dtype
) -> StepContext:
    parameters = model.trainable_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=3e-4, betas=(0.9, 0.999), weight_decay=1e-4)

    def autocast():
        if autocast_dtype is None:
            import contextlib

            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    return StepContext(
        forward=forward,
        optimizer=optimizer,
        parameters=parameters,
        loss_fn=make_loss("l1"),
        autocast=autocast,
        scaler=torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None,
        grad_clip_norm=GRAD_CLIP,
        info=DistInfo(device=device),
        channels_last=False,
    )


def gradient_agreement(
    reference: CLIPDenoiser, optimised: CLIPDenoiser, ref_forward, opt_forward, clean, autocast
) -> dict[str, float]:
    """One forward/backward of both paths on the same batch and augmentation draws."""
    noisy = add_noise(clean, NOISE, torch.Generator(clean.device).manual_seed(7))
    results = {}
    grads = {}
    for name, model, forward, context in (
        ("reference", reference, ref_forward, None),
        ("optimised", optimised, opt_forward, autocast),
    ):
        model.zero_grad(set_to_none=True)
        generator = torch.Generator(clean.device).manual_seed(11)
        model.aug_generator = forward.aug_generator = generator
        if context is None:
            restored = forward(noisy)
        else:
            with context():
                restored = forward(noisy)
        loss = torch.nn.functional.l1_loss(restored.float(), clean)
        loss.backward()
        results[f"loss_{name}"] = float(loss.detach())
        grads[name] = torch.cat([p.grad.flatten() for p in model.trainable_parameters()])
        model.zero_grad(set_to_none=True)
        model.aug_generator = forward.aug_generator = None
    ref, opt = grads["reference"].double(), grads["optimised"].double()
    results["grad_cosine_similarity"] = float(torch.dot(ref, opt) / (ref.norm() * opt.norm()))
    results["grad_relative_error"] = float((ref - opt).norm() / ref.norm())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timed steps per path")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--arch", default="RN50")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--no-channels-last", action="store_true", help="keep the optimised step in NCHW"
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    channels_last = not args.no_channels_last

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    compute_dtype = resolve_dtype("auto", device)
    autocast_dtype = None if compute_dtype == torch.float32 else compute_dtype
    machine = _perf.machine_description()
    print(f"device {device}, optimised compute dtype {compute_dtype}", flush=True)

    config = ModelConfig(arch=args.arch, encoder_weights=None, aug_gamma=0.025)
    base = CLIPDenoiser(config)
    reference = build_reference_equivalent(base).to(device).train()
    optimised = copy.deepcopy(base).to(device).train()
    if channels_last:
        optimised = optimised.to(memory_format=torch.channels_last)
    ref_forward = reference
    opt_forward = convert_for_training(optimised, dtype=compute_dtype)
    clean = synthetic_clean(device)

    def autocast():
        return torch.autocast(device_type=device.type, dtype=compute_dtype)

    agreement = gradient_agreement(
        reference, optimised, ref_forward, opt_forward, clean, autocast if autocast_dtype else None
    )
    print("agreement", agreement, flush=True)

    ref_step = make_step(reference, ref_forward, device, None)
    opt_step = make_step(optimised, opt_forward, device, autocast_dtype)
    opt_step.channels_last = channels_last
    generators = {
        "reference": torch.Generator(device).manual_seed(1),
        "optimised": torch.Generator(device).manual_seed(1),
    }
    reference.aug_generator = torch.Generator(device).manual_seed(2)
    optimised.aug_generator = opt_forward.aug_generator = torch.Generator(device).manual_seed(2)
    peaks: dict[str, int] = {}

    def run(name: str, step: StepContext):
        def once() -> None:
            noisy = add_noise(clean, NOISE, generators[name])  # batched, on the device
            with _perf.PeakRSS() as memory:
                train_step(step, [(noisy, clean)])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            peaks[name] = max(peaks.get(name, 0), memory.peak_delta)

        return once

    started = time.perf_counter()
    times = _perf.interleaved_times(
        {"reference": run("reference", ref_step), "optimised": run("optimised", opt_step)},
        rounds=args.rounds,
    )
    elapsed = time.perf_counter() - started

    summary = {}
    for name, measured in times.items():
        wall = _perf.median(measured["wall"])
        summary[name] = {
            "median_step_s": round(wall, 3),
            "median_cpu_s": round(_perf.median(measured["cpu"]), 3),
            "it_per_s": round(1.0 / wall, 3),
            "all_wall_s": [round(t, 3) for t in measured["wall"]],
            "peak_rss_increase_mib": round(peaks.get(name, 0) / 2**20, 1),
        }
    speedup_wall = summary["reference"]["median_step_s"] / summary["optimised"]["median_step_s"]
    speedup_cpu = summary["reference"]["median_cpu_s"] / summary["optimised"]["median_cpu_s"]
    payload = {
        "benchmark": "train_speed",
        "machine": machine,
        "load_average_1m_at_end": round(__import__("os").getloadavg()[0], 2),
        "recipe": {
            "arch": args.arch,
            "batch": BATCH,
            "patch": PATCH,
            "noise": str(NOISE),
            "pfa_gamma": config.aug_gamma,
            "loss": "l1",
            "optimizer": "AdamW lr 3e-4 wd 1e-4",
            "grad_clip": GRAD_CLIP,
        },
        "device": str(device),
        "optimised_compute_dtype": str(compute_dtype).replace("torch.", ""),
        "optimised_channels_last": channels_last,
        "rounds": args.rounds,
        "steps": summary,
        "speedup_wall": round(speedup_wall, 2),
        "speedup_cpu_time": round(speedup_cpu, 2),
        "agreement_first_step": agreement,
        "benchmark_seconds": round(elapsed, 1),
    }
    print(
        f"reference {summary['reference']['it_per_s']:.3f} it/s, optimised "
        f"{summary['optimised']['it_per_s']:.3f} it/s: x{speedup_wall:.2f} wall "
        f"(x{speedup_cpu:.2f} CPU time)",
        flush=True,
    )
    _perf.publish("train_speed", payload, render_markdown(payload), save=not args.no_save)
    return 0


def render_markdown(payload: dict) -> str:
    steps = payload["steps"]
    agreement = payload["agreement_first_step"]
    lines = [
        "# Training step speed (RN50 synthetic recipe)",
        "",
        f"Batch {payload['recipe']['batch']} × {payload['recipe']['patch']}² patches, "
        f"{payload['recipe']['noise']} noise synthesised on the device per batch, PFA "
        f"γ={payload['recipe']['pfa_gamma']}, L1, AdamW, grad clip "
        f"{payload['recipe']['grad_clip']}; device {payload['device']}; optimised compute dtype "
        f"{payload['optimised_compute_dtype']}; {payload['rounds']} interleaved steps per path, "
        "medians.",
        "",
        "| step | median s/step | it/s | median CPU s | peak RSS increase (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("reference", "optimised"):
        row = steps[name]
        lines.append(
            f"| {name} | {row['median_step_s']:.3f} | {row['it_per_s']:.3f} | "
            f"{row['median_cpu_s']:.3f} | {row['peak_rss_increase_mib']:.0f} |"
        )
    lines += [
        "",
        f"**Speed-up: ×{payload['speedup_wall']:.2f}** (wall clock), "
        f"×{payload['speedup_cpu_time']:.2f} (process CPU time).",
        "",
        f"Same batch, same augmentation draws: loss {agreement['loss_reference']:.5f} "
        f"(reference) vs {agreement['loss_optimised']:.5f} (optimised); gradient cosine "
        f"similarity {agreement['grad_cosine_similarity']:.5f}, relative error "
        f"{agreement['grad_relative_error']:.4f}.",
    ]
    return _perf.finish_report(lines, payload)


if __name__ == "__main__":
    raise SystemExit(main())
