"""The demo's web application (FastAPI): a hand-written page plus a small JSON API.

API (all JSON errors are ``{"error": "<message for the visitor>"}``, never a stack trace):

- ``GET /`` the page; ``GET /static/<name>`` its script and style (served from memory).
- ``GET /api/info`` models (and how to add weights when none is trained), noise kinds, limits,
  bundled samples.
- ``GET /api/samples/<key>`` a bundled sample image (PNG).
- ``POST /api/jobs`` multipart form: ``file`` (an upload) or ``sample`` (a sample key); ``model``;
  optional ``noise`` (``none`` or a kind), ``level`` and ``seed``. Answers 202 with the job
  (state ``queued``), 400/413/415 for bad uploads, 503 (with ``Retry-After``) when the queue is full.
- ``GET /api/jobs/<id>`` state, progress, place in the queue, message, and when done the result
  summary (metrics, timings). ``DELETE /api/jobs/<id>`` cancels.
- ``GET /api/jobs/<id>/previews/<noisy|restored|clean>`` 8-bit PNG for display;
  ``GET /api/jobs/<id>/files/<restored|noisy>`` the download, in the upload's format and bit depth.
- ``POST /api/denoise`` the same form as ``/api/jobs``, for scripts: waits (queue included) and
  answers the restored file (header ``X-Clipdenoise-Job`` names the job), 422 when the job
  failed, 504 when it exceeded the time limit.

Nothing the client sends is used as a file-system path; uploads and results stay in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clipdenoise import __version__
from clipdenoise.errors import ClipDenoiseError
from clipdenoise.inference import resolve_device
from clipdenoise.web.catalogue import ModelCatalogue, build_catalogue
from clipdenoise.web.jobs import Job, JobManager, JobState, QueueFullError
from clipdenoise.web.pipeline import (
    DenoiserCache,
    DenoiseRequest,
    InferenceSettings,
    run_denoise,
)
from clipdenoise.web.samples import SAMPLES
from clipdenoise.web.settings import ServeConfig
from clipdenoise.web.upload import UploadRejectedError, decode_image

logger = logging.getLogger("clipdenoise.web")

FORM_OVERHEAD_BYTES = 64 * 1024  # room for the form fields beside the file
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
STATIC_TYPES[".css"] = "text/css; charset=utf-8"
STATIC_TYPES[".svg"] = "image/svg+xml"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def load_static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files (``name -> (bytes, media type)``), read once from the package."""
    folder = resources.files("clipdenoise.web").joinpath("static")
    files = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in STATIC_TYPES:
            files[item.name] = (item.read_bytes(), STATIC_TYPES[suffix])
    return files


