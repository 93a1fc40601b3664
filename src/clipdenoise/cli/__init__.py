"""Command-line interface: ``clipdenoise <subcommand> ...``.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func`` (``args -> int`` exit code).
Modules are discovered, so adding a subcommand never edits this file. The CLI is a thin layer:
everything a subcommand does is callable from the library.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from clipdenoise import __version__
from clipdenoise.errors import ClipDenoiseError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipdenoise",
        description="Generalizable image denoising with frozen CLIP ResNet features (CVPR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"clipdenoise {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ClipDenoiseError as error:
        print(f"clipdenoise {args.command}: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        from clipdenoise.extras import EXTRA_OF_MODULE, missing_extra_error

        missing = (getattr(error, "name", None) or "").split(".")[0]
        if missing not in EXTRA_OF_MODULE:
            raise
        message = missing_extra_error(missing, f"clipdenoise {args.command}")
        print(f"clipdenoise {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
