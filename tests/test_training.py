"""Training: recipes, schedules, the loop, checkpoints/states, exact resume, faults, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise import config as config_io
from clipdenoise.errors import ConfigError, DatasetError, DatasetNotFoundError
from clipdenoise.schedule import LRSchedule
from clipdenoise.training import (
    ExperimentConfig,
    TrainingError,
    list_presets,
    load_experiment_config,
    train,
)
from clipdenoise.training_data import ImageStore, RunSampler, TrainPatchDataset
from clipdenoise.training_state import (
    capture_rng_states,
    list_states,
    load_training_state,
    restore_rng_states,
)
from conftest import fixture_files, run_pytest_on_fixtures

REPO_ROOT = Path(__file__).resolve().parents[1]

# A tiny, fast variant of tiny-cpu for the tests (8-px-wide encoder, 32-px patches).
FAST = [
    "data.train_dir=train",
    "eval.val_dir=val",
    "data.patch_size=32",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.width=8",
    "train.lr=2e-3",
    "train.log_every=1",
    "train.checkpoint_every=4",
    "train.progress=false",
    "train.cpu_threads=1",
    "train.amp=none",
    "eval.every=1000",
    "eval.max_images=2",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Six 80×96 training images and two 64×64 validation images (smooth, 8-bit PNG)."""
    from conftest import smooth_image

    root = tmp_path_factory.mktemp("data")
    for folder, count, size, offset in (("train", 6, (80, 96), 0), ("val", 2, (64, 64), 50)):
        (root / folder).mkdir()
        for index in range(count):
            pixels = smooth_image(*size, 3, seed=index + offset) * 255
            Image.fromarray(pixels.round().astype(np.uint8)).save(root / folder / f"{index}.png")
    return root


def fast_config(*extra: str) -> ExperimentConfig:
    return load_experiment_config("tiny-cpu", [*FAST, *extra])


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------ configs
def test_presets_load_and_carry_the_reference_numbers():
    assert list_presets() == [
        "builtin-blind",
        "dncnn-gaussian15",
        "ldct-gaussian5",
        "srgb-poissongaussian",
        "synthetic-gaussian15",
        "tiny-cpu",
    ]
    g15 = load_experiment_config("synthetic-gaussian15")
    assert (g15.train.num_iters, g15.train.lr, g15.train.weight_decay) == (300_000, 3e-4, 1e-4)
    assert (g15.data.patch_size, g15.data.batch_size, g15.model.aug_gamma) == (128, 16, 0.025)
    assert (g15.noise.train, g15.eval.noise, g15.eval.every) == ("gaussian:15", "gaussian:50", 4000)
    assert g15.train.grad_clip_norm == 0.01 and g15.train.mixup and g15.train.mixup_beta == 1.2
    assert g15.train.restart_periods == (92_000, 208_000)
    assert g15.train.restart_min_lrs == (3e-4, 1e-6)
    srgb = load_experiment_config("srgb-poissongaussian")
    assert srgb.noise.train == "srgb_camera:0.04,0.03" and srgb.model.aug_gamma == 0.05
    ldct = load_experiment_config("ldct-gaussian5")
    assert (ldct.model.in_channels, ldct.data.channels, ldct.train.num_iters) == (1, 1, 40_000)
    assert (ldct.data.test_patient, ldct.noise.train) == ("L506", "gaussian:5")
    tiny = load_experiment_config("tiny-cpu")
    assert tiny.model.encoder_weights is None  # "random" in the TOML
    dncnn = load_experiment_config("dncnn-gaussian15")  # Table 1: "the same recipe"
    assert dncnn.network == "dncnn" and (dncnn.dncnn.depth, dncnn.dncnn.features) == (17, 64)
    assert (dncnn.data, dncnn.noise) == (g15.data, g15.noise)
    same = ("num_iters", "lr", "weight_decay", "loss", "grad_clip_norm", "mixup", "mixup_beta",
            "schedule", "restart_periods", "restart_min_lrs", "seed")  # fmt: skip
    assert all(getattr(dncnn.train, key) == getattr(g15.train, key) for key in same)


