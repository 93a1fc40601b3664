"""Denoiser checkpoints: our safetensors format, the reference's released ``.pth`` files, names.

Our format is a single ``.safetensors`` file (no pickle) whose metadata holds:

- ``format = "clipdenoise-checkpoint"``, ``format_version``;
- ``model_config``: the :class:`~clipdenoise.model.ModelConfig` as JSON;
- ``contents``: ``"partial"`` or ``"full"``;
- ``encoder_source``: JSON identity (name, sha256, file name) of the CLIP weights the encoder
  was loaded from, for partial checkpoints;
- anything the caller adds (e.g. the resolved training config, iteration).

A *partial* checkpoint (the default) stores every trainable tensor plus the encoder tensors that
differ from the CLIP weights they came from (e.g. BatchNorm statistics that drifted in the
reference's training mode, or a fine-tuned encoder); loading it needs those CLIP weights, whose
SHA-256 is checked. A *full* checkpoint is self-contained. Encoders without a known CLIP source
(random init) are always stored in full.

The reference implementation (github alwaysuu/CLIPDenoising) releases ``{'params': state_dict}``
files (``net_g_latest.pth``) holding the whole model, encoder included: they load directly with
:func:`load_reference_checkpoint` (no CLIP file needed) and convert with
:func:`convert_reference_checkpoint`. Every file is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import torch

from clipdenoise import config as config_io
from clipdenoise.atomic import atomic_output
from clipdenoise.builtin import AUTO, BUILTIN_MODEL, builtin_weights_path, resolve_auto
from clipdenoise.download import offline_reason
from clipdenoise.encoder import CLIP_ARCHS
from clipdenoise.errors import (
    ConfigError,
    DownloadError,
    MissingExtraError,
    OutputExistsError,
    WeightsMismatchError,
    WeightsNotFoundError,
)
from clipdenoise.extras import install_hint
from clipdenoise.model import CLIPDenoiser, ModelConfig
from clipdenoise.weights import (
    ResolvedWeights,
    default_cache_dir,
    extract_visual_trunk,
    read_state_dict,
    resolve_clip_weights,
    sha256_of,
)

FORMAT_NAME = "clipdenoise-checkpoint"
FORMAT_VERSION = "1"

_REFERENCE_RENAMES = (
    (re.compile(r"^up_path\.(\d+)\.conv_block\.block\.(\d+)\."), r"decoder.blocks.\1.\2."),
    (re.compile(r"^last\."), "decoder.head."),
    (re.compile(r"^first\."), "input_adapter."),
)


@dataclass(frozen=True)
class PretrainedSpec:
    """A released denoiser, named ``architecture.recipe``; its file must be imported once."""

    name: str
    description: str
    in_channels: int
    source: str
    drive_path: str = ""
    aug_gamma: float = 0.025
    """γ of its recipe's feature augmentation (the YAML's ``aug_level``); a reference ``.pth``
    does not record it, so importing under this name sets it (it matters for fine-tuning)."""

    @property
    def arch(self) -> str:
        return self.name.split(".")[0].upper()


#: The reference's released models (Google Drive folder of github alwaysuu/CLIPDenoising).
REFERENCE_RELEASE = "https://drive.google.com/drive/folders/1F8md2zen0iPlhGnI5-VdjdBOLY8DBIiF"
PRETRAINED: dict[str, PretrainedSpec] = {
    spec.name: spec
    for spec in (
        PretrainedSpec(
            "rn50.synthetic-gaussian15",
            "RGB, trained on CBSD432 with Gaussian σ=15 (paper Table 1)",
            3,
            f"{REFERENCE_RELEASE} → synthetic/net_g_latest.pth",
            "synthetic/net_g_latest.pth",
        ),
        PretrainedSpec(
            "rn50.srgb-poissongaussian",
            "RGB, trained on DIV2K through the camera pipeline (paper Table 2)",
            3,
            f"{REFERENCE_RELEASE} → sRGB/net_g_latest.pth",
            "sRGB/net_g_latest.pth",
            aug_gamma=0.05,  # CLIPDenoising_sRGBDenoising_FixedPoissonGaussian.yml aug_level
        ),
        PretrainedSpec(
            "rn50.ldct-gaussian5",
            "1-channel CT, trained on Mayo normal-dose + Gaussian σ=5 (paper Table 3)",
            1,
            f"{REFERENCE_RELEASE} → CT/net_g_latest.pth",
            "CT/net_g_latest.pth",
        ),
    )
}
DEFAULT_MODEL = AUTO


def resolve_model_name(spec: str | Path) -> str | Path:
    """``spec`` with ``auto`` replaced by the model it stands for (:mod:`clipdenoise.builtin`)."""
    return resolve_auto(imported_models()) if str(spec) == AUTO else spec


# ---------------------------------------------------------------------------- saving
def save_checkpoint(
    model: CLIPDenoiser,
    path: str | Path,
    *,
    full: bool = False,
    metadata: Mapping[str, str] | None = None,
    storage_dtype: torch.dtype | None = None,
) -> Path:
    """Save ``model`` as a safetensors checkpoint, atomically (temp file + fsync + rename).

    Args:
        model: The denoiser.
        path: Destination (``.safetensors`` recommended).
        full: Store every tensor (self-contained) instead of a partial checkpoint.
        metadata: Extra string metadata (e.g. ``{"train_config": ...}``).
        storage_dtype: Store floating-point tensors in this dtype (``torch.float16`` halves
            the file); loading casts them back to the model's float32.

    Returns:
        The path written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = model.state_dict()
    identity: ResolvedWeights | None = getattr(model.encoder, "weights_identity", None)
    source_trunk = None if full or identity is None else _try_read_trunk(identity.path)
    if source_trunk is None:
        tensors, contents, source = dict(state), "full", ""
    else:
        tensors = {k: v for k, v in state.items() if _must_store(k, v, source_trunk)}
        contents = "partial"
        source = json.dumps(
            {
                "name": identity.name,
                "sha256": identity.sha256,
                "file": identity.path.name,
                "path": str(identity.path.resolve()),
            }
        )
    info = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_config": config_io.dumps_json(model.config),
        "contents": contents,
        "encoder_source": source,
        **{str(k): str(v) for k, v in (metadata or {}).items()},
    }
    payload = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    if storage_dtype is not None:
        payload = {
            k: v.to(storage_dtype) if v.is_floating_point() else v for k, v in payload.items()
        }
    with atomic_output(path) as temporary:
        save_file(payload, str(temporary), metadata=info)
    return path


