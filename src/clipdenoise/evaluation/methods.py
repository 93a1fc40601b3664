"""Methods the evaluation harness can score, named by short specs.

A *method* is anything following the package's denoiser contract ``forward(x)`` on
``(B, C, H, W)`` tensors in [0, 1]. :func:`resolve_method` turns a spec string into a
:class:`Method`; a ``label=`` prefix names its column in the tables.

==========================  ================================================================
spec                        method
==========================  ================================================================
``noisy``                   the noisy input itself (the floor)
``bm3d`` / ``nlm``          BM3D / non-local means; σ given for Gaussian noise, else estimated
``bm3d-est`` / ``nlm-est``  the same, always estimating σ from the noisy image
``clipdenoise:SPEC``        ours: a ``.safetensors`` checkpoint, the reference's ``.pth``, or an
                            imported model name (:func:`clipdenoise.checkpoints.load_model`)
``dncnn:PATH``              DnCNN from its checkpoint (ours or KAIR's ``dncnn_*.pth`` layout)
``restormer:PATH``          Restormer from its checkpoint (ours or the official ``params``)
``ablation:NAME:SPEC``      one of the paper's model-level ablations (:data:`ABLATIONS`); the
                            checkpoint's config must match the ablation's switches
``PATH`` (.safetensors/.pth) same as ``clipdenoise:PATH``
==========================  ================================================================

Example:
    >>> resolve_method("floor=noisy").name
    'floor'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipdenoise.baselines import load_baseline
from clipdenoise.baselines.classical import BM3DDenoiser, NLMDenoiser, NoisyInput
from clipdenoise.checkpoints import checkpoint_sha256, load_model, models_dir
from clipdenoise.errors import ConfigError

__all__ = ["ABLATIONS", "CLASSICAL_METHODS", "Method", "resolve_method"]

CLASSICAL_METHODS = ("noisy", "bm3d", "bm3d-est", "nlm", "nlm-est")

# Model-level ablations of the paper (Sec. 4.4, Table 4) as ModelConfig switches.
ABLATIONS: dict[str, dict[str, Any]] = {
    "frozen": {"encoder_trainable": False, "use_noisy_input": True, "use_f5": False},
    "finetuned": {"encoder_trainable": True, "encoder_weights": "openai"},
    "scratch": {"encoder_trainable": True, "encoder_weights": None},
    "no-noisy-input": {"use_noisy_input": False},
    "with-f5": {"use_f5": True},
}


@dataclass
class Method:
    """One column of a results table.

    Attributes:
        name: Label in tables and cache paths.
        kind: ``noisy``, ``bm3d``, ``nlm``, ``clipdenoise``, ``dncnn``, ``restormer``,
            ``ablation`` or ``module`` (a user-supplied ``nn.Module``).
        source: Checkpoint path or model name, when there is one.
        checkpoint_sha256: sha256 of the checkpoint file, when there is one.
        is_network: Networks get the protocol's padding, batching and device; classical methods
            run per image on the CPU.
        options: Parameters that identify the method beyond its checkpoint (cache key).
    """

    name: str
    kind: str
    source: str | None = None
    checkpoint_sha256: str | None = None
    is_network: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    module: nn.Module | None = field(default=None, repr=False)
    factory: Callable[[Any], nn.Module] | None = field(default=None, repr=False)

    def for_noise(self, noise: Any) -> nn.Module:
        """The module that denoises inputs with this noise (classical ones are told σ)."""
        if self.factory is not None:
            return self.factory(noise)
        assert self.module is not None
        return self.module

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity of the method (written into results files)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "source": self.source,
            "checkpoint_sha256": self.checkpoint_sha256,
            "options": self.options,
        }

    def fingerprint(self) -> str:
        """A short hash of :meth:`describe` plus, for in-memory modules, their weights."""
        payload = json.dumps(self.describe(), sort_keys=True, default=str).encode()
        digest = hashlib.sha256(payload)
        if self.kind == "module" and self.module is not None:
            for key, tensor in sorted(self.module.state_dict().items()):
                digest.update(key.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:12]


def _known_sigma(noise: Any) -> float | None:
    """σ on [0, 1] when the noise is white Gaussian of known level, else None (estimate)."""
    if noise is not None and getattr(noise, "kind", None) == "gaussian":
        return float(noise.level) / 255.0
    return None


def _classical(name: str, kind: str) -> Method:
    if kind == "noisy":
        return Method(name, "noisy", is_network=False, module=NoisyInput())
    base, _, variant = kind.partition("-")
    always_estimate = variant == "est"
    cls = BM3DDenoiser if base == "bm3d" else NLMDenoiser

    def factory(noise: Any) -> nn.Module:
        return cls(sigma=None if always_estimate else _known_sigma(noise))

    options = {"sigma": "estimated" if always_estimate else "given-for-gaussian"}
    if cls is NLMDenoiser:
        defaults = NLMDenoiser()
        options.update(
            h_factor=defaults.h_factor,
            patch_size=defaults.patch_size,
            patch_distance=defaults.patch_distance,
        )
    else:
        options["profile"] = BM3DDenoiser().profile
    return Method(name, base, is_network=False, options=options, factory=factory)


def _default_label(source: str) -> str:
    """A checkpoint file's stem, or a model name as it is (``rn50.synthetic-gaussian15``)."""
    path = Path(source)
    return path.stem if path.suffix in (".safetensors", ".pth", ".pt") else path.name


