"""The training loop: runs, checkpoints, exact resume, faults, signals, other networks, parity."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from clipdenoise import config as config_io
from clipdenoise.acceleration import convert_for_training
from clipdenoise.baselines import load_baseline
from clipdenoise.baselines.dncnn import DnCNN, DnCNNConfig
from clipdenoise.checkpoints import (
    load_checkpoint,
    read_checkpoint_metadata,
    reference_config,
    reference_to_ours,
)
from clipdenoise.cli import main
from clipdenoise.errors import ConfigError, DatasetError, DatasetNotFoundError, WeightsNotFoundError
from clipdenoise.isp import CameraNoiseConfig
from clipdenoise.model import CLIPDenoiser
from clipdenoise.srgb_synthesis import SynthConfig, synthesize_srgb_dataset
from clipdenoise.training import (
    DistInfo,
    ExperimentConfig,
    StepContext,
    TrainConfig,
    Trainer,
    TrainingError,
    check_step_memory,
    iteration_seed,
    list_states,
    load_experiment_config,
    load_training_state,
    loop,
    make_loss,
    mix_batch,
    reference_log_psnr,
    train,
    train_step,
)
from conftest import (
    FAST_TRAINING,
    fast_cli_args,
    fast_config,
    fixture_files,
    read_run_log,
    run_pytest_on_fixtures,
    smooth_image,
)


# ------------------------------------------------------------------------------ the loop
def test_tiny_training_decreases_loss_and_writes_the_run(data_root, tmp_path):
    config = fast_config("train.num_iters=24", "eval.every=12")
    result = train(config, tmp_path / "run", data_root=data_root)
    run = tmp_path / "run"
    assert result.status == "completed" and result.iteration == 24
    losses = [result.losses[i] for i in range(1, 25)]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    # resolved config, log, checkpoints, states, summary
    assert config_io.load_toml(ExperimentConfig, run / "config.toml") == config
    records = read_run_log(run)
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["iteration"] for r in train_records] == list(range(1, 25))
    assert all({"loss", "lr", "it_per_s", "train_time_s", "time"} <= set(r) for r in train_records)
    assert [r["iteration"] for r in records if r["event"] == "validation"] == [12, 24]
    assert [p.name for p in list_states(run)] == ["state_00000020.pt", "state_00000024.pt"]
    state = load_training_state(run / "states" / "state_00000024.pt")  # weights_only=True inside
    assert state["iteration"] == 24 and "optimizer" in state and "rng" in state
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["iteration"] == 24 and summary["best_val_psnr"] == result.summary["best_val_psnr"]
    )
    model = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    metadata = read_checkpoint_metadata(run / "checkpoints" / "latest.safetensors")
    assert json.loads(metadata["train_config"])["name"] == "tiny-cpu"
    assert metadata["iteration"] == "24"
    with torch.no_grad():
        out = model(torch.rand(1, 3, 40, 40))
    assert out.shape == (1, 3, 40, 40) and torch.isfinite(out).all()
    assert (run / "checkpoints" / "best.safetensors").is_file()


def test_resume_reproduces_the_uninterrupted_run(data_root, tmp_path):
    extra = ("train.num_iters=8", "train.mixup=true", "train.grad_clip_norm=0.05")
    full = train(fast_config(*extra), tmp_path / "full", data_root=data_root)
    first = train(fast_config(*extra), tmp_path / "split", data_root=data_root, stop_after=4)
    assert first.status == "paused" and first.iteration == 4
    # resumed with dataloader workers: patches are addressed by index, so nothing changes
    resumed = train(
        fast_config(*extra, "data.num_workers=1"),
        tmp_path / "split",
        data_root=data_root,
        resume="auto",
    )
    assert resumed.status == "completed"
    assert sorted(resumed.losses) == [5, 6, 7, 8]
    assert [resumed.losses[i] for i in range(5, 9)] == [full.losses[i] for i in range(5, 9)]
    assert [first.losses[i] for i in range(1, 5)] == [full.losses[i] for i in range(1, 5)]
    records = read_run_log(tmp_path / "split")
    assert [r["iteration"] for r in records if r["event"] == "train"] == list(range(1, 9))
    resume_record = next(r for r in records if r["event"] == "resume")
    assert resume_record["iteration"] == 4
    assert resume_record["config_changed"] == ["data.num_workers"]


def test_existing_run_folder_is_not_overwritten(data_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists; pass --resume auto"):
        train(fast_config("train.num_iters=2"), run, data_root=data_root)
    with pytest.raises(ConfigError, match="not a clipdenoise run folder"):
        train(fast_config("train.num_iters=2"), run, data_root=data_root, overwrite=True)
    assert (run / "notes.txt").read_text() == "mine"
    train(fast_config("train.num_iters=2"), tmp_path / "ok", data_root=data_root)
    result = train(
        fast_config("train.num_iters=2"), tmp_path / "ok", data_root=data_root, overwrite=True
    )
    assert result.iteration == 2


def test_missing_or_empty_data_fails_before_training(data_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere.* does not exist"):
        train(fast_config("data.train_dir=nowhere"), tmp_path / "a", data_root=data_root)
    (data_root / "empty").mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match="empty holds no images"):
        train(fast_config("eval.val_dir=empty"), tmp_path / "b", data_root=data_root)
    bad = data_root / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(Exception, match="broken.png"):
        train(fast_config("data.train_dir=bad"), tmp_path / "c", data_root=data_root)
    assert not (tmp_path / "a" / "log.jsonl").exists()


def _nan_on_call(monkeypatch, bad_call: int):
    import clipdenoise.noise

    original = clipdenoise.noise.add_noise
    calls = {"n": 0}

    def add_noise(clean, spec, generator=None):
        calls["n"] += 1
        noisy = original(clean, spec, generator)
        return noisy * float("nan") if calls["n"] == bad_call else noisy

    monkeypatch.setattr(clipdenoise.noise, "add_noise", add_noise)


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_last_good_state(
    data_root, tmp_path, monkeypatch
):
    _nan_on_call(monkeypatch, bad_call=3)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss became nan at iteration 3.*iteration 2"):
        train(fast_config("train.num_iters=6"), run, data_root=data_root)
    state = load_training_state(run / "states" / "state_00000002.pt")
    assert state["iteration"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert read_run_log(run)[-1]["event"] == "nan"
    # the kept state resumes (explicit path) once the cause is gone
    monkeypatch.undo()
    resumed = train(
        fast_config("train.num_iters=6"),
        run,
        data_root=data_root,
        resume=run / "states" / "state_00000002.pt",
    )
    assert resumed.status == "completed" and sorted(resumed.losses) == [3, 4, 5, 6]


def test_nan_loss_can_skip_the_step(data_root, tmp_path, monkeypatch):
    _nan_on_call(monkeypatch, bad_call=3)
    result = train(
        fast_config("train.num_iters=5", "train.nan_policy=skip"),
        tmp_path / "run",
        data_root=data_root,
    )
    assert result.status == "completed" and result.summary["skipped_steps"] == 1
    assert math.isnan(result.losses[3]) and math.isfinite(result.losses[5])
    assert [
        r["iteration"] for r in read_run_log(tmp_path / "run") if r["event"] == "skipped_step"
    ] == [3]


# ------------------------------------------------------------------------------ processes
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipdenoise", "train", *args]


def test_sigterm_saves_a_state_and_says_how_to_resume(data_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        _cli(*fast_cli_args(run, data_root, "train.num_iters=100000", "train.log_every=1")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        log = run / "log.jsonl"
        if log.is_file() and any('"train"' in line for line in log.read_text().splitlines()):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert f"resume with: clipdenoise train --run-dir {run} --resume auto" in stderr
    last = read_run_log(run)[-1]
    assert last["event"] == "interrupted"
    state = load_training_state(run / "states" / f"state_{last['iteration']:08d}.pt")
    assert state["iteration"] == last["iteration"] >= 1
    assert not list((run / "states").glob(".*tmp"))


def test_ldct_recipe_trains_on_the_mayo_layout(tmp_path):
    """1-channel model, full-dose slices of the other patients, L506 pairs for validation."""
    mayo = tmp_path / "mayo"
    mayo.mkdir()
    for patient in ("L067", "L096", "L506"):
        for index in range(2):
            full = smooth_image(64, 64, 1, seed=index)[..., 0] * 0.5
            np.save(mayo / f"{patient}_{index}_target.npy", full)
            np.save(mayo / f"{patient}_{index}_input.npy", full + 0.01)
    config = load_experiment_config(
        "ldct-gaussian5",
        [
            "model.arch=custom",
            "model.layers=[1,1,1,1]",
            "model.width=8",
            "model.encoder_weights=random",
            "data.train_dir=mayo",
            "eval.val_dir=mayo",
            "data.patch_size=32",
            "data.batch_size=2",
            "data.num_workers=0",
            "train.num_iters=2",
            "train.progress=false",
            "train.cpu_threads=1",
        ],
    )
    result = train(config, tmp_path / "run", data_root=tmp_path)
    start = read_run_log(tmp_path / "run")[0]
    assert (start["train_images"], start["val_images"]) == (4, 2)
    assert result.summary["last_val"]["val_psnr"] > 0
    assert result.summary["global_batch"] == 2


def test_missing_clip_weights_fail_before_training(data_root, tmp_path, monkeypatch):
    for variable in ("CLIPDENOISE_CLIP_DIR", "CLIPDENOISE_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = fast_config("model.arch=RN50", "model.encoder_weights=openai")
    with pytest.raises(WeightsNotFoundError, match="CLIP RN50 weights not found"):
        train(config, tmp_path / "run", data_root=data_root)
    assert not (tmp_path / "run").exists()


def test_tensorboard_logging(data_root, tmp_path):
    """Event files when TensorBoard is installed; otherwise an error naming the extra, early."""
    config = fast_config("train.num_iters=2", "train.tensorboard=true")
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ConfigError, match=r"pip install 'clipdenoise\[tensorboard\]'"):
            train(config, tmp_path / "run", data_root=data_root)
        assert not (tmp_path / "run").exists()
    else:
        train(config, tmp_path / "run", data_root=data_root)
        assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_deterministic_mode_repeats_losses_and_restores_torch_settings(data_root, tmp_path):
    config = fast_config("train.num_iters=3", "train.deterministic=true", "eval.val_dir=")
    first = train(config, tmp_path / "a", data_root=data_root)
    second = train(config, tmp_path / "b", data_root=data_root)
    assert first.losses == second.losses
    assert not torch.are_deterministic_algorithms_enabled()


def test_frozen_encoder_is_untouched_by_training(data_root, tmp_path):
    """No gradient, no BatchNorm drift: the encoder's tensors equal their initial values."""
    config = fast_config("train.num_iters=3", "eval.val_dir=")
    initial = CLIPDenoiser(config.model)
    features = initial.train().encoder(torch.rand(1, 3, 32, 32))
    assert not any(feature.requires_grad for feature in features)  # no graph through it
    result = train(config, tmp_path / "run", data_root=data_root)
    trained = load_checkpoint(result.latest_checkpoint)
    before, after = initial.state_dict(), trained.state_dict()
    encoder_keys = [key for key in before if key.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(before[k], after[k]) for k in encoder_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))


