"""Checkpoints: the reference's released format (exact parity), ours (partial/full), names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from clipdenoise.checkpoints import (
    PRETRAINED,
    checkpoint_sha256,
    convert_reference_checkpoint,
    import_checkpoint,
    load_checkpoint,
    load_model,
    load_reference_checkpoint,
    read_checkpoint_metadata,
    reference_config,
    reference_to_ours,
    save_checkpoint,
)
from clipdenoise.cli import main
from clipdenoise.errors import WeightsMismatchError, WeightsNotFoundError
from clipdenoise.model import CLIPDenoiser, build_model, tiny_config
from conftest import fixture_files, run_pytest_on_fixtures


def official(fixtures_dir, name):
    return fixtures_dir / "official" / name


# every reference checkpoint in the fixture folder, with the input/output recorded beside it
CHECKPOINT_FIXTURES = fixture_files("*_checkpoint.pth")


def io_beside(checkpoint: Path) -> dict:
    io_path = checkpoint.with_name(checkpoint.name.replace("_checkpoint.pth", "_io.pt"))
    assert io_path.is_file(), f"{checkpoint.name} has no {io_path.name} beside it"
    return torch.load(io_path, weights_only=False)


def test_the_fixture_folder_holds_both_reference_checkpoints():
    names = {path.name for path in CHECKPOINT_FIXTURES}
    assert {"official_tiny_rgb_checkpoint.pth", "official_tiny_gray_checkpoint.pth"} <= names


@pytest.mark.parametrize("source", CHECKPOINT_FIXTURES, ids=lambda path: path.name)
def test_reference_checkpoint_parity(source):
    model = load_reference_checkpoint(source)
    io = io_beside(source)
    assert model.config.in_channels == io["config"]["inp_channels"]
    assert model.config.resolved_width == io["config"]["wf"]
    assert not model.training
    with torch.no_grad():
        output = model(io["input"])
    assert (output - io["output"]).abs().max().item() <= 1e-5


def test_checkpoint_parity_checks_the_fixtures_it_is_pointed_at(tmp_path):
    import shutil

    folder = tmp_path / "fixtures"
    folder.mkdir()
    source = next(p for p in CHECKPOINT_FIXTURES if p.name == "official_tiny_rgb_checkpoint.pth")
    shutil.copy(source, folder / "another_checkpoint.pth")
    io = io_beside(source)
    io["output"] = io["output"].clone()
    io["output"][0, 0, 0, 0] += 1e-3
    torch.save(io, folder / "another_io.pt")
    result = run_pytest_on_fixtures(
        folder, "tests/test_checkpoints.py::test_reference_checkpoint_parity"
    )
    assert result.returncode != 0
    assert "1 failed" in result.stdout and "another_checkpoint.pth" in result.stdout


@pytest.mark.parametrize("source", CHECKPOINT_FIXTURES, ids=lambda path: path.name)
def test_converter_round_trip(tmp_path, source):
    io = io_beside(source)
    converted = convert_reference_checkpoint(source, tmp_path / "converted.safetensors")
    metadata = read_checkpoint_metadata(converted)
    assert metadata["contents"] == "full"
    assert metadata["converted_from"] == source.name
    model = load_model(converted)
    with torch.no_grad():
        assert (model(io["input"]) - io["output"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kind", ["rgb", "gray"])
def test_every_released_rn50_key_is_accepted(fixtures_dir, kind):
    shapes = json.loads(official(fixtures_dir, f"official_rn50_{kind}_keys.json").read_text())
    state = {k: torch.zeros(shape) for k, shape in shapes.items()}
    config = reference_config(state)
    assert config.arch == "RN50"
    assert config.in_channels == (1 if kind == "gray" else 3)
    model = CLIPDenoiser(config)
    renamed = reference_to_ours(state, model)
    dropped = {k for k in state if k.startswith("encoder.layer4.")}
    assert len(renamed) == len(state) - len(dropped)
    assert set(renamed) == set(model.state_dict())


def test_reference_checkpoint_errors(tmp_path):
    torch.save({"params": {"encoder.conv1.weight": torch.zeros(4, 3, 3, 3)}}, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError, match=r"bad\.pth.*not a CLIPDenoising checkpoint"):
        load_reference_checkpoint(tmp_path / "bad.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsMismatchError, match=r"list\.pth"):
        load_reference_checkpoint(tmp_path / "list.pth")


def _clip_file(tmp_path, seed=3):
    donor = CLIPDenoiser(tiny_config(init_seed=seed))
    path = tmp_path / "clip_tiny.pt"
    torch.save({f"visual.{k}": v for k, v in donor.encoder.state_dict().items()}, path)
    return path


def _same_state(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_partial_checkpoint_stores_only_what_differs(tmp_path):
    clip = _clip_file(tmp_path)
    model = build_model(tiny_config(encoder_weights=str(clip)))
    path = save_checkpoint(model, tmp_path / "partial.safetensors", metadata={"iteration": "7"})
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert not any(
        k.startswith("encoder.") for k in stored
    )  # frozen, eval-mode BN: nothing differs
    assert {p for p, t in model.named_parameters() if t.requires_grad} <= set(stored)
    metadata = read_checkpoint_metadata(path)
    assert metadata["contents"] == "partial" and metadata["iteration"] == "7"
    assert json.loads(metadata["encoder_source"])["sha256"]
    assert _same_state(model, load_checkpoint(path))


def test_partial_checkpoint_keeps_drifted_batchnorm(tmp_path):
    clip = _clip_file(tmp_path)
    model = build_model(tiny_config(encoder_weights=str(clip), encoder_batchnorm="train"))
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))  # the reference's drift of "frozen" statistics
    path = save_checkpoint(model, tmp_path / "drift.safetensors")
    from safetensors.torch import load_file

    stored = load_file(str(path))
    assert "encoder.bn1.running_mean" in stored
    assert "encoder.conv1.weight" not in stored
    assert _same_state(model, load_checkpoint(path))


def test_partial_checkpoint_needs_matching_clip_weights(tmp_path):
    clip = _clip_file(tmp_path)
    model = build_model(tiny_config(encoder_weights=str(clip)))
    path = save_checkpoint(model, tmp_path / "partial.safetensors")
    _clip_file(tmp_path, seed=99)  # replace the CLIP file with different weights
    with pytest.raises(WeightsMismatchError, match="needs CLIP weights with sha256"):
        load_checkpoint(path)
    clip.unlink()
    with pytest.raises(WeightsNotFoundError, match="partial checkpoint needs the CLIP weights"):
        load_checkpoint(path)


def test_full_checkpoint_is_self_contained(tmp_path):
    clip = _clip_file(tmp_path)
    model = build_model(tiny_config(encoder_weights=str(clip)))
    path = save_checkpoint(model, tmp_path / "full.safetensors", full=True)
    clip.unlink()
    assert _same_state(model, load_checkpoint(path))
    random_init = CLIPDenoiser(tiny_config(init_seed=11))
    path = save_checkpoint(random_init, tmp_path / "random.safetensors")
    assert read_checkpoint_metadata(path)["contents"] == "full"
    reloaded = load_model(path)
    assert _same_state(random_init, reloaded)
    assert reloaded.config == random_init.config
    assert reloaded.config.encoder_weights is None  # not silently turned into "openai"


def test_no_temp_files_left_and_corrupt_file_named(tmp_path):
    save_checkpoint(CLIPDenoiser(tiny_config()), tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(WeightsMismatchError, match=r"corrupt\.safetensors"):
        load_checkpoint(tmp_path / "corrupt.safetensors")


def test_named_models(tmp_path, monkeypatch, fixtures_dir):
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(WeightsNotFoundError, match="clipdenoise weights import net_g_latest.pth"):
        load_model("rn50.synthetic-gaussian15")
    with pytest.raises(
        WeightsNotFoundError,
        match="known names: auto, builtin.blind-unet, rn50.synthetic-gaussian15",
    ):
        load_model("no-such-model")
    with pytest.raises(WeightsNotFoundError, match="missing.pth: checkpoint file not found"):
        load_model(tmp_path / "missing.pth")
    source = official(fixtures_dir, "official_tiny_rgb_checkpoint.pth")
    import_checkpoint(source, "tiny.reference")
    model = load_model("tiny.reference")
    assert _same_state(model, load_reference_checkpoint(source))
    assert set(PRETRAINED) >= {"rn50.synthetic-gaussian15", "rn50.ldct-gaussian5"}


def test_released_names_only_accept_files_that_fit(tmp_path, monkeypatch, fixtures_dir):
    from clipdenoise.checkpoints import check_fits_release, imported_model_info
    from clipdenoise.errors import OutputExistsError

    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    rgb = official(fixtures_dir, "official_tiny_rgb_checkpoint.pth")
    gray = official(fixtures_dir, "official_tiny_gray_checkpoint.pth")
    with pytest.raises(WeightsMismatchError) as info:
        import_checkpoint(rgb, "rn50.synthetic-gaussian15")
    message = str(info.value)
    assert message.startswith(f"{rgb}: does not fit 'rn50.synthetic-gaussian15'")
    assert "architecture custom (width 8), not RN50" in message
    assert "wrong shape(s): decoder" in message
    with pytest.raises(WeightsMismatchError, match="1 input channel\\(s\\), not 3"):
        import_checkpoint(gray, "rn50.srgb-poissongaussian")
    asserted = models_dir_contents(tmp_path)
    assert asserted == []  # nothing imported under a released name
    # The full-size released layouts (every key and shape) pass the same check.
    for name, kind in (("rn50.synthetic-gaussian15", "rgb"), ("rn50.ldct-gaussian5", "gray")):
        shapes = json.loads(official(fixtures_dir, f"official_rn50_{kind}_keys.json").read_text())
        state = {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}
        check_fits_release(CLIPDenoiser(reference_config(state)), PRETRAINED[name], source="x")
    # Re-importing a name needs force; the source's SHA-256 is recorded.
    import_checkpoint(rgb, "mine")
    with pytest.raises(OutputExistsError, match="'mine' is imported already; pass --force"):
        import_checkpoint(gray, "mine")
    import_checkpoint(gray, "mine", force=True)
    info = imported_model_info("mine")
    assert info["source_sha256"] == checkpoint_sha256(gray)
    assert info["imported_from"] == gray.name
    assert load_model("mine").config.in_channels == 1


def models_dir_contents(tmp_path):
    folder = tmp_path / "cache" / "models"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_released_model_download_through_gdown(tmp_path, monkeypatch, fixtures_dir):
    import shutil
    import sys
    import types

    from clipdenoise.checkpoints import REFERENCE_RELEASE, download_pretrained
    from clipdenoise.errors import DownloadError, MissingExtraError

    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DownloadError, match="offline mode.*by hand: download https://drive"):
        download_pretrained("rn50.synthetic-gaussian15")
    monkeypatch.delenv("CLIPDENOISE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "gdown", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'clipdenoise\[drive\]'; or by hand"):
        download_pretrained("rn50.synthetic-gaussian15")
    calls = []

    def download_folder(url, output, quiet):  # what gdown does: the shared folder's tree
        calls.append(url)
        target = tmp_path / "drive" / "synthetic"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(
            official(fixtures_dir, "official_tiny_rgb_checkpoint.pth"), target / "net_g_latest.pth"
        )
        shutil.copytree(tmp_path / "drive", output, dirs_exist_ok=True)
        return [str(target / "net_g_latest.pth")]

    monkeypatch.setitem(
        sys.modules, "gdown", types.SimpleNamespace(download_folder=download_folder)
    )
    # The tiny stand-in is refused by the import checks: nothing lands under the released name.
    with pytest.raises(WeightsMismatchError, match=r"synthetic/net_g_latest\.pth: does not fit"):
        download_pretrained("rn50.synthetic-gaussian15", quiet=True)
    assert calls == [REFERENCE_RELEASE]
    assert models_dir_contents(tmp_path) == []
    with pytest.raises(
        DownloadError, match=r"did not hold CT/net_g_latest\.pth \(found: synthetic/"
    ):
        download_pretrained("rn50.ldct-gaussian5", quiet=True)


# ---------------------------------------------------------------------------- hostile files
def _tampered(tmp_path, name="tampered.safetensors", *, metadata=None, tensors=None):
    """A valid tiny full checkpoint whose metadata / tensors are then replaced as given."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = save_checkpoint(CLIPDenoiser(tiny_config()), tmp_path / "source.safetensors")
    with safe_open(str(source), framework="pt") as handle:
        info = dict(handle.metadata())
        stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    info.update(metadata or {})
    stored.update(tensors or {})
    path = tmp_path / name
    save_file(stored, str(path), metadata=info)
    return path


