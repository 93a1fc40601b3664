"""The models a demo server offers: trained networks, imported ones, the tiny demo network,
baselines, and guidance when no trained network is installed."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _web_helpers import TINY, submit, wait_done  # noqa: E402
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


def test_keys_are_url_safe_and_unique():
    from clipdenoise.web.catalogue import slug

    assert slug("my model (v2).pth") == "my-model-v2-.pth"
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("σ") == "model"
    network = torch.nn.Conv2d(3, 3, 1)
    catalogue = build_catalogue(
        models={"a b": network, "a-b": network, "a/b": network},
        include_imported=False,
        baselines=False,
    )
    assert list(catalogue.entries) == ["a-b", "a-b-2", "a-b-3"]
    assert [entry.label for entry in catalogue.entries.values()] == ["a b", "a-b", "a/b"]


def test_the_default_is_a_trained_network_then_an_untrained_one_then_a_baseline(tmp_path):
    absent = str(tmp_path / "absent.pth")
    trained = build_catalogue(
        models={"mine": torch.nn.Identity()}, tiny_demo=True, include_imported=False
    )
    assert trained.default_key == "mine" and trained.has_trained_network
    assert not trained.needs_weights_guidance and trained.public()["weights_guidance"] is None
    untrained = build_catalogue([absent], tiny_demo=True, include_imported=False)
    assert untrained.default_key == TINY and not untrained.has_trained_network
    assert "clipdenoise weights import" in untrained.public()["weights_guidance"]
    baselines = build_catalogue([absent], include_imported=False, baselines=True)
    assert baselines.default_key == "nlm"
    nothing = build_catalogue([absent], include_imported=False, baselines=False)
    assert nothing.default_key is None


def test_a_missing_checkpoint_stays_listed_with_its_error(tmp_path):
    from clipdenoise.errors import ClipDenoiseError

    catalogue = build_catalogue(
        [str(tmp_path / "missing.safetensors")], include_imported=False, baselines=False
    )
    entry = catalogue.get("missing.safetensors")
    assert not entry.available and "missing.safetensors" in entry.error
    with pytest.raises(ClipDenoiseError, match="missing.safetensors"):
        entry.get_module()
    with pytest.raises(KeyError, match="unknown model 'other'; available: missing.safetensors"):
        catalogue.get("other")


def test_the_tiny_demo_network_is_built_on_first_use():
    from clipdenoise.model import CLIPDenoiser
    from clipdenoise.web.catalogue import tiny_demo_entry

    entry = tiny_demo_entry(in_channels=1)
    assert entry.module is None and entry.public()["in_channels"] is None
    module = entry.get_module()
    assert isinstance(module, CLIPDenoiser) and not module.training
    assert entry.get_module() is module  # built once
    public = entry.public()
    assert public["untrained"] and "UNTRAINED" in public["label"] and public["in_channels"] == 1
