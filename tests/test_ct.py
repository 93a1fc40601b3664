"""Tests of the CT module on tiny synthetic DICOM / npy / PNG / TIFF slices built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipdenoise import ct
from clipdenoise.errors import ConfigError, DatasetError, DatasetNotFoundError, ImageReadError

pydicom = pytest.importorskip("pydicom")


def make_ct_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = -1024.0,
    bits_stored: int = 12,
    signed: bool = False,
    modality: str | None = "CT",
    drop: tuple[str, ...] = (),
    patient: str = "L067",
    z: float = 0.0,
    instance: int = 1,
    series_uid: str = "1.2.3.4.5.6",
    padding: int | None = None,
    frames: int = 1,
    samples: int = 1,
) -> Path:
    """A minimal but valid CT Image Storage file (explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    sop = generate_uid(entropy_srcs=[str(path)])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    if modality is not None:
        ds.Modality = modality
    ds.PatientID, ds.PatientName = patient, "Synthetic^Phantom"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", series_uid
    ds.SeriesDescription = "Quarter dose 1mm"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.InstanceNumber = instance
    if padding is not None:
        ds.PixelPaddingValue = padding
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    for tag in drop:
        delattr(ds, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _stored(seed: int = 0, shape=(12, 10), low=0, high=4096) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape)


# --------------------------------------------------------------------------- units and windows


def test_hu_model_units_follow_the_reference():
    hu = np.array([-1024.0, 0.0, 1024.0, 3072.0, -2000.0])
    model = ct.hu_to_model(hu)
    np.testing.assert_allclose(model, [0.0, 0.25, 0.5, 1.0, -976 / 4096], atol=1e-7)
    assert model.dtype == np.float32
    np.testing.assert_allclose(ct.model_to_hu(model), hu, atol=1e-3)
    assert ct.hu_to_model(hu, clip=True).min() == 0.0
    # The training noise, sigma 5 on [0, 255] in model units, is 80.3 HU.
    assert pytest.approx(80.31, abs=0.01) == ct.CT_TRAIN_SIGMA_255 / 255 * (ct.HU_MAX - ct.HU_MIN)
    assert ct.CT_TRAIN_NOISE == "gaussian:5"


def test_display_windows():
    assert ct.apply_window(np.array([-1000.0, -160.0, 40.0, 240.0, 900.0])).tolist() == [
        0.0,
        0.0,
        0.5,
        1.0,
        1.0,
    ]
    assert ct.resolve_window("abdomen") == (-160.0, 240.0)
    assert ct.window_from_center_width(40, 400) == (-160.0, 240.0)
    np.testing.assert_array_equal(
        ct.clip_to_window(np.array([-3000.0, 50.0, 5000.0]), "full"), [-1024.0, 50.0, 3072.0]
    )
    np.testing.assert_allclose(ct.apply_window(np.array([-600.0]), "lung"), [0.5])
    with pytest.raises(ConfigError, match="unknown CT window 'liver'; valid: abdomen, bone"):
        ct.resolve_window("liver")
    with pytest.raises(ConfigError, match="low < high"):
        ct.resolve_window((100, 100))


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize(
    ("slope", "intercept", "signed", "low", "high"),
    [(1.0, -1024.0, False, 0, 4096), (0.5, 0.0, True, -2048, 2048), (2.0, -1000.0, False, 0, 1000)],
)
def test_read_dicom_applies_rescale(tmp_path, slope, intercept, signed, low, high):
    stored = _stored(low=low, high=high)
    path = make_ct_dicom(
        tmp_path / "slice.dcm", stored, slope=slope, intercept=intercept, signed=signed
    )
    hu = ct.read_ct_slice(path)
    assert hu.shape == (12, 10) and hu.dtype == np.float32
    np.testing.assert_allclose(hu, stored * slope + intercept)


def test_read_dicom_by_preamble_and_ima_suffix(tmp_path):
    stored = _stored(1)
    plain = make_ct_dicom(tmp_path / "IM0001", stored)
    ima = make_ct_dicom(tmp_path / "L067_FD_1_1.CT.0001.0001.IMA", stored)
    np.testing.assert_array_equal(ct.read_ct_slice(plain), ct.read_ct_slice(ima))
    # A file without the 128-byte preamble and file meta (older exports) still reads.
    bare = tmp_path / "bare.ima"
    dataset = pydicom.dcmread(ima)
    del dataset.file_meta
    dataset.preamble = None
    pydicom.dcmwrite(bare, dataset, implicit_vr=True, little_endian=True)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(ct.read_ct_slice(bare), stored - 1024.0)
    # ... and serves as a template: the output is a standard Part 10 file.
    out = ct.write_dicom_like(bare, ct.read_ct_slice(bare), tmp_path / "from_bare.dcm")
    assert out.read_bytes()[128:132] == b"DICM"
    np.testing.assert_array_equal(pydicom.dcmread(out).pixel_array, stored)


def test_dicom_errors_name_the_file_and_the_problem(tmp_path):
    stored = _stored(2)
    mr = make_ct_dicom(tmp_path / "mr.dcm", stored, modality="MR")
    with pytest.raises(ImageReadError, match=r"mr\.dcm: Modality is 'MR', not a CT slice"):
        ct.read_ct_slice(mr)
    assert ct.read_ct_slice(mr, require_ct=False).shape == (12, 10)
    no_modality = make_ct_dicom(tmp_path / "nomod.dcm", stored, modality=None)
    with pytest.raises(ImageReadError, match=r"nomod\.dcm: DICOM file lacks Modality"):
        ct.read_ct_slice(no_modality)
    no_rescale = make_ct_dicom(
        tmp_path / "norescale.dcm", stored, drop=("RescaleSlope", "RescaleIntercept")
    )
    with pytest.raises(
        ImageReadError, match=r"norescale\.dcm: DICOM file lacks required tags: RescaleSlope, "
    ):
        ct.read_ct_slice(no_rescale)
    no_pixels = make_ct_dicom(tmp_path / "nopix.dcm", stored, drop=("PixelData",))
    with pytest.raises(ImageReadError, match=r"nopix\.dcm: DICOM file has no pixel data"):
        ct.read_ct_slice(no_pixels)
    volume = make_ct_dicom(tmp_path / "volume.dcm", _stored(3, shape=(2, 6, 5)), frames=2)
    with pytest.raises(ImageReadError, match=r"volume\.dcm: holds 2 frames; expected a single"):
        ct.read_ct_slice(volume)
    colour = make_ct_dicom(tmp_path / "rgb.dcm", _stored(4, shape=(6, 15)), samples=3)
    with pytest.raises(ImageReadError, match=r"rgb\.dcm: has 3 samples per pixel"):
        ct.read_ct_slice(colour)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"definitely not dicom" * 20)
    with pytest.raises(ImageReadError, match=r"junk\.dcm: not a DICOM file"):
        ct.read_ct_slice(junk)
    with pytest.raises(ImageReadError, match=r"missing\.dcm: file not found"):
        ct.read_ct_slice(tmp_path / "missing.dcm")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.txt: unsupported CT file type '\.txt'"):
        ct.read_ct_slice(other)


