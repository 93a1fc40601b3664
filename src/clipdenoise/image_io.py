"""Reading (and, later, writing) image files as float arrays.

Arrays returned here are ``(H, W, C)`` float32 in [0, 1], RGB channel order (never BGR), with
C = 1 for greyscale and 3 for colour. Errors name the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipdenoise.errors import ImageReadError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, C)`` float32 in [0, 1] (C = 1 grey, 3 colour).

    8-bit images are divided by 255 and 16-bit ones by 65535; EXIF orientation is applied; an
    alpha channel is dropped (see the inference module for alpha pass-through).

    Raises:
        ImageReadError: the file is missing, empty, truncated, not an image or of an
            unsupported mode; the message names the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return _pil_to_float(image, path)
    except UnidentifiedImageError as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(
            f"{path}: cannot decode image, it may be truncated ({error})"
        ) from error


def _pil_to_float(image, path: Path) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image, dtype=np.uint16).astype(np.float32) / 65535.0
        return pixels[..., None]
    if mode == "I":
        pixels = np.asarray(image, dtype=np.int64)
        return (np.clip(pixels, 0, 65535).astype(np.float32) / 65535.0)[..., None]
    if mode in ("L", "1", "LA"):
        return (np.asarray(image.convert("L"), dtype=np.float32) / 255.0)[..., None]
    if mode in ("P", "PA"):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    raise ImageReadError(f"{path}: unsupported image mode {mode!r}")
