"""The built-in model and the ``auto`` weights choice.

``auto`` (the default of ``clipdenoise denoise``, ``clipdenoise serve`` and
:func:`clipdenoise.load_model`) means the paper's ``rn50.synthetic-gaussian15`` when it has been
imported, else :data:`BUILTIN_MODEL`, a blind denoiser shipped inside the package. The built-in
model is not the paper's: it was trained from scratch on a CPU, without CLIP weights (its card,
``resources/builtin-blind-unet.md``, says how, on what and how well), so that the package denoises
on a fresh machine with nothing to download. Choosing it prints one line on stderr, once per
process, naming it and how to install the paper's model.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from clipdenoise.errors import WeightsNotFoundError

AUTO = "auto"
BUILTIN_MODEL = "builtin.blind-unet"
PAPER_DEFAULT = "rn50.synthetic-gaussian15"
BUILTIN_FILE = "builtin-blind-unet.safetensors"
BUILTIN_CARD = "builtin-blind-unet.md"

_notice_shown = False


def builtin_weights_path() -> Path:
    """The shipped weights file of :data:`BUILTIN_MODEL`.

    Raises:
        WeightsNotFoundError: the package was installed without its data files.
    """
    path = Path(str(resources.files("clipdenoise") / "resources" / BUILTIN_FILE))
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: the built-in model's weights are missing from the installed package; "
            "reinstall clipdenoise"
        )
    return path


def builtin_card() -> str:
    """The built-in model's card (Markdown)."""
    return (resources.files("clipdenoise") / "resources" / BUILTIN_CARD).read_text("utf-8")


def resolve_auto(imported: list[str], *, notice: bool = True) -> str:
    """The model name ``auto`` stands for, given the names of the imported models."""
    if PAPER_DEFAULT in imported:
        return PAPER_DEFAULT
    if notice:
        _notify_builtin()
    return BUILTIN_MODEL


def _notify_builtin() -> None:
    global _notice_shown
    if _notice_shown:
        return
    _notice_shown = True
    print(
        f"using the built-in model {BUILTIN_MODEL} (trained without CLIP; not the paper's "
        f"model). For the paper's model: clipdenoise weights import net_g_latest.pth "
        f"--name {PAPER_DEFAULT} (see 'clipdenoise weights --help')",
        file=sys.stderr,
    )


__all__ = [
    "AUTO",
    "BUILTIN_MODEL",
    "PAPER_DEFAULT",
    "builtin_card",
    "builtin_weights_path",
    "resolve_auto",
]
