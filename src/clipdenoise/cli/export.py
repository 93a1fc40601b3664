"""``clipdenoise export``: write a denoiser as ONNX and/or TorchScript, optionally checking it."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from clipdenoise.checkpoints import DEFAULT_MODEL, load_model
from clipdenoise.errors import ConfigError
from clipdenoise.export import check_onnx_parity, export_onnx, export_torchscript

DESCRIPTION = textwrap.dedent(
    """\
    Export a denoiser for deployment without clipdenoise.

    The exported graph takes 'noisy' (B, C, H, W) float in [0, 1] with H and W multiples of 32
    (64 for F5 models; stored in the ONNX metadata as pad_multiple) and returns 'restored' of
    the same shape, not clamped. For other sizes, reflect-pad the bottom and right to the next
    multiple and crop the output back (clipdenoise.export.run_onnx does this).
    """
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a denoiser to ONNX or TorchScript",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-w",
        "--weights",
        default=DEFAULT_MODEL,
        metavar="NAME|PATH",
        help=f"denoiser name or checkpoint file (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--onnx", type=Path, metavar="FILE", help="write an ONNX graph here")
    parser.add_argument(
        "--torchscript", type=Path, metavar="FILE", help="write a traced TorchScript module here"
    )
    parser.add_argument(
        "--fp16", action="store_true", help="export the ONNX graph in float16 (GPU runtimes)"
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    parser.add_argument(
        "--dynamo",
        action="store_true",
        help="use PyTorch's torch.export-based ONNX exporter (records H, W as multiples of 32 "
        "in the graph; slower) instead of the TorchScript-based one",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the ONNX graph in onnxruntime (CPU) on two sizes and print the largest "
        "difference from PyTorch",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    if args.onnx is None and args.torchscript is None:
        raise ConfigError("nothing to do: give --onnx FILE and/or --torchscript FILE")
    model = load_model(args.weights)
    if args.onnx is not None:
        path = export_onnx(
            model,
            args.onnx,
            opset=args.opset,
            fp16=args.fp16,
            dynamo=args.dynamo,
            overwrite=args.overwrite,
        )
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
        if args.check:
            difference = check_onnx_parity(model, path)
            print(f"onnxruntime vs PyTorch: max abs difference {difference:.2e}", file=sys.stderr)
    if args.torchscript is not None:
        path = export_torchscript(model, args.torchscript, overwrite=args.overwrite)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0
