"""Train a learned baseline (DnCNN, Restormer) with the same recipe as CLIPDenoising.

The paper's Table 1 trains DnCNN and Restormer on Gaussian σ = 15 "as ours". This module drives
any module following the denoiser contract through the training issue's building blocks — the
same clean-patch sampler (:class:`clipdenoise.training_data.TrainPatchDataset`), online noise
(:func:`clipdenoise.noise.add_noise`), optimiser settings, learning-rate schedule and optimizer
step (:func:`clipdenoise.training.train_step`) — from an
:class:`~clipdenoise.training.ExperimentConfig` (its ``data``, ``noise`` and ``train`` sections;
``model`` is ignored), so the comparison differs only in the network.

It is a single-process loop (CPU or one GPU) that saves ``latest.safetensors`` every
``train.checkpoint_every`` iterations and ``final.safetensors`` at the end, in the baseline's own
checkpoint format (:func:`clipdenoise.baselines.save_baseline`), and appends JSON lines to
``log.jsonl``. It does not resume optimiser state; restart from ``latest.safetensors`` with
``init_weights``.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from torch import nn

__all__ = ["train_baseline"]


def train_baseline(
    model: nn.Module,
    config: object,
    run_dir: str | Path,
    *,
    data_root: str | Path | None = None,
    num_iters: int | None = None,
    device: str = "auto",
) -> Path:
    """Train ``model`` (e.g. ``build_baseline("dncnn")``) with a training recipe.

    Args:
        model: A DnCNN / Restormer (anything :func:`~clipdenoise.baselines.save_baseline` saves).
        config: An ``ExperimentConfig``, a preset name (``"synthetic-gaussian15"``) or a TOML path.
        run_dir: Output folder (created).
        data_root: Root of the recipe's relative data paths.
        num_iters: Override ``train.num_iters`` (and the schedule length).
        device: ``auto``, ``cpu``, ``cuda``...

    Returns:
        The path of ``final.safetensors``.
    """
    import dataclasses

    from clipdenoise.baselines import save_baseline
    from clipdenoise.distributed import DistInfo, resolve_device
    from clipdenoise.noise import add_noise, parse_noise_spec
    from clipdenoise.training import (
        ExperimentConfig,
        StepContext,
        build_train_store,
        load_experiment_config,
        make_loss,
        train_step,
    )
    from clipdenoise.training_data import TrainPatchDataset

    if not isinstance(config, ExperimentConfig):
        config = load_experiment_config(config)
    settings = config.train
    if num_iters is not None:
        settings = dataclasses.replace(settings, num_iters=num_iters)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch_device = resolve_device(device)
    model = model.to(torch_device).train()

    store = build_train_store(config, data_root)
    noise = parse_noise_spec(config.noise.train)
    dataset = TrainPatchDataset(
        store, config.data.patch_size, seed=settings.seed, geometric_augs=config.data.geometric_augs
    )
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(
        parameters, lr=settings.lr, weight_decay=settings.weight_decay, betas=settings.betas
    )
    schedule = settings.lr_schedule()
    step = StepContext(
        forward=model,
        optimizer=optimizer,
        parameters=parameters,
        loss_fn=make_loss(settings.loss),
        autocast=contextlib.nullcontext,
        scaler=None,
        grad_clip_norm=settings.grad_clip_norm,
        info=DistInfo(device=torch_device),
    )
    generator = torch.Generator(device=torch_device).manual_seed(settings.seed)
    batch_size = config.data.batch_size
    start = time.perf_counter()
    with open(run_dir / "log.jsonl", "a", encoding="utf-8") as log:
        for iteration in range(settings.num_iters):
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr_at(iteration)
            first = iteration * batch_size
            clean = torch.stack([dataset[first + i]["clean"] for i in range(batch_size)])
            clean = clean.to(torch_device)
            noisy = add_noise(clean, noise, generator)
            loss, _ = train_step(step, [(noisy, clean)])
            done = iteration + 1
            if done % settings.log_every == 0 or done == settings.num_iters:
                record = {
                    "iteration": done,
                    "loss": loss,
                    "lr": schedule.lr_at(iteration),
                    "seconds": time.perf_counter() - start,
                }
                log.write(json.dumps(record) + "\n")
                log.flush()
            if done % settings.checkpoint_every == 0:
                save_baseline(model.eval(), run_dir / "latest.safetensors")
                model.train()
    return save_baseline(model.eval(), run_dir / "final.safetensors")
