"""Reading and writing image files, keeping bit depth, alpha, orientation, ICC profile and EXIF.

Pixels are handed around as ``(H, W, C)`` float32 in [0, 1], RGB channel order (never BGR), C = 1
for greyscale and 3 for colour. :func:`read_image` returns just that; :func:`load_image` returns a
:class:`LoadedImage` that also carries what an output file should keep: the alpha channel
(untouched, in its stored integer values), the bit depth, the ICC profile and the EXIF block
(with the orientation reset to "upright", since the pixels are returned upright).

Formats: PNG (8 and 16 bit, grey/RGB, with or without alpha), TIFF (8, 16 bit and float32;
deflate, LZW, ... through ``tifffile`` + ``imagecodecs``), JPEG, BMP, WebP. Pillow alone reads a
16-bit colour PNG as 8 bit, so 16-bit PNGs are read through ``imagecodecs`` (libpng) and written
by :func:`encode_png16`. Errors name the file and the problem.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from clipdenoise import atomic
from clipdenoise.errors import ImageReadError, ImageWriteError, OutputExistsError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: Output format name -> default suffix.
FORMAT_SUFFIXES: dict[str, str] = {
    "png": ".png",
    "tiff": ".tif",
    "jpeg": ".jpg",
    "bmp": ".bmp",
    "webp": ".webp",
}
_SUFFIX_FORMATS = {
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".bmp": "bmp",
    ".webp": "webp",
}
#: Bit depths each format can store (32 = float32).
FORMAT_BIT_DEPTHS: dict[str, tuple[int, ...]] = {
    "png": (8, 16),
    "tiff": (8, 16, 32),
    "jpeg": (8,),
    "bmp": (8,),
    "webp": (8,),
}
_ALPHA_FORMATS = ("png", "tiff", "webp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Channels -> PNG colour type (grey, grey + alpha, RGB, RGBA).
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
_ORIENTATION_TAG = 0x0112
_TIFF_ICC_TAG = 34675
# EXIF base-IFD text tags that a TIFF file stores in its own IFD.
_TIFF_TEXT_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software",
                   306: "DateTime", 315: "Artist", 33432: "Copyright"}  # fmt: skip


class JpegArtefactWarning(UserWarning):
    """Writing JPEG re-compresses the restored image and adds block artefacts."""


@dataclass
class LoadedImage:
    """An image file's pixels and what an output file should keep from it.

    Attributes:
        pixels: ``(H, W, C)`` float32 in [0, 1], C = 1 (grey) or 3 (RGB), upright.
        alpha: ``(H, W)`` alpha as stored (uint8, uint16 or float32), upright; ``None`` if none.
        bit_depth: Bits per sample of the file: 8, 16, or 32 (float TIFF).
        format: ``png``, ``tiff``, ``jpeg``, ``bmp`` or ``webp``.
        icc_profile: The embedded ICC profile, if any.
        exif: The EXIF block (TIFF-structured bytes) with orientation reset to 1, if any.
        dpi: Resolution in dots per inch, if recorded.
        path: Where it was read from.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    format: str = "png"
    icc_profile: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    path: Path | None = None

    @property
    def channels(self) -> int:
        """Colour channels (1 or 3), alpha not counted."""
        return int(self.pixels.shape[-1])

    def with_pixels(self, pixels: np.ndarray) -> LoadedImage:
        """A copy carrying other pixels (same metadata and alpha)."""
        return replace(self, pixels=pixels)


# ============================================================================ reading
def format_of(path: str | Path) -> str:
    """The format name of ``path``'s suffix (``png``, ``tiff``, ...).

    Raises:
        ImageWriteError: unknown suffix (lists the supported ones).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise ImageWriteError(
            f"{path}: unsupported image suffix {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    return _SUFFIX_FORMATS[suffix]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, C)`` float32 in [0, 1] (C = 1 grey, 3 colour).

    8-bit images are divided by 255 and 16-bit ones by 65535; EXIF orientation is applied; an
    alpha channel is dropped (:func:`load_image` keeps it).

    Raises:
        ImageReadError: the file is missing, empty, truncated, not an image or of an
            unsupported mode; the message names the file.
    """
    return load_image(path).pixels