def _config_json(**changes):
    from clipdenoise import config as config_io

    data = json.loads(config_io.dumps_json(tiny_config()))
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layers": [10**6] * 4}, r"model\.layers: each stage needs 1 to 64 blocks"),
        ({"width": 10**7}, r"model\.width must be an even number from 2 to 512"),
        ({"layers": [64] * 4, "width": 512}, r"describes a model of .* G parameters"),
        ({"width": 16}, r"does not fit the model .* wrong shape: decoder\.blocks"),
        ({"in_channels": 7}, r"in_channels must be 1 or 3"),
        ({"bogus": 1}, r"unknown key\(s\) 'bogus'"),
        ({"aug_gamma": "NaN"}, r"model_config\.aug_gamma: expected a finite number"),
    ],
)
def test_tampered_model_config_is_refused_before_any_model_is_built(
    tmp_path, monkeypatch, changes, message
):
    import clipdenoise.checkpoints as checkpoints

    path = _tampered(tmp_path, metadata={"model_config": _config_json(**changes)})
    built = []
    real = checkpoints.CLIPDenoiser

    def spy(config):  # counts models built on a real device (meta-device skeletons are free)
        if torch.empty(0).device.type != "meta":
            built.append(config)
        return real(config)

    monkeypatch.setattr(checkpoints, "CLIPDenoiser", spy)
    with pytest.raises(WeightsMismatchError, match=message) as raised:
        load_checkpoint(path)
    assert str(raised.value).startswith(str(path))
    assert built == []


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"model_config": "{not json"}, "'model_config' is not valid JSON"),
        ({"model_config": "[1, 2]"}, "expected a table of keys"),
        ({"model_config": "x" * 70_000}, "at most 65536 are accepted"),
        ({"contents": "everything"}, "'contents' is 'everything'"),
        ({"contents": "partial", "encoder_source": "7"}, "'encoder_source' is not a table"),
    ],
)
def test_bad_metadata_is_one_line_error(tmp_path, capsys, metadata, message):
    path = _tampered(tmp_path, metadata=metadata)
    with pytest.raises(WeightsMismatchError, match=message):
        load_checkpoint(path)
    assert main(["weights", "verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert message.replace("\\", "") in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_tampered_tensors_are_compared_with_the_header(tmp_path):
    path = _tampered(tmp_path, tensors={"decoder.head.weight": torch.zeros(3, 3, 3, 3)})
    with pytest.raises(WeightsMismatchError, match=r"wrong shape: decoder\.head\.weight"):
        load_checkpoint(path)
    path = _tampered(tmp_path, "extra.safetensors", tensors={"evil": torch.zeros(2)})
    with pytest.raises(WeightsMismatchError, match="unexpected: evil"):
        load_checkpoint(path)


def test_huge_layers_do_not_allocate_in_a_fresh_process(tmp_path):
    """The probe that grew `weights verify` to 22.5 GB: now refused under a 1.5 GB limit."""
    import resource
    import subprocess
    import sys

    path = _tampered(tmp_path, metadata={"model_config": _config_json(layers=[10**6] * 4)})
    script = (
        "import resource, sys\n"
        "from clipdenoise.cli import main\n"
        "code = main(['weights', 'verify', sys.argv[1]])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('peak_kib', peak)\n"
        "sys.exit(code)\n"
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))

    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert done.returncode == 2, done.stderr
    assert "model.layers: each stage needs 1 to 64 blocks" in done.stderr
    peak_kib = int(done.stdout.split("peak_kib")[1])
    assert peak_kib < 1.5 * 2**20  # torch itself is ~0.4 GB resident


def test_nan_weights_are_refused_and_overflowing_weights_fail_verify(tmp_path, capsys):
    model = CLIPDenoiser(tiny_config())
    with torch.no_grad():
        model.decoder.head.weight.fill_(float("nan"))
    path = save_checkpoint(model, tmp_path / "nan.safetensors")
    with pytest.raises(WeightsMismatchError, match=r"nan\.safetensors: NaN or infinite values"):
        load_checkpoint(path)
    with torch.no_grad():
        model.decoder.head.weight.fill_(3e38)  # finite, but the output overflows
    path = save_checkpoint(model, tmp_path / "overflow.safetensors")
    assert main(["weights", "verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "overflow.safetensors: the model's output on a 64x64 test image holds NaN" in err
    good = save_checkpoint(CLIPDenoiser(tiny_config()), tmp_path / "good.safetensors")
    assert main(["weights", "verify", str(good)]) == 0
    assert "test forward pass: finite output" in capsys.readouterr().out


def test_verify_missing_file_or_folder(tmp_path, capsys):
    assert main(["weights", "verify", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt: file not found" in capsys.readouterr().err
    assert main(["weights", "verify", str(tmp_path)]) == 2
    assert "is a folder, not a weights file" in capsys.readouterr().err
    with pytest.raises(WeightsNotFoundError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_tampered_reference_checkpoint_is_refused(tmp_path):
    state = {"encoder.conv3.weight": torch.zeros(8, 4, 3, 3), "last.weight": torch.zeros(3, 8)}
    state["encoder.layer1.99999.conv1.weight"] = torch.zeros(1)
    torch.save({"params": state}, tmp_path / "huge.pth")
    with pytest.raises(WeightsMismatchError, match=r"huge\.pth: not a usable .* 1 to 64 blocks"):
        load_reference_checkpoint(tmp_path / "huge.pth")


def test_serve_lists_a_tampered_checkpoint_as_unavailable(tmp_path):
    pytest.importorskip("fastapi")
    from clipdenoise.web.catalogue import build_catalogue

    path = _tampered(tmp_path, metadata={"model_config": "{not json"})
    catalogue = build_catalogue([str(path)], baselines=False, include_imported=False)
    (entry,) = catalogue.entries.values()
    assert not entry.available
    assert "'model_config' is not valid JSON" in entry.error
