"""``clipdenoise serve``: the local web demo (upload, add noise, denoise, compare, download)."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from clipdenoise.errors import ConfigError
from clipdenoise.web import InferenceSettings, build_catalogue, create_app
from clipdenoise.web.server import uvicorn_options
from clipdenoise.web.settings import ServeConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ServeConfig()
    parser = subparsers.add_parser(
        "serve",
        help="start the local web demo",
        description=(
            "Start the web demo: upload an image (or pick a sample), optionally add synthetic "
            "noise, denoise it with a loaded model or a classical baseline, compare before/after "
            "and download the result in the input's format and bit depth. Binds to 127.0.0.1 "
            "unless --host says otherwise. Without trained weights the page lists the available "
            "models and explains how to add weights (see `clipdenoise weights --help`)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="a checkpoint file (ours or the reference's .pth) or a name imported with "
        "`clipdenoise weights import`; repeat to offer several models",
    )
    models.add_argument(
        "--tiny-demo",
        action="store_true",
        help="also offer a tiny random-init network, labelled UNTRAINED (for tests and trying "
        "the page without weights)",
    )
    models.add_argument(
        "--no-baselines", action="store_true", help="do not offer BM3D / non-local means"
    )
    models.add_argument(
        "--no-imported",
        action="store_true",
        help="do not list the models imported into the cache (only --weights ones)",
    )
    models.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )
    models.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16", "auto"),
        help="network precision",
    )
    network = parser.add_argument_group("network")
    network.add_argument(
        "--host", default=defaults.host, help="interface to bind (0.0.0.0: every interface)"
    )
    network.add_argument("--port", type=int, default=defaults.port, help="TCP port")
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=defaults.max_upload_bytes / 1024 / 1024,
        help="largest upload (MB)",
    )
    limits.add_argument(
        "--max-megapixels",
        type=float,
        default=defaults.max_pixels / 1e6,
        help="largest image (megapixels)",
    )
    limits.add_argument(
        "--max-concurrent", type=int, default=defaults.max_concurrent, help="jobs computing at once"
    )
    limits.add_argument(
        "--max-queue", type=int, default=defaults.max_queue, help="jobs allowed to wait"
    )
    limits.add_argument(
        "--timeout",
        type=float,
        default=defaults.job_timeout_s,
        help="seconds a job may run before it is cancelled",
    )
    limits.add_argument(
        "--tile-size", type=int, default=defaults.tile_size, help="tile side for large images (px)"
    )
    limits.add_argument(
        "--tile-overlap", type=int, default=defaults.tile_overlap, help="tile overlap (px)"
    )
    limits.add_argument(
        "--result-ttl",
        type=float,
        default=defaults.result_ttl_s,
        help="seconds a finished result stays downloadable (kept in memory)",
    )
    limits.add_argument(
        "--max-results",
        type=int,
        default=defaults.max_results,
        help="finished results kept in memory at most (oldest dropped first)",
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=defaults.request_timeout_s,
        help="seconds a client has to send a request's headers, and again its body",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    parser.set_defaults(func=run)


def serve_config_from_args(args: argparse.Namespace):
    """The :class:`~clipdenoise.web.settings.ServeConfig` the options describe."""
    return ServeConfig(
        host=args.host,
        port=args.port,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=int(args.max_megapixels * 1e6),
        max_concurrent=args.max_concurrent,
        max_queue=args.max_queue,
        job_timeout_s=args.timeout,
        tile_size=args.tile_size,
        tile_overlap=args.tile_overlap,
        result_ttl_s=args.result_ttl,
        max_results=args.max_results,
        request_timeout_s=args.request_timeout,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app_from_args(args: argparse.Namespace):
    """The application ``clipdenoise serve`` runs (no server started)."""
    config = serve_config_from_args(args)
    catalogue = build_catalogue(
        args.weights,
        tiny_demo=args.tiny_demo,
        baselines=not args.no_baselines,
        include_imported=not args.no_imported,
        map_location="cpu",
    )
    settings = InferenceSettings(
        device=args.device,
        dtype=args.dtype,
        tile_size=config.tile_size,
        tile_overlap=config.tile_overlap,
    )
    return create_app(catalogue, config=config, settings=settings), config, catalogue


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as error:
        raise ConfigError("the web demo needs uvicorn: pip install 'clipdenoise[serve]'") from error
    app, config, catalogue = build_app_from_args(args)
    for entry in catalogue.entries.values():
        state = "ok" if entry.available else f"unavailable: {entry.error}"
        note = " [UNTRAINED]" if entry.untrained else ""
        print(f"model {entry.key}{note}: {state}", file=sys.stderr)
    if catalogue.needs_weights_guidance:
        print(catalogue.public()["weights_guidance"], file=sys.stderr)
    if not is_loopback(config.host):
        print(
            f"warning: binding to {config.host} makes the demo reachable from other machines",
            file=sys.stderr,
        )
    shown_host = f"[{config.host}]" if ":" in config.host else config.host
    print(
        f"clipdenoise demo on http://{shown_host}:{config.port}/ (Ctrl+C to stop)", file=sys.stderr
    )

    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
        **uvicorn_options(config),
    )
    return 0