@dataclass(frozen=True)
class ImageHeader:
    """An image file's size as its header states it, read without decoding any pixel.

    Attributes:
        width, height: Pixels, as stored (before any EXIF rotation).
        channels: Colour channels (1 or 3; alpha not counted).
    """

    width: int
    height: int
    channels: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_image_header(path: str | Path) -> ImageHeader:
    """Width, height and colour channels from an image file's header (no pixel is decoded).

    Pillow opens files lazily and TIFF headers are read by ``tifffile``, so this costs a few
    kilobytes of reading whatever the image's size: use it to refuse or plan for a large image
    before decoding it.

    Raises:
        ImageReadError: missing, empty or not a readable image header (the file is named).
    """
    path = Path(path)
    _require_image_file(path)
    from PIL import Image

    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                width, height = int(page.imagewidth), int(page.imagelength)
                # min-is-white/black are grey; RGB, palette, CMYK, YCbCr... are read as RGB
                channels = 1 if int(page.photometric) in (0, 1) else 3
        else:
            with warnings.catch_warnings():  # the size is what the caller is about to check
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(path)
            with image:
                width, height = image.size
                bands = [band for band in image.getbands() if band not in ("A", "a")]
                channels = 1 if len(bands) == 1 and image.mode != "P" else 3
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: too many pixels ({one_line(error)})") from error
    except Exception as error:  # noqa: BLE001 - any header failure is the file's fault
        raise ImageReadError(f"{path}: not a readable image ({one_line(error)})") from error
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{path}: the header gives an invalid size {width}x{height}")
    return ImageHeader(width, height, channels)


def _require_image_file(path: Path) -> None:
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes)")


def load_image(path: str | Path, *, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file with its alpha, bit depth, ICC profile and EXIF.

    Args:
        path: The file.
        max_pixels: Refuse images of more pixels than this, from the header, before any pixel
            is decoded (``None``: Pillow's decompression-bomb limit, ~179 megapixels, still
            applies to the formats it decodes).

    Raises:
        ImageReadError: missing, empty, truncated, not an image, several frames, too many
            pixels, or an unsupported mode / sample type; the message names the file.
    """
    path = Path(path)
    _require_image_file(path)
    from PIL import Image, UnidentifiedImageError

    if max_pixels is not None:
        header = read_image_header(path)
        if header.pixels > max_pixels:
            raise ImageReadError(
                f"{path}: the image is {header.width}x{header.height} "
                f"({header.pixels / 1e6:.1f} megapixels), over the limit of "
                f"{max_pixels / 1e6:.1f} megapixels"
            )
    try:
        loaded = _load_tiff(path) if _is_tiff(path) else None
        if loaded is None:
            # From memory: a chunk length stated past the end of the file then reads what there
            # is, where a file read would first allocate the stated length (up to 2 GiB).
            with Image.open(io.BytesIO(path.read_bytes())) as image:
                fmt = (image.format or "").lower()
                fmt = "jpeg" if fmt == "mpo" else fmt
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise ImageReadError(
                        f"{path}: has {frames} frames; only still images are supported"
                    )
                loaded = _load_with_pillow_metadata(path, image, fmt)
    except ImageReadError:
        raise
    except UnidentifiedImageError as error:
        raise ImageReadError(f"{path}: not a readable image ({one_line(error)})") from error
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"{path}: too many pixels ({one_line(error)})") from error
    except MemoryError as error:
        raise ImageReadError(f"{path}: not enough memory to decode the image") from error
    except Exception as error:  # noqa: BLE001 - decoders raise many types for corrupt data
        raise ImageReadError(
            f"{path}: cannot decode image, it may be truncated ({one_line(error)})"
        ) from error
    _check_finite(loaded, path)
    return loaded


def _is_tiff(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _load_tiff(path: Path) -> LoadedImage | None:
    """Read a TIFF with tifffile (any bit depth); ``None`` for kinds left to Pillow (palette,
    CMYK, JPEG-in-TIFF, ...)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) > 1:
                raise ImageReadError(
                    f"{path}: has {len(tif.pages)} pages; only single-image TIFFs are supported"
                )
            page = tif.pages[0]
            if int(page.photometric) not in (0, 1, 2):
                return None
            planes = page.asarray()
            tags = {tag.code: tag.value for tag in page.tags.values()}
            planar_separate = int(page.planarconfig) == 2
            photometric = int(page.photometric)
    except ImageReadError:
        raise
    except Exception as error:  # tifffile / imagecodecs raise many types
        raise ImageReadError(f"{path}: cannot decode TIFF ({error})") from error
    if planes.ndim == 3 and planar_separate:
        planes = np.moveaxis(planes, 0, -1)
    if planes.ndim == 2:
        planes = planes[..., None]
    if planes.ndim != 3:
        raise ImageReadError(f"{path}: TIFF holds an array of shape {planes.shape}, not an image")
    planes, depth = _tiff_samples(planes, path)
    if photometric == 0:  # min-is-white
        top = {8: 255, 16: 65535, 32: 1.0}[depth]
        planes[..., :1] = top - planes[..., :1]
    planes = _orient(planes, int(tags.get(274, 1) or 1))
    colour, alpha = _split_planes(planes, path)
    scale = {8: 255.0, 16: 65535.0}.get(depth)
    pixels = colour.astype(np.float32) / scale if scale else colour.astype(np.float32)
    from PIL import Image

    exif = Image.Exif()
    for code in _TIFF_TEXT_TAGS:
        if isinstance(tags.get(code), str) and tags[code].isascii():
            exif[code] = tags[code]
    icc = tags.get(_TIFF_ICC_TAG)
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bit_depth=depth,
        format="tiff",
        icc_profile=bytes(icc) if icc is not None else None,
        exif=_exif_bytes(exif) if len(exif) else None,
        dpi=_tiff_dpi(tags),
        path=path,
    )


