"""Speed of the camera (ISP) noise pipeline on one CPU core.

Usage: ``python benchmarks/isp_speed.py [--size 512] [--repeats 10]``

Prints the median wall time of :func:`clipdenoise.isp.add_camera_noise` on a ``size x size``
RGB image and of each stage. BLAS is pinned to one thread so the figure is per core.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from clipdenoise import isp  # noqa: E402


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up (loads the curves, allocates)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : args.size, 0 : args.size] / args.size
    clean = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1) * 0.8 + 0.1 * rng.random(
        (args.size,) * 2 + (3,)
    )
    clean = clean.astype(np.float32)
    params = isp.sample_camera_params(np.random.default_rng(1))
    raw = isp.unprocess(clean, params)

    stages = {
        "add_camera_noise (total)": lambda: isp.add_camera_noise(clean, rng=rng),
        "unprocess (CRF^-1, XYZ, camera, mosaic, WB)": lambda: isp.unprocess(clean, params),
        "add_raw_noise": lambda: isp.add_raw_noise(raw, 0.04, 0.03, rng),
        "demosaic_malvar2004": lambda: isp.demosaic_malvar2004(raw, params.bayer_pattern),
        "process (WB, demosaic, XYZ, sRGB, CRF)": lambda: isp.process(raw, params),
    }
    print(f"image {args.size}x{args.size}x3, median of {args.repeats}, one thread")
    for name, function in stages.items():
        print(f"  {name:<46s} {median_seconds(function, args.repeats):.3f} s")
    benchmark_torch(args.repeats)


def _torch_batch(device: str) -> None:
    import torch

    generator = torch.Generator(device=device).manual_seed(0)
    clean = torch.rand(16, 3, 128, 128, device=device, generator=generator)
    isp.add_camera_noise_torch(clean, generator)
    if device == "cuda":
        torch.cuda.synchronize()


def benchmark_torch(repeats: int) -> None:
    """The batched torch path on a training batch (16 x 3 x 128 x 128), CPU and CUDA if present."""
    import torch

    torch.set_num_threads(1)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("add_camera_noise_torch, batch 16x3x128x128, median of", repeats)
    for device in devices:
        seconds = median_seconds(functools.partial(_torch_batch, device), repeats)
        print(f"  {device:<46s} {seconds:.3f} s")
    batch = np.random.default_rng(0).random((16, 128, 128, 3)).astype(np.float32)
    loop_rng = np.random.default_rng(1)

    def numpy_loop() -> None:
        for image in batch:
            isp.add_camera_noise(image, rng=loop_rng)

    print(f"  {'numpy, one image at a time':<46s} {median_seconds(numpy_loop, repeats):.3f} s")


if __name__ == "__main__":
    main()
