"""Uploaded images: format sniffing, decoding limits (size, bombs, truncation), bit depths,
and results written back in the upload's format."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

from _web_helpers import image_bytes, png_bytes, smooth_uint8, submit, wait_done  # noqa: E402
from clipdenoise.web.upload import (  # noqa: E402
    UploadRejectedError,
    decode_image,
    encode_like,
    sniff_format,
)


@pytest.mark.parametrize(
    ("fmt", "mode", "media_type"),
    [("JPEG", "RGB", "image/jpeg"), ("WEBP", "RGB", "image/webp"), ("PNG", "RGBA", "image/png")],
)
def test_download_keeps_format_and_alpha(client, fmt, mode, media_type):
    pixels = smooth_uint8(40, 56)
    if mode == "RGBA":
        alpha = np.tile(np.linspace(0, 255, 56, dtype=np.uint8), (40, 1))[..., None]
        pixels = np.concatenate([pixels, alpha], axis=-1)
    upload = image_bytes(pixels, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    job = wait_done(client, submit(client, upload, filename="in.bin").json()["id"])
    assert job["state"] == "done", job
    download = client.get(f"/api/jobs/{job['id']}/files/restored")
    assert download.headers["content-type"] == media_type
    with Image.open(io.BytesIO(download.content)) as image:
        assert image.format == fmt and image.mode == mode and image.size == (56, 40)
        if mode == "RGBA":
            np.testing.assert_array_equal(np.asarray(image)[..., 3], pixels[..., 3])


def test_16_bit_rgb_tiff_round_trip(client):
    tifffile = pytest.importorskip("tifffile")
    pixels = (np.random.default_rng(0).random((40, 48, 3)) * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, photometric="rgb")
    job = wait_done(client, submit(client, buffer.getvalue(), filename="scan.tif").json()["id"])
    assert job["state"] == "done", job
    assert job["result"]["format"] == "TIFF" and job["result"]["bit_depth"] == 16
    restored = tifffile.imread(
        io.BytesIO(client.get(f"/api/jobs/{job['id']}/files/restored").content)
    )
    assert restored.dtype == np.uint16 and restored.shape == (40, 48, 3)


def test_non_image_rejected_whatever_its_name(client):
    for name, content in (("photo.png", b"just some text, not an image"), ("x.jpg", b"%PDF-1.7\n")):
        response = submit(client, content, filename=name)
        assert response.status_code == 415
        assert "not a supported image" in response.json()["error"]
    response = submit(client, b"", filename="empty.png")
    assert response.status_code == 400 and "empty" in response.json()["error"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_rejected(client, fmt):
    complete = image_bytes(smooth_uint8(64, 64), fmt)
    response = submit(client, complete[: len(complete) // 2])
    assert response.status_code == 400
    assert "truncated or corrupt" in response.json()["error"]
    assert "Traceback" not in response.text


def _png_bomb(side: int) -> bytes:
    """A valid 1-bit PNG of side × side black pixels: ~side²/8 bytes compressed far smaller."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    row = bytes(1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    stream = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_rejected_before_decoding(client):
    bomb = _png_bomb(20_000)  # 400 megapixels in a small file
    assert len(bomb) < 200_000
    started = time.perf_counter()
    response = submit(client, bomb, filename="innocent.png")
    assert response.status_code == 413
    message = response.json()["error"]
    assert "20000×20000" in message and "decompression bomb" in message
    assert time.perf_counter() - started < 5.0


def test_bomb_headers_of_other_formats_rejected():
    huge_16bit_rgb_png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR"
    huge_16bit_rgb_png += struct.pack(">IIBBBBB", 50_000, 50_000, 16, 2, 0, 0, 0) + b"\0" * 4
    with pytest.raises(UploadRejectedError, match="50000×50000") as caught:
        decode_image(huge_16bit_rgb_png, max_pixels=1_000_000)
    assert caught.value.status_code == 413


def test_sniffing():
    assert sniff_format(png_bytes(smooth_uint8(8, 8))) == "PNG"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "JPEG")) == "JPEG"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "WEBP")) == "WEBP"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "TIFF")) == "TIFF"
    assert sniff_format(image_bytes(smooth_uint8(8, 8), "BMP")) is None
    assert sniff_format(b"GIF89a") is None


def _paeth_filtered_png16(samples: np.ndarray) -> bytes:
    """A 16-bit RGB PNG whose rows use the Sub, Up, Average and Paeth filters in turn."""
    height, width, channels = samples.shape
    raw = samples.astype(">u2").reshape(height, -1).view(np.uint8).astype(np.int32)
    bpp = 2 * channels
    rows = []
    for y in range(height):
        line = raw[y]
        above = raw[y - 1] if y else np.zeros_like(line)
        left = np.concatenate([np.zeros(bpp, np.int32), line[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, np.int32), above[:-bpp]])
        kind = 1 + y % 4
        if kind == 1:
            predictor = left
        elif kind == 2:
            predictor = above
        elif kind == 3:
            predictor = (left + above) // 2
        else:
            p = left + above - upper_left
            pa, pb, pc = np.abs(p - left), np.abs(p - above), np.abs(p - upper_left)
            predictor = np.where(
                (pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upper_left)
            )
        rows.append(bytes([kind]) + ((line - predictor) & 0xFF).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    idat = zlib.compress(b"".join(rows))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_16_bit_rgb_png_decoded_exactly_and_written_back():
    samples = (np.random.default_rng(3).random((21, 17, 3)) * 65535).astype(np.uint16)
    decoded = decode_image(_paeth_filtered_png16(samples), max_pixels=10_000)
    assert decoded.sample_dtype == "uint16" and decoded.format == "PNG"
    np.testing.assert_array_equal(np.round(decoded.pixels * 65535).astype(np.uint16), samples)
    again = decode_image(encode_like(decoded.pixels, decoded), max_pixels=10_000)
    np.testing.assert_array_equal(again.pixels, decoded.pixels)
    complete = _paeth_filtered_png16(samples)
    with pytest.raises(UploadRejectedError, match="truncated"):
        decode_image(complete[: len(complete) - 40], max_pixels=10_000)


def test_cmyk_jpeg_becomes_rgb_without_its_cmyk_profile():
    cmyk = Image.fromarray(smooth_uint8(16, 16)).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", icc_profile=b"fake-cmyk-profile")
    decoded = decode_image(buffer.getvalue(), max_pixels=1000)
    assert decoded.channels == 3 and decoded.icc_profile is None
    with Image.open(io.BytesIO(encode_like(decoded.pixels, decoded))) as image:
        assert image.mode == "RGB" and image.format == "JPEG"


def test_tiny_garbage_upload_message_has_no_object_repr(client):
    response = submit(client, b"\x89PNG\r\n\x1a\n\x00", filename="nine.png")
    assert response.status_code == 400
    message = response.json()["error"]
    assert "could not be decoded" in message and " at 0x" not in message and "<" not in message