def _tiff_samples(planes: np.ndarray, path: Path) -> tuple[np.ndarray, int]:
    if planes.dtype == np.uint8:
        return planes, 8
    if planes.dtype == np.uint16:
        return planes, 16
    if planes.dtype in (np.float16, np.float32, np.float64):
        return planes.astype(np.float32), 32
    if planes.dtype == bool:
        return planes.astype(np.uint8) * 255, 8
    raise ImageReadError(f"{path}: unsupported TIFF sample type {planes.dtype}")


def _tiff_dpi(tags: dict) -> tuple[float, float] | None:
    def value(code: int) -> float | None:
        raw = tags.get(code)
        if isinstance(raw, tuple) and len(raw) == 2 and raw[1]:
            return raw[0] / raw[1]
        return float(raw) if isinstance(raw, int | float) else None

    x, y = value(282), value(283)
    if x is None or y is None:
        return None
    unit = int(tags.get(296, 2) or 2)
    factor = 2.54 if unit == 3 else 1.0
    return (round(x * factor, 2), round(y * factor, 2)) if unit in (2, 3) else None


def _exif_bytes(exif) -> bytes:
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def _load_with_pillow_metadata(path: Path, image, fmt: str) -> LoadedImage:
    exif = image.getexif()
    orientation = int(exif.get(_ORIENTATION_TAG, 1) or 1)
    icc = image.info.get("icc_profile") or None
    dpi = image.info.get("dpi")
    if fmt == "png" and _png_bit_depth(path) == 16:
        planes, bit_depth = _read_png16(path), 16
    else:
        planes, bit_depth = _pillow_planes(image, path)
        if image.mode == "CMYK":
            icc = None  # a CMYK profile does not describe the RGB pixels we return
    planes = _orient(planes, orientation)
    colour, alpha = _split_planes(planes, path)
    scale = {8: 255.0, 16: 65535.0}.get(bit_depth)
    pixels = colour.astype(np.float32) / scale if scale else colour.astype(np.float32)
    exif_bytes = None
    if fmt == "tiff":  # a TIFF's "EXIF" is its whole IFD: keep only the descriptive tags
        exif = _text_only_exif(exif)
    if len(exif):
        exif[_ORIENTATION_TAG] = 1
        exif_bytes = _exif_bytes(exif)
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels),
        alpha=None if alpha is None else np.ascontiguousarray(alpha),
        bit_depth=bit_depth,
        format=fmt,
        icc_profile=icc,
        exif=exif_bytes,
        dpi=tuple(round(float(v), 2) for v in dpi) if dpi else None,
        path=path,
    )


def _text_only_exif(exif):
    from PIL import Image

    kept = Image.Exif()
    for tag in _TIFF_TEXT_TAGS:
        if tag in exif:
            kept[tag] = exif[tag]
    return kept


def _check_finite(loaded: LoadedImage, path: Path) -> None:
    if loaded.bit_depth == 32 and not np.isfinite(loaded.pixels).all():
        raise ImageReadError(f"{path}: float image holds NaN or infinite values")


