"""Export a CLIPDenoiser to ONNX (dynamic batch, height and width) or TorchScript.

The exported graph is the network itself, *without* the padding step of
:meth:`~clipdenoise.model.CLIPDenoiser.forward`: its input ``noisy`` is ``(B, C, H, W)`` float in
[0, 1] with **H and W multiples of 32** (64 for models using F5; the graph's metadata key
``pad_multiple`` says which), and its output ``restored`` has the same shape (not clamped). To
denoise any size, pad the bottom and right by mirror reflection to the next multiple, run, and
crop back — exactly what the PyTorch model does (the reference's test protocol);
:func:`run_onnx` does it for you::

    import numpy as np
    pad_h, pad_w = (-h) % 32, (-w) % 32
    padded = np.pad(noisy, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
    restored = session.run(None, {"noisy": padded})[0][:, :, :h, :w]

(``mode="reflect"`` needs ``pad < size``; :func:`run_onnx` also handles tinier images.)

``fp16=True`` exports a float16 graph (inputs and outputs float16) for GPU runtimes; float32 is
the default and matches PyTorch to ~1e-7 on CPU.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clipdenoise import __version__
from clipdenoise.config import dumps_json
from clipdenoise.errors import ConfigError
from clipdenoise.image_io import atomic_write
from clipdenoise.inference import pad_to_multiple

ONNX_INPUT = "noisy"
ONNX_OUTPUT = "restored"
DEFAULT_OPSET = 18


class ExportableDenoiser(nn.Module):
    """A CLIPDenoiser's network without the data-dependent padding (input sides must be
    multiples of ``pad_multiple``), in eval mode, for tracing and export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in ("encoder", "decoder", "config"):
            if not hasattr(model, name):
                raise ConfigError("export needs a CLIPDenoiser (with encoder, decoder and config)")
        self.model = model.eval()
        self.pad_multiple = int(model.config.pad_multiple)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        adapter = self.model.input_adapter
        image = noisy if adapter is None else adapter(noisy)
        return self.model.decoder(self.model.encoder(image), image)


