"""Optional dependencies: which extra installs which module, and importing them with a clear error.

Heavy or rarely needed packages (matplotlib, scikit-learn, bm3d, pydicom, gdown...) are imported
inside the functions that need them through :func:`import_optional`, so a missing one ends in a
:class:`~clipdenoise.errors.MissingExtraError` naming the pip command, which the CLI prints as one
line, never a traceback. Packages whose public names would pull such modules name them in a
table and import each on first use through :func:`lazy_exports`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

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


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` (PEP 562) for names imported on first use.

    Args:
        package: The package's name, for the ``AttributeError`` message.
        exports: Public name -> the module that defines it.
        namespace: The package's ``globals()``: a name, once imported, is kept there (later
            look-ups skip ``__getattr__``) and its ``__all__`` is what ``dir()`` lists.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_name), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace["__all__"])

    return __getattr__, __dir__


__all__ = [
    "EXTRA_OF_MODULE",
    "import_optional",
    "install_hint",
    "lazy_exports",
    "missing_extra_error",
]
