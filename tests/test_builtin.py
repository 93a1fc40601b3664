"""The built-in model and ``--weights auto``: a trained network on a fresh machine."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipdenoise import builtin
from clipdenoise.builtin import BUILTIN_MODEL, PAPER_DEFAULT
from clipdenoise.checkpoints import (
    load_model,
    models_dir,
    read_checkpoint_metadata,
    save_checkpoint,
)
from clipdenoise.cli import main
from clipdenoise.metrics import psnr
from clipdenoise.model import CLIPDenoiser, tiny_config
from clipdenoise.web.samples import quickstart_clean, quickstart_png

SAMPLE = Path(builtin.__file__).parent / "resources" / "sample.png"


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(builtin, "_notice_shown", False)
    return tmp_path / "cache"


def test_the_builtin_model_ships_small_and_says_what_it_is():
    path = builtin.builtin_weights_path()
    assert path.stat().st_size < 8.5e6
    metadata = read_checkpoint_metadata(path)
    assert metadata["name"] == BUILTIN_MODEL and metadata["contents"] == "full"
    assert '"encoder_weights": null' in metadata["model_config"]  # no CLIP weights involved
    assert int(metadata["iteration"]) > 0 and "builtin-blind" in metadata["train_config"]
    card = builtin.builtin_card()
    assert "not the paper's model" in card and "CBSD432" in card


def test_builtin_loads_by_name_and_by_auto_with_one_notice(empty_cache, capsys):
    by_name = load_model(BUILTIN_MODEL)
    assert capsys.readouterr().err == ""  # asking by name needs no notice
    by_auto = load_model("auto")
    again = load_model()
    err = capsys.readouterr().err
    assert err.count(f"using the built-in model {BUILTIN_MODEL}") == 1
    assert f"--name {PAPER_DEFAULT}" in err
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        outputs = [model(x) for model in (by_name, by_auto, again)]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    assert by_name.config.encoder_weights is None and by_name.config.encoder_trainable


def test_auto_prefers_an_imported_paper_model(empty_cache, capsys):
    paper = CLIPDenoiser(tiny_config(init_seed=5))
    models_dir().mkdir(parents=True)
    save_checkpoint(paper, models_dir() / f"{PAPER_DEFAULT}.safetensors")
    loaded = load_model("auto")
    assert capsys.readouterr().err == ""
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), paper.eval()(x))


def test_quickstart_command_restores_the_sample_on_a_fresh_machine(empty_cache, tmp_path, capsys):
    assert SAMPLE.read_bytes() == quickstart_png()  # the shipped sample is reproducible
    restored_path = tmp_path / "restored.png"
    code = main(["denoise", str(SAMPLE), "-o", str(restored_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"model {BUILTIN_MODEL}" in err and "Traceback" not in err
    clean = quickstart_clean().astype(np.float64)
    noisy = np.asarray(Image.open(SAMPLE), dtype=np.float64)
    restored = np.asarray(Image.open(restored_path), dtype=np.float64)
    assert restored.shape == clean.shape
    assert psnr(clean, restored) > psnr(clean, noisy) + 5.0


@pytest.mark.slow
def test_the_wheel_carries_the_builtin_model_its_card_and_preset(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(repo),
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("clipdenoise-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for member in (
        "clipdenoise/resources/builtin-blind-unet.safetensors",
        "clipdenoise/resources/builtin-blind-unet.md",
        "clipdenoise/resources/sample.png",
        "clipdenoise/configs/builtin-blind.toml",
    ):
        assert member in names
    shipped = zipfile.ZipFile(wheel).read("clipdenoise/resources/builtin-blind-unet.safetensors")
    assert shipped == builtin.builtin_weights_path().read_bytes()
