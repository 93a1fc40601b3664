"""``clipdenoise export``: ONNX with a parity check and TorchScript from a checkpoint."""

from __future__ import annotations

import pytest
import torch

from clipdenoise.checkpoints import save_checkpoint
from clipdenoise.cli import main
from clipdenoise.model import CLIPDenoiser, tiny_config


def _model(channels: int = 3) -> CLIPDenoiser:
    model = CLIPDenoiser(tiny_config(in_channels=channels)).eval()
    with torch.no_grad():
        model.decoder.head.weight.mul_(20.0)  # outputs on the image scale: tolerances mean it
    return model


def test_export_cli(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    weights = save_checkpoint(_model(3), tmp_path / "w.safetensors")
    code = main(
        ["export", "--weights", str(weights), "--onnx", str(tmp_path / "m.onnx"),
         "--check", "--torchscript", str(tmp_path / "m.pt")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "m.onnx").is_file() and (tmp_path / "m.pt").is_file()
    difference = float(err.split("max abs difference ")[1].split()[0])
    assert difference <= 1e-4
    assert main(["export", "--weights", str(weights)]) == 2


def test_nothing_to_do_and_missing_weights_are_one_line_errors(tmp_path, capsys):
    weights = save_checkpoint(_model(3), tmp_path / "w.safetensors")
    assert main(["export", "--weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "clipdenoise export: error: nothing to do: give --onnx FILE and/or --torchscript FILE\n"
    )
    missing = tmp_path / "absent.safetensors"
    assert main(["export", "--weights", str(missing), "--torchscript", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "absent.safetensors" in err and err.count("\n") == 1
    assert not (tmp_path / "m.pt").exists()


def test_torchscript_export_keeps_an_existing_file_unless_overwrite(tmp_path, capsys):
    model = _model(1)
    weights = save_checkpoint(model, tmp_path / "grey.safetensors")
    target = tmp_path / "grey.pt"
    target.write_bytes(b"keep me")
    arguments = ["export", "--weights", str(weights), "--torchscript", str(target)]
    assert main(arguments) == 2
    assert target.read_bytes() == b"keep me"
    capsys.readouterr()
    assert main([*arguments, "--overwrite"]) == 0
    assert f"wrote {target}" in capsys.readouterr().err
    noisy = torch.rand(1, 1, 64, 64)
    with torch.inference_mode(), torch.jit.optimized_execution(False):
        exported = torch.jit.load(str(target))(noisy)
        torch.testing.assert_close(exported, model(noisy), rtol=0, atol=1e-5)
