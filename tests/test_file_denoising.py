"""Denoising files (:mod:`clipdenoise.file_denoising`, driven as ``clipdenoise denoise`` uses it):
outputs and formats, bad files, overwriting, channels, CT DICOM / .npy round trips, synthetic
noise, metrics, careless input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms

from clipdenoise.checkpoints import load_model, save_checkpoint
from clipdenoise.file_denoising import DenoiseFilesOptions, denoise_files, plan_jobs
from clipdenoise.image_io import load_image, save_image
from clipdenoise.inference import Denoiser
from clipdenoise.model import CLIPDenoiser, tiny_config
from conftest import random_rgb8, run_denoise, save_png

# ----------------------------------------------------------------- Python API


def test_python_api_plans_denoises_and_reports(tmp_path, rng, tiny_checkpoints):
    """What the module docstring shows: plan the jobs, denoise them, read the report."""
    save_png(tmp_path / "in" / "a.png", random_rgb8(rng))
    save_png(tmp_path / "in" / "sub" / "b.png", random_rgb8(rng))
    jobs, missing = plan_jobs(
        [tmp_path / "in", tmp_path / "gone.png"], tmp_path / "out", recursive=True
    )
    assert [job.relative for job in jobs] == [Path("a.png"), Path("sub/b.png")]
    assert [job.output for job in jobs] == [
        tmp_path / "out" / "a.png",
        tmp_path / "out" / "sub" / "b.png",
    ]
    denoiser = Denoiser(load_model(tiny_checkpoints["rgb"]), device="cpu", dtype="float32")
    report = denoise_files(denoiser, jobs, DenoiseFilesOptions(), failures=missing)
    assert [result.ok for result in report.results] == [False, True, True]
    assert "file not found" in report.failures[0].error
    assert report.summary().startswith("denoised 2 of 3 file(s)")
    assert load_image(tmp_path / "out" / "sub" / "b.png").pixels.shape == (40, 48, 3)


# -------------------------------------------------------------------- batches


def test_bad_files_are_reported_and_the_batch_goes_on(tmp_path, rng, tiny_checkpoints, capsys):
    inputs = tmp_path / "in"
    save_png(inputs / "good1.png", random_rgb8(rng))
    save_png(inputs / "sub" / "good2.png", random_rgb8(rng))
    (inputs / "empty.png").write_bytes(b"")
    (inputs / "truncated.png").write_bytes((inputs / "good1.png").read_bytes()[:150])
    (inputs / "notimage.jpg").write_text("hello")
    save_png(inputs / "tiny.png", random_rgb8(rng, 5, 40))
    Image.new("I", (20, 20)).save(inputs / "int32.tif")  # 32-bit integer samples
    code = run_denoise(
        inputs, "-r", "-o", tmp_path / "out", "--weights", tiny_checkpoints["rgb"], "--no-progress"
    )
    err = capsys.readouterr().err
    assert code == 1
    assert (tmp_path / "out" / "good1.png").is_file()
    assert (tmp_path / "out" / "sub" / "good2.png").is_file()  # the tree is mirrored
    assert "denoised 2 of 7 file(s)" in err
    assert "5 file(s) failed:" in err
    for name, reason in [
        ("empty.png", "file is empty"),
        ("truncated.png", "truncated"),
        ("notimage.jpg", "not a readable image"),
        ("tiny.png", "at least 8x8"),
        ("int32.tif", "unsupported TIFF sample type int32"),
    ]:
        assert re.search(rf"{name}: .*{reason}", err), (name, err)
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*"))


def test_refuses_to_overwrite_outputs_and_inputs(tmp_path, rng, tiny_checkpoints, capsys):
    source = save_png(tmp_path / "a.png", random_rgb8(rng))
    original = source.read_bytes()
    target = tmp_path / "restored.png"
    target.write_bytes(b"keep me")
    assert (
        run_denoise(source, "-o", target, "--weights", tiny_checkpoints["rgb"], "--no-progress")
        == 1
    )
    assert "exists already" in capsys.readouterr().err and target.read_bytes() == b"keep me"
    assert (
        run_denoise(source, "-o", target, "--weights", tiny_checkpoints["rgb"], "--overwrite") == 0
    )
    assert load_image(target).pixels.shape == (40, 48, 3)
    # An input is never overwritten, even with --overwrite.
    assert (
        run_denoise(source, "-o", source, "--weights", tiny_checkpoints["rgb"], "--overwrite") == 1
    )
    assert "would overwrite an input" in capsys.readouterr().err
    assert source.read_bytes() == original


def test_default_output_goes_beside_the_input(tmp_path, rng, tiny_checkpoints):
    source = save_png(tmp_path / "photo.png", random_rgb8(rng))
    assert run_denoise(source, "--weights", tiny_checkpoints["rgb"], "--no-progress") == 0
    assert (tmp_path / "photo_denoised.png").is_file()


def test_batch_size_gives_the_same_results(tmp_path, rng, tiny_checkpoints):
    for i in range(3):
        save_png(tmp_path / "in" / f"{i}.png", random_rgb8(rng))
    assert (
        run_denoise(tmp_path / "in", "-o", tmp_path / "b1", "--weights", tiny_checkpoints["rgb"])
        == 0
    )
    assert (
        run_denoise(
            tmp_path / "in",
            "-o",
            tmp_path / "b3",
            "--weights",
            tiny_checkpoints["rgb"],
            "--batch-size",
            "3",
        )
        == 0
    )
    for i in range(3):
        one = np.asarray(Image.open(tmp_path / "b1" / f"{i}.png"))
        three = np.asarray(Image.open(tmp_path / "b3" / f"{i}.png"))
        assert np.abs(one.astype(int) - three).max() <= 1


# -------------------------------------------------------------------- formats


def test_16bit_alpha_icc_exif_are_kept(tmp_path, rng, tiny_checkpoints):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "CamMaker"
    exif_bytes = exif.tobytes()[6:]
    alpha = rng.integers(0, 65536, (40, 48), dtype=np.uint16)
    for suffix in (".png", ".tif"):
        source = save_image(
            tmp_path / f"in{suffix}",
            rng.random((40, 48, 3)),
            alpha=alpha,
            bit_depth=16,
            icc_profile=icc,
            exif=exif_bytes,
        )
        out = tmp_path / f"out{suffix}"
        assert run_denoise(source, "-o", out, "--weights", tiny_checkpoints["rgb"]) == 0
        restored = load_image(out)
        assert restored.bit_depth == 16 and restored.pixels.shape == (40, 48, 3)
        assert np.array_equal(restored.alpha, alpha)
        assert restored.icc_profile == icc and b"CamMaker" in restored.exif
        values = np.round(restored.pixels * 65535)
        assert len(np.unique(values)) > 1000  # real 16-bit data, not 8-bit scaled up


def test_jpeg_output_quality_and_warning(tmp_path, rng, tiny_checkpoints, capsys):
    source = save_png(tmp_path / "a.png", random_rgb8(rng))
    assert (
        run_denoise(
            source,
            "-o",
            tmp_path / "q90.jpg",
            "--weights",
            tiny_checkpoints["rgb"],
            "--quality",
            "90",
        )
        == 0
    )
    assert "adds block artefacts" in capsys.readouterr().err
    assert (
        run_denoise(
            source,
            "-o",
            tmp_path / "q20.jpg",
            "--weights",
            tiny_checkpoints["rgb"],
            "--quality",
            "20",
        )
        == 0
    )
    assert (tmp_path / "q20.jpg").stat().st_size < (tmp_path / "q90.jpg").stat().st_size
    assert (
        run_denoise(
            source, "-o", tmp_path / "out", "--format", "webp", "--weights", tiny_checkpoints["rgb"]
        )
        == 0
    )
    assert (tmp_path / "out" / "a.webp").is_file()


def test_grey_images_with_rgb_and_grey_models(tmp_path, rng, tiny_checkpoints):
    source = save_png(tmp_path / "g.png", rng.integers(0, 256, (40, 48), dtype=np.uint8))
    assert (
        run_denoise(source, "-o", tmp_path / "rgbmodel.png", "--weights", tiny_checkpoints["rgb"])
        == 0
    )
    assert (
        run_denoise(source, "-o", tmp_path / "greymodel.png", "--weights", tiny_checkpoints["grey"])
        == 0
    )
    for name in ("rgbmodel.png", "greymodel.png"):
        with Image.open(tmp_path / name) as image:
            assert image.mode == "L" and image.size == (48, 40)


def test_channel_mismatch_error_and_conversion(tmp_path, rng, tiny_checkpoints, capsys):
    source = save_png(tmp_path / "c.png", random_rgb8(rng))
    assert run_denoise(source, "-o", tmp_path / "x.png", "--weights", tiny_checkpoints["grey"]) == 1
    assert "--channel-conversion" in capsys.readouterr().err
    code = run_denoise(
        source, "-o", tmp_path / "y.png", "--weights", tiny_checkpoints["grey"],
        "--channel-conversion", "per-channel",
    )  # fmt: skip
    assert code == 0
    with Image.open(tmp_path / "y.png") as image:
        assert image.mode == "RGB"


# ------------------------------------------------------------------------- CT


def _make_dicom(path: Path, hu: np.ndarray) -> Path:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop = generate_uid(entropy_srcs=["test-sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.Modality = "CT"
    ds.PatientID, ds.PatientName = "P001", "Phantom^Test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.1", "1.2.826.0.1.2"
    ds.SeriesDescription = "Low dose"
    ds.KVP, ds.SliceThickness = "120", "1.0"
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.PixelSpacing = [0.7, 0.7]
    ds.PixelData = np.clip(hu + 1024, 0, 4095).astype("<u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _ct_slice(rng, shape=(48, 56)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    disc = ((yy - 24) ** 2 + (xx - 28) ** 2) < 18**2
    return np.where(disc, 40.0, -1000.0) + rng.normal(0, 30, shape).round()


def test_dicom_in_dicom_out(tmp_path, rng, tiny_checkpoints):
    import pydicom

    from clipdenoise import ct

    hu = _ct_slice(rng)
    source = _make_dicom(tmp_path / "slice.dcm", hu)
    out = tmp_path / "out" / "slice.dcm"
    assert run_denoise(source, "-o", out, "--weights", tiny_checkpoints["grey"]) == 0
    before, after = pydicom.dcmread(source), pydicom.dcmread(out)
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "KVP", "PixelSpacing",
                    "BitsStored", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):  # fmt: skip
        assert after.get(keyword) == before.get(keyword), keyword
    assert after.SOPInstanceUID != before.SOPInstanceUID
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert "denoised" in after.SeriesDescription and "Low dose" in after.SeriesDescription
    assert after.pixel_array.dtype == np.uint16 and after.pixel_array.max() <= 4095
    # Pixel data = the model's output in HU, rounded to the stored integers (slope 1).
    model = CLIPDenoiser(tiny_config(in_channels=1))
    model = load_model(tiny_checkpoints["grey"])
    stored_hu = before.pixel_array * 1.0 - 1024
    with torch.inference_mode():
        x = torch.from_numpy(ct.hu_to_model(stored_hu))[None, None]
        expected = ct.model_to_hu(model(x)[0, 0].numpy())
    expected = np.clip(np.rint(expected + 1024), 0, 4095) - 1024
    got = after.pixel_array * 1.0 - 1024
    assert np.abs(got - expected).max() <= 1.0


def test_dicom_without_suffix_in_a_folder(tmp_path, rng, tiny_checkpoints):
    import pydicom

    (tmp_path / "series").mkdir()
    _make_dicom(tmp_path / "series" / "IM0001", _ct_slice(rng))
    (tmp_path / "series" / "README").write_text("not an image")
    code = run_denoise(
        tmp_path / "series", "-o", tmp_path / "out", "--weights", tiny_checkpoints["grey"]
    )
    assert code == 0
    assert "denoised" in pydicom.dcmread(tmp_path / "out" / "IM0001.dcm").SeriesDescription


def test_npy_in_hu_keeps_dtype(tmp_path, rng, tiny_checkpoints):
    hu = _ct_slice(rng).astype(np.int16)
    np.save(tmp_path / "s.npy", hu)
    assert (
        run_denoise(
            tmp_path / "s.npy", "-o", tmp_path / "o.npy", "--weights", tiny_checkpoints["grey"]
        )
        == 0
    )
    out = np.load(tmp_path / "o.npy")
    assert out.dtype == np.int16 and out.shape == hu.shape
    from clipdenoise import ct

    model = load_model(tiny_checkpoints["grey"])
    with torch.inference_mode():
        restored = model(torch.from_numpy(ct.hu_to_model(hu))[None, None])[0, 0].numpy()
    expected = np.clip(np.rint(ct.model_to_hu(restored)), -32768, 32767)
    assert np.abs(out - expected).max() <= 1


# ------------------------------------------------------------- noise, metrics


def test_add_noise_is_seeded_and_scored(tmp_path, rng, tiny_checkpoints, capsys):
    source = save_png(tmp_path / "clean.png", random_rgb8(rng))
    args = [
        "--weights",
        tiny_checkpoints["rgb"],
        "--add-noise",
        "gaussian:25",
        "--save-noisy",
        "--compare",
    ]
    assert run_denoise(source, "-o", tmp_path / "a" / "r.png", *args, "--seed", "1") == 0
    assert run_denoise(source, "-o", tmp_path / "b" / "r.png", *args, "--seed", "1") == 0
    assert run_denoise(source, "-o", tmp_path / "c" / "r.png", *args, "--seed", "2") == 0
    noisy = {k: np.asarray(Image.open(tmp_path / k / "r_noisy.png")) for k in "abc"}
    assert np.array_equal(noisy["a"], noisy["b"]) and not np.array_equal(noisy["a"], noisy["c"])
    clean = np.asarray(Image.open(source)).astype(float)
    sigma = (noisy["a"].astype(float) - clean).std()
    assert 20 < sigma < 27  # σ = 25 on the 0-255 scale (slightly less after clipping)
    with Image.open(tmp_path / "a" / "r_compare.png") as strip:
        assert strip.size == (3 * 48 + 2 * 4, 40)  # noisy | restored | clean
    err = capsys.readouterr().err
    assert re.search(r"PSNR -?[\d.]+ dB, SSIM -?[\d.]+ \(input 2\d\.\d\d dB", err)


def test_reference_prints_metrics(tmp_path, rng, tiny_checkpoints, capsys):
    clean = random_rgb8(rng)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    save_png(tmp_path / "noisy" / "x.png", noisy)
    save_png(tmp_path / "clean" / "x.png", clean)
    code = run_denoise(tmp_path / "noisy", "-o", tmp_path / "out", "--weights", tiny_checkpoints["rgb"],
               "--reference", tmp_path / "clean")  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    from clipdenoise.metrics import psnr

    expected = psnr(clean.astype(float), noisy.astype(float))
    assert f"(input {expected:.2f} dB" in err and "mean over 1: PSNR" in err


def test_reference_pairs_cc_names_and_a_missing_one_only_skips_scores(
    tmp_path, rng, tiny_checkpoints, capsys
):
    """CC15 / PolyU name noisy files ``*_real`` and references ``*_mean``, as evaluate pairs them."""
    from clipdenoise.data import find_reference
    from clipdenoise.metrics import psnr

    expected = {}
    for name in ("d600_iso3200_1", "5dmark3_iso3200_2"):
        clean = random_rgb8(rng)
        noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
        save_png(tmp_path / "cc" / f"{name}_real.png", noisy)
        save_png(tmp_path / "cc" / f"{name}_mean.png", clean)
        save_png(tmp_path / "noisy" / f"{name}_real.png", noisy)
        expected[name] = psnr(clean.astype(float), noisy.astype(float))
    save_png(tmp_path / "noisy" / "orphan_real.png", random_rgb8(rng))
    assert find_reference("d600_iso3200_1_real.png", tmp_path / "cc") == (
        tmp_path / "cc" / "d600_iso3200_1_mean.png"
    )  # not the noisy file of the same name beside it
    code = run_denoise(tmp_path / "noisy", "-o", tmp_path / "out", "--weights", tiny_checkpoints["rgb"],
               "--reference", tmp_path / "cc")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    for value in expected.values():
        assert f"(input {value:.2f} dB" in err
    assert "orphan_real.png" in err and "not scored: no reference image for it in" in err
    assert "mean over 2: PSNR" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "5dmark3_iso3200_2_real.png", "d600_iso3200_1_real.png", "orphan_real.png",
    ]  # fmt: skip
    code = run_denoise(tmp_path / "noisy" / "orphan_real.png", "-o", tmp_path / "one.png",
               "--weights", tiny_checkpoints["rgb"], "--reference", tmp_path / "missing.png")  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0 and (tmp_path / "one.png").is_file()
    assert f"reference {tmp_path / 'missing.png'} not found: results are not scored" in err


# ------------------------------------------------------------- careless input


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG header claiming ``width``×``height`` over a few bytes of image data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_max_memory_is_checked_from_the_header_before_decoding(tmp_path, tiny_checkpoints, capsys):
    # Only the header is valid: decoding would fail with "truncated"; the refusal comes first.
    source = _png_header_only(tmp_path / "big.png", 16000, 10000)
    code = run_denoise(
        source,
        "-o",
        tmp_path / "o.png",
        "--weights",
        tiny_checkpoints["rgb"],
        "--max-memory",
        "2GB",
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "big.png: a memory budget of 1907 MiB is too small for a 16000x10000 image" in err
    assert "smaller tiles cannot help" in err and "raise --max-memory" in err
    assert "truncated" not in err and "lower --tile-overlap" not in err


def test_nan_output_is_an_error_naming_the_file(tmp_path, rng, capsys):
    model = CLIPDenoiser(tiny_config()).eval()
    with torch.no_grad():
        model.decoder.head.weight.fill_(3e38)  # finite weights, overflowing output
    checkpoint = save_checkpoint(model, tmp_path / "overflow.safetensors")
    source = save_png(tmp_path / "in.png", random_rgb8(rng))
    code = run_denoise(source, "-o", tmp_path / "o.png", "--weights", checkpoint, "--no-progress")
    err = capsys.readouterr().err
    assert code == 1
    assert "in.png: the denoised image holds NaN or infinite values" in err
    assert not (tmp_path / "o.png").exists()
    assert "RuntimeWarning" not in err


def test_stale_temporary_files_of_a_killed_run_are_removed(tmp_path, rng, tiny_checkpoints):
    import os
    import time

    source = save_png(tmp_path / "in.png", random_rgb8(rng))
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".in.png.0badc0de.tmp"
    fresh = out / ".in.png.12345678.tmp.png"  # another process may still be writing it
    other = out / ".notes.txt.0badc0de.tmp"  # not a temporary of this output
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(other, (an_hour_ago, an_hour_ago))
    assert (
        run_denoise(source, "-o", out, "--weights", tiny_checkpoints["rgb"], "--no-progress") == 0
    )
    assert (out / "in.png").is_file()
    assert not stale.exists() and fresh.exists() and other.exists()