def _pillow_planes(image, path: Path) -> tuple[np.ndarray, int]:
    """``(H, W, C)`` integer planes (C = 1..4; 2 and 4 end with alpha) and the bit depth."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image, dtype=np.uint16)[..., None], 16
    if mode == "I":
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(f"{path}: 32-bit integer samples are not supported")
        return values.astype(np.uint16)[..., None], 16
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))[..., None], 8
    if mode in ("LA", "La"):
        return np.asarray(image.convert("LA")), 8
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB")), 8
    if mode in ("RGBA", "RGBa"):
        return np.asarray(image.convert("RGBA")), 8
    if mode in ("RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB")), 8
    raise ImageReadError(f"{path}: unsupported image mode {mode!r}")


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as handle:
        head = handle.read(26)
    return head[24] if len(head) >= 26 and head[12:16] == b"IHDR" else 8


def _read_png16(path: Path) -> np.ndarray:
    import imagecodecs

    try:
        planes = imagecodecs.png_decode(path.read_bytes())
    except Exception as error:  # the codec raises its own error types
        raise ImageReadError(f"{path}: cannot decode 16-bit PNG ({error})") from error
    return planes if planes.ndim == 3 else planes[..., None]


def _orient(planes: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1..8 to ``(H, W, C)`` planes (as ``ImageOps.exif_transpose``)."""
    if orientation == 2:
        return planes[:, ::-1]
    if orientation == 3:
        return planes[::-1, ::-1]
    if orientation == 4:
        return planes[::-1]
    if orientation == 5:
        return planes.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(planes, k=-1)
    if orientation == 7:
        return planes.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(planes, k=1)
    return planes


def _split_planes(planes: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    channels = planes.shape[-1]
    if channels in (1, 3):
        return planes, None
    if channels in (2, 4):
        return planes[..., :-1], planes[..., -1]
    raise ImageReadError(f"{path}: {channels} samples per pixel are not supported")


# ============================================================================ writing
def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, overwrite: bool) -> Path:
    """:func:`clipdenoise.atomic.atomic_write`, reporting a failed write as ``ImageWriteError``.

    Args:
        path: The destination; its parent folders are created.
        write: Writes the whole content to the binary stream it is given.
        overwrite: Replace an existing ``path``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        ImageWriteError: the write failed (the temporary file is removed; ``path`` untouched).
    """
    try:
        return atomic.atomic_write(path, write, overwrite=overwrite)
    except (OSError, ValueError) as error:
        if isinstance(error, OutputExistsError | ImageWriteError):
            raise
        raise ImageWriteError(f"{path}: cannot write ({error})") from error


