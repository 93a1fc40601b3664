"""The models a demo server offers: trained networks, an optional untrained tiny demo network,
and the classical baselines, plus guidance on adding weights when none are installed.

Networks are loaded through :func:`clipdenoise.checkpoints.load_model` (files or names imported
with ``clipdenoise weights import``); a model that cannot be loaded stays listed as unavailable,
with the loader's message (which says how to obtain the weights), so the page can show it.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from clipdenoise.baselines.classical import BM3DDenoiser, NLMDenoiser
from clipdenoise.builtin import BUILTIN_MODEL
from clipdenoise.checkpoints import PRETRAINED, imported_models, load_model, resolve_model_name
from clipdenoise.errors import ClipDenoiseError
from clipdenoise.model import CLIPDenoiser, tiny_config

TINY_DEMO_KEY = "tiny-demo-untrained"
WEIGHTS_GUIDANCE = (
    "No CLIPDenoising model of the paper is loaded (the built-in model, if listed, was trained "
    "without CLIP). To add one: download a released checkpoint "
    "(see `clipdenoise weights --help`), import it once with "
    "`clipdenoise weights import net_g_latest.pth --name rn50.synthetic-gaussian15`, then "
    "restart with `clipdenoise serve --weights rn50.synthetic-gaussian15` (a checkpoint path "
    "works too). Your own models: `clipdenoise train --help`."
)

Family = Literal["network", "baseline"]


@dataclass
class ModelEntry:
    """One model the page can choose.

    Attributes:
        key: URL-safe identifier sent by the page.
        label: What the visitor reads.
        family: ``"network"`` (a CLIPDenoiser; tiled inference) or ``"baseline"`` (classical).
        description: One line on what it is / was trained on.
        untrained: Random weights: the output is not a real denoising result (tests, demos).
        error: Why it cannot be used (``None`` when it can); the message says how to fix it.
    """

    key: str
    label: str
    family: Family
    description: str
    untrained: bool = False
    error: str | None = None
    loader: Callable[[], nn.Module] | None = field(default=None, repr=False)
    module: nn.Module | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def available(self) -> bool:
        return self.error is None

    def get_module(self) -> nn.Module:
        """The model, loaded on first use (thread-safe).

        Raises:
            ClipDenoiseError: it cannot be loaded; the entry then stays marked unavailable.
        """
        with self._lock:
            if self.module is None:
                if self.error is not None or self.loader is None:
                    raise ClipDenoiseError(self.error or f"model {self.key!r} has no loader")
                try:
                    self.module = self.loader().eval()
                except ClipDenoiseError as error:
                    self.error = str(error)
                    raise
            return self.module

    def public(self) -> dict:
        """JSON-ready description for the page."""
        in_channels = None
        config = getattr(self.module, "config", None)
        if config is not None:
            in_channels = getattr(config, "in_channels", None)
        return {
            "key": self.key,
            "label": self.label,
            "family": self.family,
            "description": self.description,
            "untrained": self.untrained,
            "available": self.available,
            "error": self.error,
            "in_channels": in_channels,
        }


@dataclass
class ModelCatalogue:
    """Ordered models of a server; networks first, then baselines."""

    entries: dict[str, ModelEntry]

    def get(self, key: str) -> ModelEntry:
        """The entry named ``key``.

        Raises:
            KeyError: unknown key (the message lists the known ones).
        """
        if key not in self.entries:
            raise KeyError(f"unknown model {key!r}; available: {', '.join(self.entries)}")
        return self.entries[key]

    @property
    def default_key(self) -> str | None:
        usable = [entry for entry in self.entries.values() if entry.available]
        trained = [entry for entry in usable if entry.family == "network" and not entry.untrained]
        # the paper's or the user's own models before the built-in one
        trained.sort(key=lambda entry: entry.label == BUILTIN_MODEL)
        pick = trained or [e for e in usable if e.family == "network"] or usable
        return pick[0].key if pick else None

    @property
    def has_trained_network(self) -> bool:
        return any(
            e.family == "network" and e.available and not e.untrained for e in self.entries.values()
        )

    @property
    def needs_weights_guidance(self) -> bool:
        """No trained network is offered besides the built-in one: say how to add weights."""
        return not any(
            e.family == "network" and e.available and not e.untrained and e.label != BUILTIN_MODEL
            for e in self.entries.values()
        )

    def public(self) -> dict:
        return {
            "models": [entry.public() for entry in self.entries.values()],
            "default": self.default_key,
            "weights_guidance": WEIGHTS_GUIDANCE if self.needs_weights_guidance else None,
        }


def slug(text: str) -> str:
    """A URL-safe key from a name or file name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned or "model"


