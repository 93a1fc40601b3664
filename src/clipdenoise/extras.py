"""Optional dependencies: which extra installs which module, and importing them with a clear error.

Heavy or rarely needed packages (matplotlib, scikit-learn, bm3d, pydicom, gdown...) are imported
inside the functions that need them through :func:`import_optional`, so a missing one ends in a
:class:`~clipdenoise.errors.MissingExtraError` naming the pip command, which the CLI prints as one
line, never a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from clipdenoise.errors import MissingExtraError

#: Top-level module name -> the extra of ``pyproject.toml`` that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "matplotlib": "plot",
    "sklearn": "analysis",
    "skimage": "baselines",
    "bm3d": "baselines",
    "pydicom": "ct",
    "tifffile": "tiff",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "fastapi": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "tensorboard": "tensorboard",
    "huggingface_hub": "hub",
    "gdown": "drive",
}


def install_hint(module: str, extra: str | None = None) -> str:
    """The pip command that installs ``module`` (``pip install 'clipdenoise[plot]'``)."""
    extra = extra or EXTRA_OF_MODULE.get(module.split(".")[0])
    return f"pip install 'clipdenoise[{extra}]'" if extra else f"pip install {module.split('.')[0]}"


def missing_extra_error(module: str, purpose: str, extra: str | None = None) -> MissingExtraError:
    """The error for a missing optional module: ``"<purpose> needs <module>: pip install ..."``."""
    top = module.split(".")[0]
    return MissingExtraError(
        f"{purpose} needs {top}, which is not installed: {install_hint(top, extra)}"
    )


def import_optional(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import an optional module or raise :class:`MissingExtraError` with the pip command.

    Args:
        module: Dotted module name (``"sklearn.manifold"``).
        purpose: What needs it, for the message (``"t-SNE"``, ``"--plots"``).
        extra: The extra to install; looked up in :data:`EXTRA_OF_MODULE` when omitted.

    Raises:
        MissingExtraError: the module (or one it imports) is missing.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = getattr(error, "name", None) or module
        raise missing_extra_error(missing, purpose, extra) from error


__all__ = ["EXTRA_OF_MODULE", "import_optional", "install_hint", "missing_extra_error"]
