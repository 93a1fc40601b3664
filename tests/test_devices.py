"""Tests of the device / compute-dtype policy: names, ``auto``, local ranks, error messages."""

from __future__ import annotations

import doctest

import pytest
import torch

from clipdenoise import devices
from clipdenoise.devices import (
    available_devices,
    dtype_from_name,
    resolve_device,
    resolve_dtype,
)
from clipdenoise.errors import ConfigError


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine with neither CUDA nor MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with two CUDA devices (no device is touched: only the checks are faked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(devices, "mps_available", lambda: False)


def test_doctests():
    assert doctest.testmod(devices).failed == 0


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device().type in ("cpu", "cuda", "mps")


def test_auto_without_accelerator_is_cpu(cpu_only):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", local_rank=3) == torch.device("cpu")
    assert available_devices() == ["cpu"]


def test_auto_prefers_cuda_then_mps(monkeypatch, two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")


def test_cuda_uses_local_rank(two_gpus):
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]
    with pytest.raises(ConfigError, match=r"'cuda:2': only 2 CUDA device\(s\) present"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="only 2 CUDA"):
        resolve_device("cuda", local_rank=2)


def test_errors_name_the_value_and_what_is_available(cpu_only):
    with pytest.raises(
        ConfigError,
        match=r"unknown device 'tpu'; use one of auto, cpu.*"
        r"available here: cpu\)",
    ):
        resolve_device("tpu")
    with pytest.raises(ConfigError, match=r"'cuda:0': CUDA is not available.*available here: cpu"):
        resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="MPS is not available"):
        resolve_device("mps")


def test_dtype_names_and_aliases():
    assert dtype_from_name("float32") is torch.float32
    assert dtype_from_name("bf16") is torch.bfloat16
    assert dtype_from_name("FP16") is torch.float16
    assert dtype_from_name("half") is torch.float16
    assert dtype_from_name(torch.bfloat16) is torch.bfloat16
    with pytest.raises(ConfigError, match="valid values are: auto, float32"):
        dtype_from_name("half-ish")
    with pytest.raises(ConfigError, match="must be float32, bfloat16 or float16"):
        dtype_from_name(torch.int8)


def test_compute_dtype_policy(monkeypatch):
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert resolve_dtype("auto", "mps") == torch.float32
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: True)
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: False)
    assert resolve_dtype("auto", "cpu") == torch.float32
    with pytest.raises(ConfigError, match="float16 is not supported on CPU"):
        resolve_dtype("float16", "cpu")
    with pytest.raises(ConfigError, match="valid values are: auto"):
        resolve_dtype("half-ish", "cpu")