def display_name(filename: str | None) -> str:
    """A safe stem for download names from a client file name (never used as a path)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60]
    return stem or "image"


def noise_kinds_public() -> list[dict]:
    """The noise registry as the page needs it (kinds, units, paper levels, suggested level)."""
    try:
        from clipdenoise.noise import NOISE_KINDS
    except ImportError:
        return []
    kinds = []
    for kind in NOISE_KINDS.values():
        levels = list(kind.paper_levels)
        suggested = kind.default_level if kind.default_level is not None else levels[-1]
        kinds.append(
            {
                "name": kind.name,
                "level_names": list(kind.level_names),
                "units": kind.units,
                "paper_levels": [_level_text(level) for level in levels],
                "suggested": _level_text(suggested),
                "valid_range": [_finite(value) for value in kind.valid_range],
                "summary": kind.summary,
            }
        )
    return kinds


def _level_text(level) -> str:
    values = level if isinstance(level, tuple) else (level,)
    return ",".join(f"{float(value):g}" for value in values)


def _finite(value: float) -> float | None:
    return None if value in (float("inf"), float("-inf")) else float(value)


class BodySizeLimit:
    """ASGI middleware refusing request bodies over ``max_bytes`` with HTTP 413.

    A declared ``Content-Length`` over the limit is refused before any byte is read; a chunked
    body is counted as it arrives and cut off at the limit.
    """

    class _TooLarge(Exception):
        pass

    def __init__(self, app, max_bytes: int, message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0
        response_started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._TooLarge
            return message

        async def tracking_send(message):
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except self._TooLarge:
            if not response_started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": self.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(
    catalogue: ModelCatalogue | None = None,
    *,
    config: ServeConfig | None = None,
    settings: InferenceSettings | None = None,
):
    """Build the demo application.

    Args:
        catalogue: The models offered (default: imported models and the classical baselines,
            see :func:`clipdenoise.web.catalogue.build_catalogue`).
        config: Limits (upload size, pixels, concurrency, queue, time limit, tiling).
        settings: Device / dtype / tiling of networks (defaults follow ``config``'s tiling).

    Returns:
        A FastAPI application; run it with uvicorn (``clipdenoise serve`` does).

    Example:
        >>> from clipdenoise.web import build_catalogue, create_app
        >>> app = create_app(build_catalogue(tiny_demo=True, include_imported=False))
    """
    config = config or ServeConfig()
    settings = settings or InferenceSettings(
        tile_size=config.tile_size, tile_overlap=config.tile_overlap
    )
    catalogue = catalogue if catalogue is not None else build_catalogue()
    device = str(resolve_device(settings.device))  # a bad --device fails now, not per request
    static_files = load_static_files()
    denoisers = DenoiserCache(settings)
    manager = JobManager(
        lambda request, context: run_denoise(request, catalogue, denoisers, context),
        max_concurrent=config.max_concurrent,
        max_queue=config.max_queue,
        timeout_s=config.job_timeout_s,
        result_ttl_s=config.result_ttl_s,
        max_results=config.max_results,
    )

    @asynccontextmanager
    async def lifespan(app):
        yield
        manager.shutdown()

    app = FastAPI(
        title="clipdenoise demo",
        version=__version__,
        debug=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.catalogue = catalogue
    app.state.config = config
    limit_mb = config.max_upload_bytes / 1024 / 1024
    app.add_middleware(
        BodySizeLimit,
        max_bytes=config.max_upload_bytes + FORM_OVERHEAD_BYTES,
        message=f"the upload is too large: this server accepts files up to {limit_mb:.1f} MB",
    )

    def error(status: int, message: str, headers: dict | None = None):
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.middleware("http")
    async def security_headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error(422, "the request is malformed")

    @app.exception_handler(Exception)
    async def unexpected_error(request, exc):
        reference = secrets.token_hex(4)
        logger.exception("unexpected error %s on %s", reference, request.url.path)
        return error(500, f"internal server error (reference {reference})")

    @app.get("/", include_in_schema=False)
    async def index():
        body, media_type = static_files["index.html"]
        return Response(body, media_type=media_type)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in static_files:
            return error(404, "not found")
        body, media_type = static_files[name]
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        body, media_type = static_files["favicon.svg"]
        return Response(body, media_type=media_type)

    @app.get("/healthz")
    async def health():
        return {"status": "ok", **manager.stats()}

    @app.get("/api/info")
    async def info():
        return {
            "version": __version__,
            **catalogue.public(),
            "noise_kinds": noise_kinds_public(),
            "samples": [sample.public() for sample in SAMPLES.values()],
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_pixels": config.max_pixels,
                "max_concurrent": config.max_concurrent,
                "max_queue": config.max_queue,
                "job_timeout_s": config.job_timeout_s,
                "tile_size": settings.tile_size,
                "tile_overlap": settings.tile_overlap,
            },
            "device": device,
        }

    @app.get("/api/samples/{key}")
    async def sample_image(key: str):
        sample = SAMPLES.get(key)
        if sample is None:
            return error(404, f"no sample named {key!r}")
        return Response(sample.data(), media_type="image/png")

    async def accept(request: Request) -> Job | Response:
        """Parse, validate and queue an upload; a refusal comes back as the response to send."""
        try:
            form = await request.form(max_files=1, max_fields=16)
        except BodySizeLimit._TooLarge:
            raise
        except Exception:
            return error(400, "the request is not a valid multipart form upload")
        try:
            fields = {key: value for key, value in form.multi_items()}
            upload = fields.get("file")
            if upload is not None and not isinstance(upload, str):
                data = await upload.read(config.max_upload_bytes + 1)
                name = display_name(upload.filename)
            elif fields.get("sample"):
                sample = SAMPLES.get(str(fields["sample"]))
                if sample is None:
                    return error(400, f"no sample named {fields['sample']!r}")
                data, name = sample.data(), sample.key
            else:
                return error(400, "choose an image to upload or a sample")
        finally:
            await form.close()  # deletes any spooled temporary file of the upload
        if len(data) > config.max_upload_bytes:
            return error(413, f"the upload is too large: files up to {limit_mb:.1f} MB")
        try:
            denoise_request = _parse_request(fields, data, name)
        except UploadRejectedError as rejected:
            return error(rejected.status_code, str(rejected))
        except ClipDenoiseError as invalid:
            return error(400, str(invalid))
        try:
            return manager.submit(denoise_request)
        except QueueFullError as busy:
            return error(503, str(busy), headers={"Retry-After": "5"})

    @app.post("/api/jobs", status_code=202)
    async def submit(request: Request):
        accepted = await accept(request)
        if not isinstance(accepted, Job):
            return accepted
        return JSONResponse(_job_public(accepted), status_code=202)

    @app.post("/api/denoise")
    async def denoise_and_wait(request: Request):
        """Same form as ``/api/jobs``; waits and answers the restored file (for scripts)."""
        accepted = await accept(request)
        if not isinstance(accepted, Job):
            return accepted
        while not accepted.done_event.is_set():
            manager.enforce_deadline(accepted)
            await asyncio.sleep(0.05)
        if accepted.state is JobState.DONE:
            return _file_response(accepted, "restored")
        status = 504 if accepted.state is JobState.CANCELLED else 422
        return error(status, accepted.message or accepted.state.value)

    def _parse_request(fields: dict, data: bytes, name: str) -> DenoiseRequest:
        model_key = str(fields.get("model") or catalogue.default_key or "")
        if model_key not in catalogue.entries:
            raise ClipDenoiseError(
                f"unknown model {model_key!r}; available: {', '.join(catalogue.entries)}"
            )
        entry = catalogue.entries[model_key]
        if not entry.available:
            raise ClipDenoiseError(f"model {entry.label} is not available: {entry.error}")
        noise = _parse_noise(fields)
        seed = _parse_seed(fields.get("seed"))
        image = decode_image(data, max_pixels=config.max_pixels)  # refuse bad files now
        if noise is not None and noise.kind == "srgb_camera" and image.channels != 3:
            raise ClipDenoiseError(
                "camera (srgb_camera) noise needs a colour image; this one is grey"
            )
        del image  # the queue holds the compressed bytes, not the pixels
        return DenoiseRequest(
            data=data,
            max_pixels=config.max_pixels,
            model_key=model_key,
            noise=noise,
            seed=seed,
            name=name,
        )

    def _job(job_id: str) -> Job:
        job = manager.get(job_id) if _JOB_ID.match(job_id) else None
        if job is None:
            raise StarletteHTTPException(404, "unknown or expired job")
        return job

    def _job_public(job: Job) -> dict:
        elapsed = None
        if job.started_at is not None:
            elapsed = round((job.finished_at or time.monotonic()) - job.started_at, 3)
        return {
            "id": job.id,
            "state": job.state.value,
            "progress": round(job.progress, 4),
            "stage": job.stage,
            "message": job.message,
            "position": manager.position(job),
            "elapsed_seconds": elapsed,
            "result": job.result.public() if job.state is JobState.DONE else None,
        }

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str):
        return _job_public(_job(job_id))

    @app.delete("/api/jobs/{job_id}")
    async def job_cancel(job_id: str):
        _job(job_id)
        return _job_public(manager.cancel(job_id))

    @app.get("/api/jobs/{job_id}/previews/{which}")
    async def job_preview(job_id: str, which: str):
        job = _job(job_id)
        if job.state is not JobState.DONE or which not in job.result.previews:
            return error(404, "no such preview")
        return Response(job.result.previews[which], media_type="image/png")

    def _file_response(job: Job, which: str) -> Response:
        result = job.result
        suffix = "denoised" if which == "restored" else which
        filename = f"{result.name}-{suffix}{result.suffix}"
        headers = {
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Clipdenoise-Job": job.id,
        }
        return Response(result.files[which], media_type=result.media_type, headers=headers)

    @app.get("/api/jobs/{job_id}/files/{which}")
    async def job_file(job_id: str, which: str):
        job = _job(job_id)
        if job.state is not JobState.DONE or which not in job.result.files:
            return error(404, "no such file")
        return _file_response(job, which)

    app.state.settings = asdict(settings)
    return app


def _parse_noise(fields: dict):
    kind = str(fields.get("noise") or "none").strip()
    if kind.lower() in ("", "none"):
        return None
    from clipdenoise.noise import parse_noise_spec

    level = str(fields.get("level") or "").strip()
    return parse_noise_spec(f"{kind}:{level}" if level else kind)


def _parse_seed(value) -> int:
    text = str(value or "").strip()
    if not text:
        return secrets.randbelow(2**31)
    if not text.isdigit() or int(text) >= 2**63:
        raise ClipDenoiseError(f"the seed must be a whole number from 0 to 2^63-1, got {text!r}")
    return int(text)