def test_performance_switches_on_cpu(data_root, tmp_path):
    """bf16 autocast, channels-last, gradient accumulation and a dataloader worker together."""
    config = fast_config(
        "train.num_iters=3",
        "train.amp=bf16",
        "train.channels_last=true",
        "train.grad_accum_steps=2",
        "data.batch_size=2",
        "data.num_workers=1",
        "eval.val_dir=",
    )
    result = train(config, tmp_path / "run", data_root=data_root)
    assert result.summary["amp"] == "bfloat16" and result.summary["global_batch"] == 4
    assert all(math.isfinite(loss) for loss in result.losses.values())
    with pytest.raises(ConfigError, match="fp16' needs a CUDA device"):
        train(
            fast_config("train.amp=fp16", "train.device=cpu"), tmp_path / "b", data_root=data_root
        )


def test_srgb_recipe_adds_camera_noise_in_the_loader(data_root, tmp_path):
    config = load_experiment_config(
        "srgb-poissongaussian",
        [
            "model.arch=custom",
            "model.layers=[1,1,1,1]",
            "model.width=8",
            "model.encoder_weights=random",
            *FAST_TRAINING,
            "train.num_iters=2",
        ],
    )
    assert config.noise.in_workers and config.noise.train == "srgb_camera:0.04,0.03"
    config = load_experiment_config(config, ["data.pairs_dir="])  # online synthesis
    result = train(config, tmp_path / "run", data_root=data_root)
    assert result.status == "completed"
    assert all(math.isfinite(loss) for loss in result.losses.values())
    assert result.summary["last_val"]["val_psnr"] > 0


