"""Finding, verifying and loading CLIP ResNet weights for the encoder.

Sources, tried in this order for a model name such as ``"RN50"`` (``encoder_weights="openai"``):

1. ``$CLIPDENOISE_CLIP_DIR/<name>.pt`` (or ``.safetensors``) when the variable is set;
2. OpenAI's ``clip`` package cache, ``~/.cache/clip/<name>.pt`` (``$XDG_CACHE_HOME`` honoured);
3. clipdenoise's cache, ``<cache>/clip/<name>.pt`` / ``.safetensors`` (see :func:`default_cache_dir`);
4. the Hugging Face hub cache through ``huggingface_hub`` (open_clip's ``timm/<...>_clip.openai``
   repositories), which downloads when online and honours ``HF_HUB_OFFLINE=1``.

Accepted file formats: OpenAI's TorchScript archives (``RN50.pt``...; verified against the SHA-256
that OpenAI publishes in each download URL), and plain state dicts or safetensors files whose
trunk keys carry a ``visual.`` prefix (OpenAI / open_clip layout) or no prefix at all. Loading is
strict: every tensor the encoder needs must be present with the right shape; the attention-pool
head (``attnpool.*``) and stages the encoder did not build are ignored.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipdenoise.errors import WeightsMismatchError, WeightsNotFoundError

_OPENAI_BASE = "https://openaipublic.azureedge.net/clip/models"


@dataclass(frozen=True)
class ClipWeightsSpec:
    """A released CLIP ResNet checkpoint: where it comes from and how to check it."""

    name: str
    sha256: str
    hf_repo: str
    license: str = "MIT (OpenAI CLIP)"

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"

    @property
    def url(self) -> str:
        return f"{_OPENAI_BASE}/{self.sha256}/{self.filename}"


CLIP_WEIGHTS: dict[str, ClipWeightsSpec] = {
    spec.name: spec
    for spec in (
        ClipWeightsSpec(
            "RN50",
            "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
            "timm/resnet50_clip.openai",
        ),
        ClipWeightsSpec(
            "RN101",
            "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
            "timm/resnet101_clip.openai",
        ),
        ClipWeightsSpec(
            "RN50x4",
            "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
            "timm/resnet50x4_clip.openai",
        ),
        ClipWeightsSpec(
            "RN50x16",
            "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
            "timm/resnet50x16_clip.openai",
        ),
        ClipWeightsSpec(
            "RN50x64",
            "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
            "timm/resnet50x64_clip.openai",
        ),
    )
}

#: Files looked for in a Hugging Face open_clip repository, in order of preference.
HF_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file found on disk, with the name it was asked for and its SHA-256."""

    path: Path
    name: str | None
    sha256: str


def default_cache_dir() -> Path:
    """clipdenoise's cache folder: ``$CLIPDENOISE_CACHE`` or ``~/.cache/clipdenoise``."""
    env = os.environ.get("CLIPDENOISE_CACHE")
    if env:
        return Path(env).expanduser()
    return _xdg_cache() / "clipdenoise"


def openai_cache_dir() -> Path:
    """Where OpenAI's ``clip`` package keeps its downloads (``~/.cache/clip``)."""
    return _xdg_cache() / "clip"


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def candidate_paths(name: str) -> list[Path]:
    """Local files that may hold the CLIP weights ``name``, in search order."""
    stems = [name, name.replace("/", "-")]
    folders = []
    if os.environ.get("CLIPDENOISE_CLIP_DIR"):
        folders.append(Path(os.environ["CLIPDENOISE_CLIP_DIR"]).expanduser())
    folders += [openai_cache_dir(), default_cache_dir() / "clip"]
    paths: list[Path] = []
    for folder in folders:
        for stem in dict.fromkeys(stems):
            for suffix in (".pt", ".safetensors"):
                paths.append(folder / f"{stem}{suffix}")
    return paths


def resolve_clip_weights(name_or_path: str | Path, *, arch: str | None = None) -> ResolvedWeights:
    """Find CLIP weights on disk (or through the Hugging Face hub) and verify official archives.

    Args:
        name_or_path: A file path, a CLIP name (``"RN50"``...), or ``"openai"`` meaning the
            official weights of ``arch``.
        arch: The encoder's CLIP ResNet size, used when ``name_or_path == "openai"``.

    Raises:
        WeightsNotFoundError: nothing was found; the message lists where we looked and how to
            provide the weights.
        WeightsMismatchError: an official archive's SHA-256 differs from OpenAI's (file named).
    """
    text = str(name_or_path)
    name = arch if text == "openai" else text
    if name is None or name == "custom":
        raise WeightsNotFoundError(
            "encoder_weights='openai' needs a CLIP ResNet architecture name (RN50, RN101, "
            "RN50x4, RN50x16, RN50x64); a custom encoder needs a weights file path or None"
        )
    path = Path(text).expanduser()
    if path.suffix in (".pt", ".pth", ".bin", ".safetensors") or path.exists():
        if not path.is_file():
            raise WeightsNotFoundError(f"{path}: CLIP weights file not found")
        return ResolvedWeights(path=path, name=None, sha256=sha256_of(path))
    spec = CLIP_WEIGHTS.get(name)
    if spec is None:
        valid = ", ".join(CLIP_WEIGHTS)
        raise WeightsNotFoundError(f"unknown CLIP weights {name!r}; valid names are: {valid}")
    for candidate in candidate_paths(name):
        if candidate.is_file():
            return _verified(candidate, spec)
    hub_path, hub_note = _from_hub(spec)
    if hub_path is not None:
        return ResolvedWeights(path=hub_path, name=name, sha256=sha256_of(hub_path))
    raise WeightsNotFoundError(weights_guidance(spec, hub_note))