def tiny_demo_entry(in_channels: int = 3, seed: int = 0) -> ModelEntry:
    """A tiny random-init CLIPDenoiser (width 8), clearly marked as untrained."""

    def load() -> nn.Module:
        return CLIPDenoiser(tiny_config(in_channels=in_channels, init_seed=seed))

    return ModelEntry(
        key=TINY_DEMO_KEY,
        label="Tiny demo network (UNTRAINED)",
        family="network",
        description=(
            "Random weights, width 8: shows the pipeline working, not real denoising. "
            "Load trained weights with --weights."
        ),
        untrained=True,
        loader=load,
    )


def network_entry_from_module(
    name: str, module: nn.Module, *, untrained: bool = False
) -> ModelEntry:
    """Wrap an already-loaded network (Python API: ``create_app(models={...})``)."""
    return ModelEntry(
        key=slug(name),
        label=name,
        family="network",
        description=f"{type(module).__name__} given to the server",
        untrained=untrained,
        module=module.eval(),
    )


def network_entry_from_spec(spec: str, map_location: str = "cpu") -> ModelEntry:
    """An entry for ``--weights SPEC`` (a checkpoint file or imported name), loaded now.

    A spec that fails to load becomes an unavailable entry carrying the error message.
    """
    from pathlib import Path

    name = Path(spec).name if Path(spec).suffix and spec != BUILTIN_MODEL else spec
    description = PRETRAINED[spec].description if spec in PRETRAINED else f"checkpoint {name}"
    if spec == BUILTIN_MODEL:
        description = "built-in blind denoiser, trained without CLIP (not the paper's model)"
    entry = ModelEntry(
        key=slug(name),
        label=name,
        family="network",
        description=description,
        loader=lambda: load_model(spec, map_location=map_location),
    )
    with contextlib.suppress(ClipDenoiseError):  # entry.error then holds the guidance
        entry.get_module()
    return entry


def imported_entries(skip: Iterable[str] = (), map_location: str = "cpu") -> list[ModelEntry]:
    """Entries for every model imported into the cache (loaded lazily on first use)."""
    entries = []
    for name in imported_models():
        if slug(name) in skip:
            continue
        description = PRETRAINED[name].description if name in PRETRAINED else "imported model"
        entries.append(
            ModelEntry(
                key=slug(name),
                label=name,
                family="network",
                description=description,
                loader=lambda name=name: load_model(name, map_location=map_location),
            )
        )
    return entries


def baseline_entries() -> list[ModelEntry]:
    """BM3D and non-local means (σ estimated from the noisy image), if their packages exist."""
    candidates = [
        ("nlm", "Non-local means (classical)", NLMDenoiser, "skimage", "scikit-image"),
        ("bm3d", "BM3D (classical)", BM3DDenoiser, "bm3d", "bm3d"),
    ]
    entries = []
    for key, label, cls, module_name, package in candidates:
        error = None
        try:
            __import__(module_name)
        except ImportError:
            error = f"{package} is not installed: pip install 'clipdenoise[baselines]'"
        entries.append(
            ModelEntry(
                key=key,
                label=label,
                family="baseline",
                description="training-free; noise σ estimated from the noisy image",
                error=error,
                loader=cls,
            )
        )
    return entries


def default_weights() -> list[str]:
    """What a server offers when no weights are named: ``auto``'s model and the built-in one."""
    chosen = str(resolve_model_name("auto"))
    return [chosen] if chosen == BUILTIN_MODEL else [chosen, BUILTIN_MODEL]


def build_catalogue(
    weights: Iterable[str] = (),
    *,
    models: Mapping[str, nn.Module] | None = None,
    tiny_demo: bool = False,
    baselines: bool = True,
    include_imported: bool = True,
    map_location: str = "cpu",
) -> ModelCatalogue:
    """Assemble the models a server offers.

    Args:
        weights: ``--weights`` specs (checkpoint paths or imported names), loaded now. With
            neither ``weights`` nor ``models``: :func:`default_weights`.
        models: Already-loaded networks by display name (Python API).
        tiny_demo: Add the untrained tiny network (clearly labelled).
        baselines: Add BM3D / NLM when their packages are installed.
        include_imported: Also list models imported into the cache (loaded on first use).
        map_location: Device the checkpoints are loaded to.
    """
    entries: dict[str, ModelEntry] = {}

    def add(entry: ModelEntry) -> None:
        key, number = entry.key, 2
        while key in entries:
            key, number = f"{entry.key}-{number}", number + 1
        entry.key = key
        entries[key] = entry

    weights = list(weights)
    if not weights and not models:
        weights = default_weights()
    for spec in weights:
        add(network_entry_from_spec(spec, map_location))
    for name, module in (models or {}).items():
        add(network_entry_from_module(name, module))
    if include_imported:
        for entry in imported_entries(skip=entries, map_location=map_location):
            add(entry)
    if tiny_demo:
        add(tiny_demo_entry())
    if baselines:
        for entry in baseline_entries():
            add(entry)
    return ModelCatalogue(entries)
