"""Safe decoding of uploaded images and encoding of results for the web demo.

Uploads are untrusted bytes. The format is sniffed from the content (magic numbers), never taken
from the file name or the declared content type; only PNG, JPEG, TIFF and WebP are accepted, and
each is opened with its own decoder only. The pixel count is checked from the header *before* any
pixel data is decompressed, so a small file that expands to gigabytes (a decompression bomb) is
refused cheaply. Truncated or corrupt files are refused with a message, never a stack trace.

Decoded images are ``(H, W, C)`` float32 in [0, 1] (C = 1 grey, 3 colour) plus the facts needed to
write the result back in the same format and bit depth (alpha, ICC profile, sample type).
Nothing here touches the file system.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from clipdenoise.errors import ClipDenoiseError, one_line
from clipdenoise.image_io import PNG_SIGNATURE, encode_png16

SUPPORTED_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")
MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
}
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp"}
SAMPLE_MAXIMA = {"uint8": 255.0, "uint16": 65535.0}
JPEG_QUALITY = 95

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class UploadRejectedError(ClipDenoiseError, ValueError):
    """An upload was refused; ``status_code`` is the HTTP status to answer with.

    The message is meant for the visitor: it says what is wrong and, where possible, what to do.
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class DecodedImage:
    """An uploaded image, decoded.

    Attributes:
        pixels: ``(H, W, C)`` float32 in [0, 1], C = 1 (grey) or 3 (RGB).
        alpha: ``(H, W)`` float32 in [0, 1], or ``None``; passed through to the output untouched.
        format: One of :data:`SUPPORTED_FORMATS`, sniffed from the content.
        sample_dtype: ``"uint8"``, ``"uint16"`` or ``"float32"`` (float TIFF): what the output
            is written as.
        icc_profile: The embedded colour profile, copied to the output where the format allows.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    format: str
    sample_dtype: str
    icc_profile: bytes | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def bit_depth(self) -> int:
        return {"uint8": 8, "uint16": 16, "float32": 32}[self.sample_dtype]

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.format]


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` from its first bytes, or ``None`` if not supported."""
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] in _TIFF_MAGICS:
        return "TIFF"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode untrusted image bytes.

    Args:
        data: The uploaded file's content.
        max_pixels: Largest ``width * height`` accepted.

    Returns:
        The decoded image (EXIF orientation applied).

    Raises:
        UploadRejectedError: empty, not a supported image (content sniffed), too many pixels
            (HTTP 413), truncated or corrupt.
    """
    if not data:
        raise UploadRejectedError("the uploaded file is empty")
    image_format = sniff_format(data)
    if image_format is None:
        raise UploadRejectedError(
            "this file is not a supported image: PNG, JPEG, TIFF or WebP are accepted "
            "(the file's content was checked, not its name)",
            status_code=415,
        )
    if image_format == "TIFF":
        decoded = _decode_tiff(data, max_pixels)
        if decoded is not None:
            return decoded
    if image_format == "PNG" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        check_pixel_count(width, height, max_pixels)
    if image_format == "PNG" and _png_is_16bit_colour(data):
        return _decode_png16_colour(data, max_pixels)
    return _decode_with_pillow(data, image_format, max_pixels)


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    """Refuse images over ``max_pixels`` (HTTP 413), before their pixels are decompressed."""
    if width <= 0 or height <= 0:
        raise UploadRejectedError(f"the image header gives an invalid size {width}×{height}")
    if width * height > max_pixels:
        megapixels = width * height / 1e6
        raise UploadRejectedError(
            f"the image is {width}×{height} ({megapixels:.1f} megapixels), over this server's "
            f"limit of {max_pixels / 1e6:.1f} megapixels; scale it down or crop it "
            "(very large images in small files are refused as possible decompression bombs)",
            status_code=413,
        )


def _corrupt(error: BaseException) -> UploadRejectedError:
    detail = one_line(error, 160)
    return UploadRejectedError(
        f"the image could not be decoded; it may be truncated or corrupt ({detail})"
    )


def _decode_with_pillow(data: bytes, image_format: str, max_pixels: int) -> DecodedImage:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            check_pixel_count(image.width, image.height, max_pixels)
            image.load()
            icc_profile = image.info.get("icc_profile")
            oriented = ImageOps.exif_transpose(image)
            return _from_pillow(oriented, image_format, icc_profile)
    except UploadRejectedError:
        raise
    except Image.DecompressionBombError as error:
        raise UploadRejectedError(
            f"the image has too many pixels and was refused as a possible decompression bomb ({error})",
            status_code=413,
        ) from error
    except Exception as error:  # any decoder failure is the file's fault, reported as such
        raise _corrupt(error) from error


def _from_pillow(image, image_format: str, icc_profile: bytes | None) -> DecodedImage:
    mode = image.mode
    alpha = None
    if mode in ("CMYK", "LAB", "HSV"):
        icc_profile = None  # converted to RGB below: the source's profile no longer applies
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.float32) / 65535.0
        return DecodedImage(grey[..., None], None, image_format, "uint16", icc_profile)
    if mode == "F":
        grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        return DecodedImage(grey[..., None], None, image_format, "float32", icc_profile)
    if mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
        image = image.convert(mode)
    elif mode == "PA":
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("L", "1", "LA"):
        if mode == "LA":
            alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        return DecodedImage(grey[..., None], alpha, image_format, "uint8", icc_profile)
    if mode == "RGBA":
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return DecodedImage(rgb, alpha, image_format, "uint8", icc_profile)


def _decode_tiff(data: bytes, max_pixels: int) -> DecodedImage | None:
    """TIFF through tifffile (keeps 16-bit colour); ``None`` hands over to Pillow (e.g. LZW)."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages.first
            check_pixel_count(int(page.imagewidth), int(page.imagelength), max_pixels)
            if page.compression not in (1, 8, 32946) or page.photometric not in (1, 2):
                return None  # codecs/colour models tifffile needs extras for: Pillow knows them
            samples = page.asarray()
            is_planar = page.planarconfig == 2 and samples.ndim == 3
            icc_profile = page.tags.valueof(34675)
    except UploadRejectedError:
        raise
    except Exception as error:
        raise _corrupt(error) from error
    if is_planar:
        samples = np.moveaxis(samples, 0, -1)
    return _from_samples(samples, "TIFF", icc_profile)


