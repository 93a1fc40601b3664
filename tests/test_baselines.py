"""The baselines package: building, saving and loading learned baselines by kind, errors that
name the file, and the shared forward contract that training relies on."""

from __future__ import annotations

import pytest
import torch

from clipdenoise.baselines import LEARNED_BASELINES, build_baseline, dncnn, load_baseline
from clipdenoise.errors import ConfigError, WeightsMismatchError, WeightsNotFoundError


def test_loader_errors_name_the_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="missing.pth"):
        load_baseline("dncnn", tmp_path / "missing.pth")
    torch.save({"params": {"foo.weight": torch.zeros(3)}}, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match="bad.pth"):
        load_baseline("restormer", tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="dncnn, restormer"):
        build_baseline("unet")
    assert LEARNED_BASELINES == ("dncnn", "restormer")


def test_baselines_train_through_the_forward_contract():
    model = dncnn.build(depth=4, features=8).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    clean = torch.rand(2, 3, 16, 16)
    noisy = clean + 0.1 * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.l1_loss(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
