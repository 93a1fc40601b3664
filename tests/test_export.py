"""Tests of ONNX / TorchScript export: onnxruntime parity with PyTorch on dynamic sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipdenoise.errors import OutputExistsError
from clipdenoise.export import (
    check_onnx_parity,
    export_onnx,
    export_torchscript,
    onnx_session,
    run_onnx,
)
from clipdenoise.model import CLIPDenoiser, tiny_config

pytest.importorskip("onnxruntime")


def _model(channels: int = 3) -> CLIPDenoiser:
    model = CLIPDenoiser(tiny_config(in_channels=channels)).eval()
    with torch.no_grad():
        model.decoder.head.weight.mul_(20.0)  # outputs on the image scale: tolerances mean it
    return model


def _parity(model, session, shapes) -> float:
    generator = torch.Generator().manual_seed(1)
    worst = 0.0
    for shape in shapes:
        noisy = torch.rand(shape, generator=generator)
        with torch.inference_mode():
            expected = model(noisy).numpy()
        got = run_onnx(session, noisy.numpy())
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


@pytest.mark.parametrize("channels", [3, 1])
def test_legacy_onnx_export_matches_pytorch(tmp_path, channels):
    model = _model(channels)
    path = export_onnx(model, tmp_path / "m.onnx")
    session = onnx_session(path)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["pad_multiple"] == "32" and "reflect" in meta["padding"]
    # Batch, height and width differ from the traced example; odd sizes go through the padding.
    shapes = [(1, channels, 64, 96), (2, channels, 128, 32), (1, channels, 45, 70)]
    assert _parity(model, session, shapes) <= 1e-4


def test_fp16_onnx_export(tmp_path):
    import onnx

    model = _model(3)
    path = export_onnx(model, tmp_path / "h.onnx", fp16=True)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    try:
        session = onnx_session(path)
    except Exception as error:  # some CPU builds lack float16 kernels
        pytest.skip(f"onnxruntime cannot run float16 here: {error}")
    noisy = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(noisy).numpy()
    got = run_onnx(session, noisy.numpy()).astype(np.float32)
    assert np.abs(got - expected).max() < 5e-2


def test_onnx_parity_check(tmp_path):
    model = _model(3)
    path = export_onnx(model, tmp_path / "m.onnx")
    assert check_onnx_parity(model, path) <= 1e-4
    with torch.no_grad():
        model.decoder.head.weight.mul_(3.0)  # the graph no longer matches the model
    assert check_onnx_parity(model, path) > 0.1


def test_torchscript_export_runs_any_multiple_of_32(tmp_path):
    model = _model(3)
    path = export_torchscript(model, tmp_path / "m.pt")
    loaded = torch.jit.load(str(path))
    for shape in [(1, 3, 64, 64), (2, 3, 96, 160)]:
        noisy = torch.rand(shape)
        # (the JIT's profiling optimiser only adds seconds per new shape to this check)
        with torch.inference_mode(), torch.jit.optimized_execution(False):
            assert float((loaded(noisy) - model(noisy)).abs().max()) <= 1e-5
    with pytest.raises(OutputExistsError):
        export_torchscript(model, path)
