"""Command-line interface: ``clipdenoise <subcommand> ...``.

Each subcommand lives in its own module of this package, listed in :data:`SUBCOMMANDS`, and
exposes ``register(subparsers) -> None``; the parser it adds sets ``func`` (``args -> int`` exit
code). The CLI is a thin layer: everything a subcommand does is callable from the library.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

from clipdenoise import __version__
from clipdenoise.errors import ClipDenoiseError
from clipdenoise.extras import EXTRA_OF_MODULE, missing_extra_error

#: The subcommand modules of this package, in the order ``clipdenoise --help`` lists them: using
#: a model, making one, measuring it, then the tools around it.
SUBCOMMANDS: tuple[str, ...] = (
    "denoise",
    "serve",
    "train",
    "synth",
    "data",
    "evaluate",
    "analyze",
    "weights",
    "export",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``clipdenoise`` parser with every subcommand of :data:`SUBCOMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog="clipdenoise",
        description="Generalizable image denoising with frozen CLIP ResNet features (CVPR 2024).",
    )
    parser.add_argument("--version", action="version", version=f"clipdenoise {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def print_failures(failures: Iterable[tuple[object, object]], what: str) -> int:
    """Print ``"<N> <what>:"`` and one ``"  <source>: <reason>"`` line per failure to stderr.

    Returns:
        The subcommand's exit status: 1 when anything failed, else 0.
    """
    failures = list(failures)
    if not failures:
        return 0
    print(f"{len(failures)} {what}:", file=sys.stderr)
    for source, reason in failures:
        print(f"  {source}: {reason}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``clipdenoise`` with ``argv``; returns the exit status (2: usage or user error)."""
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