def to_integer(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """``[0, 1]`` floats → rounded uint8 (8 bit) or uint16 (16 bit), or float32 (32)."""
    if bit_depth == 32:
        return np.clip(pixels, 0.0, 1.0).astype(np.float32)
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    return np.round(np.clip(pixels, 0.0, 1.0) * scale).astype(dtype)


def convert_alpha(alpha: np.ndarray, bit_depth: int) -> np.ndarray:
    """Alpha stored in another bit depth, rescaled exactly (unchanged when the depth matches)."""
    source = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(alpha.dtype, 32)
    if source == bit_depth:
        return alpha
    as_float = alpha.astype(np.float64) / {8: 255.0, 16: 65535.0, 32: 1.0}[source]
    return to_integer(as_float, bit_depth)


def save_image(
    path: str | Path,
    pixels: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    format: str | None = None,
    quality: int | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``(H, W, C)`` float pixels in [0, 1] (C = 1 or 3) as an image file, atomically.

    Args:
        path: Output file; its suffix gives the format unless ``format`` is given.
        pixels: ``(H, W)`` or ``(H, W, C)`` float in [0, 1] (clipped).
        alpha: ``(H, W)`` alpha as stored (uint8/uint16/float); rescaled only if the bit depth
            differs. Dropped with a warning by formats without alpha (JPEG, BMP).
        bit_depth: 8, 16 (PNG, TIFF) or 32 (float TIFF).
        format: ``png``, ``tiff``, ``jpeg``, ``bmp`` or ``webp``.
        quality: JPEG / WebP quality 1-100 (JPEG default 95 with 4:4:4 chroma; WebP is lossless
            unless a quality is given). JPEG always adds compression artefacts.
        icc_profile: ICC profile to embed (PNG, TIFF, JPEG, WebP).
        exif: EXIF block to embed (PNG, JPEG, WebP; TIFF keeps its text tags: make, model,
            date, artist, copyright, software, description).
        dpi: Resolution to record.
        overwrite: Replace an existing file.

    Raises:
        ImageWriteError: the format cannot hold this bit depth, or the write failed.
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    fmt = format or format_of(path)
    if fmt not in FORMAT_BIT_DEPTHS:
        raise ImageWriteError(f"{path}: unknown format {fmt!r}; use {', '.join(FORMAT_SUFFIXES)}")
    if bit_depth not in FORMAT_BIT_DEPTHS[fmt]:
        depths = ", ".join(str(d) for d in FORMAT_BIT_DEPTHS[fmt])
        raise ImageWriteError(f"{path}: {fmt.upper()} stores {depths}-bit samples, not {bit_depth}")
    if quality is not None and not 1 <= quality <= 100:
        raise ImageWriteError(f"quality must be between 1 and 100, got {quality}")
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
        raise ImageWriteError(f"{path}: cannot write pixels of shape {pixels.shape}")
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        warnings.warn(
            f"{path}: {fmt.upper()} cannot store an alpha channel; it was dropped",
            UserWarning,
            stacklevel=2,
        )
        alpha = None
    samples = to_integer(pixels, bit_depth)
    if alpha is not None:
        samples = np.concatenate([samples, convert_alpha(alpha, bit_depth)[..., None]], axis=-1)
    writer = {
        "png": _write_png,
        "tiff": _write_tiff,
        "jpeg": _write_pillow,
        "bmp": _write_pillow,
        "webp": _write_pillow,
    }[fmt]

    def write(handle: BinaryIO) -> None:
        writer(handle, samples, fmt, bit_depth, quality, icc_profile, exif, dpi)

    return atomic_write(path, write, overwrite=overwrite)


def save_like(
    path: str | Path,
    pixels: np.ndarray,
    like: LoadedImage,
    *,
    format: str | None = None,
    bit_depth: int | None = None,
    quality: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``pixels`` keeping ``like``'s alpha, ICC profile, EXIF, resolution and bit depth.

    The bit depth is ``like``'s unless ``bit_depth`` is given; when ``like``'s depth is one the
    format cannot store (JPEG, BMP, WebP) it gets 8 bits, and float TIFF input written as PNG
    gets 16 bits. A ``bit_depth`` asked for explicitly is never changed.

    Raises:
        ImageWriteError: the format cannot store the ``bit_depth`` asked for.
    """
    fmt = format or format_of(path)
    if bit_depth is not None and bit_depth not in FORMAT_BIT_DEPTHS.get(fmt, (bit_depth,)):
        depths = "/".join(str(d) for d in FORMAT_BIT_DEPTHS[fmt])
        raise ImageWriteError(
            f"{path}: {fmt.upper()} stores {depths}-bit samples, not the {bit_depth} bits asked for"
        )
    depth = bit_depth or like.bit_depth
    if depth not in FORMAT_BIT_DEPTHS[fmt]:
        depth = (
            16
            if depth == 32 and fmt == "png"
            else max(d for d in FORMAT_BIT_DEPTHS[fmt] if d <= max(depth, 8))
        )
    return save_image(
        path,
        pixels,
        alpha=like.alpha,
        bit_depth=depth,
        format=fmt,
        quality=quality,
        icc_profile=like.icc_profile,
        exif=like.exif,
        dpi=like.dpi,
        overwrite=overwrite,
    )


def _pillow_image(samples: np.ndarray):
    from PIL import Image

    if samples.shape[-1] == 1:
        return Image.fromarray(np.ascontiguousarray(samples[..., 0]))
    return Image.fromarray(np.ascontiguousarray(samples))


def _write_pillow(handle, samples, fmt, bit_depth, quality, icc, exif, dpi) -> None:
    image = _pillow_image(samples)
    options: dict = {}
    if icc and fmt != "bmp":
        options["icc_profile"] = icc
    if exif and fmt in ("jpeg", "webp"):
        options["exif"] = b"Exif\x00\x00" + exif
    if dpi and fmt != "webp":
        options["dpi"] = dpi
    if fmt == "jpeg":
        options.update(quality=quality or 95, subsampling=0, optimize=True)
    elif fmt == "webp":
        if image.mode in ("L", "LA"):
            image = image.convert("RGBA" if image.mode == "LA" else "RGB")
        # exact: keep the colour under fully transparent pixels (alpha passes through)
        options.update(lossless=quality is None, quality=quality or 100, method=4, exact=True)
    image.save(handle, format=fmt.upper(), **options)


def encode_png16(
    samples: np.ndarray,
    *,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    exif: bytes | None = None,
    compress_level: int = 6,
) -> bytes:
    """Encode 16-bit samples as a PNG file (Pillow cannot write 16-bit colour PNGs).

    The rows are stored unfiltered in one zlib-compressed ``IDAT`` chunk, so the bytes depend
    only on the samples, the metadata and zlib: the same image always gives the same file.

    Args:
        samples: ``(H, W)`` or ``(H, W, C)`` uint16 samples, C = 1 (grey), 2 (grey + alpha),
            3 (RGB) or 4 (RGBA).
        icc_profile: ICC profile to embed (``iCCP`` chunk).
        dpi: Resolution to record (``pHYs`` chunk, in pixels per metre).
        exif: EXIF block to embed (``eXIf`` chunk, without the ``Exif\0\0`` prefix).
        compress_level: zlib level, 0 (none, fastest) to 9 (smallest).

    Returns:
        The PNG file's bytes.

    Raises:
        ImageWriteError: the samples are not ``(H, W[, 1..4])``.
    """
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[..., None]
    if samples.ndim != 3 or samples.shape[2] not in _PNG_COLOUR_TYPES or 0 in samples.shape:
        raise ImageWriteError(f"cannot write samples of shape {samples.shape} as a PNG")
    height, width, channels = samples.shape
    big_endian = samples.astype(">u2").reshape(height, width * channels).view(np.uint8)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), big_endian], axis=1)  # filter 0
    header = struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", header)]
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    if dpi:
        per_metre = [round(v / 0.0254) for v in dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif))
    chunks.append(_png_chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)))
    chunks.append(_png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _write_png(handle, samples, fmt, bit_depth, quality, icc, exif, dpi) -> None:
    if bit_depth == 8:
        options: dict = {"compress_level": 6}
        if icc:
            options["icc_profile"] = icc
        if exif:
            options["exif"] = b"Exif\x00\x00" + exif
        if dpi:
            options["dpi"] = dpi
        _pillow_image(samples).save(handle, format="PNG", **options)
        return
    handle.write(encode_png16(samples, icc_profile=icc, dpi=dpi, exif=exif))


def _write_tiff(handle, samples, fmt, bit_depth, quality, icc, exif, dpi) -> None:
    import tifffile

    extratags = []
    if icc:
        extratags.append((_TIFF_ICC_TAG, "B", len(icc), icc, True))
    text_tags = _exif_text_tags(exif) if exif else {}
    for tag, text in text_tags.items():
        if tag not in (270, 305):  # tifffile writes these two itself, from its arguments
            extratags.append((tag, "s", 0, text, True))
    channels = samples.shape[-1]
    photometric = "rgb" if channels >= 3 else "minisblack"
    data = samples[..., 0] if channels == 1 else samples
    options: dict = {}
    if channels in (2, 4):
        options["extrasamples"] = ("unassalpha",)
    if dpi:
        options.update(resolution=(float(dpi[0]), float(dpi[1])), resolutionunit="INCH")
    description = text_tags.get(270)
    buffer = io.BytesIO()  # tifffile wants a named file or a seekable buffer
    tifffile.imwrite(
        buffer,
        data,
        photometric=photometric,
        planarconfig="contig",
        compression="zlib",
        extratags=extratags,
        description=description,
        software=text_tags.get(305),  # None: tifffile's default
        metadata=None,
        **options,
    )
    handle.write(buffer.getbuffer())


def _exif_text_tags(exif: bytes) -> dict[int, str]:
    from PIL import Image

    parsed = Image.Exif()
    parsed.load(b"Exif\x00\x00" + exif)
    return {
        tag: str(parsed[tag]).strip("\x00")
        for tag in _TIFF_TEXT_TAGS
        if tag in parsed and str(parsed[tag]).isascii()
    }


__all__ = [
    "FORMAT_BIT_DEPTHS",
    "FORMAT_SUFFIXES",
    "IMAGE_SUFFIXES",
    "JpegArtefactWarning",
    "LoadedImage",
    "PNG_SIGNATURE",
    "atomic_write",
    "convert_alpha",
    "encode_png16",
    "ImageHeader",
    "format_of",
    "load_image",
    "read_image_header",
    "read_image",
    "save_image",
    "save_like",
    "to_integer",
]
