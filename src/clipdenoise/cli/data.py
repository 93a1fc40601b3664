"""``clipdenoise data``: list, download, import and verify the benchmark sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipdenoise.data import BENCHMARKS, default_data_root
from clipdenoise.data.store import dataset_rows, download_dataset, import_dataset, verify_dataset

_EPILOG = """\
Sets live in canonical folders under the data root (--data-root, else $CLIPDENOISE_DATA, else
~/.cache/clipdenoise/data): Kodak24/, CBSD68/, McMaster/, Urban100/, CBSD432/, Set12/, BSD68/,
CC15/, PolyU/, SIDD/, DIV2K/... Every file is checked against the SHA-256 manifest shipped with
clipdenoise where one is recorded.

examples:
  clipdenoise data list
  clipdenoise data download kodak24 cbsd68 mcmaster cc
  clipdenoise data import urban100 --from ~/Downloads/Urban100/HR
  clipdenoise data verify kodak24
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list, download, import and verify the benchmark sets",
        description="Get the benchmark sets into the data root and check them file by file.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        help="folder holding the sets (default: $CLIPDENOISE_DATA or ~/.cache/clipdenoise/data)",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every known set: folder, files present, source")
    listing.set_defaults(func=_list)
    download = actions.add_parser(
        "download", help="download sets (resumable, each file checked against its SHA-256)"
    )
    download.add_argument("names", nargs="+", metavar="NAME", help="set names (see `data list`)")
    download.set_defaults(func=_download)
    verify = actions.add_parser("verify", help="report missing, extra and altered files")
    verify.add_argument("names", nargs="*", metavar="NAME", help="set names (default: present)")
    verify.set_defaults(func=_verify)
    imp = actions.add_parser(
        "import", help="copy a set obtained otherwise into the data root, checking each file"
    )
    imp.add_argument("name", help="set name (see `data list`)")
    imp.add_argument(
        "--from", dest="source", type=Path, required=True, help="folder holding the set's files"
    )
    imp.set_defaults(func=_import)


def _list(args: argparse.Namespace) -> int:
    print(f"data root: {default_data_root(args.data_root)}")
    print(f"{'name':10s} {'state':8s} {'files':9s} {'obtain':9s} {'hashes':24s} folder")
    for row in dataset_rows(args.data_root):
        print(
            f"{row['name']:10s} {row['state']:8s} {row['files']:9s} {row['obtain']:9s} "
            f"{row['hashes']:24s} {row['folder']}"
        )
        print(f"{'':11s}{row['description']}; source: {BENCHMARKS[row['name']].source}")
    return 0


def _report(report) -> int:
    print(report.summary())
    return 0 if report.ok else 1


def _download(args: argparse.Namespace) -> int:
    status = 0
    for name in args.names:
        status = max(status, _report(download_dataset(name, args.data_root)))
    return status


def _verify(args: argparse.Namespace) -> int:
    names = args.names or [
        r["name"] for r in dataset_rows(args.data_root) if r["state"] == "present"
    ]
    if not names:
        print("no set present under the data root; see `clipdenoise data list`", file=sys.stderr)
        return 1
    status = 0
    for name in names:
        status = max(status, _report(verify_dataset(name, args.data_root)))
    return status


def _import(args: argparse.Namespace) -> int:
    return _report(import_dataset(args.name, args.source, args.data_root))