def _from_samples(samples: np.ndarray, image_format: str, icc_profile) -> DecodedImage:
    if samples.dtype == np.uint8:
        sample_dtype, scaled = "uint8", samples.astype(np.float32) / 255.0
    elif samples.dtype == np.uint16:
        sample_dtype, scaled = "uint16", samples.astype(np.float32) / 65535.0
    elif samples.dtype in (np.float32, np.float64):
        sample_dtype, scaled = "float32", np.clip(samples.astype(np.float32), 0.0, 1.0)
    else:
        raise UploadRejectedError(
            f"unsupported sample type {samples.dtype} (8- or 16-bit integers or 32-bit floats are accepted)"
        )
    if scaled.ndim == 2:
        scaled = scaled[..., None]
    if scaled.ndim != 3 or scaled.shape[2] not in (1, 2, 3, 4):
        raise UploadRejectedError(
            f"unsupported image layout {samples.shape} (grey or RGB expected)"
        )
    colour_channels = 1 if scaled.shape[2] in (1, 2) else 3
    alpha = scaled[..., colour_channels] if scaled.shape[2] in (2, 4) else None
    pixels = np.ascontiguousarray(scaled[..., :colour_channels])
    profile = bytes(icc_profile) if icc_profile is not None else None
    return DecodedImage(pixels, alpha, image_format, sample_dtype, profile)


# --- 16-bit colour PNG (Pillow reduces it to 8 bits) --------------------------------------------


def _png_chunks(data: bytes):
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if len(body) < length:
            raise UploadRejectedError("the PNG file is truncated")
        yield kind, body
        position += 12 + length


def _png_is_16bit_colour(data: bytes) -> bool:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return False
    bit_depth, colour_type = data[24], data[25]
    return bit_depth == 16 and colour_type in (2, 6)