def export_builtin(checkpoint: str | Path, destination: str | Path) -> Path:
    """Write a trained checkpoint as the built-in model's file (:mod:`clipdenoise.builtin`):
    float16 storage (half the size; loads back as float32), the training record of the
    checkpoint kept."""
    model = load_checkpoint(checkpoint)
    source = read_checkpoint_metadata(checkpoint)
    kept = {k: source[k] for k in ("train_config", "iteration") if k in source}
    return save_checkpoint(
        model,
        destination,
        full=True,
        metadata={"name": BUILTIN_MODEL, **kept},
        storage_dtype=torch.float16,
    )


def _try_read_trunk(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        return extract_visual_trunk(read_state_dict(path))
    except (OSError, WeightsMismatchError):
        return None


def _must_store(key: str, value: torch.Tensor, source_trunk: Mapping[str, torch.Tensor]) -> bool:
    if not key.startswith("encoder."):
        return True
    original = source_trunk.get(key[len("encoder.") :])
    if original is None or original.shape != value.shape:
        return True
    return not torch.equal(original.to(value.dtype), value.cpu())


# ---------------------------------------------------------------------------- loading ours
#: Largest model a checkpoint may describe, in parameter and buffer elements (4 GiB in float32;
#: CLIP's largest ResNet, RN50x64 with F5, has about 0.42 G). Checked on the config alone,
#: before anything is allocated.
MAX_MODEL_ELEMENTS = 2**30
#: Longest ``model_config`` / ``encoder_source`` metadata text read (bytes).
MAX_METADATA_TEXT = 64 * 1024
_CONTENTS = ("full", "partial")


@dataclass(frozen=True)
class CheckpointHeader:
    """What a checkpoint says about itself, checked against its tensors without loading them.

    Attributes:
        metadata: The safetensors metadata (strings).
        config: The validated :class:`~clipdenoise.model.ModelConfig`.
        shapes: Tensor name -> shape, as stored in the file.
    """

    metadata: dict[str, str]
    config: ModelConfig
    shapes: dict[str, tuple[int, ...]]


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of one of our checkpoints (raises if the file is not one)."""
    from safetensors import safe_open

    path = Path(path)
    _require_file(path, "checkpoint")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # noqa: BLE001 - safetensors raises several error types
        raise WeightsMismatchError(f"{path}: not a safetensors checkpoint ({error})") from error
    if metadata.get("format") != FORMAT_NAME:
        raise WeightsMismatchError(f"{path}: not a clipdenoise checkpoint (no format metadata)")
    return metadata


def _require_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise WeightsNotFoundError(f"{path}: is a folder, not a {what} file")
    if not path.is_file():
        raise WeightsNotFoundError(f"{path}: {what} not found")


def _json_metadata(metadata: Mapping[str, str], key: str, path: Path) -> object:
    text = metadata.get(key)
    if text is None:
        raise WeightsMismatchError(f"{path}: checkpoint metadata lacks {key!r}")
    if len(text) > MAX_METADATA_TEXT:
        raise WeightsMismatchError(
            f"{path}: checkpoint metadata {key!r} is {len(text)} bytes long "
            f"(at most {MAX_METADATA_TEXT} are accepted)"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise WeightsMismatchError(
            f"{path}: checkpoint metadata {key!r} is not valid JSON ({error})"
        ) from error


def model_shapes(model_config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of the model ``model_config`` describes, allocating no tensor.

    The model is built on PyTorch's ``meta`` device, which records shapes only.
    """
    with torch.device("meta"):
        model = CLIPDenoiser(model_config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def read_checkpoint_header(path: str | Path) -> CheckpointHeader:
    """Validate a checkpoint's metadata and compare it with its tensors' names and shapes.

    Reads only the safetensors header: no tensor is loaded and no model is built, so a
    tampered file cannot make the process allocate more than its own header.

    Raises:
        WeightsNotFoundError: the file is missing (or is a folder).
        WeightsMismatchError: not one of our checkpoints; metadata that is not JSON, not a valid
            :class:`~clipdenoise.model.ModelConfig` or describes a model over
            :data:`MAX_MODEL_ELEMENTS`; tensors that do not match it (the message names them).
    """
    from safetensors import safe_open

    path = Path(path)
    metadata = read_checkpoint_metadata(path)
    raw_config = _json_metadata(metadata, "model_config", path)
    try:
        model_config = config_io.from_dict(ModelConfig, raw_config, where="model_config")
    except ConfigError as error:
        raise WeightsMismatchError(f"{path}: invalid checkpoint metadata: {error}") from error
    contents = metadata.get("contents")
    if contents not in _CONTENTS:
        raise WeightsMismatchError(
            f"{path}: checkpoint metadata 'contents' is {contents!r}, not 'full' or 'partial'"
        )
    if contents == "partial" and not isinstance(
        _json_metadata(metadata, "encoder_source", path), dict
    ):
        raise WeightsMismatchError(f"{path}: checkpoint metadata 'encoder_source' is not a table")
    expected = model_shapes(model_config)
    elements = sum(math.prod(shape) for shape in expected.values())
    if elements > MAX_MODEL_ELEMENTS:
        raise WeightsMismatchError(
            f"{path}: the checkpoint describes a model of {elements / 1e9:.1f} G parameters "
            f"(layers {model_config.resolved_layers}, width {model_config.resolved_width}); "
            f"at most {MAX_MODEL_ELEMENTS / 1e9:.1f} G are accepted"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = handle.keys()
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in keys}
    except Exception as error:  # noqa: BLE001 - safetensors raises several error types
        raise WeightsMismatchError(f"{path}: unreadable tensor header ({error})") from error
    # a partial checkpoint leaves out the encoder tensors that its CLIP weights provide
    filled_elsewhere = ("encoder.",) if contents == "partial" else ()
    check_tensor_shapes(
        expected, shapes, source=path, optional=lambda key: key.startswith(filled_elsewhere)
    )
    return CheckpointHeader(dict(metadata), model_config, shapes)


def check_tensor_shapes(
    expected: Mapping[str, tuple[int, ...]],
    provided: Mapping[str, tuple[int, ...]],
    *,
    source: Path | str,
    optional: Callable[[str], bool] = lambda key: False,
) -> None:
    """Compare tensor names and shapes; a missing, unexpected or mis-shaped tensor is an error.

    Args:
        expected: Name -> shape the model needs.
        provided: Name -> shape the file holds.
        source: The file, named in the message.
        optional: Names that may be missing (filled from elsewhere, e.g. CLIP weights).

    Raises:
        WeightsMismatchError: listing what is missing, unexpected or of the wrong shape.
    """
    unknown = sorted(set(provided) - set(expected))
    mismatched = [
        f"{k}: file {tuple(v)} vs model {tuple(expected[k])}"
        for k, v in provided.items()
        if k in expected and tuple(v) != tuple(expected[k])
    ]
    missing = sorted(
        k
        for k in expected
        if k not in provided and not optional(k) and not k.endswith("num_batches_tracked")
    )
    if unknown or mismatched or missing:
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
        if unknown:
            parts.append(
                f"unexpected: {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}"
            )
        if mismatched:
            parts.append("wrong shape: " + "; ".join(mismatched[:6]))
        raise WeightsMismatchError(
            f"{source}: checkpoint does not fit the model — " + " | ".join(parts)
        )


def check_finite_tensors(tensors: Mapping[str, torch.Tensor], *, source: Path | str) -> None:
    """Refuse tensors holding NaN or infinite values (a diverged or damaged model).

    Raises:
        WeightsMismatchError: naming the first tensors affected.
    """
    bad = [
        key
        for key, value in tensors.items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise WeightsMismatchError(
            f"{source}: NaN or infinite values in {len(bad)} tensor(s): {shown}"
        )


def load_checkpoint(
    path: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    clip_weights: str | Path | None = None,
) -> CLIPDenoiser:
    """Load one of our safetensors checkpoints as a model in eval mode.

    The metadata and the tensors' names and shapes are checked (:func:`read_checkpoint_header`)
    before the model is built; tensors holding NaN or infinite values are refused.
    ``clip_weights`` overrides where a partial checkpoint's CLIP weights are looked for.

    Raises:
        WeightsNotFoundError: the file, or the CLIP weights a partial checkpoint needs, is missing.
        WeightsMismatchError: the file is corrupt, incomplete, tampered with, or its CLIP weights
            differ.
    """
    from safetensors.torch import load_file

    path = Path(path)
    header = read_checkpoint_header(path)
    metadata, model_config = header.metadata, header.config
    try:
        tensors = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises several error types
        raise WeightsMismatchError(f"{path}: unreadable tensor data ({error})") from error
    check_finite_tensors(tensors, source=path)
    model = CLIPDenoiser(model_config)
    state = model.state_dict()
    filled: set[str] = set()
    if metadata.get("contents") == "partial":
        identity = _resolve_source(
            json.loads(metadata["encoder_source"]), model_config, path, clip_weights
        )
        trunk = extract_visual_trunk(read_state_dict(identity.path))
        for key in state:
            if key.startswith("encoder.") and key[len("encoder.") :] in trunk:
                state[key] = trunk[key[len("encoder.") :]]
                filled.add(key)
        model.encoder.weights_identity = identity
    state.update(tensors)
    _load_strict(model, state, tensors, source=path, filled=filled)
    return model.to(map_location).eval()


def _resolve_source(
    source: Mapping[str, str],
    model_config: ModelConfig,
    path: Path,
    clip_weights: str | Path | None,
) -> ResolvedWeights:
    """Find the CLIP weights a partial checkpoint refers to and check their SHA-256."""
    name, expected, file_name = source.get("name"), source.get("sha256"), source.get("file", "")
    if clip_weights is not None:
        candidates = [str(clip_weights)]
    elif name:
        candidates = [name]
    else:  # a file given by path when the model was built: where it was, or beside the checkpoint
        candidates = [source.get("path", ""), str(path.parent / file_name)]
    last_error: Exception | None = None
    for candidate in filter(None, candidates):
        try:
            resolved = resolve_clip_weights(candidate, arch=model_config.arch)
            break
        except WeightsNotFoundError as error:
            last_error = error
    else:
        raise WeightsNotFoundError(
            f"{path}: this partial checkpoint needs the CLIP weights {name or file_name} "
            f"(sha256 {expected}); pass them with clip_weights=... / --clip-weights.\n{last_error}"
        )
    if expected and resolved.sha256 != expected:
        raise WeightsMismatchError(
            f"{path}: needs CLIP weights with sha256 {expected}, but {resolved.path} has "
            f"{resolved.sha256}"
        )
    return resolved


def _load_strict(
    model: CLIPDenoiser,
    state: Mapping[str, torch.Tensor],
    provided: Mapping[str, torch.Tensor],
    *,
    source: Path | str,
    filled: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Load ``state`` into ``model`` after checking ``provided`` (+ ``filled`` keys) covers it."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_tensor_shapes(
        expected,
        {k: tuple(v.shape) for k, v in provided.items()},
        source=source,
        optional=filled.__contains__,
    )
    model.load_state_dict(dict(state), strict=False)


# ---------------------------------------------------------------------------- the reference's
def read_reference_state_dict(path: str | Path, *, key: str = "params") -> dict[str, torch.Tensor]:
    """The state dict inside a reference checkpoint (``{'params': ...}``; ``params_ema`` too)."""
    path = Path(path)
    _require_file(path, "checkpoint")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many error types for bad files
        raise WeightsMismatchError(
            f"{path}: not a readable PyTorch checkpoint ({error})"
        ) from error
    if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
        return dict(loaded[key])
    if isinstance(loaded, Mapping) and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        return dict(loaded)
    keys = list(loaded)[:5] if isinstance(loaded, Mapping) else type(loaded).__name__
    raise WeightsMismatchError(f"{path}: no {key!r} state dict found (top level: {keys})")


def reference_config(
    state: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> ModelConfig:
    """Infer the :class:`ModelConfig` of a reference state dict from its keys and shapes."""
    try:
        width = int(state["encoder.conv3.weight"].shape[0])
        out_channels = int(state["last.weight"].shape[0])
    except KeyError as error:
        raise WeightsMismatchError(
            f"{source}: not a CLIPDenoising checkpoint (missing {error.args[0]})"
        ) from error
    layers = []
    for stage in range(1, 5):
        blocks = {
            int(m.group(1)) for k in state if (m := re.match(rf"encoder\.layer{stage}\.(\d+)\.", k))
        }
        layers.append(max(blocks) + 1 if blocks else 1)
    arch = next(
        (
            name
            for name, (arch_layers, arch_width) in CLIP_ARCHS.items()
            if arch_width == width and tuple(arch_layers[:3]) == tuple(layers[:3])
        ),
        "custom",
    )
    try:
        return ModelConfig(
            arch=arch,
            layers=None if arch != "custom" else tuple(layers),
            width=None if arch != "custom" else width,
            in_channels=1 if "first.weight" in state else 3,
            out_channels=out_channels,
            conv_bias="last.bias" in state,
        )
    except ValueError as error:
        raise WeightsMismatchError(
            f"{source}: not a usable CLIPDenoising model ({error})"
        ) from None


def reference_to_ours(
    state: Mapping[str, torch.Tensor], model: CLIPDenoiser
) -> dict[str, torch.Tensor]:
    """Rename a reference state dict to our keys, dropping stages our model does not build."""
    built = set(model.state_dict())
    renamed = {}
    for key, value in state.items():
        new_key = key
        for pattern, replacement in _REFERENCE_RENAMES:
            new_key = pattern.sub(replacement, new_key)
        if new_key.startswith("encoder.layer") and new_key not in built:
            continue  # stage 4: the reference computes it and throws it away
        renamed[new_key] = value
    return renamed


def load_reference_checkpoint(
    path: str | Path, *, map_location: str | torch.device = "cpu", key: str = "params"
) -> CLIPDenoiser:
    """Load a reference ``{'params': state_dict}`` checkpoint (no CLIP file needed), eval mode.

    The released models' encoder BatchNorm statistics drifted during the reference's training;
    they are loaded as saved so outputs match the reference exactly.
    """
    state = read_reference_state_dict(path, key=key)
    model_config = reference_config(state, source=str(path))
    with torch.device("meta"):  # shapes only: compare before allocating the model
        skeleton = CLIPDenoiser(model_config)
    renamed = reference_to_ours(state, skeleton)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    check_tensor_shapes(expected, {k: tuple(v.shape) for k, v in renamed.items()}, source=path)
    check_finite_tensors(renamed, source=path)
    model = CLIPDenoiser(model_config)
    _load_strict(model, renamed, renamed, source=path)
    return model.to(map_location).eval()


def convert_reference_checkpoint(src: str | Path, dst: str | Path, *, key: str = "params") -> Path:
    """Convert a reference checkpoint to a self-contained (full) checkpoint of ours."""
    model = load_reference_checkpoint(src, key=key)
    return save_checkpoint(
        model,
        dst,
        full=True,
        metadata={"converted_from": Path(src).name, "source_sha256": sha256_of(src)},
    )


def check_model_output(model: CLIPDenoiser, *, source: Path | str, side: int = 64) -> None:
    """Run ``model`` once on a small seeded image and refuse a NaN or infinite output.

    Finite weights can still overflow (e.g. huge BatchNorm statistics); this is the check
    ``clipdenoise weights verify`` makes after loading.

    Raises:
        WeightsMismatchError: the output holds NaN or infinite values (the file is named).
    """
    generator = torch.Generator().manual_seed(0)
    channels = model.config.in_channels
    image = torch.rand(1, channels, side, side, generator=generator)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        image = image.to(parameter.device)
    with torch.inference_mode():
        restored = model.eval()(image)
    if not bool(torch.isfinite(restored).all()):
        raise WeightsMismatchError(
            f"{source}: the model's output on a {side}x{side} test image holds NaN or infinite "
            "values; the weights are damaged or diverged"
        )


# ---------------------------------------------------------------------------- by name
def models_dir() -> Path:
    """Where imported denoisers are kept: ``<cache>/models``."""
    return default_cache_dir() / "models"


@functools.lru_cache(maxsize=1)
def released_key_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Every state-dict key and shape of the reference's released RN50 models, by ``"rgb"`` /
    ``"gray"`` (package data ``resources/released_rn50_keys.json``, read from the files)."""
    resource = resources.files("clipdenoise").joinpath("resources", "released_rn50_keys.json")
    raw = json.loads(resource.read_text())
    return {kind: {k: tuple(v) for k, v in shapes.items()} for kind, shapes in raw.items()}


def check_fits_release(model: CLIPDenoiser, spec: PretrainedSpec, *, source: str | Path) -> None:
    """Refuse a model that is not what the released name stands for.

    The architecture (RN50), the channels (3 or 1) and every tensor's key and shape must be those
    of the reference's released checkpoint, so that e.g. a width-8 test model can never become
    ``denoise``'s default under a released name.

    Raises:
        WeightsMismatchError: naming the file, the name and the first differences.
    """
    expected_reference = released_key_shapes()["gray" if spec.in_channels == 1 else "rgb"]
    expected: dict[str, tuple[int, ...]] = {}
    for key, shape in expected_reference.items():
        for pattern, replacement in _REFERENCE_RENAMES:
            key = pattern.sub(replacement, key)
        if not key.startswith("encoder.layer4."):  # computed and discarded by the reference
            expected[key] = shape
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    config = model.config
    if config.arch != spec.arch:
        problems.append(
            f"architecture {config.arch} (width {config.resolved_width}), not {spec.arch}"
        )
    if config.in_channels != spec.in_channels:
        problems.append(f"{config.in_channels} input channel(s), not {spec.in_channels}")
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    shapes = [
        f"{k} {actual[k]} vs {expected[k]}"
        for k in sorted(set(expected) & set(actual))
        if actual[k] != expected[k]
    ]
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:5])}")
    if shapes:
        problems.append(f"{len(shapes)} wrong shape(s): {'; '.join(shapes[:3])}")
    if problems:
        raise WeightsMismatchError(
            f"{source}: does not fit {spec.name!r} ({spec.description}): " + "; ".join(problems)
        )


def import_checkpoint(src: str | Path, name: str, *, force: bool = False) -> Path:
    """Import a checkpoint (reference ``.pth`` or ours) into the cache under ``name``.

    A released name (:data:`PRETRAINED`) only accepts a file that fits it
    (:func:`check_fits_release`). The source file's SHA-256 is recorded in the imported file's
    metadata (``source_sha256``; shown by ``clipdenoise weights list``).

    Raises:
        WeightsMismatchError: invalid name, unreadable file, or a file that does not fit the name.
        OutputExistsError: ``name`` is imported already and ``force`` is false.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise WeightsMismatchError(
            f"invalid model name {name!r}: use letters, digits, '.', '_', '-'"
        )
    destination = models_dir() / f"{name}.safetensors"
    if destination.exists() and not force:
        raise OutputExistsError(
            f"{destination}: a model named {name!r} is imported already; pass --force to replace it"
        )
    src = Path(src)
    model = load_model(src)
    if name in PRETRAINED:
        check_fits_release(model, PRETRAINED[name], source=src)
        if model.config.aug_gamma != PRETRAINED[name].aug_gamma:
            model.config = replace(model.config, aug_gamma=PRETRAINED[name].aug_gamma)
    metadata = {"imported_from": src.name, "name": name, "source_sha256": sha256_of(src)}
    save_checkpoint(model, destination, full=True, metadata=metadata)
    return destination


def imported_models() -> list[str]:
    """Names of the denoisers imported into the cache."""
    folder = models_dir()
    return sorted(p.stem for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def imported_model_info(name: str) -> dict[str, str]:
    """Metadata of an imported model: ``source_sha256``, ``imported_from``, ``sha256`` (of the
    imported file itself), ``path``."""
    path = models_dir() / f"{name}.safetensors"
    metadata = read_checkpoint_metadata(path)
    return {
        "path": str(path),
        "sha256": sha256_of(path),
        "source_sha256": metadata.get("source_sha256", ""),
        "imported_from": metadata.get("imported_from", ""),
    }


def download_pretrained(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Download a released denoiser from the authors' Google Drive folder and import it.

    Needs the optional ``gdown`` package (``pip install 'clipdenoise[drive]'``), which fetches
    the whole shared folder (the three released models) into a temporary folder beside the
    cache; the file for ``name`` is then imported with the checks of :func:`import_checkpoint`.

    Raises:
        WeightsNotFoundError: unknown name.
        MissingExtraError: gdown is not installed (the message also says how to do it by hand).
        DownloadError: offline, or the folder did not hold the expected file.
    """
    spec = PRETRAINED.get(name)
    if spec is None:
        raise WeightsNotFoundError(
            f"unknown released model {name!r}; released models: {', '.join(PRETRAINED)}"
        )
    by_hand = (
        f"by hand: download {spec.source}, then `clipdenoise weights import net_g_latest.pth "
        f"--name {name}`"
    )
    destination = models_dir() / f"{name}.safetensors"
    if destination.exists() and not force:
        raise OutputExistsError(
            f"{destination}: {name!r} is imported already; pass --force to download it again"
        )
    reason = offline_reason()
    if reason is not None:
        raise DownloadError(f"{name}: not downloaded, offline mode ({reason}); {by_hand}")
    try:
        import gdown
    except ImportError as error:
        raise MissingExtraError(
            f"downloading {name} from Google Drive needs gdown: {install_hint('gdown')}; or "
            f"{by_hand}"
        ) from error
    models_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir(), prefix=".drive-") as folder:
        try:
            gdown.download_folder(url=REFERENCE_RELEASE, output=folder, quiet=quiet)
        except Exception as error:  # noqa: BLE001 - gdown raises many error types
            raise DownloadError(
                f"{name}: Google Drive download failed ({error}); {by_hand}"
            ) from error
        found = _find_released_file(Path(folder), spec)
        if not quiet:
            print(f"importing {found.relative_to(folder)} as {name}", file=sys.stderr)
        return import_checkpoint(found, name, force=force)


def _find_released_file(folder: Path, spec: PretrainedSpec) -> Path:
    files = sorted(p for p in folder.rglob("*.pth") if p.is_file())
    exact = folder / spec.drive_path
    if spec.drive_path and exact.is_file():
        return exact
    wanted = Path(spec.drive_path).parent.name.lower()
    matches = [
        p for p in files if wanted and wanted in (x.lower() for x in p.relative_to(folder).parts)
    ]
    if len(matches) == 1:
        return matches[0]
    listed = ", ".join(str(p.relative_to(folder)) for p in files) or "no .pth file"
    raise DownloadError(
        f"{spec.name}: the Drive folder did not hold {spec.drive_path} (found: {listed}); "
        f"import the right file by hand: clipdenoise weights import FILE --name {spec.name}"
    )


def load_model(
    spec: str | Path = "auto", *, map_location: str | torch.device = "cpu"
) -> CLIPDenoiser:
    """Load a denoiser from a file (ours or the reference's) or an imported/known name.

    ``auto`` is the paper's synthetic model when imported, else the built-in model
    (:mod:`clipdenoise.builtin`); ``builtin.blind-unet`` names the built-in model.

    Raises:
        WeightsNotFoundError: with instructions to obtain and import the named weights.
    """
    spec = resolve_model_name(spec)
    if str(spec) == BUILTIN_MODEL:
        return load_checkpoint(builtin_weights_path(), map_location=map_location)
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".safetensors":
            return load_checkpoint(path, map_location=map_location)
        return load_reference_checkpoint(path, map_location=map_location)
    text = str(spec)
    cached = models_dir() / f"{text}.safetensors"
    if cached.is_file():
        return load_checkpoint(cached, map_location=map_location)
    if text in PRETRAINED:
        info = PRETRAINED[text]
        raise WeightsNotFoundError(
            f"model {text!r} ({info.description}) is not available offline: it was not found at "
            f"{cached}.\nTo use it:\n"
            f"  - online: pip install 'clipdenoise[drive]' && clipdenoise weights download {text}\n"
            f"  - or by hand: 1. download the reference's released checkpoint: {info.source}\n"
            f"    2. import it once: clipdenoise weights import net_g_latest.pth --name {text}\n"
            f"  (or pass the downloaded file directly: --weights /path/to/net_g_latest.pth)\n"
            f"To train your own instead: clipdenoise train --help"
        )
    if path.suffix in (".pth", ".pt", ".safetensors") or os.sep in text:
        raise WeightsNotFoundError(f"{path}: checkpoint file not found")
    known = ", ".join([AUTO, BUILTIN_MODEL, *PRETRAINED, *imported_models()])
    raise WeightsNotFoundError(f"unknown model {text!r}: not a file; known names: {known}")


def checkpoint_sha256(path: str | Path) -> str:
    """SHA-256 of a checkpoint file (recorded in evaluation results)."""
    return sha256_of(path)