def _checkpoint_file(source: str) -> Path | None:
    path = Path(source).expanduser()
    if path.is_file():
        return path
    cached = models_dir() / f"{source}.safetensors"
    return cached if cached.is_file() else None


def _sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    return checkpoint_sha256(path)


def _load_ours(name: str, source: str, map_location: str | torch.device) -> Method:
    model = load_model(source, map_location=map_location).eval()
    return Method(
        name,
        "clipdenoise",
        source=source,
        checkpoint_sha256=_sha256(_checkpoint_file(source)),
        module=model,
    )


def _load_ablation(name: str, argument: str, map_location: str | torch.device) -> Method:
    ablation, sep, source = argument.partition(":")
    if not sep or ablation not in ABLATIONS:
        raise ConfigError(
            f"ablation spec must be 'ablation:NAME:CHECKPOINT' with NAME in {sorted(ABLATIONS)}, "
            f"got 'ablation:{argument}'"
        )
    method = _load_ours(name, source, map_location)
    config = method.module.config  # type: ignore[union-attr]
    mismatched = {
        key: getattr(config, key)
        for key, value in ABLATIONS[ablation].items()
        if key != "encoder_weights" and getattr(config, key) != value
    }
    if mismatched:
        raise ConfigError(
            f"{source}: checkpoint is not the '{ablation}' ablation: its config has "
            f"{mismatched}, the ablation needs {ABLATIONS[ablation]}"
        )
    method.kind = "ablation"
    method.options = {"ablation": ablation}
    return method


def _load_baseline(name: str, kind: str, source: str, map_location: str | torch.device) -> Method:
    path = Path(source).expanduser()
    model = load_baseline(kind, path, map_location=map_location).eval()
    return Method(name, kind, source=str(path), checkpoint_sha256=_sha256(path), module=model)


def resolve_method(
    spec: str | Method | nn.Module,
    *,
    name: str | None = None,
    map_location: str | torch.device = "cpu",
) -> Method:
    """Turn a method spec (see the module docstring) or a module into a :class:`Method`.

    Args:
        spec: A spec string (``"bm3d"``, ``"ours=clipdenoise:best.safetensors"``...), a
            :class:`Method`, or any ``nn.Module`` following the denoiser contract.
        name: Label to use (overrides a ``label=`` prefix; required for a bare module unless it
            can be derived from the class name).
        map_location: Where checkpoints are loaded.

    Raises:
        ConfigError: Unknown spec (the message lists the valid forms).
        WeightsNotFoundError: A checkpoint does not exist.
    """
    if isinstance(spec, Method):
        if name:
            spec.name = name
        return spec
    if isinstance(spec, nn.Module):
        label = name or type(spec).__name__
        return Method(label, "module", options={"class": type(spec).__qualname__}, module=spec)
    text = spec.strip()
    label, sep, rest = text.partition("=")
    if sep and ":" not in label and "/" not in label:
        text = rest.strip()
    else:
        label = text
    kind, sep, argument = text.partition(":")
    kind = kind.lower()
    if kind in CLASSICAL_METHODS and not sep:
        return _classical(name or label, kind)
    if kind == "clipdenoise" and sep:
        return _load_ours(
            name or (label if label != text else _default_label(argument)), argument, map_location
        )
    if kind == "ablation" and sep:
        ablation = argument.partition(":")[0]
        return _load_ablation(
            name or (label if label != text else ablation), argument, map_location
        )
    if kind in ("dncnn", "restormer") and sep:
        default = f"{kind}-{Path(argument).stem}"
        return _load_baseline(
            name or (label if label != text else default), kind, argument, map_location
        )
    if Path(text).suffix in (".safetensors", ".pth", ".pt"):
        return _load_ours(
            name or (label if label != text else _default_label(text)), text, map_location
        )
    raise ConfigError(
        f"unknown method {spec!r}; valid: {', '.join(CLASSICAL_METHODS)}, clipdenoise:CHECKPOINT, "
        f"dncnn:CHECKPOINT, restormer:CHECKPOINT, ablation:NAME:CHECKPOINT (NAME in "
        f"{', '.join(ABLATIONS)}), or a checkpoint path; prefix 'label=' to name the column"
    )
