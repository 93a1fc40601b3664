"""Distributed training: a torchrun job of two CPU processes, and the single-process case."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from clipdenoise.checkpoints import load_checkpoint
from clipdenoise.training import (
    DistInfo,
    any_rank,
    barrier,
    broadcast_int,
    init_distributed,
    load_training_state,
    mean_over_ranks,
    parameters_in_sync,
    shutdown_distributed,
)
from conftest import fast_cli_args, read_run_log


def test_ddp_two_processes_gloo(data_root, tmp_path):
    """torchrun, 2 CPU processes, paused and resumed: ranks end in sync, the checkpoint loads
    in one process."""
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: a local rendezvous on a free port (no clash with parallel test runs)
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    settings = ("train.num_iters=4", "data.batch_size=2", "eval.val_dir=")
    for extra in (["--stop-after", "2"], ["--resume", "auto"]):
        command = [
            *launcher,
            "-m",
            "clipdenoise",
            "train",
            *fast_cli_args(run, data_root, *settings),
            *extra,
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 4
    assert summary["status"] == "completed" and summary["iteration"] == 4
    assert summary["ranks_in_sync"] is True
    events = [(r["event"], r["iteration"]) for r in read_run_log(run) if r["event"] != "train"]
    assert events == [("start", 0), ("paused", 2), ("resume", 2), ("completed", 4)]
    model = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    state = load_training_state(run / "states" / "state_00000004.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["model"][key]), key


def test_a_single_process_is_rank_0_of_1(monkeypatch):
    """Without torchrun's variables no process group is joined and every collective is the
    value itself."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert info == DistInfo(device=torch.device("cpu"))
    assert info.is_main and not info.is_distributed
    assert not torch.distributed.is_initialized()
    barrier(info)
    assert (any_rank(True, info), any_rank(False, info)) == (True, False)
    assert (mean_over_ranks(2.5, info), broadcast_int(7, info)) == (2.5, 7)
    assert parameters_in_sync(torch.nn.Linear(2, 2), info)
    shutdown_distributed(info)
