"""Training recipes: the presets and their reference numbers, strict loading, overrides."""

from __future__ import annotations

import pytest

from clipdenoise import checkpoints
from clipdenoise import config as config_io
from clipdenoise.checkpoints import PRETRAINED, import_checkpoint, load_checkpoint
from clipdenoise.errors import ConfigError
from clipdenoise.training import ExperimentConfig, list_presets, load_experiment_config
from conftest import fast_config


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


def test_network_channels_must_match_the_data():
    with pytest.raises(ConfigError, match=r"data.channels \(3\) must equal dncnn.channels \(1\)"):
        fast_config("network=dncnn", "dncnn.channels=1")


def test_released_models_carry_their_recipe_gamma(fixtures_dir, tmp_path, monkeypatch):
    for name, spec in PRETRAINED.items():
        recipe = load_experiment_config(name.split(".", 1)[1])
        assert spec.aug_gamma == recipe.model.aug_gamma, name
    # a reference .pth does not record gamma: importing it under the sRGB name sets 0.05
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    # the tiny fixture is not RN50-sized; the release-fit check has tests of its own
    monkeypatch.setattr(checkpoints, "check_fits_release", lambda *args, **kwargs: None)
    source = sorted(fixtures_dir.rglob("*_rgb_checkpoint.pth"))[0]
    path = import_checkpoint(source, "rn50.srgb-poissongaussian")
    assert load_checkpoint(path).config.aug_gamma == 0.05
    assert load_checkpoint(import_checkpoint(source, "mine")).config.aug_gamma == 0.025
