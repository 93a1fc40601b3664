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
import secrets
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clipdenoise import __version__
from clipdenoise.errors import ClipDenoiseError
from clipdenoise.web.catalogue import ModelCatalogue, build_catalogue
from clipdenoise.web.form import parse_form
from clipdenoise.web.jobs import Job, JobState, QueueFullError
from clipdenoise.web.pipeline import InferenceSettings
from clipdenoise.web.samples import SAMPLES
from clipdenoise.web.service import DemoService, Download, display_name
from clipdenoise.web.settings import ServeConfig
from clipdenoise.web.upload import UploadRejectedError

logger = logging.getLogger("clipdenoise.web")

FORM_OVERHEAD_BYTES = 64 * 1024  # room for the form fields beside the file
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def load_static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files (``name -> (bytes, media type)``), read once from the package."""
    folder = resources.files("clipdenoise.web").joinpath("static")
    files = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in STATIC_TYPES:
            files[item.name] = (item.read_bytes(), STATIC_TYPES[suffix])
    return files


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The one error shape of the API: ``{"error": "<message for the visitor>"}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodySizeLimit:
    """ASGI middleware bounding request bodies in size (HTTP 413) and in time (HTTP 408).

    A declared ``Content-Length`` over the limit is refused before any byte is read; a chunked
    body is counted as it arrives and cut off at the limit. A body that has not fully arrived
    ``timeout_s`` seconds after its headers (a slow or stalled client) is answered 408 and the
    connection closed.
    """

    class _TooLarge(Exception):
        pass

    class _TooSlow(Exception):
        pass

    def __init__(self, app, max_bytes: int, message: str, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message
        self.timeout_s = timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (
            not declared.isdigit() or len(declared) > 18 or int(declared) > self.max_bytes
        ):
            await self._refuse(send, 413, self.message)
            return
        received = 0
        response_started = False
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s

        async def counting_receive():
            nonlocal received, deadline
            if deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    raise self._TooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._TooLarge
                if not message.get("more_body", False):
                    deadline = None  # the whole body is in: the time limit no longer applies
            return message

        async def tracking_send(message):
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except self._TooLarge:
            if not response_started:
                await self._refuse(send, 413, self.message)
        except self._TooSlow:
            if not response_started:
                await self._refuse(
                    send,
                    408,
                    f"the request did not arrive within {self.timeout_s:g} s; try again on a "
                    "faster connection or with a smaller file",
                )

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(
    catalogue: ModelCatalogue | None = None,
    *,
    config: ServeConfig | None = None,
    settings: InferenceSettings | None = None,
) -> FastAPI:
    """Build the demo application.

    Args:
        catalogue: The models offered (default: imported models and the classical baselines,
            see :func:`clipdenoise.web.catalogue.build_catalogue`).
        config: Limits (upload size, pixels, concurrency, queue, time limit, tiling).
        settings: Device / dtype / tiling of networks (defaults follow ``config``'s tiling).

    Returns:
        A FastAPI application; run it with uvicorn (``clipdenoise serve`` does) or
        :class:`clipdenoise.web.server.BackgroundServer`.

    Raises:
        ConfigError: the device given in ``settings`` does not exist on this machine.

    Example:
        >>> from clipdenoise.web import build_catalogue, create_app
        >>> app = create_app(build_catalogue(tiny_demo=True, include_imported=False))
    """
    config = config or ServeConfig()
    settings = settings or InferenceSettings(
        tile_size=config.tile_size, tile_overlap=config.tile_overlap
    )
    catalogue = catalogue if catalogue is not None else build_catalogue()
    service = DemoService(catalogue, config, settings)

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.shutdown()

    app = FastAPI(
        title="clipdenoise demo",
        version=__version__,
        debug=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.serve_config = config
    app.state.manager = service.manager
    app.add_middleware(
        BodySizeLimit,
        max_bytes=config.max_upload_bytes + FORM_OVERHEAD_BYTES,
        message=f"the upload is too large: this server accepts files up to "
        f"{service.upload_limit_text}",
        timeout_s=config.request_timeout_s,
    )
    add_security_headers(app)
    add_error_handlers(app)
    add_page_routes(app, load_static_files())
    add_api_routes(app, service)
    return app


def add_security_headers(app: FastAPI) -> None:
    """CSP ``'self'`` (the page loads nothing from elsewhere), no sniffing, no framing; API
    answers are never cached."""

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


def add_error_handlers(app: FastAPI) -> None:
    """Every error becomes ``{"error": message}``; unexpected ones are logged with a reference
    and answered without details."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error_response(422, "the request is malformed")

    @app.exception_handler(Exception)
    async def unexpected_error(request, exc):
        reference = secrets.token_hex(4)
        logger.exception("unexpected error %s on %s", reference, request.url.path)
        return error_response(500, f"internal server error (reference {reference})")


def add_page_routes(app: FastAPI, static_files: dict[str, tuple[bytes, str]]) -> None:
    """The page and its files, served from memory by name (never from a client path)."""

    @app.get("/", include_in_schema=False)
    async def index():
        body, media_type = static_files["index.html"]
        return Response(body, media_type=media_type)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        if name not in static_files:
            return error_response(404, "not found")
        body, media_type = static_files[name]
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        body, media_type = static_files["favicon.svg"]
        return Response(body, media_type=media_type)


def file_response(job: Job, download: Download) -> Response:
    headers = {
        "Content-Disposition": f'attachment; filename="{download.filename}"',
        "X-Clipdenoise-Job": job.id,
    }
    return Response(download.data, media_type=download.media_type, headers=headers)


async def read_upload(request: Request, service: DemoService) -> tuple[dict, bytes, str]:
    """The form fields, the upload's bytes (or a sample's) and its display name.

    The body is read into memory (its size is bounded by :class:`BodySizeLimit`) and parsed
    there by :func:`clipdenoise.web.form.parse_form`: nothing is spooled to disk.

    Raises:
        UploadRejectedError: not a form, no image, unknown sample, file too large.
    """
    limit = service.config.max_upload_bytes
    body = await request.body()
    form = parse_form(request.headers.get("content-type"), body)
    upload = form.files.get("file")
    if upload is not None:
        data, name = upload.data, display_name(upload.filename)
    elif form.fields.get("sample"):
        try:
            data, name = service.sample_upload(form.fields["sample"])
        except ClipDenoiseError as unknown:
            raise UploadRejectedError(str(unknown)) from unknown
    else:
        raise UploadRejectedError("choose an image to upload or a sample")
    if len(data) > limit:
        raise UploadRejectedError(
            f"the upload is too large: files up to {service.upload_limit_text}", 413
        )
    return form.fields, data, name


def add_api_routes(app: FastAPI, service: DemoService) -> None:
    """The JSON API of the page (see the module docstring)."""
    manager = service.manager

    @app.get("/healthz")
    async def health():
        return {"status": "ok", **manager.stats()}

    @app.get("/api/info")
    async def info():
        return service.info()

    @app.get("/api/samples/{key}")
    async def sample_image(key: str):
        sample = SAMPLES.get(key)
        if sample is None:
            return error_response(404, f"no sample named {key!r}")
        return Response(sample.data(), media_type="image/png")

    async def accept(request: Request) -> Job | Response:
        """Read, validate and queue a request; a refusal comes back as the response to send."""
        try:
            fields, data, name = await read_upload(request, service)
            return manager.submit(service.prepare(fields, data, name))
        except UploadRejectedError as rejected:
            return error_response(rejected.status_code, str(rejected))
        except QueueFullError as busy:
            return error_response(503, str(busy), headers={"Retry-After": "5"})
        except ClipDenoiseError as invalid:
            return error_response(400, str(invalid))

    @app.post("/api/jobs", status_code=202)
    async def submit(request: Request):
        accepted = await accept(request)
        if not isinstance(accepted, Job):
            return accepted
        return JSONResponse(service.job_public(accepted), status_code=202)

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
            return file_response(accepted, service.download(accepted, "restored"))
        status = 504 if accepted.state is JobState.CANCELLED else 422
        return error_response(status, accepted.message or accepted.state.value)

    def find(job_id: str) -> Job:
        job = service.find_job(job_id)
        if job is None:
            raise StarletteHTTPException(404, "unknown or expired job")
        return job

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str):
        return service.job_public(find(job_id))

    @app.delete("/api/jobs/{job_id}")
    async def job_cancel(job_id: str):
        return service.job_public(manager.cancel(find(job_id).id))

    @app.get("/api/jobs/{job_id}/previews/{which}")
    async def job_preview(job_id: str, which: str):
        preview = service.preview(find(job_id), which)
        if preview is None:
            return error_response(404, "no such preview")
        return Response(preview, media_type="image/png")

    @app.get("/api/jobs/{job_id}/files/{which}")
    async def job_file(job_id: str, which: str):
        job = find(job_id)
        download = service.download(job, which)
        if download is None:
            return error_response(404, "no such file")
        return file_response(job, download)