def _verified(path: Path, spec: ClipWeightsSpec) -> ResolvedWeights:
    digest = sha256_of(path)
    if path.suffix == ".pt" and digest != spec.sha256:
        raise WeightsMismatchError(
            f"{path}: SHA-256 {digest} does not match OpenAI's published {spec.sha256} for "
            f"{spec.name}; the file is corrupt or not the official archive — delete it and "
            f"download {spec.url} again"
        )
    return ResolvedWeights(path=path, name=spec.name, sha256=digest)


def _from_hub(spec: ClipWeightsSpec) -> tuple[Path | None, str]:
    """Try the Hugging Face hub (cache only when ``HF_HUB_OFFLINE`` is set)."""
    try:
        import huggingface_hub
    except ImportError:
        return None, "huggingface_hub is not installed (pip install 'clipdenoise[hub]')"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    errors = []
    for filename in HF_FILENAMES:
        try:
            located = huggingface_hub.hf_hub_download(
                spec.hf_repo, filename, local_files_only=offline
            )
            return Path(located), ""
        except Exception as error:  # noqa: BLE001 - the hub raises many error types
            errors.append(f"{filename}: {type(error).__name__}")
    mode = "offline cache only (HF_HUB_OFFLINE=1)" if offline else "download attempted"
    return None, f"Hugging Face hub {spec.hf_repo} — {mode}: {'; '.join(errors)}"


def weights_guidance(spec: ClipWeightsSpec, hub_note: str = "") -> str:
    """The message shown when CLIP weights cannot be found: where we looked and what to do."""
    looked = "\n".join(f"  - {p}" for p in candidate_paths(spec.name))
    hub = f"\n  - {hub_note}" if hub_note else ""
    return (
        f"CLIP {spec.name} weights not found. Looked in:\n{looked}{hub}\n"
        f"Provide them in one of these ways:\n"
        f"  1. download OpenAI's archive (sha256 {spec.sha256}):\n"
        f"       {spec.url}\n"
        f"     and save it as {openai_cache_dir() / spec.filename}\n"
        f"  2. online, with `pip install 'clipdenoise[hub]'`: the weights are fetched from the "
        f"Hugging Face hub ({spec.hf_repo}) automatically (unset HF_HUB_OFFLINE)\n"
        f'  3. pass a file explicitly (e.g. model.encoder_weights = "/path/to/{spec.filename}")\n'
        f"  4. or use a complete denoiser checkpoint, which needs no CLIP file: "
        f"`clipdenoise weights import net_g_latest.pth --name NAME`\n"
        f"`clipdenoise weights where` lists every place searched."
    )


# ---------------------------------------------------------------------------- reading files
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read all tensors of a CLIP weights file (TorchScript archive, state dict, safetensors).

    Raises:
        WeightsMismatchError: the file is not a readable weights file (the message names it).
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        if _is_torchscript(path):
            with warnings.catch_warnings():  # OpenAI ships TorchScript; its deprecation is moot
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu")
            return {k: v.detach() for k, v in module.state_dict().items()}
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsMismatchError:
        raise
    except Exception as error:  # noqa: BLE001 - torch raises many error types for bad files
        raise WeightsMismatchError(f"{path}: not a readable weights file ({error})") from error
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model", "params"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
        return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    raise WeightsMismatchError(f"{path}: expected a state dict, found {type(loaded).__name__}")


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding a ``constants.pkl`` and ``code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names)


def extract_visual_trunk(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the visual trunk's tensors, without the ``visual.`` prefix and the attention pool."""
    if any(k.startswith("visual.") for k in state):
        trunk = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    elif any(k.startswith("encoder.") for k in state):  # a whole denoiser's state dict
        trunk = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    else:
        trunk = dict(state)
    return {k: v for k, v in trunk.items() if not k.startswith("attnpool.")}


def load_trunk_into(encoder: nn.Module, trunk: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy ``trunk`` tensors into ``encoder`` strictly (every needed key, right shapes).

    Raises:
        WeightsMismatchError: listing missing keys and shape mismatches, naming ``source``.
    """
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in trunk and not k.endswith("num_batches_tracked")]
    mismatched = [
        f"{k}: file {tuple(trunk[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in trunk and tuple(trunk[k].shape) != tuple(v.shape)
    ]
    if missing or mismatched:
        lines = []
        if missing:
            shown = ", ".join(missing[:12]) + (" ..." if len(missing) > 12 else "")
            lines.append(f"{len(missing)} missing tensor(s): {shown}")
        if mismatched:
            lines.append("wrong shape: " + "; ".join(mismatched[:8]))
        raise WeightsMismatchError(f"{source}: cannot load into the encoder — " + " | ".join(lines))
    with torch.no_grad():
        for key, target in expected.items():
            if key in trunk:
                target.copy_(trunk[key].to(target.dtype))


def load_clip_encoder_weights(
    encoder: nn.Module, name_or_path: str | Path, *, arch: str | None = None
) -> ResolvedWeights:
    """Resolve, read and strictly load CLIP weights into ``encoder``; returns what was loaded.

    The encoder remembers the identity of its weights in ``encoder.weights_identity`` so that
    checkpoints can store a reference to them instead of a copy.
    """
    resolved = resolve_clip_weights(name_or_path, arch=arch)
    trunk = extract_visual_trunk(read_state_dict(resolved.path))
    load_trunk_into(encoder, trunk, source=str(resolved.path))
    encoder.weights_identity = resolved
    return resolved
