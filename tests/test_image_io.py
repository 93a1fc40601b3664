"""Tests of image reading/writing: bit depth, alpha, orientation, ICC/EXIF, errors, atomicity."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from clipdenoise.errors import ImageReadError, ImageWriteError, OutputExistsError
from clipdenoise.image_io import (
    PNG_SIGNATURE,
    LoadedImage,
    encode_png16,
    load_image,
    read_image,
    save_image,
    save_like,
)


@pytest.fixture(scope="module")
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"
    exif[0x0110] = "TestCam"
    exif[0x0112] = orientation
    data = exif.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def _levels(rng, shape, dtype):
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_rgb_alpha_round_trip_is_exact(tmp_path, rng, icc, suffix):
    samples = _levels(rng, (21, 33, 3), np.uint16)
    alpha = _levels(rng, (21, 33), np.uint16)
    path = save_image(
        tmp_path / f"x{suffix}",
        samples / 65535.0,
        alpha=alpha,
        bit_depth=16,
        icc_profile=icc,
        exif=_exif(),
        dpi=(300, 300),
    )
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.pixels.dtype == np.float32
    assert np.array_equal(np.round(loaded.pixels * 65535).astype(np.uint16), samples)
    assert loaded.alpha.dtype == np.uint16 and np.array_equal(loaded.alpha, alpha)
    assert loaded.icc_profile == icc
    assert b"TestMaker" in loaded.exif and loaded.dpi == (300.0, 300.0)


def test_16bit_png_is_really_16bit(tmp_path, rng):
    samples = _levels(rng, (8, 9, 3), np.uint16)
    path = save_image(tmp_path / "x.png", samples / 65535.0, bit_depth=16)
    data = path.read_bytes()
    assert data[24] == 16 and data[25] == 2  # IHDR bit depth 16, colour type RGB
    import imagecodecs

    assert np.array_equal(imagecodecs.png_decode(data), samples)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encode_png16_round_trips_every_colour_type(tmp_path, rng, icc, channels):
    samples = _levels(rng, (7, 11, channels), np.uint16)
    data = encode_png16(samples, icc_profile=icc, dpi=(300.0, 300.0), exif=_exif())
    assert data.startswith(PNG_SIGNATURE) and data[24] == 16
    assert data[25] == {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    assert encode_png16(samples, icc_profile=icc, dpi=(300.0, 300.0), exif=_exif()) == data
    path = tmp_path / "x.png"
    path.write_bytes(data)
    loaded = load_image(path)
    colour = 1 if channels <= 2 else 3
    assert loaded.bit_depth == 16 and loaded.icc_profile == icc
    np.testing.assert_array_equal(np.round(loaded.pixels * 65535), samples[..., :colour])
    if channels in (2, 4):
        np.testing.assert_array_equal(loaded.alpha, samples[..., -1])
    assert b"TestCam" in loaded.exif
    assert Image.open(path).info["dpi"] == pytest.approx((300.0, 300.0), abs=0.01)


def test_encode_png16_grey_plane_and_bad_shapes(rng):
    plane = _levels(rng, (5, 6), np.uint16)
    assert encode_png16(plane) == encode_png16(plane[..., None])
    assert len(encode_png16(plane, compress_level=0)) > len(encode_png16(plane * 0))
    for shape in [(5, 6, 5), (5,), (0, 6, 3)]:
        with pytest.raises(ImageWriteError, match="cannot write samples of shape"):
            encode_png16(np.zeros(shape, np.uint16))


def test_grey_16bit_png_and_tiff(tmp_path, rng):
    samples = _levels(rng, (20, 30), np.uint16)
    Image.fromarray(samples).save(tmp_path / "g.png")
    tifffile.imwrite(tmp_path / "g.tif", samples)
    for name in ("g.png", "g.tif"):
        loaded = load_image(tmp_path / name)
        assert loaded.bit_depth == 16 and loaded.pixels.shape == (20, 30, 1)
        assert np.array_equal(np.round(loaded.pixels[..., 0] * 65535).astype(np.uint16), samples)


def test_float_tiff_round_trip(tmp_path, rng):
    pixels = rng.random((10, 12, 3)).astype(np.float32)
    path = save_image(tmp_path / "f.tif", pixels, bit_depth=32)
    loaded = load_image(path)
    assert loaded.bit_depth == 32 and np.array_equal(loaded.pixels, pixels)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_8bit_alpha_untouched(tmp_path, rng, suffix):
    rgba = _levels(rng, (16, 20, 4), np.uint8)
    rgba[0, 0, 3] = 0  # fully transparent pixel: its colour must survive too (WebP exact)
    path = save_image(tmp_path / f"a{suffix}", rgba[..., :3] / 255.0, alpha=rgba[..., 3])
    loaded = load_image(path)
    assert np.array_equal(loaded.alpha, rgba[..., 3])
    assert np.array_equal(np.round(loaded.pixels * 255).astype(np.uint8), rgba[..., :3])


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_icc_and_exif_preserved_through_save_like(tmp_path, rng, icc, suffix):
    source = tmp_path / f"src{suffix}"
    pixels = rng.random((16, 24, 3)).astype(np.float32)
    save_image(source, pixels, icc_profile=icc, exif=_exif())
    loaded = load_image(source)
    out = save_like(tmp_path / f"out{suffix}", loaded.pixels, loaded)
    again = load_image(out)
    assert again.icc_profile == icc
    assert b"TestMaker" in again.exif and b"TestCam" in again.exif


def test_exif_orientation_is_applied_and_reset(tmp_path, rng):
    upright = _levels(rng, (10, 16, 3), np.uint8)
    # Stored rotated: orientation 6 means "rotate 90° clockwise to display".
    stored = np.rot90(upright, k=1)
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "o.png", exif=_exif(6))
    loaded = load_image(tmp_path / "o.png")
    assert np.array_equal(np.round(loaded.pixels * 255).astype(np.uint8), upright)
    exif = Image.Exif()
    exif.load(b"Exif\x00\x00" + loaded.exif)
    assert exif[0x0112] == 1
    # Pillow agrees with our orientation handling.
    from PIL import ImageOps

    with Image.open(tmp_path / "o.png") as image:
        assert np.array_equal(np.asarray(ImageOps.exif_transpose(image)), upright)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "1", "CMYK", "RGBA"])
def test_modes(tmp_path, rng, mode):
    base = Image.fromarray(_levels(rng, (12, 14, 3), np.uint8))
    image = base.convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"m{suffix}")
    loaded = load_image(tmp_path / f"m{suffix}")
    channels = 1 if mode in ("L", "LA", "1") else 3
    assert loaded.pixels.shape == (12, 14, channels)
    assert (loaded.alpha is not None) == (mode in ("LA", "RGBA"))
    assert loaded.pixels.min() >= 0.0 and loaded.pixels.max() <= 1.0


def test_read_image_compat(tmp_path, rng):
    rgba = _levels(rng, (6, 7, 4), np.uint8)
    Image.fromarray(rgba).save(tmp_path / "c.png")
    pixels = read_image(tmp_path / "c.png")
    assert pixels.shape == (6, 7, 3) and pixels.dtype == np.float32
    assert np.allclose(pixels, rgba[..., :3] / 255.0)


def test_read_errors_name_the_file(tmp_path, rng):
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png: file is empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageReadError, match="text.png: not a readable image"):
        load_image(tmp_path / "text.png")
    Image.fromarray(_levels(rng, (64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:300])
    with pytest.raises(ImageReadError, match="cut.png: cannot decode image"):
        load_image(tmp_path / "cut.png")
    tifffile.imwrite(
        tmp_path / "pages.tif",
        _levels(rng, (2, 8, 8), np.uint8),
        photometric="minisblack",
        metadata=None,
    )
    with pytest.raises(ImageReadError, match="pages.tif: has 2 pages"):
        load_image(tmp_path / "pages.tif")
    Image.fromarray(_levels(rng, (4, 4), np.uint8).astype(np.int32)).save(tmp_path / "i32.tif")
    with pytest.raises(ImageReadError, match="i32.tif"):
        load_image(tmp_path / "i32.tif")


def test_atomic_write_never_overwrites_by_default(tmp_path, rng):
    pixels = rng.random((8, 8, 3)).astype(np.float32)
    path = save_image(tmp_path / "o.png", pixels)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="exists already"):
        save_image(path, 1 - pixels)
    assert path.read_bytes() == before
    save_image(path, 1 - pixels, overwrite=True)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]  # no temporary files left


def test_format_limits(tmp_path, rng):
    pixels = rng.random((8, 8, 3)).astype(np.float32)
    with pytest.raises(ImageWriteError, match="JPEG stores 8-bit"):
        save_image(tmp_path / "x.jpg", pixels, bit_depth=16)
    with pytest.raises(ImageWriteError, match="unsupported image suffix"):
        save_image(tmp_path / "x.gif", pixels)
    like = LoadedImage(pixels=pixels, alpha=np.full((8, 8), 65535, np.uint16), bit_depth=16)
    with pytest.warns(UserWarning, match="cannot store an alpha"):
        out = save_like(tmp_path / "x.jpg", pixels, like, quality=90)
    assert load_image(out).bit_depth == 8
    out = save_like(tmp_path / "y.png", pixels, like, bit_depth=8)
    assert np.array_equal(load_image(out).alpha, np.full((8, 8), 255, np.uint8))


# ---------------------------------------------------------------------------- careless input
def test_tiff_software_tag_is_kept_without_warnings(tmp_path, caplog):
    source = tmp_path / "scan.tif"
    tifffile.imwrite(
        source,
        np.zeros((16, 16, 3), np.uint8),
        photometric="rgb",
        software="MyScanner 2.1",
        extratags=[(271, "s", 0, "Canon", True)],
        metadata=None,
    )
    loaded = load_image(source)
    with caplog.at_level("WARNING"):
        save_like(tmp_path / "out.tif", loaded.pixels, loaded)
    assert "extratag" not in caplog.text
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        tags = {tag.code: tag.value for tag in tif.pages[0].tags.values()}
    assert tags[305] == "MyScanner 2.1"
    assert tags[271] == "Canon"


def _png_header_only(path, width, height):
    """A PNG whose IHDR claims ``width``×``height`` over a few bytes of (invalid) data."""
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def test_header_is_read_without_decoding(tmp_path):
    from clipdenoise.image_io import read_image_header

    path = _png_header_only(tmp_path / "huge.png", 16000, 10000)
    header = read_image_header(path)
    assert (header.width, header.height, header.channels) == (16000, 10000, 1)
    with pytest.raises(ImageReadError, match=r"huge\.png: the image is 16000x10000 \(160\.0 mega"):
        load_image(path, max_pixels=50_000_000)
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((7, 9, 3), np.uint16), photometric="rgb")
    header = read_image_header(tmp_path / "rgb.tif")
    assert (header.width, header.height, header.channels) == (9, 7, 3)
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image_header(tmp_path)


def test_error_messages_hold_no_object_reprs(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 9)
    with pytest.raises(ImageReadError) as raised:
        load_image(path)
    assert " at 0x" not in str(raised.value)
    assert str(raised.value).startswith(f"{path}: ")


def test_explicit_bit_depth_a_format_cannot_store_is_refused(tmp_path):
    like = LoadedImage(pixels=np.zeros((8, 8, 3), np.float32), bit_depth=16, format="png")
    with pytest.raises(ImageWriteError, match=r"out\.jpg: JPEG stores 8-bit samples, not the 16"):
        save_like(tmp_path / "out.jpg", like.pixels, like, bit_depth=16)
    save_like(tmp_path / "out.jpg", like.pixels, like)  # the input's depth adapts silently
    assert Image.open(tmp_path / "out.jpg").mode == "RGB"