@pytest.mark.parametrize("name", ["synthetic-gaussian15", "srgb-poissongaussian", "ldct-gaussian5"])
def test_paper_presets_train_as_the_reference_code(name):
    config = load_experiment_config(name)
    # encoder BatchNorm in train mode: statistics drift, as in the reference
    assert config.model.encoder_batchnorm == "train" and not config.model.encoder_trainable
    assert config.model.resolved_batchnorm == "train"
    # the YAML's schedule (the LDCT YAML's is the plain cosine the paper describes)
    expected = "cosine" if name == "ldct-gaussian5" else "cosine_restart"
    assert config.train.schedule == expected
    assert (config.train.grad_clip_norm, config.train.mixup, config.train.seed) == (0.01, True, 100)
    # the paper-text and cleaner variants are one option away
    paper = load_experiment_config(name, ["train.schedule=cosine", "model.encoder_batchnorm=eval"])
    assert paper.train.lr_schedule().lr_at(150_000 if name != "ldct-gaussian5" else 20_000) < 3e-4
    assert paper.model.resolved_batchnorm == "eval"


def test_srgb_preset_defaults_to_the_reference_offline_pairs():
    srgb = load_experiment_config("srgb-poissongaussian")
    assert srgb.data.pairs_dir == "DIV2K/DIV2K_train_HR_sub_srgb"
    assert srgb.model.aug_gamma == 0.05 and srgb.noise.camera == "reference"
    online = load_experiment_config("srgb-poissongaussian", ["data.pairs_dir="])
    assert online.data.pairs_dir == "" and online.data.train_dir == "DIV2K/DIV2K_train_HR_sub"
    assert online.noise.camera_config().curve_lookup == "nearest_bin"
    ours = load_experiment_config("srgb-poissongaussian", ["noise.camera=clipdenoise"])
    assert ours.noise.camera_config() is None


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = fast_config("train.betas=[0.8,0.99]", "train.schedule=cosine_restart")
    path = tmp_path / "c.toml"
    path.write_text(config_io.dumps_toml(config))
    assert config_io.load_toml(ExperimentConfig, path) == config
    assert config.train.betas == (0.8, 0.99)


def test_unknown_key_error_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'lr_max'.*valid keys are: amp, betas"):
        load_experiment_config("tiny-cpu", ["train.lr_max=1"])
    path = tmp_path / "bad.toml"
    path.write_text('[data]\ntrain_dir = "x"\npatchsize = 3\n')
    with pytest.raises(ConfigError, match=r"bad.toml.*'patchsize'.*patch_size"):
        load_experiment_config(path)
    with pytest.raises(ConfigError, match="unknown preset|neither a preset"):
        load_experiment_config("no-such-recipe")


