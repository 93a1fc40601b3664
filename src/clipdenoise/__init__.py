"""clipdenoise: Transfer CLIP for Generalizable Image Denoising (Cheng, Liang, Tan, CVPR 2024).

Every public name is imported lazily so that ``import clipdenoise`` stays fast and never pulls
optional heavy dependencies (matplotlib, pydicom, huggingface_hub, ...).

Contract shared by every model in the package: ``model(noisy)`` takes a ``(B, C, H, W)`` float
tensor with values in [0, 1] and returns the restored image with the same shape.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from clipdenoise.extras import lazy_exports

try:  # one source of truth: the version in pyproject.toml, as installed
    __version__ = _distribution_version("clipdenoise")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "CLIPResNetEncoder": "clipdenoise.encoder",
    "CLIP_ARCHS": "clipdenoise.encoder",
    "CLIPDenoiser": "clipdenoise.model",
    "ModelConfig": "clipdenoise.model",
    "build_model": "clipdenoise.model",
    "load_model": "clipdenoise.checkpoints",
    "save_checkpoint": "clipdenoise.checkpoints",
    "load_checkpoint": "clipdenoise.checkpoints",
    "load_reference_checkpoint": "clipdenoise.checkpoints",
    "NoiseSpec": "clipdenoise.noise",
    "parse_noise_spec": "clipdenoise.noise",
    "add_noise": "clipdenoise.noise",
    "Denoiser": "clipdenoise.inference",
    "denoise": "clipdenoise.inference",
    "evaluate": "clipdenoise.evaluation",
    "train": "clipdenoise.training",
}

__all__ = ["__version__", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
