"""Resumable training states: RNG capture, atomic last-N files, safe loading."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from clipdenoise.errors import ConfigError
from clipdenoise.training import (
    capture_rng_states,
    latest_state,
    list_states,
    load_training_state,
    restore_rng_states,
    save_training_state,
)


def test_rng_states_round_trip():
    saved = capture_rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_states(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_states_are_kept_last_n_and_load_only_as_training_states(tmp_path):
    weights = {"weight": torch.arange(4.0)}
    for iteration in (4, 8, 12):
        save_training_state(
            tmp_path,
            iteration=iteration,
            model_state=weights,
            optimizer_state={"state": {}, "param_groups": []},
            scaler_state=None,
            extra={"best_psnr": 30.0},
            config_json="{}",
            keep_last=2,
        )
    assert [p.name for p in list_states(tmp_path)] == ["state_00000008.pt", "state_00000012.pt"]
    state = load_training_state(latest_state(tmp_path))
    assert state["iteration"] == 12 and state["extra"] == {"best_psnr": 30.0}
    assert torch.equal(state["model"]["weight"], weights["weight"])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(1)}, foreign)
    with pytest.raises(ConfigError, match="not a clipdenoise training state"):
        load_training_state(foreign)
    with pytest.raises(ConfigError, match="training state not found"):
        load_training_state(tmp_path / "missing.pt")
    assert latest_state(tmp_path / "no-run") is None