def test_read_npy_in_hu_and_model_units(tmp_path):
    hu = np.random.default_rng(5).uniform(-1024, 2000, (9, 7)).astype(np.float32)
    np.save(tmp_path / "hu.npy", hu)
    np.save(tmp_path / "model.npy", ct.hu_to_model(hu)[None])
    np.testing.assert_array_equal(ct.read_ct_slice(tmp_path / "hu.npy"), hu)
    np.testing.assert_allclose(
        ct.read_ct_slice(tmp_path / "model.npy", npy_units="model"), hu, atol=1e-3
    )
    np.save(tmp_path / "volume.npy", np.zeros((3, 4, 5)))
    with pytest.raises(ImageReadError, match=r"volume\.npy: holds an array of shape \(3, 4, 5\)"):
        ct.read_ct_slice(tmp_path / "volume.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageReadError, match=r"objects\.npy: cannot read \.npy file"):
        ct.read_ct_slice(tmp_path / "objects.npy")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.npy: file is empty"):
        ct.read_ct_slice(tmp_path / "empty.npy")


def test_png16_round_trip_and_8bit_rejection(tmp_path):
    from PIL import Image

    hu = np.random.default_rng(6).uniform(-1024, 3000, (10, 12))
    path = ct.write_ct_png16(hu, tmp_path / "slice.png")
    back = ct.read_ct_slice(path)
    assert back.dtype == np.float32 and back.shape == (10, 12)
    assert np.abs(back - hu).max() <= 0.5
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(
        ImageReadError, match=r"eight\.png: is an 8-bit image, which cannot hold HU"
    ):
        ct.read_ct_slice(tmp_path / "eight.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(
        ImageReadError, match=r"colour\.png: is an 8-bit image|colour\.png: is a RGB"
    ):
        ct.read_ct_slice(tmp_path / "colour.png")


def test_tiff_signed_and_unsigned(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    hu = np.array([[-1024, 0], [40, 3000]])
    tifffile.imwrite(tmp_path / "signed.tif", hu.astype(np.int16))
    tifffile.imwrite(tmp_path / "unsigned.tiff", (hu + 1024).astype(np.uint16))
    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((3, 4, 4), np.int16), photometric="minisblack"
    )
    np.testing.assert_array_equal(ct.read_ct_slice(tmp_path / "signed.tif"), hu)
    np.testing.assert_array_equal(ct.read_ct_slice(tmp_path / "unsigned.tiff"), hu)
    with pytest.raises(ImageReadError, match=r"stack\.tif: holds an array of shape \(3, 4, 4\)"):
        ct.read_ct_slice(tmp_path / "stack.tif")


# --------------------------------------------------------------------------- DICOM out


def test_write_dicom_like_keeps_metadata_and_quantises(tmp_path):
    stored = _stored(7)
    template = make_ct_dicom(tmp_path / "in.dcm", stored, instance=7, z=-12.5)
    original_hu, original = ct.read_dicom_slice(template)
    rng = np.random.default_rng(8)
    denoised = original_hu + rng.normal(0, 20, original_hu.shape)
    denoised[0, 0], denoised[0, 1] = 5000.0, -3000.0  # out of the 12-bit unsigned range
    out = ct.write_dicom_like(template, denoised, tmp_path / "out" / "in.dcm")

    hu, written = ct.read_dicom_slice(out)
    # 12-bit unsigned, slope 1, intercept -1024: representable HU are [-1024, 3071].
    representable = np.clip(denoised, -1024.0, 3071.0)
    assert np.abs(hu - representable).max() <= 0.5 + 1e-6
    assert (hu[0, 0], hu[0, 1]) == (3071.0, -1024.0)
    assert written.BitsStored == 12 and written.PixelRepresentation == 0
    assert written.pixel_array.dtype == np.uint16
    for tag in ("PatientID", "PatientName", "StudyInstanceUID", "PixelSpacing", "InstanceNumber"):
        assert written.get(tag) == original.get(tag), tag
    assert list(written.ImagePositionPatient) == [0.0, 0.0, -12.5]
    assert written.SOPInstanceUID != original.SOPInstanceUID
    assert written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
    assert written.SeriesInstanceUID != original.SeriesInstanceUID
    assert written.SeriesDescription == "Quarter dose 1mm [denoised: clipdenoise]"
    assert list(written.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    pydicom.uid.UID(written.SOPInstanceUID).is_valid  # noqa: B018

    # A second slice of the same input series lands in the same output series; reruns are
    # byte-identical (the UIDs are derived, not random).
    second = make_ct_dicom(tmp_path / "in2.dcm", _stored(9), instance=8)
    out2 = ct.write_dicom_like(second, ct.read_ct_slice(second), tmp_path / "out" / "in2.dcm")
    assert pydicom.dcmread(out2).SeriesInstanceUID == written.SeriesInstanceUID
    assert pydicom.dcmread(out2).SOPInstanceUID != written.SOPInstanceUID
    again = ct.write_dicom_like(template, denoised, tmp_path / "again.dcm")
    assert again.read_bytes() == out.read_bytes()

    with pytest.raises(ConfigError, match=r"in\.dcm: exists already"):
        ct.write_dicom_like(template, denoised, out)
    with pytest.raises(ConfigError, match="needs a 2-D HU slice"):
        ct.write_dicom_like(template, denoised[None], tmp_path / "bad.dcm")


def test_write_dicom_like_signed_scaled_and_padding(tmp_path):
    stored = _stored(10, low=-3000, high=3000)
    stored[:, 0] = -2000
    template = make_ct_dicom(
        tmp_path / "signed.dcm",
        stored,
        slope=0.5,
        intercept=-10.0,
        bits_stored=16,
        signed=True,
        padding=-2000,
    )
    hu = ct.read_ct_slice(template) + 0.3
    source = pydicom.dcmread(template)
    source_uid = source.SOPInstanceUID
    out = ct.write_dicom_like(source, hu, tmp_path / "out.dcm")
    assert source.SOPInstanceUID == source_uid  # the template dataset is not modified
    assert source.SeriesDescription == "Quarter dose 1mm"
    written = pydicom.dcmread(out)
    assert written.pixel_array.dtype == np.int16
    np.testing.assert_array_equal(written.pixel_array[:, 0], -2000)  # padding kept
    back = ct.read_ct_slice(out)
    assert np.abs(back - hu)[:, 1:].max() <= 0.25 + 1e-6


def test_write_dicom_like_from_compressed_template(tmp_path):
    from pydicom.uid import RLELossless

    stored = _stored(11)
    template = make_ct_dicom(tmp_path / "plain.dcm", stored)
    dataset = pydicom.dcmread(template)
    try:
        dataset.compress(RLELossless)
    except Exception as error:  # pragma: no cover - depends on installed codecs
        pytest.skip(f"RLE encoding unavailable: {error}")
    dataset.save_as(tmp_path / "rle.dcm")
    out = ct.write_dicom_like(tmp_path / "rle.dcm", ct.read_ct_slice(template), tmp_path / "o.dcm")
    written = pydicom.dcmread(out)
    assert written.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(written.pixel_array, stored)


# --------------------------------------------------------------------------- Mayo dataset


def _mayo_folder(root: Path, patients=("L067", "L096", "L506"), slices=2, shape=(16, 16)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12)
    for patient in patients:
        for index in range(slices):
            full = rng.uniform(0.2, 0.3, shape).astype(np.float32)
            quarter = full + rng.normal(0, 0.01, shape).astype(np.float32)
            np.save(root / f"{patient}_{index}_target.npy", full)
            np.save(root / f"{patient}_{index}_input.npy", quarter)
    return root


def test_mayo_splits_hold_out_the_test_patient(tmp_path):
    root = _mayo_folder(tmp_path / "mayo")
    train = ct.MayoCTDataset(root, "train")
    assert len(train) == 4 and train.patients == ["L067", "L096"]
    image = train[0]
    assert image.shape == (16, 16, 1) and image.dtype == np.float32
    # Model-unit .npy slices are only cast to float32, as the reference does: bit-identical.
    reference = np.load(root / "L067_0_target.npy").astype(np.float64).astype(np.float32)
    np.testing.assert_array_equal(image[..., 0], reference)

    test = ct.MayoCTDataset(root, "test")
    assert len(test) == 2 and test.patients == ["L506"]
    name, noisy, clean = test[1]
    assert name == "L506_1"
    np.testing.assert_allclose(noisy[..., 0], np.load(root / "L506_1_input.npy"), atol=1e-6)
    np.testing.assert_allclose(clean[..., 0], np.load(root / "L506_1_target.npy"), atol=1e-6)

    pairs = ct.MayoCTDataset(root, "train_pairs")
    assert len(pairs) == 4 and "L506" not in pairs.patients
    other = ct.MayoCTDataset(root, "test", test_patient="L096")
    assert other.patients == ["L096"]


def test_ct_training_noise_is_sigma_5_in_model_units(tmp_path):
    import torch

    from clipdenoise.noise import add_noise, parse_noise_spec

    root = _mayo_folder(tmp_path / "mayo", shape=(40, 40))
    train = ct.MayoCTDataset(root, "train")
    slices = np.stack([train[index] for index in range(len(train))])  # (B, H, W, 1)
    clean = torch.from_numpy(slices).permute(0, 3, 1, 2)
    noisy = add_noise(clean, parse_noise_spec(ct.CT_TRAIN_NOISE), torch.Generator().manual_seed(0))
    assert (noisy - clean).std().item() == pytest.approx(5 / 255, rel=0.05)


def test_mayo_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"nowhere does not exist"):
        ct.MayoCTDataset(tmp_path / "nowhere")
    root = _mayo_folder(tmp_path / "mayo", patients=("L067",))
    with pytest.raises(DatasetError, match="holds no test slices of patient L506"):
        ct.MayoCTDataset(root, "test")
    (root / "L067_0_target.npy").unlink()
    with pytest.raises(
        DatasetError, match=r"unpaired slices: L067_0_input\.npy \(no L067_0_target"
    ):
        ct.MayoCTDataset(root, "train_pairs")
    with pytest.raises(ConfigError, match="unknown Mayo split 'val'"):
        ct.MayoCTDataset(root, "val")  # type: ignore[arg-type]


def test_prepare_mayo_dataset_from_dicom_series(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(13)
    expected = {}
    for patient in ("L067", "L506"):
        for dose in ("quarter", "full"):
            # Files listed in an order that differs from the table position.
            for instance, z in ((1, 10.0), (2, -5.0), (3, 2.5)):
                stored = rng.integers(500, 1500, (8, 8))
                stored[0, 0] = 63536  # -2000 as a 16-bit two's complement padding value
                make_ct_dicom(
                    raw / patient / f"{dose}_1mm" / f"slice{instance}.IMA",
                    stored,
                    z=z,
                    instance=instance,
                    padding=63536,
                    bits_stored=16,
                )
                expected[(patient, dose, z)] = stored
    out = tmp_path / "flat"
    written = ct.prepare_mayo_dataset(raw, out)
    assert len(written) == 12
    assert sorted(p.name for p in out.iterdir())[:3] == [
        "L067_0_input.npy",
        "L067_0_target.npy",
        "L067_1_input.npy",
    ]
    first = np.load(out / "L067_0_target.npy")  # lowest z first
    hu = expected[("L067", "full", -5.0)] - 1024.0
    np.testing.assert_allclose(first.ravel()[1:], ct.hu_to_model(hu).ravel()[1:], atol=1e-7)
    assert first[0, 0] == 0.0  # padding -> -1024 HU -> model 0
    test = ct.MayoCTDataset(out, "test")
    assert len(test) == 3 and test.patients == ["L506"]
    # The same through the command line.
    from clipdenoise.cli import main

    cli_out = tmp_path / "flat_cli"
    status = main(
        ["synth", "mayo", "--input", str(raw), "--output", str(cli_out), "--patients", "L506"]
    )
    assert status == 0
    assert sorted(p.name for p in cli_out.iterdir()) == [
        f"L506_{i}_{kind}.npy" for i in range(3) for kind in ("input", "target")
    ]
    np.testing.assert_array_equal(
        np.load(cli_out / "L506_2_input.npy"), np.load(out / "L506_2_input.npy")
    )
    with pytest.raises(ConfigError, match="exists already"):
        ct.prepare_mayo_dataset(raw, out)
    with pytest.raises(DatasetNotFoundError, match=r"L999[/\\]quarter_1mm does not exist"):
        ct.prepare_mayo_dataset(raw, tmp_path / "other", patients=["L999"])


def test_read_dicom_series_orders_by_table_position(tmp_path):
    folder = tmp_path / "series"
    for instance, z in ((1, 5.0), (2, -5.0), (3, 0.0)):
        stored = np.full((4, 5), 1000 + instance)
        stored[0, 0] = 0
        make_ct_dicom(folder / f"IM{instance}.dcm", stored, z=z, instance=instance, padding=0)
    (folder / ".DS_Store").write_bytes(b"junk")
    slices = ct.read_dicom_series(folder)
    assert [item.path.name for item in slices] == ["IM2.dcm", "IM3.dcm", "IM1.dcm"]
    assert slices[0].hu[1, 1] == -22.0 and slices[0].hu[0, 0] == -1024.0
    padded = ct.read_dicom_series(folder, padding_hu=-3000.0)
    # Without PixelPaddingValue, stored -2000 (63536 unsigned) is padding, as in RED-CNN.
    assert ct.padding_mask(np.array([63536, 0, 2000], np.uint16), -2000).tolist() == [
        True,
        False,
        False,
    ]
    assert ct.padding_mask(np.array([-2000, 0], np.int16), 63536).tolist() == [True, False]
    assert padded[0].hu[0, 0] == -3000.0 and padded[0].hu[1, 1] == -22.0
    assert padded[0].dataset.InstanceNumber == 2
    with pytest.raises(DatasetNotFoundError, match="series folder .*nowhere does not exist"):
        ct.read_dicom_series(tmp_path / "nowhere")


def test_patient_id_of():
    assert ct.patient_id_of("L067_12_input.npy") == "L067"
    assert ct.patient_id_of("/data/1mm/L506_0_target.npy") == "L506"
    assert ct.patient_id_of("quarter_C002_3.dcm") == "C002"
    assert ct.patient_id_of("caseA_1_input.npy") == "caseA"
    assert ct.patient_id_of("XL0671_1_input.npy") == "XL0671"
