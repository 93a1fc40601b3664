"""What the demo server does, independent of HTTP: validate requests, queue jobs, describe them.

:class:`DemoService` ties the model catalogue, the limits and the job queue together; the web
layer (:mod:`clipdenoise.web.app`) only reads forms and writes responses around it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from clipdenoise import __version__
from clipdenoise.devices import resolve_device
from clipdenoise.errors import ClipDenoiseError
from clipdenoise.noise import NOISE_KINDS, parse_noise_spec
from clipdenoise.web.catalogue import ModelCatalogue
from clipdenoise.web.jobs import Job, JobManager, JobState
from clipdenoise.web.pipeline import DenoiserCache, DenoiseRequest, InferenceSettings, run_denoise
from clipdenoise.web.samples import SAMPLES
from clipdenoise.web.settings import ServeConfig
from clipdenoise.web.upload import decode_image

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


@dataclass(frozen=True)
class Download:
    """A file to send: its bytes, media type and (sanitised) file name."""

    data: bytes
    media_type: str
    filename: str


def display_name(filename: str | None) -> str:
    """A safe stem for download names from a client file name (never used as a path)."""
    base = re.split(r"[\\/]", filename or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60]
    return stem or "image"


def parse_noise_field(kind: str | None, level: str | None):
    """The :class:`~clipdenoise.noise.NoiseSpec` of the form's ``noise`` / ``level`` fields, or
    ``None`` for ``none``.

    Raises:
        NoiseSpecError: unknown kind or bad level (the message lists the valid ones).
    """
    kind = str(kind or "none").strip()
    if kind.lower() in ("", "none"):
        return None

    level = str(level or "").strip()
    return parse_noise_spec(f"{kind}:{level}" if level else kind)


def parse_seed(value: str | None) -> int:
    """The form's seed, or a fresh random one (shown to the visitor) when empty.

    Raises:
        ClipDenoiseError: not a whole number in [0, 2^63).
    """
    text = str(value or "").strip()
    if not text:
        return secrets.randbelow(2**31)
    # ASCII digits only (str.isdigit also accepts '²' and other digits int() refuses), and few
    # enough of them for int() (which refuses strings over 4300 digits)
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) >= 2**63:
        shown = text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"
        raise ClipDenoiseError(f"the seed must be a whole number from 0 to 2^63-1, got {shown!r}")
    return int(text)


def noise_kinds_public() -> list[dict]:
    """The noise registry as the page needs it (kinds, units, paper levels, suggested level)."""
    return [
        {
            "name": kind.name,
            "level_names": list(kind.level_names),
            "units": kind.units,
            "paper_levels": [_level_text(level) for level in kind.paper_levels],
            "suggested": _level_text(
                kind.default_level if kind.default_level is not None else kind.paper_levels[-1]
            ),
            "valid_range": [_finite(value) for value in kind.valid_range],
            "summary": kind.summary,
        }
        for kind in NOISE_KINDS.values()
    ]


def _level_text(level) -> str:
    values = level if isinstance(level, tuple) else (level,)
    return ",".join(f"{float(value):g}" for value in values)


def _finite(value: float) -> float | None:
    return None if value in (float("inf"), float("-inf")) else float(value)


class DemoService:
    """Models, limits and the job queue of one demo server.

    Args:
        catalogue: The models offered.
        config: Limits (sizes, concurrency, queue, time limit, result retention).
        settings: Device / dtype / tiling of networks.

    Raises:
        ConfigError: the device does not exist here (checked now, not on the first request).
    """

    def __init__(
        self, catalogue: ModelCatalogue, config: ServeConfig, settings: InferenceSettings
    ) -> None:
        self.catalogue = catalogue
        self.config = config
        self.settings = settings
        self.device = str(resolve_device(settings.device))
        denoisers = DenoiserCache(settings)
        self.manager = JobManager(
            lambda request, context: run_denoise(request, catalogue, denoisers, context),
            max_concurrent=config.max_concurrent,
            max_queue=config.max_queue,
            timeout_s=config.job_timeout_s,
            result_ttl_s=config.result_ttl_s,
            max_results=config.max_results,
        )

    @property
    def upload_limit_text(self) -> str:
        return f"{self.config.max_upload_bytes / 1024 / 1024:.1f} MB"

    def info(self) -> dict:
        """Everything the page needs to set itself up (``GET /api/info``)."""
        config = self.config
        return {
            "version": __version__,
            **self.catalogue.public(),
            "noise_kinds": noise_kinds_public(),
            "samples": [sample.public() for sample in SAMPLES.values()],
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_pixels": config.max_pixels,
                "max_concurrent": config.max_concurrent,
                "max_queue": config.max_queue,
                "job_timeout_s": config.job_timeout_s,
                "tile_size": self.settings.tile_size,
                "tile_overlap": self.settings.tile_overlap,
            },
            "device": self.device,
        }

    def sample_upload(self, key: str) -> tuple[bytes, str]:
        """A bundled sample as an upload: its bytes and display name."""
        sample = SAMPLES.get(key)
        if sample is None:
            raise ClipDenoiseError(f"no sample named {key!r}")
        return sample.data(), sample.key

    def prepare(self, fields: Mapping[str, str], data: bytes, name: str) -> DenoiseRequest:
        """Validate a request: model, noise, seed, and the upload (fully decoded once).

        Raises:
            UploadRejectedError: the file is not an acceptable image (HTTP status attached).
            ClipDenoiseError: unknown or unavailable model, bad noise or seed.
        """
        catalogue = self.catalogue
        model_key = str(fields.get("model") or catalogue.default_key or "")
        if model_key not in catalogue.entries:
            raise ClipDenoiseError(
                f"unknown model {model_key!r}; available: {', '.join(catalogue.entries)}"
            )
        entry = catalogue.entries[model_key]
        if not entry.available:
            raise ClipDenoiseError(f"model {entry.label} is not available: {entry.error}")
        noise = parse_noise_field(fields.get("noise"), fields.get("level"))
        seed = parse_seed(fields.get("seed"))
        image = decode_image(data, max_pixels=self.config.max_pixels)  # refuse bad files now
        if noise is not None and noise.kind == "srgb_camera" and image.channels != 3:
            raise ClipDenoiseError(
                "camera (srgb_camera) noise needs a colour image; this one is grey"
            )
        return DenoiseRequest(
            data=data,  # the queue holds the compressed bytes, not the decoded pixels
            max_pixels=self.config.max_pixels,
            model_key=model_key,
            noise=noise,
            seed=seed,
            name=name,
        )

    def find_job(self, job_id: str) -> Job | None:
        """The job with this id, or ``None`` (unknown, expired or malformed id)."""
        return self.manager.get(job_id) if _JOB_ID.match(job_id) else None

    def job_public(self, job: Job) -> dict:
        """JSON-ready state of a job (``GET /api/jobs/<id>``)."""
        elapsed = None
        if job.started_at is not None:
            elapsed = round((job.finished_at or time.monotonic()) - job.started_at, 3)
        return {
            "id": job.id,
            "state": job.state.value,
            "progress": round(job.progress, 4),
            "stage": job.stage,
            "message": job.message,
            "position": self.manager.position(job),
            "elapsed_seconds": elapsed,
            "result": job.result.public() if job.state is JobState.DONE else None,
        }

    def download(self, job: Job, which: str) -> Download | None:
        """The ``restored`` or ``noisy`` file of a finished job, or ``None``."""
        if job.state is not JobState.DONE or which not in job.result.files:
            return None
        result = job.result
        suffix = "denoised" if which == "restored" else which
        return Download(
            result.files[which], result.media_type, f"{result.name}-{suffix}{result.suffix}"
        )

    def preview(self, job: Job, which: str) -> bytes | None:
        """The 8-bit PNG preview (``noisy``, ``restored``, ``clean``) of a finished job."""
        if job.state is not JobState.DONE:
            return None
        return job.result.previews.get(which)

    def shutdown(self) -> None:
        self.manager.shutdown()
