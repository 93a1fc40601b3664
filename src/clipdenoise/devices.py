"""The device and compute-dtype policy shared by inference, training, evaluation and analysis.

Every ``--device`` / ``device=`` and ``--dtype`` / ``dtype=`` in the package goes through
:func:`resolve_device` and :func:`resolve_dtype` (or the name table :data:`COMPUTE_DTYPES`), so
all commands accept the same spellings and fail with the same
:class:`~clipdenoise.errors.ConfigError`, which names the bad value and what this machine offers.

>>> resolve_device("cpu")
device(type='cpu')
>>> dtype_from_name("bf16")
torch.bfloat16
"""

from __future__ import annotations

import functools
import re
from typing import Literal

import torch

from clipdenoise.errors import ConfigError

DeviceSpec = str | torch.device
DTypeSpec = torch.dtype | Literal["auto", "float32", "bfloat16", "float16"]

#: The dtypes a network may compute in, by canonical name.
COMPUTE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
#: Other accepted spellings of the canonical names.
DTYPE_ALIASES: dict[str, str] = {
    "fp32": "float32",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
}
#: The spellings of :func:`resolve_device` (``cuda:N`` stands for any index).
DEVICE_SPECS: tuple[str, ...] = ("auto", "cpu", "cuda", "cuda:N", "mps")


# ============================================================================ devices
def mps_available() -> bool:
    """Whether Apple's Metal (MPS) backend can be used on this machine."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """The devices present on this machine, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if mps_available():
        devices.append("mps")
    return devices


def resolve_device(spec: DeviceSpec = "auto", local_rank: int = 0) -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N | mps`` (or a :class:`torch.device`) into a usable device.

    ``auto`` picks CUDA when available, then Apple's MPS, else the CPU. A CUDA device without an
    index (``auto`` or ``cuda``) is ``cuda:<local_rank>``, so that each process of a ``torchrun``
    job gets its own GPU.

    Args:
        spec: The device name, case-insensitive.
        local_rank: This process's rank on the machine (0 for a single process).

    Returns:
        The device, with an index for CUDA.

    Raises:
        ConfigError: an unknown name, or a device this machine does not have (the message lists
            the devices it has).
    """
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            text = "cuda"
        elif mps_available():
            return torch.device("mps")
        else:
            return torch.device("cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise ConfigError(
            f"unknown device {spec!r}; use one of {', '.join(DEVICE_SPECS)} "
            f"(available here: {', '.join(available_devices())})"
        )
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _unavailable(spec, "CUDA is not available on this machine")
        index = device.index if device.index is not None else local_rank
        if index >= torch.cuda.device_count():
            raise _unavailable(spec, f"only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    if device.type == "mps" and not mps_available():
        raise _unavailable(spec, "Apple MPS is not available on this machine")
    return device


def _unavailable(spec: DeviceSpec, reason: str) -> ConfigError:
    return ConfigError(
        f"device {str(spec)!r}: {reason} (available here: {', '.join(available_devices())})"
    )


# ============================================================================ dtypes
@functools.lru_cache(maxsize=1)
def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 convolutions natively (AVX-512-BF16 or AMX).

    Without those instructions oneDNN emulates bf16 and is slower than float32.
    """
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def dtype_from_name(spec: str | torch.dtype) -> torch.dtype:
    """The compute dtype a name (``float32 | bfloat16 | float16`` or an alias) stands for.

    Raises:
        ConfigError: an unknown name, or a dtype that is not a compute dtype (the message lists
            the valid names).
    """
    if isinstance(spec, torch.dtype):
        if spec not in COMPUTE_DTYPES.values():
            raise ConfigError(f"compute dtype must be float32, bfloat16 or float16, got {spec}")
        return spec
    name = str(spec).strip().lower()
    name = DTYPE_ALIASES.get(name, name)
    if name not in COMPUTE_DTYPES:
        valid = ", ".join(["auto", *COMPUTE_DTYPES, *DTYPE_ALIASES])
        raise ConfigError(f"unknown dtype {spec!r}; valid values are: {valid}")
    return COMPUTE_DTYPES[name]


def resolve_dtype(spec: DTypeSpec, device: torch.device | str) -> torch.dtype:
    """The dtype a network computes in on ``device``.

    ``auto`` is float16 on CUDA (callers recompute in float32 if it ever overflows), bfloat16 on
    CPUs with native bf16 instructions, float32 elsewhere.

    Args:
        spec: ``"auto"``, a name accepted by :func:`dtype_from_name`, or a dtype.
        device: Where the network runs.

    Raises:
        ConfigError: an unknown name, or float16 on a CPU (its CPU kernels are slow and less
            accurate than bfloat16's).
    """
    device = torch.device(device)
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_fast_bfloat16():
            return torch.bfloat16
        return torch.float32
    dtype = dtype_from_name(spec)
    if dtype == torch.float16 and device.type == "cpu":
        raise ConfigError("float16 is not supported on CPU; use bfloat16 or float32")
    return dtype


__all__ = [
    "COMPUTE_DTYPES",
    "DEVICE_SPECS",
    "DTYPE_ALIASES",
    "DTypeSpec",
    "DeviceSpec",
    "available_devices",
    "cpu_has_fast_bfloat16",
    "dtype_from_name",
    "mps_available",
    "resolve_device",
    "resolve_dtype",
]
