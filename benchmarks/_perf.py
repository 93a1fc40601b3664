"""Shared helpers of the performance benchmarks: machine description, matmul peaks, interleaved
timing with medians, peak-RSS sampling, result files.

Timings are noisy while other processes use the same cores, so every benchmark interleaves the
paths it compares (A, B, A, B, ...), repeats, and reports medians of both wall-clock and process
CPU time; the CPU-time ratio is the more robust one when other jobs compete for the cores.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------ machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = (
                        "avx2",
                        "avx512f",
                        "avx512_bf16",
                        "avx512_vnni",
                        "amx_bf16",
                        "amx_tile",
                    )
                    return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return float("nan")


def _shared_note() -> str | None:
    """A warning for the results when other jobs were competing for the cores (else None)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return None
    return (
        f"the {cores} cores were shared with other jobs (load average {load:.1f} at start): "
        "absolute timings are pessimistic and noisy; speed-up ratios come from interleaved "
        "runs in one process, peak RSS is unaffected"
    )


def machine_description() -> dict[str, Any]:
    """CPU, cores, RAM, GPU, software versions and the load at the time of the run."""
    from clipdenoise.devices import cpu_has_fast_bfloat16

    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "fast_bf16": cpu_has_fast_bfloat16(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _memory_gib(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "shared": _shared_note(),
    }


def matmul_peaks(size: int = 2048, repeats: int = 7) -> dict[str, float]:
    """Square-matmul throughput for float32 and bfloat16, best of ``repeats``.

    ``<dtype>`` is GFLOP per wall-clock second; ``<dtype>_per_cpu_s`` is GFLOP per second of
    process CPU time (all threads), which other processes on the same cores disturb much less and
    which is compared with the model's own GFLOP per CPU second.
    """
    peaks = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        a @ b
        best_wall = best_cpu = math.inf
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            a @ b
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        peaks[name] = round(2 * size**3 / best_wall / 1e9, 1)
        peaks[f"{name}_per_cpu_s"] = round(2 * size**3 / best_cpu / 1e9, 1)
    return peaks


# ------------------------------------------------------------------------------ timing
def interleaved_times(
    cases: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1
) -> dict[str, dict[str, list[float]]]:
    """Run each case once per round, cases interleaved; wall and CPU seconds per run."""
    for _ in range(warmup):
        for run in cases.values():
            run()
    times = {name: {"wall": [], "cpu": []} for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ------------------------------------------------------------------------------ memory
def current_rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def release_free_memory() -> None:
    """Ask glibc to give freed heap pages back to the OS (so RSS baselines are honest)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Context manager sampling this process's RSS every ``interval`` s; ``peak_delta`` is the
    largest increase over the RSS at entry, in bytes (ops release the GIL, so sampling runs)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        release_free_memory()
        self.baseline = current_rss()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def peak_delta(self) -> int:
        return self.peak - self.baseline


# ------------------------------------------------------------------------------ quality
def psnr(reference: torch.Tensor, estimate: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``estimate`` against ``reference`` (inf when equal)."""
    mse = torch.mean((reference.double() - estimate.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def output_difference(reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, float]:
    """Max abs difference, PSNR (data range 1) and PSNR over the reference's own value range."""
    value_range = float(reference.max() - reference.min()) or 1.0
    return {
        "max_abs": float((reference - estimate).abs().max()),
        "psnr_db": round(psnr(reference, estimate), 2),
        "psnr_db_rel_range": round(psnr(reference, estimate, value_range), 2),
        "reference_range": round(value_range, 4),
    }


# ------------------------------------------------------------------------------ results
def write_results(name: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md`` atomically."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in (
        (".json", json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"),
        (".md", markdown),
    ):
        path = RESULTS_DIR / f"{name}{suffix}"
        temporary = path.with_suffix(suffix + ".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        paths.append(path)
    return paths[0], paths[1]


def _jsonable(value: Any) -> Any:
    """Strict-JSON form: non-finite floats become strings, dtypes/devices/paths text."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def machine_markdown(machine: dict[str, Any]) -> str:
    """The machine description as a Markdown bullet list."""
    lines = [
        f"- CPU: {machine['cpu']} ({machine['logical_cpus']} logical CPUs, "
        f"flags: {', '.join(machine['cpu_flags']) or 'n/a'}; native bf16: {machine['fast_bf16']})",
        f"- RAM: {machine['memory_gib']} GiB; GPU: {machine['gpu'] or 'none'}",
        f"- torch {machine['torch']} ({machine['torch_threads']} threads), Python {machine['python']}",
        f"- Run: {machine['date_utc']}, load average at start {machine['load_average_1m_at_start']}",
    ]
    if machine.get("shared"):  # older results files always carry a note
        lines.append(f"- Note: {machine['shared']}")
    return "\n".join(lines) + "\n"


def finish_report(lines: list[str], payload: dict[str, Any]) -> str:
    """A report's Markdown: ``lines``, then the run time and load average (when the payload
    records them) and the machine section."""
    footer = []
    if "benchmark_seconds" in payload:
        footer += [
            "",
            f"Benchmark run time: {payload['benchmark_seconds']} s; load average at end "
            f"{payload['load_average_1m_at_end']}.",
        ]
    footer += ["", "## Machine", "", machine_markdown(payload["machine"])]
    return "\n".join([*lines, *footer])


def publish(name: str, payload: dict[str, Any], markdown: str, *, save: bool) -> None:
    """Print a report and, with ``save``, write it as ``results/<name>.{json,md}``."""
    print(markdown)
    if save:
        json_path, _ = write_results(name, payload, markdown)
        print(f"wrote {json_path} (.md beside it)")


def synthetic_photo(megapixels: float) -> np.ndarray:
    """A smooth, mildly noisy 3:2 RGB photo of ``megapixels``, ``(H, W, 3)`` uint8 (seeded).

    It is built in strips of 500 rows so that making it keeps the process small.
    """
    width = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    height = int(round(megapixels * 1e6 / width))
    rng = np.random.default_rng(0)
    rows = []
    for top in range(0, height, 500):
        yy, xx = np.mgrid[top : min(top + 500, height), 0:width].astype(np.float32)
        planes = [
            0.5 + 0.3 * np.sin(xx / (40 + 17 * c)) * np.cos(yy / (55 + 11 * c)) for c in range(3)
        ]
        strip = np.stack(planes, -1) + rng.normal(0, 0.1, (*yy.shape, 3)).astype(np.float32)
        rows.append(np.round(np.clip(strip, 0, 1) * 255).astype(np.uint8))
    return np.concatenate(rows)