def test_set_overrides_are_typed():
    config = load_experiment_config(
        "tiny-cpu",
        ["train.num_iters=12", "train.lr=5e-4", "train.mixup=true", "model.layers=[1,2,1,1]"],
    )
    assert config.train.num_iters == 12 and isinstance(config.train.num_iters, int)
    assert config.train.lr == 5e-4 and config.train.mixup is True
    assert config.model.layers == (1, 2, 1, 1)
    with pytest.raises(ConfigError, match="train.num_iters: expected an integer, got 'many'"):
        load_experiment_config("tiny-cpu", ["train.num_iters=many"])
    with pytest.raises(ConfigError, match="train.amp: 'fp8' is not one of"):
        load_experiment_config("tiny-cpu", ["train.amp=fp8"])
    with pytest.raises(ConfigError, match="data.channels .* must equal model.in_channels"):
        load_experiment_config("tiny-cpu", ["data.channels=1"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_experiment_config("tiny-cpu", ["train.lr"])


# ------------------------------------------------------------------------------ schedules
def test_cosine_schedule_matches_the_paper():
    schedule = LRSchedule("cosine", lr=3e-4, num_iters=300_000, min_lr=1e-6)
    assert schedule.lr_at(0) == pytest.approx(3e-4)
    assert schedule.lr_at(150_000) == pytest.approx((3e-4 + 1e-6) / 2)
    assert schedule.lr_at(300_000) == pytest.approx(1e-6)


def test_cosine_restart_schedule_matches_the_reference_yaml():
    config = load_experiment_config("synthetic-gaussian15")
    schedule = config.train.lr_schedule()
    # first period: eta_min = lr, so flat at 3e-4 for 92k iterations
    assert [schedule.lr_at(i) for i in (0, 1, 50_000, 91_999)] == pytest.approx([3e-4] * 4)
    assert schedule.lr_at(92_000) == pytest.approx(3e-4)
    assert schedule.lr_at(92_000 + 104_000) == pytest.approx((3e-4 + 1e-6) / 2)
    assert schedule.lr_at(299_999) == pytest.approx(1e-6, abs=1e-10)
    # a period includes its last iteration (the reference's get_position_from_periods)
    steep = LRSchedule(
        "cosine_restart", lr=1.0, num_iters=20, periods=(10, 10), period_min_lrs=(0.5, 0.0)
    )
    assert steep.lr_at(10) == pytest.approx(0.5) and steep.lr_at(11) == pytest.approx(
        0.5 * (1 + math.cos(math.pi / 10))
    )
    with pytest.raises(ValueError, match="periods sum to 1000"):
        LRSchedule("cosine_restart", num_iters=2000, periods=(1000,), period_min_lrs=(0.0,))


def test_warmup_ramps_linearly():
    schedule = LRSchedule("constant", lr=1e-3, num_iters=100, warmup_iters=4)
    assert [schedule.lr_at(i) for i in range(5)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3]
    )


# ------------------------------------------------------------------------------ data, state
def test_patches_depend_only_on_their_index(data_root):
    from clipdenoise.image_io import read_image

    store = ImageStore(sorted((data_root / "train").glob("*.png")), read_image, cache=True)
    dataset = TrainPatchDataset(store, 32, seed=7)
    first = dataset[11]["clean"]
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, TrainPatchDataset(store, 32, seed=7)[11]["clean"])
    assert not torch.equal(first, dataset[12]["clean"])
    # each epoch visits every image once
    assert sorted(dataset.image_index(g) for g in range(6, 12)) == list(range(6))
    # two ranks split the stream like one process would draw it
    assert list(RunSampler(2, 5, rank=1, world_size=2)) == [5, 7, 9]
    # noise added in the workers is seeded by the index too
    from clipdenoise.noise import parse_noise_spec

    noisy_set = TrainPatchDataset(store, 32, seed=7, noise=parse_noise_spec("gaussian:15"))
    item = noisy_set[11]
    assert torch.equal(item["clean"], first) and torch.equal(item["noisy"], noisy_set[11]["noisy"])
    assert (item["noisy"] - first).std().item() == pytest.approx(15 / 255, rel=0.1)


def test_rng_states_round_trip():
    import random

    saved = capture_rng_states()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_states(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


# ------------------------------------------------------------------------------ the loop
def test_tiny_training_decreases_loss_and_writes_the_run(data_root, tmp_path):
    from clipdenoise.checkpoints import load_checkpoint, read_checkpoint_metadata

    config = fast_config("train.num_iters=24", "eval.every=12")
    result = train(config, tmp_path / "run", data_root=data_root)
    run = tmp_path / "run"
    assert result.status == "completed" and result.iteration == 24
    losses = [result.losses[i] for i in range(1, 25)]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    # resolved config, log, checkpoints, states, summary
    assert config_io.load_toml(ExperimentConfig, run / "config.toml") == config
    records = read_log(run)
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
    records = read_log(tmp_path / "split")
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
    assert read_log(run)[-1]["event"] == "nan"
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
    assert [r["iteration"] for r in read_log(tmp_path / "run") if r["event"] == "skipped_step"] == [
        3
    ]


# ------------------------------------------------------------------------------ processes
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "clipdenoise", "train", *args]


def _fast_cli_args(run: Path, data_root: Path, *extra: str) -> list[str]:
    args = ["-c", "tiny-cpu", "-o", str(run), "--data-root", str(data_root)]
    for item in (*FAST, *extra):
        args += ["--set", item]
    return args


