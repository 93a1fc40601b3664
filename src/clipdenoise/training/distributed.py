"""Distributed data-parallel plumbing for training (PyTorch's own engine, launched by torchrun).

``torchrun --nproc_per_node N -m clipdenoise train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_distributed` reads them and joins the process group (``nccl`` on
CUDA, ``gloo`` on CPU). Without them everything runs as a single process (rank 0 of 1).
Each rank draws its own patches and noise (per-rank seeds), so the global batch is
``data.batch_size × world_size × train.grad_accum_steps``. Rank 0 alone logs and writes files;
the other ranks wait at a barrier around saves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from clipdenoise.devices import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: Global rank (0 = the process that logs and saves).
        world_size: Number of processes.
        local_rank: Rank on this machine (selects the CUDA device).
        device: The device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process job (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; pick this process's device.

    Returns:
        The :class:`DistInfo` of this process (rank 0 of 1 when not launched by torchrun).
    """
    if not launched_by_torchrun():
        return DistInfo(device=resolve_device(device_name))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed(info: DistInfo) -> None:
    """Leave the process group (if this job joined one)."""
    if info.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process)."""
    if info.is_distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True if ``flag`` is true on any rank (all ranks get the same answer)."""
    if not info.is_distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(value: float, info: DistInfo) -> float:
    """Average of a scalar over ranks (the value itself for a single process)."""
    if not info.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's ``value`` on every rank."""
    if not info.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=info.device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def parameters_in_sync(module: torch.nn.Module, info: DistInfo) -> bool:
    """Whether every rank holds bit-identical parameters (a checksum compared across ranks)."""
    if not info.is_distributed:
        return True
    with torch.no_grad():
        checksum = torch.zeros(2, dtype=torch.float64, device=info.device)
        for index, parameter in enumerate(module.parameters(), start=1):
            data = parameter.detach().double()
            checksum[0] += data.sum()
            checksum[1] += (data * index).square().sum()
        low, high = checksum.clone(), checksum.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


__all__ = [
    "DistInfo",
    "any_rank",
    "barrier",
    "broadcast_int",
    "init_distributed",
    "launched_by_torchrun",
    "mean_over_ranks",
    "parameters_in_sync",
    "shutdown_distributed",
]