def _decode_png16_colour(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode a 16-bit RGB / RGBA PNG (non-interlaced) without losing precision."""
    width, height, _, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    check_pixel_count(width, height, max_pixels)
    if interlace:
        return _decode_with_pillow(data, "PNG", max_pixels)  # rare; Pillow reads it at 8 bits
    channels = 4 if colour_type == 6 else 3
    compressed, icc_profile = [], None
    for kind, body in _png_chunks(data):
        if kind == b"IDAT":
            compressed.append(body)
        elif kind == b"iCCP":
            _, _, profile = body.partition(b"\x00")
            icc_profile = _bounded_inflate(profile[1:], 1 << 24)
        elif kind == b"IEND":
            break
    pixels = np.zeros((height, width, channels), np.uint16)
    # Pillow's C decoder undoes the row filters correctly for 16-bit colour but keeps only one
    # byte per sample; reading the stream once as big- and once as little-endian yields the high
    # and the low bytes, hence every 16-bit value, at C speed.
    stream = b"".join(compressed)
    mode = "RGBA" if channels == 4 else "RGB"
    for rawmode, shift in ((f"{mode};16B", 8), (f"{mode};16L", 0)):
        byte_plane = _pillow_unfilter(stream, mode, rawmode, (width, height))
        pixels |= byte_plane.astype(np.uint16) << shift
    return _from_samples(pixels, "PNG", icc_profile)


def _pillow_unfilter(stream: bytes, mode: str, rawmode: str, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    try:
        image = Image.frombytes(mode, size, stream, "zip", rawmode)
    except Exception as error:
        raise _corrupt(error) from error
    return np.asarray(image, dtype=np.uint8)


def _bounded_inflate(compressed: bytes, limit: int) -> bytes:
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, limit)
    except zlib.error as error:
        raise _corrupt(error) from error
    if inflater.unconsumed_tail:
        raise UploadRejectedError("the compressed data is larger than allowed")
    return raw


# --- encoding ------------------------------------------------------------------------------------


def quantize(pixels: np.ndarray, sample_dtype: str) -> np.ndarray:
    """Round [0, 1] floats to ``sample_dtype`` (values outside [0, 1] are clipped)."""
    clipped = np.clip(pixels, 0.0, 1.0)
    if sample_dtype == "float32":
        return clipped.astype(np.float32)
    maximum = SAMPLE_MAXIMA[sample_dtype]
    return np.round(clipped * maximum).astype(sample_dtype)


def snap_to_sample_grid(pixels: np.ndarray, sample_dtype: str) -> np.ndarray:
    """``pixels`` rounded to the values a ``sample_dtype`` file can hold, as float32 in [0, 1]."""
    if sample_dtype == "float32":
        return np.clip(pixels, 0.0, 1.0).astype(np.float32)
    return quantize(pixels, sample_dtype).astype(np.float32) / SAMPLE_MAXIMA[sample_dtype]


def encode_like(pixels: np.ndarray, source: DecodedImage) -> bytes:
    """Encode ``(H, W, C)`` floats in [0, 1] in the format and bit depth of ``source``.

    The alpha channel and ICC profile of ``source`` are carried over. JPEG is written at quality
    95 with 4:4:4 chroma; WebP losslessly.
    """
    samples = quantize(pixels, source.sample_dtype)
    if source.alpha is not None:
        alpha = quantize(source.alpha, source.sample_dtype)[..., None]
        if source.format in ("PNG", "TIFF", "WEBP"):
            samples = np.concatenate([samples, alpha], axis=-1)
    if source.format == "TIFF":
        return _encode_tiff(samples, source.icc_profile)
    if source.sample_dtype == "uint16":
        return encode_png16(samples, icc_profile=source.icc_profile)
    return _encode_with_pillow(samples, source)


def _encode_tiff(samples: np.ndarray, icc_profile: bytes | None) -> bytes:
    import tifffile

    channels = samples.shape[2]
    photometric = "minisblack" if channels in (1, 2) else "rgb"
    extras = {"extrasamples": [2]} if channels in (2, 4) else {}
    extratags = [(34675, 7, len(icc_profile), icc_profile, True)] if icc_profile else []
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        samples[..., 0] if channels == 1 else samples,
        photometric=photometric,
        compression="zlib",
        extratags=extratags,
        **extras,
    )
    return buffer.getvalue()


def _encode_with_pillow(samples: np.ndarray, source: DecodedImage) -> bytes:
    from PIL import Image

    channels = samples.shape[2]
    image = Image.fromarray(samples[..., 0] if channels == 1 else samples)  # L, LA, RGB, RGBA
    options: dict = {}
    if source.icc_profile:
        options["icc_profile"] = source.icc_profile
    if source.format == "JPEG":
        options.update(quality=JPEG_QUALITY, subsampling=0)
    elif source.format == "WEBP":
        options.update(lossless=True)
    elif source.format == "PNG":
        options.update(compress_level=6)
    buffer = io.BytesIO()
    image.save(buffer, format=source.format, **options)
    return buffer.getvalue()


def encode_preview(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of ``(H, W, C)`` floats in [0, 1] for the browser to display."""
    from PIL import Image

    samples = quantize(pixels, "uint8")
    if samples.shape[2] == 1:
        samples = np.repeat(samples, 3, axis=2)
    buffer = io.BytesIO()
    Image.fromarray(samples).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
