"""CLIP weights: formats, caches, hashes, strict loading, offline guidance (no network)."""

from __future__ import annotations

import dataclasses
import socket
import warnings

import pytest
import torch
from torch import nn

from clipdenoise import weights
from clipdenoise.encoder import CLIPResNetEncoder
from clipdenoise.errors import WeightsMismatchError, WeightsNotFoundError
from clipdenoise.weights import (
    extract_visual_trunk,
    load_clip_encoder_weights,
    read_state_dict,
    resolve_clip_weights,
    sha256_of,
)


def tiny_encoder(seed: int = 0, **kwargs) -> CLIPResNetEncoder:
    torch.manual_seed(seed)
    encoder = CLIPResNetEncoder((1, 1, 1, 1), 8, features=("F1", "F2", "F3", "F4", "F5"), **kwargs)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so buffers are checked too
        for module in encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return encoder


class _ClipLike(nn.Module):
    """Stand-in for OpenAI's CLIP model: the trunk under ``visual`` plus an attention pool."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.visual = encoder
        self.visual.attnpool = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)[-1]


def make_torchscript_archive(path, encoder):
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    traced = torch.jit.trace(_ClipLike(encoder).eval(), torch.rand(1, 3, 64, 64), check_trace=False)
    torch.jit.save(traced, str(path))
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("CLIPDENOISE_CACHE", str(tmp_path / "cd-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CLIPDENOISE_CLIP_DIR", raising=False)
    return tmp_path


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in sa.items():
        if key in sb:
            assert torch.equal(value, sb[key]), key


def test_torchscript_archive_loads(tmp_path):
    source = tiny_encoder(seed=1)
    archive = make_torchscript_archive(tmp_path / "clip_tiny.pt", source)
    target = tiny_encoder(seed=2)
    resolved = load_clip_encoder_weights(target, archive)
    assert resolved.path == archive
    assert resolved.sha256 == sha256_of(archive)
    assert_same_weights(source, target)
    assert "attnpool.weight" not in extract_visual_trunk(read_state_dict(archive))


def test_visual_prefixed_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    source = tiny_encoder(seed=3)
    state = {f"visual.{k}": v.clone() for k, v in source.state_dict().items()}
    state["visual.attnpool.c_proj.weight"] = torch.zeros(4, 4)
    state["transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(2, 2)
    torch.save(state, tmp_path / "open_clip.bin")
    save_file(state, str(tmp_path / "open_clip.safetensors"))
    for name in ("open_clip.bin", "open_clip.safetensors"):
        target = tiny_encoder(seed=4)
        load_clip_encoder_weights(target, tmp_path / name)
        assert_same_weights(source, target)


def test_only_built_stages_are_required(tmp_path):
    source = tiny_encoder(seed=5)
    state = {f"visual.{k}": v for k, v in source.state_dict().items() if not k.startswith("layer4")}
    torch.save(state, tmp_path / "no_stage4.pt")
    target = CLIPResNetEncoder((1, 1, 1, 1), 8)  # F1..F4: stage 4 not built, not needed
    load_clip_encoder_weights(target, tmp_path / "no_stage4.pt")
    assert torch.equal(target.layer3[0].conv2.weight, source.layer3[0].conv2.weight)


def test_missing_key_is_named(tmp_path):
    state = {f"visual.{k}": v for k, v in tiny_encoder().state_dict().items()}
    del state["visual.layer2.0.conv2.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(WeightsMismatchError, match=r"broken\.pt.*layer2\.0\.conv2\.weight"):
        load_clip_encoder_weights(tiny_encoder(), tmp_path / "broken.pt")


def test_misshaped_key_is_named(tmp_path):
    state = {f"visual.{k}": v for k, v in tiny_encoder().state_dict().items()}
    state["visual.conv1.weight"] = torch.zeros(5, 3, 3, 3)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(
        WeightsMismatchError, match=r"conv1\.weight: file \(5, 3, 3, 3\) vs model \(4, 3, 3, 3\)"
    ):
        load_clip_encoder_weights(tiny_encoder(), tmp_path / "shape.pt")


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatchError, match="garbage.pt"):
        read_state_dict(bad)


def test_name_resolves_from_openai_cache_and_checks_sha(isolated_caches, monkeypatch, no_network):
    cache = isolated_caches / "xdg" / "clip"
    cache.mkdir(parents=True)
    archive = make_torchscript_archive(cache / "RN50.pt", tiny_encoder(seed=6))
    # The real OpenAI hash does not match our stand-in archive: a clear error naming the file.
    with pytest.raises(WeightsMismatchError, match=r"RN50\.pt.*does not match OpenAI"):
        resolve_clip_weights("RN50")
    # With the registry's hash equal to the file's, the same lookup succeeds by name.
    spec = dataclasses.replace(weights.CLIP_WEIGHTS["RN50"], sha256=sha256_of(archive))
    monkeypatch.setitem(weights.CLIP_WEIGHTS, "RN50", spec)
    resolved = resolve_clip_weights("openai", arch="RN50")
    assert resolved.path == archive and resolved.name == "RN50"
    target = tiny_encoder(seed=7)
    load_clip_encoder_weights(target, "openai", arch="RN50")
    assert target.weights_identity.sha256 == spec.sha256


def test_offline_empty_cache_gives_guidance_without_network(isolated_caches, no_network):
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve_clip_weights("openai", arch="RN50")
    message = str(caught.value)
    assert "Looked in" in message
    assert str(isolated_caches / "xdg" / "clip" / "RN50.pt") in message
    assert "HF_HUB_OFFLINE=1" in message
    assert weights.CLIP_WEIGHTS["RN50"].url in message
    assert "clipdenoise weights import" in message


def test_unknown_names_and_missing_files():
    with pytest.raises(WeightsNotFoundError, match="valid names are: RN50"):
        resolve_clip_weights("RN18")
    with pytest.raises(WeightsNotFoundError, match="missing.pt: CLIP weights file not found"):
        resolve_clip_weights("/nonexistent/missing.pt")


def test_build_model_loads_encoder_weights(tmp_path):
    from clipdenoise.model import build_model, tiny_config

    source = tiny_encoder(seed=8)
    torch.save({f"visual.{k}": v for k, v in source.state_dict().items()}, tmp_path / "w.pt")
    model = build_model(tiny_config(encoder_weights=str(tmp_path / "w.pt")))
    assert torch.equal(model.encoder.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert torch.equal(model.encoder.bn1.running_var, source.bn1.running_var)


def _serve_archive(file_server, monkeypatch, tmp_path, content: bytes | None = None):
    """Serve a stand-in OpenAI archive at ``<server>/<sha256>/RN50.pt`` and register its hash."""
    archive = make_torchscript_archive(tmp_path / "served.pt", tiny_encoder(seed=11))
    digest = sha256_of(archive)
    spec = dataclasses.replace(weights.CLIP_WEIGHTS["RN50"], sha256=digest)
    monkeypatch.setitem(weights.CLIP_WEIGHTS, "RN50", spec)
    monkeypatch.setattr(weights, "_OPENAI_BASE", file_server.url)
    data = archive.read_bytes() if content is None else content
    file_server.files[f"/{digest}/RN50.pt"] = data
    return archive, spec


def test_downloads_on_first_use_when_online(isolated_caches, file_server, monkeypatch, tmp_path):
    archive, spec = _serve_archive(file_server, monkeypatch, tmp_path)
    target = tiny_encoder(seed=1)
    resolved = load_clip_encoder_weights(target, "openai", arch="RN50")
    cached = isolated_caches / "cd-cache" / "clip" / "RN50.pt"
    assert resolved.path == cached and resolved.sha256 == spec.sha256
    assert cached.read_bytes() == archive.read_bytes()
    assert_same_weights(target, tiny_encoder(seed=11))
    assert len(file_server.requests) == 1
    resolve_clip_weights("RN50")  # second use: from the cache, no request
    assert len(file_server.requests) == 1


def test_download_with_a_wrong_hash_is_refused(isolated_caches, file_server, monkeypatch, tmp_path):
    _serve_archive(file_server, monkeypatch, tmp_path, content=b"not OpenAI's archive")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_clip_weights("RN50")
    assert "it was deleted" in str(info.value) and "weights download RN50" in str(info.value)
    assert not (isolated_caches / "cd-cache" / "clip" / "RN50.pt").exists()
    assert list((isolated_caches / "cd-cache" / "clip").iterdir()) == []


def test_cli_weights_download(isolated_caches, file_server, monkeypatch, tmp_path, capsys):
    from clipdenoise.cli import main

    _, spec = _serve_archive(file_server, monkeypatch, tmp_path)
    assert main(["weights", "download", "RN50"]) == 0
    out = capsys.readouterr().out
    assert f"{isolated_caches / 'cd-cache' / 'clip' / 'RN50.pt'} (sha256 {spec.sha256}" in out
    monkeypatch.setenv("CLIPDENOISE_OFFLINE", "1")
    assert main(["weights", "download", "RN101"]) == 2
    err = capsys.readouterr().err
    assert "offline mode (CLIPDENOISE_OFFLINE=1)" in err and len(err.strip().splitlines()) == 1


def test_offline_build_model_fails_in_seconds(isolated_caches, monkeypatch):
    import time

    from clipdenoise.model import build_model

    monkeypatch.delenv("CLIPDENOISE_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError, match="offline mode \\(HF_HUB_OFFLINE=1\\)"):
        build_model("RN50")
    assert time.monotonic() - start < 5


def test_hub_cache_file_is_checked_against_the_recorded_hash(isolated_caches, no_network):
    snapshot = isolated_caches / "hf" / "hub" / "models--timm--resnet50_clip.openai"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("abc123")
    folder = snapshot / "snapshots" / "abc123"
    folder.mkdir(parents=True)
    (folder / "open_clip_model.safetensors").write_bytes(b"tampered")
    with pytest.raises(WeightsMismatchError, match="does not match the recorded da0baa37"):
        resolve_clip_weights("RN50")
