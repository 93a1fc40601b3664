"""The demo's job queue: concurrency limit, full queue, time limits, cancellation, expiry,
failures that hide their details."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _web_helpers import SlowNet, png_bytes, smooth_uint8, submit, wait_done  # noqa: E402
from clipdenoise.web import ServeConfig, build_catalogue, create_app  # noqa: E402
from clipdenoise.web.jobs import JobManager, JobState, QueueFullError  # noqa: E402


def test_internal_errors_hide_details():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, x):
            raise RuntimeError("secret internal detail /etc/shadow")

    app = create_app(
        build_catalogue(models={"broken": Broken()}, include_imported=False, baselines=False)
    )
    with TestClient(app) as client:
        job = wait_done(client, submit(client, sample="scene", model="broken").json()["id"])
    assert job["state"] == "failed"
    assert job["message"] == "internal error while processing this image"
    assert "secret" not in str(job)


def test_twenty_concurrent_requests_all_answered():
    import httpx

    from clipdenoise.web.server import BackgroundServer

    # 50 ms per job: with 2 workers, requests arriving together must wait in line
    catalogue = build_catalogue(
        models={"slow": SlowNet(0.05)}, include_imported=False, baselines=False
    )
    app = create_app(catalogue, config=ServeConfig(max_concurrent=2, max_queue=32, max_results=32))
    upload = png_bytes(smooth_uint8(64, 64))
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        responses: list = [None] * 20

        def post(index: int) -> None:
            fields = {"model": "slow", "noise": "gaussian", "level": "15", "seed": str(index)}
            responses[index] = http.post(
                "/api/jobs", data=fields, files={"file": ("x.png", upload, "image/png")}
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status_code for r in responses] == [202] * 20
        ids = [r.json()["id"] for r in responses]
        assert len(set(ids)) == 20
        assert any(r.json()["state"] == "queued" and r.json()["position"] for r in responses)
        states, noisy_files = [], set()
        for job_id in ids:
            job = app.state.manager.wait(job_id, timeout=60)
            states.append(job.state)
            noisy_files.add(http.get(f"/api/jobs/{job_id}/files/noisy").content)
        assert states == [JobState.DONE] * 20
        assert len(noisy_files) == 20  # every answer is that request's own (seeds differ)


def test_full_queue_answers_503_and_loses_nothing():
    release = threading.Event()
    manager = JobManager(
        lambda payload, context: release.wait(10) and payload, max_concurrent=1, max_queue=4
    )
    accepted, refused = [], 0
    for index in range(20):
        try:
            accepted.append(manager.submit(index))
        except QueueFullError as busy:
            refused += 1
            assert "try again" in str(busy)
    assert (len(accepted), refused) == (5, 15)
    deadline = time.monotonic() + 5
    while accepted[0].state is not JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker picks the first job up
    assert [manager.position(job) for job in accepted] == [None, 1, 2, 3, 4]
    release.set()
    results = [manager.wait(job.id, timeout=10).result for job in accepted]
    assert results == [0, 1, 2, 3, 4]
    manager.shutdown()


def test_job_over_time_limit_is_cancelled_and_server_keeps_serving():
    catalogue = build_catalogue(
        models={"slow": SlowNet(0.1), "fast": SlowNet(0.0)}, include_imported=False, baselines=False
    )
    config = ServeConfig(job_timeout_s=0.6, max_concurrent=1, tile_size=64, tile_overlap=16)
    app = create_app(catalogue, config=config)
    with TestClient(app) as client:
        slow = submit(client, sample="scene", model="slow").json()["id"]  # ~40 tiles × 0.1 s
        job = wait_done(client, slow, timeout=20)
        assert job["state"] == "cancelled"
        assert "time limit of 0.6 s" in job["message"]
        assert 0 < job["progress"] < 1
        timed_out = client.post("/api/denoise", data={"sample": "scene", "model": "slow"})
        assert timed_out.status_code == 504 and "time limit" in timed_out.json()["error"]
        fast = wait_done(client, submit(client, sample="scene", model="fast").json()["id"])
        assert fast["state"] == "done"
        assert fast["result"]["tiles"] > 1  # large images are tiled
        # the cancelled job really stopped: its worker is free again
        deadline = time.monotonic() + 5
        while client.get("/healthz").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/healthz").json()["running"] == 0


def test_visitor_can_cancel_a_running_job():
    app = create_app(
        build_catalogue(models={"slow": SlowNet(0.1)}, include_imported=False, baselines=False),
        config=ServeConfig(tile_size=64, tile_overlap=16),
    )
    with TestClient(app) as client:
        job_id = submit(client, sample="scene", model="slow").json()["id"]
        time.sleep(0.3)
        cancelled = client.delete(f"/api/jobs/{job_id}").json()
        assert (
            cancelled["state"] == "cancelled" and "cancelled by the visitor" in cancelled["message"]
        )


def test_finished_results_expire_and_are_capped():
    manager = JobManager(lambda payload, context: payload, max_results=2, result_ttl_s=60)
    jobs = [manager.submit(index) for index in range(4)]
    for index, job in enumerate(jobs):
        assert job.done_event.wait(10) and job.result == index
    # lookups purge: only the 2 most recently finished results remain
    assert [manager.get(job.id) is not None for job in jobs] == [False, False, True, True]
    manager.result_ttl_s = 0.0
    time.sleep(0.01)
    assert all(manager.get(job.id) is None for job in jobs)
    manager.shutdown()
