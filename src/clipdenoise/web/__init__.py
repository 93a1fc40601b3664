"""The web demo: ``clipdenoise serve`` starts it; :func:`create_app` builds it from Python.

Upload or pick a sample, optionally add seeded synthetic noise, denoise with a loaded model or a
classical baseline, compare with a before/after slider, read PSNR/SSIM, download the result in
the input's format and bit depth. Names resolve on first use, so ``import clipdenoise.web`` loads
neither torch nor FastAPI; FastAPI is imported when :func:`create_app` is called
(``pip install 'clipdenoise[serve]'`` for the server).

Example:
    >>> from clipdenoise.web import build_catalogue, create_app
    >>> app = create_app(build_catalogue(tiny_demo=True, include_imported=False))
"""

from __future__ import annotations

from clipdenoise.extras import lazy_exports

_EXPORTS = {
    "BackgroundServer": "clipdenoise.web.server",
    "InferenceSettings": "clipdenoise.web.pipeline",
    "ModelCatalogue": "clipdenoise.web.catalogue",
    "ModelEntry": "clipdenoise.web.catalogue",
    "ServeConfig": "clipdenoise.web.settings",
    "build_catalogue": "clipdenoise.web.catalogue",
}

__all__ = [*_EXPORTS, "create_app"]


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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