def _example(model: nn.Module, size: int, dtype: torch.dtype) -> torch.Tensor:
    channels = int(model.config.in_channels)
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, channels, size, size, generator=generator).to(dtype)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    dynamo: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an ONNX graph with dynamic batch, height and width.

    Args:
        model: A :class:`~clipdenoise.model.CLIPDenoiser` (copied; not modified).
        path: The ``.onnx`` file (written atomically).
        opset: ONNX opset version.
        fp16: Export in float16 (input and output float16).
        dynamo: Use PyTorch's ``torch.export``-based exporter, which records H and W as
            multiples of ``pad_multiple`` in the graph (about 10x slower to export; parity with
            PyTorch measured at 3e-8). Default: the TorchScript-based exporter (tested in CI).
        overwrite: Replace an existing file.

    Returns:
        ``path``.

    Raises:
        ConfigError: not a CLIPDenoiser, or fp16 asked for with the legacy exporter on CPU-only
            kernels that cannot trace it.
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
    """
    import copy

    path = Path(path)
    core = ExportableDenoiser(copy.deepcopy(model).float())
    dtype = torch.float16 if fp16 else torch.float32
    if fp16:
        core = core.half()
    example = _example(core.model, 2 * core.pad_multiple, dtype)
    names = {"input_names": [ONNX_INPUT], "output_names": [ONNX_OUTPUT]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (deprecations, torchvision absent)
        if dynamo:
            blocks_h = torch.export.Dim("blocks_h", min=1, max=4096)
            blocks_w = torch.export.Dim("blocks_w", min=1, max=4096)
            batch = torch.export.Dim("batch", min=1, max=4096)
            shapes = {
                "noisy": {
                    0: batch,
                    2: core.pad_multiple * blocks_h,
                    3: core.pad_multiple * blocks_w,
                }
            }
            program = torch.onnx.export(
                core,
                (example,),
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
                **names,
            )
            proto = program.model_proto
        else:
            import io

            buffer = io.BytesIO()
            axes = {0: "batch", 2: "height", 3: "width"}
            torch.onnx.export(
                core,
                (example,),
                buffer,
                dynamic_axes={ONNX_INPUT: axes, ONNX_OUTPUT: axes},
                opset_version=opset,
                dynamo=False,
                **names,
            )
            import onnx

            proto = onnx.load_from_string(buffer.getvalue())
    _add_metadata(proto, model, fp16)
    data = proto.SerializeToString()
    return atomic_write(path, lambda handle: handle.write(data), overwrite=overwrite)


def _add_metadata(proto, model: nn.Module, fp16: bool) -> None:
    entries = {
        "producer": f"clipdenoise {__version__}",
        "pad_multiple": str(model.config.pad_multiple),
        "padding": "reflect-pad bottom/right to a multiple of pad_multiple, then crop back",
        "range": "input and output in [0, 1] (output not clamped)",
        "dtype": "float16" if fp16 else "float32",
        "model_config": dumps_json(model.config),
    }
    for key, value in entries.items():
        item = proto.metadata_props.add()
        item.key, item.value = key, value


def export_torchscript(model: nn.Module, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a traced TorchScript module (``torch.jit.load``-able, no clipdenoise
    needed at run time). Same input contract as the ONNX graph: H, W multiples of
    ``pad_multiple``; any batch and size."""
    import copy
    import io

    core = ExportableDenoiser(copy.deepcopy(model).float())
    example = _example(core.model, 2 * core.pad_multiple, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated but still supported
        with torch.no_grad():
            traced = torch.jit.trace(core, example, check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={"pad_multiple": str(core.pad_multiple)})
    data = buffer.getvalue()
    return atomic_write(Path(path), lambda handle: handle.write(data), overwrite=overwrite)


def onnx_session(path: str | Path, *, providers: list[str] | None = None):
    """An ``onnxruntime.InferenceSession`` for an exported graph (CPU unless ``providers``)."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ConfigError("onnxruntime is needed: pip install 'clipdenoise[onnx]'") from error
    return onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])


def run_onnx(session, noisy: np.ndarray) -> np.ndarray:
    """Denoise ``(B, C, H, W)`` (any H, W) with an exported graph: reflect-pad bottom/right to
    the graph's ``pad_multiple``, run, crop back. Returns the graph's dtype, not clamped."""
    metadata = session.get_modelmeta().custom_metadata_map
    multiple = int(metadata.get("pad_multiple", 32))
    dtype = np.float16 if metadata.get("dtype") == "float16" else np.float32
    padded, (height, width) = pad_to_multiple(torch.from_numpy(np.asarray(noisy)), multiple)
    restored = session.run(None, {ONNX_INPUT: padded.numpy().astype(dtype)})[0]
    return restored[..., :height, :width]


def check_onnx_parity(model: nn.Module, path: str | Path) -> float:
    """How closely an exported ONNX graph follows the PyTorch model it was exported from.

    Both denoise the same two random images (sizes that are and are not multiples of 32) on the
    CPU.

    Args:
        model: The source model (a :class:`~clipdenoise.model.CLIPDenoiser`, on the CPU).
        path: The graph :func:`export_onnx` wrote.

    Returns:
        The largest absolute difference between onnxruntime's and PyTorch's outputs.

    Raises:
        ConfigError: onnxruntime is not installed.
    """
    session = onnx_session(path)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for height, width in ((64, 96), (77, 50)):
        noisy = torch.rand(1, model.config.in_channels, height, width, generator=generator)
        with torch.inference_mode():
            expected = model.eval()(noisy).numpy()
        restored = run_onnx(session, noisy.numpy()).astype(np.float32)
        worst = max(worst, float(np.abs(restored - expected).max()))
    return worst


__all__ = [
    "ExportableDenoiser",
    "check_onnx_parity",
    "export_onnx",
    "export_torchscript",
    "onnx_session",
    "run_onnx",
]
