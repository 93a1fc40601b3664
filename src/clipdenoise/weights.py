"""Finding, verifying and loading CLIP ResNet weights for the encoder.

Sources, tried in this order for a model name such as ``"RN50"`` (``encoder_weights="openai"``):

1. ``$CLIPDENOISE_CLIP_DIR/<name>.pt`` (or ``.safetensors``) when the variable is set;
2. OpenAI's ``clip`` package cache, ``~/.cache/clip/<name>.pt`` (``$XDG_CACHE_HOME`` honoured);
3. clipdenoise's cache, ``<cache>/clip/<name>.pt`` / ``.safetensors`` (see :func:`default_cache_dir`);
4. files already in the Hugging Face hub cache (open_clip's ``timm/<...>_clip.openai``
   repositories; read from the cache only, never fetched), checked against the SHA-256 recorded
   here where one is known;
5. when online, OpenAI's archive is downloaded into clipdenoise's cache (resumable, verified
   against the SHA-256 in its URL: :func:`download_clip_weights`, ``clipdenoise weights download
   RN50``). Offline (``CLIPDENOISE_OFFLINE=1``, ``HF_HUB_OFFLINE=1``, no route, no DNS) this fails
   in seconds with instructions instead of waiting on retries.

Accepted file formats: OpenAI's TorchScript archives (``RN50.pt``...; verified against the SHA-256
that OpenAI publishes in each download URL), and plain state dicts or safetensors files whose
trunk keys carry a ``visual.`` prefix (OpenAI / open_clip layout) or no prefix at all. Loading is
strict: every tensor the encoder needs must be present with the right shape; the attention-pool
head (``attnpool.*``) and stages the encoder did not build are ignored.
"""

from __future__ import annotations

import os
import sys
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clipdenoise.download import download_file, offline_reason
from clipdenoise.download import sha256_file as sha256_of
from clipdenoise.errors import DownloadError, WeightsMismatchError, WeightsNotFoundError

_OPENAI_BASE = "https://openaipublic.azureedge.net/clip/models"


@dataclass(frozen=True)
class ClipWeightsSpec:
    """A released CLIP ResNet checkpoint: where it comes from and how to check it."""

    name: str
    sha256: str
    hf_repo: str
    size_bytes: int | None = None
    hf_sha256: str | None = None
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
            # open_clip_model.safetensors of the hub repository; recorded by a third party's
            # pinned manifest (408,291,932 bytes), not re-downloaded here.
            hf_sha256="da0baa37fb2211eee5729ab69ed587eb10d48f5b7076ceeed01552fc3d4cb4ee",
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
    hub_path, hub_note = _from_hub_cache(spec)
    if hub_path is not None:
        return _verified_hub_file(hub_path, spec)
    try:
        path = download_clip_weights(name)
    except DownloadError as error:
        raise WeightsNotFoundError(weights_guidance(spec, hub_note, str(error))) from error
    return ResolvedWeights(path=path, name=name, sha256=spec.sha256)


def download_clip_weights(name: str, *, progress: bool | None = None) -> Path:
    """Download OpenAI's archive of the CLIP ResNet ``name`` into ``<cache>/clip/<name>.pt``.

    Resumes a partial download, checks the SHA-256 that OpenAI publishes in the URL and renames
    the file into place only when it matches. An existing, verified file is reused.

    Args:
        name: ``RN50``, ``RN101``, ``RN50x4``, ``RN50x16`` or ``RN50x64``.
        progress: Progress bar (default: on a terminal).

    Returns:
        The path of the verified archive.

    Raises:
        WeightsNotFoundError: unknown name.
        DownloadError: offline or unreachable (fails in seconds; the message says what to do).
        ChecksumError: the downloaded file is not OpenAI's archive (deleted).
    """
    spec = CLIP_WEIGHTS.get(name)
    if spec is None:
        raise WeightsNotFoundError(
            f"unknown CLIP weights {name!r}; valid names are: {', '.join(CLIP_WEIGHTS)}"
        )
    destination = default_cache_dir() / "clip" / spec.filename
    if destination.is_file() and sha256_of(destination) == spec.sha256:
        return destination
    if offline_reason() is None:
        print(f"downloading CLIP {name} weights from {spec.url} to {destination}", file=sys.stderr)
    return download_file(
        spec.url,
        destination,
        sha256=spec.sha256,
        progress=progress,
        what=f"CLIP {name} weights",
    )


def _verified(path: Path, spec: ClipWeightsSpec) -> ResolvedWeights:
    digest = sha256_of(path)
    if path.suffix == ".pt" and digest != spec.sha256:
        raise WeightsMismatchError(
            f"{path}: SHA-256 {digest} does not match OpenAI's published {spec.sha256} for "
            f"{spec.name}; the file is corrupt or not the official archive — delete it and "
            f"download {spec.url} again"
        )
    return ResolvedWeights(path=path, name=spec.name, sha256=digest)


def _from_hub_cache(spec: ClipWeightsSpec) -> tuple[Path | None, str]:
    """A file of ``spec.hf_repo`` already in the Hugging Face cache (no network access)."""
    try:
        import huggingface_hub
    except ImportError:
        return None, "Hugging Face cache not searched (huggingface_hub is not installed)"
    cache_dir = os.environ.get("HF_HUB_CACHE") or (
        str(Path(os.environ["HF_HOME"]).expanduser() / "hub") if os.environ.get("HF_HOME") else None
    )  # read now: huggingface_hub fixes its default when first imported
    for filename in HF_FILENAMES:
        try:
            located = huggingface_hub.try_to_load_from_cache(
                spec.hf_repo, filename, cache_dir=cache_dir
            )
        except Exception:  # noqa: BLE001 - a malformed cache is the same as an empty one
            located = None
        if isinstance(located, str) and Path(located).is_file():
            return Path(located), ""
    return None, f"Hugging Face cache: no {' or '.join(HF_FILENAMES)} of {spec.hf_repo}"


def _verified_hub_file(path: Path, spec: ClipWeightsSpec) -> ResolvedWeights:
    digest = sha256_of(path)
    if path.name == HF_FILENAMES[0] and spec.hf_sha256 and digest != spec.hf_sha256:
        raise WeightsMismatchError(
            f"{path}: SHA-256 {digest} does not match the recorded {spec.hf_sha256} of "
            f"{spec.hf_repo}/{path.name}; delete it, or use OpenAI's archive "
            f"(clipdenoise weights download {spec.name})"
        )
    return ResolvedWeights(path=path, name=spec.name, sha256=digest)


def weights_guidance(spec: ClipWeightsSpec, hub_note: str = "", download_note: str = "") -> str:
    """The message shown when CLIP weights cannot be found: where we looked and what to do."""
    looked = "\n".join(f"  - {p}" for p in candidate_paths(spec.name))
    hub = f"\n  - {hub_note}" if hub_note else ""
    tried = f"\n  - {download_note}" if download_note else ""
    return (
        f"CLIP {spec.name} weights not found. Looked in:\n{looked}{hub}{tried}\n"
        f"Provide them in one of these ways:\n"
        f"  1. online: `clipdenoise weights download {spec.name}` (or just run again with "
        f"CLIPDENOISE_OFFLINE / HF_HUB_OFFLINE unset: it downloads on first use)\n"
        f"  2. download OpenAI's archive (sha256 {spec.sha256}):\n"
        f"       {spec.url}\n"
        f"     on another machine and save it as {openai_cache_dir() / spec.filename}\n"
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
