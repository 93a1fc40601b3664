"""Bounded job queue of the demo server: a few jobs run at once, more wait in line, the rest are
refused; each running job has a time limit after which it is cancelled.

Jobs run in worker threads (torch releases the GIL inside its kernels, so the web server keeps
answering). Cancellation is cooperative: the work calls :meth:`JobContext.check` between steps
(every tile of a network), which raises :class:`JobCancelledError` once the job was cancelled or
ran past its deadline. The visitor is told at once when the deadline passes, even if the current
step is still finishing; the worker slot is released when that step ends, so the number of jobs
computing at the same time never exceeds the limit. Results live in memory only and expire.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from clipdenoise.errors import ClipDenoiseError

logger = logging.getLogger("clipdenoise.web")


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class QueueFullError(ClipDenoiseError, RuntimeError):
    """Every worker is busy and the waiting line is full; try again later."""


class JobCancelledError(ClipDenoiseError, RuntimeError):
    """Raised inside a job's work when it was cancelled or exceeded its time limit."""


@dataclass(eq=False)  # jobs are compared by identity
class Job:
    """One denoising request and what became of it.

    ``progress`` is in [0, 1]; ``message`` is for the visitor; ``result`` is whatever the work
    function returned (set when ``state`` is ``DONE``).
    """

    id: str
    payload: Any
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    stage: str = "waiting for a free worker"
    message: str | None = None
    result: Any = None
    created_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    finished_at: float | None = None
    deadline: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    done_event: threading.Event = field(default_factory=threading.Event, repr=False)


class JobContext:
    """Handed to the work function: progress reports and cancellation checks."""

    def __init__(self, job: Job, manager: JobManager) -> None:
        self._job = job
        self._manager = manager

    def check(self) -> None:
        """Raise :class:`JobCancelledError` if the job was cancelled or is past its deadline."""
        self._manager.enforce_deadline(self._job)
        if self._job.cancel_event.is_set():
            raise JobCancelledError(self._job.message or "cancelled")

    def report(self, progress: float, stage: str | None = None) -> None:
        """Record progress in [0, 1] (and optionally what is being done), then :meth:`check`."""
        self._job.progress = min(max(float(progress), 0.0), 1.0)
        if stage is not None:
            self._job.stage = stage
        self.check()


