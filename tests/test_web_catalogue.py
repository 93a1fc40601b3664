"""The models a demo server offers: trained networks, imported ones, the tiny demo network,
baselines, and guidance when no trained network is installed."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _web_helpers import submit, wait_done  # noqa: E402
from clipdenoise.web import build_catalogue, create_app  # noqa: E402


def test_models_imported_into_the_cache_are_listed_and_loaded_on_first_use(tmp_path, monkeypatch):
    from clipdenoise.checkpoints import import_checkpoint, save_checkpoint
    from clipdenoise.model import CLIPDenoiser, tiny_config

    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cache"))
    source = save_checkpoint(CLIPDenoiser(tiny_config()), tmp_path / "trained.safetensors")
    import_checkpoint(source, "my-model")
    catalogue = build_catalogue(baselines=False)
    entry = catalogue.get("my-model")
    assert entry.available and entry.module is None  # not loaded until someone uses it
    assert catalogue.default_key == "my-model"
    with TestClient(create_app(catalogue)) as client:
        job = wait_done(client, submit(client, sample="scene", model="my-model").json()["id"])
    assert job["state"] == "done" and entry.module is not None
