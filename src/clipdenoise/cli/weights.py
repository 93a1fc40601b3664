"""``clipdenoise weights``: where weights are looked for, importing, converting and verifying."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipdenoise.builtin import AUTO, BUILTIN_MODEL, builtin_weights_path, resolve_auto
from clipdenoise.checkpoints import (
    FORMAT_NAME,
    PRETRAINED,
    check_model_output,
    convert_reference_checkpoint,
    download_pretrained,
    import_checkpoint,
    imported_model_info,
    imported_models,
    load_model,
    models_dir,
)
from clipdenoise.errors import ClipDenoiseError, WeightsMismatchError, WeightsNotFoundError
from clipdenoise.weights import (
    CLIP_WEIGHTS,
    HF_FILENAMES,
    candidate_paths,
    download_clip_weights,
    extract_visual_trunk,
    read_state_dict,
    sha256_of,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="show where weights are looked for; import, convert or verify weight files",
        description=(
            "Manage CLIP encoder weights and denoiser checkpoints. CLIP weights are looked for in "
            "$CLIPDENOISE_CLIP_DIR, ~/.cache/clip (OpenAI's clip package), the clipdenoise cache "
            "and the Hugging Face hub cache; released denoisers of the reference implementation "
            "are imported once into the clipdenoise cache and then used by name."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    where = actions.add_parser(
        "where", help="list every place weights are looked for, and what is there"
    )
    where.add_argument(
        "--arch", default="RN50", help="CLIP ResNet size to look for (default: RN50)"
    )
    where.set_defaults(func=_where)

    listing = actions.add_parser(
        "list", help="list known and imported denoiser names, with their files' SHA-256"
    )
    listing.set_defaults(func=_list)

    download = actions.add_parser(
        "download",
        help="download CLIP weights (RN50, ...) or a released denoiser (rn50.synthetic-gaussian15)",
        description=(
            "CLIP ResNets come from OpenAI's URLs, checked against the SHA-256 in the URL, into "
            "the clipdenoise cache (resumable). Released denoisers come from the authors' Google "
            "Drive folder through gdown (pip install 'clipdenoise[drive]') and are imported with "
            "the same checks as `weights import`."
        ),
    )
    download.add_argument("name", help="RN50, RN101, RN50x4, RN50x16, RN50x64 or a released name")
    download.add_argument(
        "--force", action="store_true", help="replace an imported denoiser of that name"
    )
    download.set_defaults(func=_download)

    imp = actions.add_parser(
        "import",
        help="import a denoiser checkpoint (the reference's net_g_latest.pth or ours) under a name",
    )
    imp.add_argument("source", type=Path, help="checkpoint file to import")
    imp.add_argument(
        "--name", required=True, help="name to use it by, e.g. rn50.synthetic-gaussian15"
    )
    imp.add_argument("--force", action="store_true", help="replace a model of that name")
    imp.set_defaults(func=_import)

    convert = actions.add_parser(
        "convert",
        help="convert a reference checkpoint ({'params': ...} .pth) to our safetensors format",
    )
    convert.add_argument("source", type=Path, help="reference checkpoint (.pth)")
    convert.add_argument("destination", type=Path, help="output file (.safetensors)")
    convert.add_argument(
        "--key", default="params", help="state-dict key inside the file (default: params)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    convert.set_defaults(func=_convert)

    verify = actions.add_parser(
        "verify", help="check a weights file: hash (OpenAI archives, or --sha256) and that it loads"
    )
    verify.add_argument(
        "file", type=Path, help="CLIP weights, reference checkpoint or our checkpoint"
    )
    verify.add_argument("--sha256", help="expected SHA-256 (hex)")
    verify.set_defaults(func=_verify)


def _where(args: argparse.Namespace) -> int:
    print(f"CLIP {args.arch} weights are looked for, in order:")
    for path in candidate_paths(args.arch):
        print(f"  [{'found' if path.is_file() else 'missing'}] {path}")
    spec = CLIP_WEIGHTS.get(args.arch)
    if spec is not None:
        print(f"  [hub] Hugging Face {spec.hf_repo} ({' or '.join(HF_FILENAMES)})")
        print(f"Official archive: {spec.url}\n  sha256 {spec.sha256}")
    print(f"Imported denoisers ({models_dir()}): {', '.join(imported_models()) or 'none'}")
    return 0


def _list(args: argparse.Namespace) -> int:
    imported = set(imported_models())

    def hashes(name: str) -> str:
        try:
            info = imported_model_info(name)
        except ClipDenoiseError as error:
            return f"unreadable: {error}"
        source = info["source_sha256"] or "not recorded"
        return f"sha256 {info['sha256']} (imported from {info['imported_from']}, sha256 {source})"

    for name, spec in PRETRAINED.items():
        state = "imported" if name in imported else "not imported"
        print(f"{name:28s} {state:13s} {spec.description}")
        print(f"{'':29s}{hashes(name) if name in imported else 'source: ' + spec.source}")
    for name in sorted(imported - set(PRETRAINED)):
        print(f"{name:28s} imported\n{'':29s}{hashes(name)}")
    builtin = builtin_weights_path()
    print(
        f"{BUILTIN_MODEL:28s} {'built in':13s} blind denoiser trained without CLIP (not the paper's)"
    )
    print(f"{'':29s}sha256 {sha256_of(builtin)} ({builtin})")
    print(f"{AUTO} (the default) = {resolve_auto(sorted(imported), notice=False)}")
    return 0


def _download(args: argparse.Namespace) -> int:
    if args.name in CLIP_WEIGHTS:
        path = download_clip_weights(args.name)
        print(f"CLIP {args.name}: {path} (sha256 {CLIP_WEIGHTS[args.name].sha256}, verified)")
        return 0
    destination = download_pretrained(args.name, force=args.force)
    print(f"{args.name}: {destination}")
    return 0


def _import(args: argparse.Namespace) -> int:
    destination = import_checkpoint(args.source, args.name, force=args.force)
    print(f"imported {args.source} as {args.name!r} -> {destination}")
    print(f"use it with: clipdenoise denoise INPUT -o OUTPUT --weights {args.name}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    if args.destination.exists() and not args.overwrite:
        raise ClipDenoiseError(
            f"{args.destination}: already exists (use --overwrite to replace it)"
        )
    convert_reference_checkpoint(args.source, args.destination, key=args.key)
    print(f"converted {args.source} -> {args.destination}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.file.is_dir():
        raise WeightsNotFoundError(f"{args.file}: is a folder, not a weights file")
    if not args.file.is_file():
        raise WeightsNotFoundError(f"{args.file}: file not found")
    digest = sha256_of(args.file)
    print(f"{args.file}: sha256 {digest}")
    official = {spec.filename: spec for spec in CLIP_WEIGHTS.values()}.get(args.file.name)
    expected = args.sha256 or (official.sha256 if official else None)
    if expected:
        if digest != expected.lower():
            raise WeightsMismatchError(
                f"{args.file}: sha256 {digest} does not match expected {expected}"
            )
        print(
            "  hash: OK"
            + (
                f" (OpenAI's published hash for {official.name})"
                if official and not args.sha256
                else ""
            )
        )
    try:
        model = load_model(args.file)
    except ClipDenoiseError as error:
        if _is_our_checkpoint(args.file, FORMAT_NAME):
            raise  # it says it is a denoiser: its own error is the answer
        denoiser_error = error
    else:
        check_model_output(model, source=args.file)
        print(f"  loads as a denoiser: {model.config.arch}, {model.config.in_channels} channel(s)")
        print("  test forward pass: finite output")
        return 0
    try:
        trunk = extract_visual_trunk(read_state_dict(args.file))
    except ClipDenoiseError as error:
        raise WeightsMismatchError(
            f"{args.file}: neither a denoiser checkpoint ({denoiser_error}) nor CLIP weights "
            f"({error})"
        ) from error
    if not trunk:
        raise WeightsMismatchError(f"{args.file}: holds no tensors; not a weights file")
    print(f"  loads as CLIP weights: {len(trunk)} visual trunk tensors")
    return 0


def _is_our_checkpoint(path: Path, format_name: str) -> bool:
    """Whether ``path`` is a safetensors file whose metadata names our checkpoint format."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == format_name
    except Exception:  # noqa: BLE001 - not a safetensors file at all
        return False