# ------------------------------------------------------------------------------ other networks
DNCNN = ("network=dncnn", "dncnn.depth=5", "dncnn.features=16", "train.lr=1e-3")


def test_the_loop_trains_a_dncnn_and_saves_it_as_a_baseline(data_root, tmp_path):
    config = fast_config(*DNCNN, "train.num_iters=30", "eval.every=15")
    result = train(config, tmp_path / "run", data_root=data_root)
    losses = [result.losses[i] for i in range(1, 31)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    latest = load_baseline("dncnn", result.latest_checkpoint)
    assert isinstance(latest, DnCNN) and latest.config.depth == 5 and latest.config.features == 16
    assert result.best_checkpoint.is_file()
    assert [
        r["iteration"] for r in read_run_log(tmp_path / "run") if r["event"] == "validation"
    ] == [
        15,
        30,
    ]
    assert result.summary["best_val_psnr"] is not None


def test_a_dncnn_run_resumes_exactly(data_root, tmp_path):
    extra = (*DNCNN, "train.num_iters=6", "train.mixup=true", "train.grad_clip_norm=0.01")
    full = train(fast_config(*extra), tmp_path / "full", data_root=data_root)
    train(fast_config(*extra), tmp_path / "split", data_root=data_root, stop_after=3)
    resumed = train(fast_config(*extra), tmp_path / "split", data_root=data_root, resume="auto")
    assert [resumed.losses[i] for i in range(4, 7)] == [full.losses[i] for i in range(4, 7)]


def test_mixup_is_applied_to_any_network_when_configured(data_root, tmp_path):
    def first_batches(*extra: str):
        config = fast_config(*DNCNN, "train.num_iters=4", *extra)
        trainer = Trainer(
            config,
            tmp_path / "_".join(extra),
            DistInfo(),
            data_root=data_root,
            resume=None,
            overwrite=False,
        )
        batches = iter(trainer.loader)
        return [trainer.next_micro_batches(batches, iteration) for iteration in range(4)]

    plain = first_batches("train.mixup=false")
    mixed = first_batches("train.mixup=true", "train.mixup_identity=false")
    for iteration, ([(noisy, clean)], [(mixed_noisy, mixed_clean)]) in enumerate(zip(plain, mixed)):
        expected = mix_batch(
            noisy, clean, beta=1.2, identity=False, seed=iteration_seed(100, 2, 0, iteration, 0)
        )
        torch.testing.assert_close(mixed_noisy, expected[0])
        torch.testing.assert_close(mixed_clean, expected[1])
        assert not torch.equal(mixed_clean, clean)


def test_blind_training_over_a_noise_mixture(data_root, tmp_path):
    config = fast_config(
        *DNCNN, "train.num_iters=4", "noise.train=gaussian:0..55 + poisson:1..4 + speckle:0..0.04"
    )
    result = train(config, tmp_path / "run", data_root=data_root)
    assert result.status == "completed"
    saved = config_io.load_toml(ExperimentConfig, tmp_path / "run" / "config.toml")
    assert saved.noise.train == "gaussian:0..55 + poisson:1..4 + speckle:0..0.04"


# ------------------------------------------------------------------------------ reference parity
def _reference_step_model(fixture: dict) -> torch.nn.Module:
    """The fixture's model as our trainer builds it: encoder BatchNorm drifting, as the
    reference trains."""
    state = fixture["params"]
    config = dataclasses.replace(
        reference_config(state),
        encoder_batchnorm="train",
        aug_gamma=float(fixture["config"]["aug_level"]),
    )
    model = CLIPDenoiser(config)
    model.load_state_dict(reference_to_ours(state, model), strict=True)
    return model


def _ours(fixture: dict, model: torch.nn.Module, key: str) -> dict[str, torch.Tensor]:
    return reference_to_ours(fixture[key], model)


@pytest.mark.parametrize("path", fixture_files("*_trainstep.pt"), ids=lambda p: p.name)
def test_training_step_reproduces_the_reference(path):
    fixture = torch.load(path, map_location="cpu", weights_only=False)
    model = _reference_step_model(fixture).train()
    model.feature_noise = fixture["feature_noise"]
    settings = fixture["optimizer"]
    parameters = model.trainable_parameters()
    step = StepContext(
        forward=convert_for_training(model, dtype=torch.float32),  # what train() runs
        optimizer=torch.optim.AdamW(
            parameters,
            lr=settings["lr"],
            weight_decay=settings["weight_decay"],
            betas=tuple(settings["betas"]),
        ),
        parameters=parameters,
        loss_fn=make_loss("l1"),
        autocast=contextlib.nullcontext,
        scaler=None,
        grad_clip_norm=float(fixture["grad_clip_norm"]),
        info=DistInfo(),
    )
    with torch.no_grad():
        output = step.forward(fixture["noisy"])
    torch.testing.assert_close(output, fixture["output"], rtol=1e-5, atol=1e-5)
    # that forward drifted the statistics once; start over from the fixture's model
    model.load_state_dict(_reference_step_model(fixture).state_dict())

    loss, stepped = train_step(step, [(fixture["noisy"], fixture["clean"])])
    assert stepped
    assert loss == pytest.approx(float(fixture["loss"]), rel=1e-5)
    assert float(step.grad_norm) == pytest.approx(float(fixture["grad_total_norm"]), rel=1e-5)
    names = dict(model.named_parameters())
    # gradients left by the step are the reference's, scaled by clip_grad_norm_'s coefficient
    coefficient = min(1.0, step.grad_clip_norm / (float(fixture["grad_total_norm"]) + 1e-6))
    expected_grads = _ours(fixture, model, "grads_before_clip")
    assert set(expected_grads) == {n for n, p in names.items() if p.requires_grad}
    for name, grad in expected_grads.items():
        torch.testing.assert_close(names[name].grad, grad * coefficient, rtol=1e-4, atol=1e-9)
    for name, value in _ours(fixture, model, "params_after_step").items():
        torch.testing.assert_close(names[name].detach(), value, rtol=1e-5, atol=1e-7)
    buffers = dict(model.named_buffers())
    expected_buffers = _ours(fixture, model, "buffers_after_forward")
    assert set(expected_buffers) <= set(buffers)
    for name, value in expected_buffers.items():
        torch.testing.assert_close(buffers[name], value, rtol=1e-5, atol=1e-6)


def test_training_on_the_reference_srgb_pairs_that_synth_writes(data_root, tmp_path):
    pairs = tmp_path / "pairs"
    synthesize_srgb_dataset(
        data_root / "train", pairs, SynthConfig(camera=CameraNoiseConfig.reference())
    )
    config = load_experiment_config(
        "srgb-poissongaussian",
        [
            "model.arch=custom",
            "model.layers=[1,1,1,1]",
            "model.width=8",
            "model.encoder_weights=random",
            *FAST_TRAINING,
            f"data.pairs_dir={pairs}",
            "eval.format=paired",
            f"eval.val_dir={pairs}",
            "train.num_iters=3",
        ],
    )
    result = train(config, tmp_path / "run", data_root=data_root)
    assert result.status == "completed" and len(result.losses) == 3
    assert all(math.isfinite(loss) for loss in result.losses.values())
    scores = result.summary["last_val"]
    assert scores["val_psnr"] > 0 and math.isfinite(scores["val_psnr_reference"])
    start = read_run_log(tmp_path / "run")[0]
    assert start["train_images"] == 6 and start["val_images"] == 2


def test_validation_logs_the_reference_psnr_beside_ours():
    clean = np.full((4, 4, 3), 0.5)
    assert reference_log_psnr(clean + 0.1, clean) == pytest.approx(20.0)  # peak 1
    overshoot = clean.copy()
    overshoot[0, 0, 0] = 1.1  # an output above 1 switches the peak to 255
    mse = np.mean((overshoot - clean) ** 2)
    assert reference_log_psnr(overshoot, clean) == pytest.approx(20 * np.log10(255 / np.sqrt(mse)))


def test_trainstep_parity_checks_the_fixtures_it_is_pointed_at(fixtures_dir, tmp_path):
    sources = sorted(fixtures_dir.rglob("*_trainstep.pt"))
    assert sources
    folder = tmp_path / "fixtures"
    folder.mkdir()
    for source in sources:
        shutil.copy(source, folder / source.name)
    # a further configuration dropped in is checked too, under its own name
    shutil.copy(sources[0], folder / "another_configuration_trainstep.pt")
    test = "tests/test_training_loop.py::test_training_step_reproduces_the_reference"
    passed = run_pytest_on_fixtures(folder, test)
    assert passed.returncode == 0, passed.stdout[-2000:]
    assert f"{len(sources) + 1} passed" in passed.stdout

    altered = torch.load(folder / "another_configuration_trainstep.pt", weights_only=False)
    altered["loss"] = altered["loss"] + 1e-3
    torch.save(altered, folder / "another_configuration_trainstep.pt")
    failed = run_pytest_on_fixtures(folder, test)
    assert failed.returncode != 0
    assert "another_configuration_trainstep.pt" in failed.stdout and "1 failed" in failed.stdout


# ------------------------------------------------------------------------------ careless settings
def _strict_json(line: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_settings_are_refused_before_the_run_folder_exists(
    data_root, tmp_path, capsys, value
):
    run = tmp_path / "run"
    args = ["train", *fast_cli_args(run, data_root, f"train.lr={value}")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"train.lr: expected a finite number, got {value}" in err
    assert "Traceback" not in err and not run.exists()
    with pytest.raises(ValueError, match=r"train\.betas: must be finite"):
        ExperimentConfig(train=TrainConfig(betas=(0.9, float("nan"))))


def test_a_patch_too_large_for_memory_is_refused_before_the_run_folder_exists(
    data_root, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(["train", *fast_cli_args(run, data_root, "data.patch_size=100000")]) == 2
    err = capsys.readouterr().err
    assert "data.patch_size = 100000 with data.batch_size = 4 needs about" in err
    assert "lower data.patch_size or data.batch_size" in err
    assert not run.exists()
    # the same command with a sane patch is not refused as "run folder exists"
    assert main(["train", *fast_cli_args(run, data_root, "train.num_iters=1")]) == 0


def test_a_run_failing_before_its_first_iteration_removes_its_folder(
    data_root, tmp_path, monkeypatch
):
    def explode(*args, **kwargs):
        raise RuntimeError("simulated failure in the first step")

    monkeypatch.setattr(loop, "train_step", explode)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated failure"):
        train(fast_config("train.num_iters=2"), run, data_root=data_root)
    assert not run.exists()
    existing = tmp_path / "mine"
    existing.mkdir()  # a folder the run did not create is never removed
    with pytest.raises(RuntimeError, match="simulated failure"):
        train(fast_config("train.num_iters=2"), existing, data_root=data_root, resume="auto")
    assert existing.is_dir()


def test_log_is_strict_json_with_nan_written_as_null(data_root, tmp_path, monkeypatch):
    _nan_on_call(monkeypatch, bad_call=2)
    run = tmp_path / "run"
    train(fast_config("train.num_iters=3", "train.nan_policy=skip"), run, data_root=data_root)
    records = [_strict_json(line) for line in (run / "log.jsonl").read_text().splitlines()]
    skipped = [r for r in records if r["event"] == "skipped_step"]
    assert skipped and skipped[0]["loss"] is None and skipped[0]["non_finite"] == ["loss"]
    logged = [r for r in records if r["event"] == "train"]
    assert logged and "non_finite" not in logged[-1] and math.isfinite(logged[-1]["loss"])


def test_step_memory_check_works_for_every_network():
    grey = fast_config("network=dncnn", "dncnn.channels=1", "data.channels=1")
    model = DnCNN(DnCNNConfig(channels=1, depth=3, features=8)).train()
    check_step_memory(grey, model, torch.device("cpu"))  # the probe cannot run it: patches only
    assert model.training
    huge = fast_config("network=dncnn", "dncnn.depth=3", "data.patch_size=200000")
    with pytest.raises(ConfigError, match="data.patch_size = 200000"):
        check_step_memory(huge, DnCNN(DnCNNConfig(depth=3, features=8)), torch.device("cpu"))


# ------------------------------------------------------------------------------ the package
