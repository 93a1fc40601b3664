"""The web demo: ``clipdenoise serve`` starts it; :func:`create_app` builds it from Python.

Upload or pick a sample, optionally add seeded synthetic noise, denoise with a loaded model or a
classical baseline, compare with a before/after slider, read PSNR/SSIM, download the result in
the input's format and bit depth. FastAPI is imported only when an app is built
(``pip install 'clipdenoise[serve]'``).
"""

from __future__ import annotations

from clipdenoise.web.catalogue import ModelCatalogue, ModelEntry, build_catalogue
from clipdenoise.web.pipeline import InferenceSettings
from clipdenoise.web.settings import ServeConfig


def create_app(*args, **kwargs):
    """Build the demo application; see :func:`clipdenoise.web.app.create_app`."""
    try:
        from clipdenoise.web.app import create_app as _create_app
    except ImportError as error:
        if getattr(error, "name", None) in (
            "fastapi",
            "starlette",
            "multipart",
            "python_multipart",
        ):
            raise ImportError(
                f"the web demo needs {error.name}: pip install 'clipdenoise[serve]'"
            ) from error
        raise

    return _create_app(*args, **kwargs)


__all__ = [
    "InferenceSettings",
    "ModelCatalogue",
    "ModelEntry",
    "ServeConfig",
    "build_catalogue",
    "create_app",
]