class JobManager:
    """Runs ``work(payload, context)`` for submitted jobs with bounded concurrency and a queue.

    Args:
        work: The job body; returns the result or raises (a
            :class:`~clipdenoise.errors.ClipDenoiseError` message is shown to the visitor; any
            other exception is logged and reported as an internal error, without details).
        max_concurrent: Jobs computing at the same time.
        max_queue: Jobs allowed to wait; more are refused with :class:`QueueFullError`.
        timeout_s: Seconds a job may run before it is cancelled.
        result_ttl_s: Seconds a finished job is kept.
        max_results: Finished jobs kept at most (oldest dropped first).
    """

    def __init__(
        self,
        work: Callable[[Any, JobContext], Any],
        *,
        max_concurrent: int = 1,
        max_queue: int = 32,
        timeout_s: float = 300.0,
        result_ttl_s: float = 1800.0,
        max_results: int = 64,
    ) -> None:
        self._work = work
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.result_ttl_s = result_ttl_s
        self.max_results = max_results
        # Daemon workers: stopping the server never waits for a long job to finish.
        self._tasks: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._worker_loop, name=f"clipdenoise-job-{i}", daemon=True)
            for i in range(max_concurrent)
        ]
        for worker in self._workers:
            worker.start()
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: deque[str] = deque()
        self._occupied = 0  # submitted jobs whose worker call has not returned yet

    # -- submitting and querying ------------------------------------------------------------

    def submit(self, payload: Any) -> Job:
        """Queue a job.

        Raises:
            QueueFullError: all workers busy and ``max_queue`` jobs already waiting.
        """
        with self._lock:
            self._purge_locked()
            if self._occupied >= self.max_concurrent + self.max_queue:
                raise QueueFullError(
                    f"the server is busy ({self._occupied - len(self._waiting)} running, "
                    f"{len(self._waiting)} waiting); please try again in a moment"
                )
            job = Job(id=secrets.token_urlsafe(16), payload=payload)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
            self._occupied += 1
        self._tasks.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id (``None`` if unknown or expired), deadline enforced."""
        with self._lock:
            self._purge_locked()
            job = self._jobs.get(job_id)
        if job is not None:
            self.enforce_deadline(job)
        return job

    def position(self, job: Job) -> int | None:
        """1-based place in the waiting line, or ``None`` when not waiting."""
        with self._lock:
            try:
                return self._waiting.index(job.id) + 1
            except ValueError:
                return None

    def cancel(self, job_id: str, message: str = "cancelled by the visitor") -> Job | None:
        """Cancel a waiting or running job (a finished one is left as it is)."""
        job = self.get(job_id)
        if job is not None:
            self._finish_cancelled(job, message)
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until the job finishes (or ``timeout`` seconds pass); returns it."""
        job = self.get(job_id)
        if job is None:
            return None
        end = None if timeout is None else time.monotonic() + timeout
        while not job.done_event.wait(0.05):
            self.enforce_deadline(job)
            if end is not None and time.monotonic() > end:
                break
        return job

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "running": self._occupied - len(self._waiting),
                "waiting": len(self._waiting),
                "max_concurrent": self.max_concurrent,
                "max_queue": self.max_queue,
            }

    def shutdown(self) -> None:
        """Cancel every unfinished job and stop the workers."""
        with self._lock:
            unfinished = [job for job in self._jobs.values() if job.state not in FINISHED]
        for job in unfinished:
            self._finish_cancelled(job, "the server is shutting down")
        for _ in self._workers:
            self._tasks.put(None)  # each worker stops after its current job

    # -- deadlines and cancellation ---------------------------------------------------------

    def enforce_deadline(self, job: Job) -> None:
        """Cancel ``job`` if it is running past its deadline."""
        if job.state is JobState.RUNNING and job.deadline and time.monotonic() > job.deadline:
            self._finish_cancelled(
                job,
                f"cancelled: the job exceeded this server's time limit of {self.timeout_s:g} s; "
                "try a smaller image, a faster model, or ask the operator to raise --timeout",
            )

    def _finish_cancelled(self, job: Job, message: str) -> None:
        with self._lock:
            if job.state in FINISHED:
                return
            job.state = JobState.CANCELLED
            job.message = message
            job.finished_at = time.monotonic()
            if job.id in self._waiting:
                self._waiting.remove(job.id)
        job.cancel_event.set()
        job.done_event.set()

    # -- the worker -------------------------------------------------------------------------

    def _worker_loop(self) -> None:
        while (job := self._tasks.get()) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        try:
            self._run_job(job)
        finally:
            with self._lock:
                self._occupied -= 1

    def _run_job(self, job: Job) -> None:
        with self._lock:
            if job.state is not JobState.QUEUED:
                job.payload = None
                return  # cancelled while waiting
            self._waiting.remove(job.id)
            job.state = JobState.RUNNING
            job.stage = "starting"
            job.started_at = time.monotonic()
            job.deadline = job.started_at + self.timeout_s
        try:
            result = self._work(job.payload, JobContext(job, self))
        except JobCancelledError:
            self._finish_cancelled(job, job.message or "cancelled")
        except ClipDenoiseError as error:
            self._finish(job, JobState.FAILED, message=str(error))
        except Exception:
            logger.exception("job %s failed", job.id)
            self._finish(job, JobState.FAILED, message="internal error while processing this image")
        else:
            self._finish(job, JobState.DONE, result=result)
        finally:
            job.payload = None  # the upload is no longer needed: free its memory

    def _finish(self, job: Job, state: JobState, *, message=None, result=None) -> None:
        with self._lock:
            if job.state in FINISHED:
                return  # cancelled (deadline) while the last step was still running
            job.state, job.message, job.result = state, message, result
            job.progress = 1.0 if state is JobState.DONE else job.progress
            job.finished_at = time.monotonic()
        job.done_event.set()

    def _purge_locked(self) -> None:
        """Drop finished jobs older than the TTL, then the oldest beyond ``max_results``."""
        now = time.monotonic()
        finished = [job for job in self._jobs.values() if job.state in FINISHED]
        finished.sort(key=lambda job: job.finished_at or now)
        kept = [job for job in finished if now - (job.finished_at or now) <= self.result_ttl_s]
        dropped = [job for job in finished if job not in kept]
        dropped += kept[: max(len(kept) - self.max_results, 0)]
        for job in dropped:
            self._jobs.pop(job.id, None)