def test_sigterm_saves_a_state_and_says_how_to_resume(data_root, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        _cli(*_fast_cli_args(run, data_root, "train.num_iters=100000", "train.log_every=1")),
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
    last = read_log(run)[-1]
    assert last["event"] == "interrupted"
    state = load_training_state(run / "states" / f"state_{last['iteration']:08d}.pt")
    assert state["iteration"] == last["iteration"] >= 1
    assert not list((run / "states").glob(".*tmp"))


def test_ddp_two_processes_gloo(data_root, tmp_path):
    """torchrun, 2 CPU processes, paused and resumed: ranks end in sync, the checkpoint loads
    in one process."""
    from clipdenoise.checkpoints import load_checkpoint

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
            *_fast_cli_args(run, data_root, *settings),
            *extra,
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_batch"] == 4
    assert summary["status"] == "completed" and summary["iteration"] == 4
    assert summary["ranks_in_sync"] is True
    events = [(r["event"], r["iteration"]) for r in read_log(run) if r["event"] != "train"]
    assert events == [("start", 0), ("paused", 2), ("resume", 2), ("completed", 4)]
    model = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    state = load_training_state(run / "states" / "state_00000004.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["model"][key]), key


def test_help_documents_every_option():
    from clipdenoise.cli import build_parser

    parser = build_parser()
    train_parser = next(
        action.choices["train"]
        for action in parser._actions
        if getattr(action, "choices", None) and "train" in action.choices
    )
    for action in train_parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    text = train_parser.format_help()
    for flag in ("--resume", "--set", "--overwrite", "--encoder", "torchrun", "--data-root"):
        assert flag in text


def test_ldct_recipe_trains_on_the_mayo_layout(tmp_path):
    """1-channel model, full-dose slices of the other patients, L506 pairs for validation."""
    from conftest import smooth_image

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
    start = read_log(tmp_path / "run")[0]
    assert (start["train_images"], start["val_images"]) == (4, 2)
    assert result.summary["last_val"]["val_psnr"] > 0
    assert result.summary["global_batch"] == 2


def test_missing_clip_weights_fail_before_training(data_root, tmp_path, monkeypatch):
    from clipdenoise.errors import WeightsNotFoundError

    for variable in ("CLIPDENOISE_CLIP_DIR", "CLIPDENOISE_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = fast_config("model.arch=RN50", "model.encoder_weights=openai")
    with pytest.raises(WeightsNotFoundError, match="CLIP RN50 weights not found"):
        train(config, tmp_path / "run", data_root=data_root)
    assert not (tmp_path / "run").exists()


def test_tensorboard_logging(data_root, tmp_path):
    """Event files when TensorBoard is installed; otherwise an error naming the extra, early."""
    import importlib.util

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
    from clipdenoise.checkpoints import load_checkpoint
    from clipdenoise.model import CLIPDenoiser

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
            *FAST,
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
    from clipdenoise.baselines import load_baseline
    from clipdenoise.baselines.dncnn import DnCNN

    config = fast_config(*DNCNN, "train.num_iters=30", "eval.every=15")
    result = train(config, tmp_path / "run", data_root=data_root)
    losses = [result.losses[i] for i in range(1, 31)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    latest = load_baseline("dncnn", result.latest_checkpoint)
    assert isinstance(latest, DnCNN) and latest.config.depth == 5 and latest.config.features == 16
    assert result.best_checkpoint.is_file()
    assert [r["iteration"] for r in read_log(tmp_path / "run") if r["event"] == "validation"] == [
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
    from clipdenoise.distributed import DistInfo
    from clipdenoise.training import Trainer, iteration_seed, mix_batch

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


def test_network_channels_must_match_the_data():
    with pytest.raises(ConfigError, match=r"data.channels \(3\) must equal dncnn.channels \(1\)"):
        fast_config(*DNCNN, "dncnn.channels=1")


# ------------------------------------------------------------------------------ reference parity
def _reference_step_model(fixture: dict) -> torch.nn.Module:
    """The fixture's model as our trainer builds it: encoder BatchNorm drifting, as the
    reference trains."""
    import dataclasses

    from clipdenoise.checkpoints import reference_config, reference_to_ours
    from clipdenoise.model import CLIPDenoiser

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
    from clipdenoise.checkpoints import reference_to_ours

    return reference_to_ours(fixture[key], model)


@pytest.mark.parametrize("path", fixture_files("*_trainstep.pt"), ids=lambda p: p.name)
def test_training_step_reproduces_the_reference(path):
    from clipdenoise.acceleration import convert_for_training
    from clipdenoise.distributed import DistInfo
    from clipdenoise.training import StepContext, make_loss, train_step

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
        autocast=__import__("contextlib").nullcontext,
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


def test_supplied_feature_noise_must_match_the_features():
    from clipdenoise.model import CLIPDenoiser, tiny_config

    model = CLIPDenoiser(tiny_config(aug_gamma=0.5)).train()
    image = torch.rand(1, 3, 32, 32)
    features = model.encoder(image)
    model.feature_noise = [torch.zeros_like(f) for f in features]
    with torch.no_grad():
        eval_output = model.eval()(image)
        zero_noise_output = model.train()(image)
    torch.testing.assert_close(zero_noise_output, eval_output)  # z = 0 -> alpha = 1
    model.feature_noise = [torch.zeros(1)]
    with pytest.raises(ValueError, match="one tensor per feature"):
        model(image)


def test_training_reads_noisy_clean_pairs_cropping_the_same_window(data_root, tmp_path):
    from clipdenoise.training_data import build_train_store

    # noisy = 255 - clean: a patch pair sums to 1 only when cut and turned alike
    pairs = tmp_path / "pairs"
    for folder in ("clean", "noisy"):
        (pairs / folder).mkdir(parents=True)
    for path in sorted((data_root / "train").glob("*.png")):
        pixels = np.asarray(Image.open(path))
        Image.fromarray(pixels).save(pairs / "clean" / path.name)
        Image.fromarray(255 - pixels).save(pairs / "noisy" / path.name)
    config = fast_config(f"data.pairs_dir={pairs}", "data.patch_size=48")
    store = build_train_store(config, data_root)
    assert len(store) == 6 and store.channels == 3
    patches = TrainPatchDataset(store, 48, seed=1)
    for index in range(8):
        item = patches[index]
        assert item["noisy"].shape == item["clean"].shape == (3, 48, 48)
        torch.testing.assert_close(item["noisy"] + item["clean"], torch.ones(3, 48, 48))
    assert (
        len(build_train_store(load_experiment_config(config, ["data.max_images=2"]), data_root))
        == 2
    )
    with pytest.raises(ConfigError, match="pairs_dir needs data.format"):
        build_train_store(load_experiment_config(config, ["data.format=mayo"]), data_root)


def test_training_on_the_reference_srgb_pairs_that_synth_writes(data_root, tmp_path):
    from clipdenoise.isp import CameraNoiseConfig
    from clipdenoise.srgb_synthesis import SynthConfig, synthesize_srgb_dataset

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
            *FAST,
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
    start = read_log(tmp_path / "run")[0]
    assert start["train_images"] == 6 and start["val_images"] == 2


def test_validation_logs_the_reference_psnr_beside_ours():
    from clipdenoise.training import reference_log_psnr

    clean = np.full((4, 4, 3), 0.5)
    assert reference_log_psnr(clean + 0.1, clean) == pytest.approx(20.0)  # peak 1
    overshoot = clean.copy()
    overshoot[0, 0, 0] = 1.1  # an output above 1 switches the peak to 255
    mse = np.mean((overshoot - clean) ** 2)
    assert reference_log_psnr(overshoot, clean) == pytest.approx(20 * np.log10(255 / np.sqrt(mse)))


def test_trainstep_parity_checks_the_fixtures_it_is_pointed_at(fixtures_dir, tmp_path):
    import shutil

    sources = sorted(fixtures_dir.rglob("*_trainstep.pt"))
    assert sources
    folder = tmp_path / "fixtures"
    folder.mkdir()
    for source in sources:
        shutil.copy(source, folder / source.name)
    # a further configuration dropped in is checked too, under its own name
    shutil.copy(sources[0], folder / "another_configuration_trainstep.pt")
    test = "tests/test_training.py::test_training_step_reproduces_the_reference"
    passed = run_pytest_on_fixtures(folder, test)
    assert passed.returncode == 0, passed.stdout[-2000:]
    assert f"{len(sources) + 1} passed" in passed.stdout

    altered = torch.load(folder / "another_configuration_trainstep.pt", weights_only=False)
    altered["loss"] = altered["loss"] + 1e-3
    torch.save(altered, folder / "another_configuration_trainstep.pt")
    failed = run_pytest_on_fixtures(folder, test)
    assert failed.returncode != 0
    assert "another_configuration_trainstep.pt" in failed.stdout and "1 failed" in failed.stdout


def test_released_models_carry_their_recipe_gamma(fixtures_dir, tmp_path, monkeypatch):
    from clipdenoise.checkpoints import PRETRAINED, import_checkpoint, load_checkpoint

    for name, spec in PRETRAINED.items():
        recipe = load_experiment_config(name.split(".", 1)[1])
        assert spec.aug_gamma == recipe.model.aug_gamma, name
    # a reference .pth does not record gamma: importing it under the sRGB name sets 0.05
    from clipdenoise import checkpoints

    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    # the tiny fixture is not RN50-sized; the release-fit check has tests of its own
    monkeypatch.setattr(checkpoints, "check_fits_release", lambda *args, **kwargs: None)
    source = sorted(fixtures_dir.rglob("*_rgb_checkpoint.pth"))[0]
    path = import_checkpoint(source, "rn50.srgb-poissongaussian")
    assert load_checkpoint(path).config.aug_gamma == 0.05
    assert load_checkpoint(import_checkpoint(source, "mine")).config.aug_gamma == 0.025


def test_online_synthesis_runs_the_chosen_camera_pipeline(data_root):
    from clipdenoise.isp import CameraNoiseConfig
    from clipdenoise.noise import parse_noise_spec
    from clipdenoise.training_data import build_train_store

    store = build_train_store(fast_config(), data_root)
    spec = parse_noise_spec("srgb_camera:0.04,0.03")
    reference = TrainPatchDataset(
        store, 32, seed=0, noise=spec, camera=CameraNoiseConfig.reference()
    )
    ours = TrainPatchDataset(store, 32, seed=0, noise=spec)
    codes = reference[0]["noisy"] * 255
    torch.testing.assert_close(codes, codes.round(), atol=1e-4, rtol=0)  # its 8-bit output
    torch.testing.assert_close(reference[0]["noisy"], reference[0]["noisy"])  # seeded by index
    assert not torch.equal(reference[0]["noisy"], ours[0]["noisy"])
    torch.testing.assert_close(reference[0]["clean"], ours[0]["clean"])


# ------------------------------------------------------------------------------ careless settings
def _strict_json(line: str) -> dict:
    def refuse(constant: str):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_settings_are_refused_before_the_run_folder_exists(
    data_root, tmp_path, capsys, value
):
    from clipdenoise.cli import main

    run = tmp_path / "run"
    args = ["train", *_fast_cli_args(run, data_root, f"train.lr={value}")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"train.lr: expected a finite number, got {value}" in err
    assert "Traceback" not in err and not run.exists()
    from clipdenoise.experiment import TrainConfig

    with pytest.raises(ValueError, match=r"train\.betas: must be finite"):
        ExperimentConfig(train=TrainConfig(betas=(0.9, float("nan"))))


def test_a_patch_too_large_for_memory_is_refused_before_the_run_folder_exists(
    data_root, tmp_path, capsys
):
    from clipdenoise.cli import main

    run = tmp_path / "run"
    assert main(["train", *_fast_cli_args(run, data_root, "data.patch_size=100000")]) == 2
    err = capsys.readouterr().err
    assert "data.patch_size = 100000 with data.batch_size = 4 needs about" in err
    assert "lower data.patch_size or data.batch_size" in err
    assert not run.exists()
    # the same command with a sane patch is not refused as "run folder exists"
    assert main(["train", *_fast_cli_args(run, data_root, "train.num_iters=1")]) == 0


def test_a_run_failing_before_its_first_iteration_removes_its_folder(
    data_root, tmp_path, monkeypatch
):
    import clipdenoise.training as training

    def explode(*args, **kwargs):
        raise RuntimeError("simulated failure in the first step")

    monkeypatch.setattr(training, "train_step", explode)
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
    from clipdenoise.baselines.dncnn import DnCNN, DnCNNConfig
    from clipdenoise.training import check_step_memory

    grey = fast_config("network=dncnn", "dncnn.channels=1", "data.channels=1")
    model = DnCNN(DnCNNConfig(channels=1, depth=3, features=8)).train()
    check_step_memory(grey, model, torch.device("cpu"))  # the probe cannot run it: patches only
    assert model.training
    huge = fast_config("network=dncnn", "dncnn.depth=3", "data.patch_size=200000")
    with pytest.raises(ConfigError, match="data.patch_size = 200000"):
        check_step_memory(huge, DnCNN(DnCNNConfig(depth=3, features=8)), torch.device("cpu"))
