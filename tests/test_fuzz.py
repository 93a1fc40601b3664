"""Property-based fuzzing of everything that reads untrusted input (hypothesis).

Targets: the image readers (random bytes, and valid PNG / JPEG / TIFF / DICOM files whose
headers are mutated), the checkpoint loader (mutated metadata and tensors) and the server's form
parsing (the parser itself, and whole requests through the app). The properties:

- no input raises anything but the module's own one-line error (``ImageReadError``,
  ``WeightsMismatchError``/``WeightsNotFoundError``, ``UploadRejectedError``): no traceback;
- the server never answers 500, and every error it answers is JSON;
- memory stays bounded: images are read with ``max_pixels`` = :data:`MAX_PIXELS`, and the
  Python/numpy allocations of one read peak under :data:`READ_PEAK_BYTES` (``tracemalloc``);
  a checkpoint can never make the process grow by :data:`CHECKPOINT_GROWTH_BYTES` (peak RSS).

The default run is bounded (:data:`FAST_EXAMPLES` examples per property, a few seconds each).
The long profile (:data:`LONG_EXAMPLES` examples) runs with ``pytest -m fuzz_long
tests/test_fuzz.py``.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clipdenoise.errors import ImageReadError, WeightsMismatchError, WeightsNotFoundError
from clipdenoise.image_io import load_image, read_image_header

FAST_EXAMPLES = 30
LONG_EXAMPLES = 1000
#: ``max_pixels`` the readers are called with, and the allocation bound that follows from it.
MAX_PIXELS = 250_000
READ_PEAK_BYTES = 64 * 2**20
#: Largest growth of the process's peak resident memory over a whole checkpoint fuzz run.
CHECKPOINT_GROWTH_BYTES = 512 * 2**20

PROFILES = ["fast", pytest.param("long", marks=pytest.mark.fuzz_long)]


def examples(profile: str, request: pytest.FixtureRequest) -> int:
    if profile == "long":
        if "fuzz_long" not in (request.config.getoption("-m") or ""):
            pytest.skip("long fuzz profile: run with pytest -m fuzz_long")
        return LONG_EXAMPLES
    return FAST_EXAMPLES


def fuzz(profile_examples: int, strategy, check) -> None:
    """Run ``check`` on ``profile_examples`` values drawn from ``strategy``."""

    @settings(
        max_examples=profile_examples,
        deadline=None,
        derandomize=profile_examples == FAST_EXAMPLES,  # the default run is reproducible
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(strategy)
    def run(value) -> None:
        check(value)

    run()


# ============================================================================ image readers
def _valid_files() -> dict[str, bytes]:
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    files = {}
    for fmt, suffix in (("PNG", ".png"), ("JPEG", ".jpg")):
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=fmt)
        files[suffix] = buffer.getvalue()
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer, rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16), photometric="rgb"
    )
    files[".tif"] = buffer.getvalue()
    files[".dcm"] = _dicom_bytes(rng.integers(0, 4096, (12, 10), dtype=np.uint16))
    return files


def _dicom_bytes(stored: np.ndarray) -> bytes:
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, "1.2.3.4.5", "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.PixelData = stored.astype("<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


VALID = _valid_files()


def _mutations(data: bytes, header_bytes: int):
    """Valid ``data`` with bytes of its first ``header_bytes`` overwritten, 32-bit fields set
    to extreme values, or cut short."""
    position = st.integers(0, min(header_bytes, len(data)) - 1)
    flips = st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=8).map(
        lambda changes: _apply(data, changes)
    )
    extremes = st.tuples(
        position, st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 65535 * 65536])
    ).map(lambda change: _put_u32(data, *change))
    cut = st.integers(0, len(data) - 1).map(lambda length: data[:length])
    return st.one_of(flips, extremes, cut)


def _apply(data: bytes, changes) -> bytes:
    mutable = bytearray(data)
    for index, value in changes:
        mutable[index] = value
    return bytes(mutable)


def _put_u32(data: bytes, index: int, value: int) -> bytes:
    mutable = bytearray(data)
    packed = struct.pack(">I" if index % 2 else "<I", value)[: len(mutable) - index]
    mutable[index : index + len(packed)] = packed
    return bytes(mutable)


def _check_reader(tmp_path: Path, suffix: str):
    def check(data: bytes) -> None:
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            if suffix == ".dcm":
                from clipdenoise import ct

                ct.read_ct_slice(path, max_pixels=MAX_PIXELS)
            else:
                read_image_header(path)
                load_image(path, max_pixels=MAX_PIXELS)
        except ImageReadError as error:
            message = str(error)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            assert " at 0x" not in message, message
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < READ_PEAK_BYTES, f"{peak / 2**20:.0f} MiB for {len(data)} bytes"

    return check


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".dcm", ".bmp"])
def test_image_readers_on_random_bytes(tmp_path, request, profile, suffix):
    fuzz(examples(profile, request), st.binary(max_size=2048), _check_reader(tmp_path, suffix))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".dcm"])
def test_image_readers_on_mutated_headers(tmp_path, request, profile, suffix):
    data = VALID[suffix]
    header = 400 if suffix == ".dcm" else 96
    fuzz(examples(profile, request), _mutations(data, header), _check_reader(tmp_path, suffix))


def test_mutated_files_still_decode_when_untouched(tmp_path):
    """The seeds of the mutations are valid files (else the fuzzing proves little)."""
    from clipdenoise import ct

    for suffix, data in VALID.items():
        path = tmp_path / f"valid{suffix}"
        path.write_bytes(data)
        if suffix == ".dcm":
            assert ct.read_ct_slice(path).shape == (12, 10)
        else:
            assert load_image(path, max_pixels=MAX_PIXELS).pixels.shape == (12, 10, 3)


def test_a_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 16, 2, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    # Pillow refuses to even open a header this large (its decompression-bomb limit)
    with pytest.raises(ImageReadError, match=r"bomb\.png: too many pixels"):
        load_image(path, max_pixels=MAX_PIXELS)
    ihdr = struct.pack(">IIBBBBB", 3000, 3000, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=r"the image is 3000x3000 \(9\.0 megapixels\)"):
        load_image(path, max_pixels=MAX_PIXELS)


# ============================================================================ checkpoints
def _checkpoint_parts(folder: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and tensors of a valid tiny checkpoint, to be mutated."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from clipdenoise.checkpoints import save_checkpoint
    from clipdenoise.model import CLIPDenoiser, tiny_config

    path = save_checkpoint(CLIPDenoiser(tiny_config()), folder / "seed.safetensors")
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
    return metadata, load_file(str(path))


CONFIG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(-5, 10**7), max_size=6),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
CONFIG_KEYS = st.sampled_from(
    ["arch", "layers", "width", "in_channels", "out_channels", "encoder_weights",
     "encoder_trainable", "encoder_batchnorm", "use_f5", "aug_gamma", "leaky_slope",
     "init_seed", "conv_bias", "unknown"]
)  # fmt: skip


def _checkpoint_mutations(metadata: dict[str, str], tensors: dict[str, torch.Tensor]):
    base = json.loads(metadata["model_config"])
    config_edit = st.dictionaries(CONFIG_KEYS, CONFIG_VALUES, min_size=1, max_size=3).map(
        lambda changes: ({"model_config": json.dumps({**base, **changes})}, {})
    )
    raw_metadata = st.tuples(
        st.sampled_from(["model_config", "contents", "encoder_source", "format"]),
        st.text(max_size=64),
    ).map(lambda item: ({item[0]: item[1]}, {}))
    names = sorted(tensors)
    tensor_edit = st.tuples(
        st.sampled_from(names),
        st.sampled_from(["shape", "dtype", "nan", "drop", "extra"]),
    ).map(lambda item: ({}, {item[0]: item[1]}))
    return st.one_of(config_edit, raw_metadata, tensor_edit)


def _edited_tensors(tensors, edits):
    result = dict(tensors)
    for name, how in edits.items():
        value = result[name]
        if how == "shape":
            result[name] = torch.zeros(value.numel() + 1)
        elif how == "dtype":
            result[name] = value.to(torch.int32)
        elif how == "nan":
            result[name] = (
                torch.full_like(value, float("nan")) if value.is_floating_point() else value
            )
        elif how == "drop":
            del result[name]
        else:
            result[f"{name}.extra"] = torch.zeros(3)
    return result


@pytest.mark.parametrize("profile", PROFILES)
def test_checkpoint_loader_on_mutated_metadata_and_tensors(tmp_path, request, profile):
    from safetensors.torch import save_file

    from clipdenoise.checkpoints import load_checkpoint

    metadata, tensors = _checkpoint_parts(tmp_path)
    start_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def check(edit) -> None:
        metadata_edit, tensor_edit = edit
        path = tmp_path / "fuzz.safetensors"
        save_file(
            _edited_tensors(tensors, tensor_edit), str(path), metadata={**metadata, **metadata_edit}
        )
        try:
            model = load_checkpoint(path)
        except (WeightsMismatchError, WeightsNotFoundError) as error:
            message = str(error)
            assert message.startswith(str(path)) or "CLIP" in message, message
        else:  # what loads is a working model whose size the checks bounded
            assert sum(p.numel() for p in model.parameters()) < 2**30

    fuzz(examples(profile, request), _checkpoint_mutations(metadata, tensors), check)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start_peak
    assert growth < CHECKPOINT_GROWTH_BYTES, f"peak memory grew by {growth / 2**20:.0f} MiB"


@pytest.mark.parametrize("profile", PROFILES)
def test_checkpoint_loader_on_random_bytes(tmp_path, request, profile):
    from clipdenoise.checkpoints import load_model

    def check(data: bytes) -> None:
        path = tmp_path / "fuzz.safetensors"
        path.write_bytes(data)
        with pytest.raises((WeightsMismatchError, WeightsNotFoundError)):
            load_model(path)

    prefix = st.integers(0, 2**20).map(lambda n: struct.pack("<Q", n))
    fuzz(
        examples(profile, request), st.builds(bytes.__add__, prefix, st.binary(max_size=256)), check
    )


# ============================================================================ server forms

MULTIPART_SEED = (
    b'--XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny-demo-untrained\r\n'
    b'--XyZ\r\nContent-Disposition: form-data; name="seed"\r\n\r\n7\r\n'
    b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
    b"Content-Type: image/png\r\n\r\n" + VALID[".png"] + b"\r\n--XyZ--\r\n"
)
CONTENT_TYPES = st.one_of(
    st.just("multipart/form-data; boundary=XyZ"),
    st.just("application/x-www-form-urlencoded"),
    st.text(max_size=60),
)


def _form_bodies():
    return st.one_of(
        st.binary(max_size=512),
        _mutations(MULTIPART_SEED, 160),
        st.dictionaries(
            st.sampled_from(["model", "seed", "noise", "level", "sample", "x"]),
            st.text(max_size=30),
            max_size=5,
        ).map(lambda fields: "&".join(f"{k}={v}" for k, v in fields.items()).encode()),
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_form_parser_on_hostile_bodies(request, profile):
    pytest.importorskip("python_multipart")
    from clipdenoise.web.form import MAX_FIELDS, parse_form
    from clipdenoise.web.upload import UploadRejectedError

    def check(item) -> None:
        content_type, body = item
        try:
            form = parse_form(content_type, body)
        except UploadRejectedError as error:
            assert 400 <= error.status_code < 500 and "\n" not in str(error)
        else:
            assert len(form.fields) <= MAX_FIELDS and len(form.files) <= 1
            assert all(isinstance(v, str) for v in form.fields.values())

    fuzz(examples(profile, request), st.tuples(CONTENT_TYPES, _form_bodies()), check)


@pytest.fixture(scope="module")
def web_client():
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from clipdenoise.web import ServeConfig, build_catalogue, create_app

    catalogue = build_catalogue(tiny_demo=True, include_imported=False, baselines=False)
    app = create_app(catalogue, config=ServeConfig(max_queue=2, max_results=4))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("profile", PROFILES)
def test_server_never_answers_500_to_hostile_forms(web_client, request, profile):
    def check(item) -> None:
        content_type, body, seed = item
        response = web_client.post(
            "/api/jobs",
            content=body.replace(b"\r\n7\r\n", f"\r\n{seed}\r\n".encode("utf-8", "replace")),
            headers={"content-type": content_type.encode("utf-8")},
        )
        assert response.status_code in (202, 400, 413, 415, 503), response.text
        payload = response.json()
        if response.status_code != 202:
            assert isinstance(payload["error"], str) and "Traceback" not in payload["error"]
            assert " at 0x" not in payload["error"]
        else:
            web_client.delete(f"/api/jobs/{payload['id']}")

    seeds = st.one_of(st.text(max_size=20), st.integers(0, 10**30).map(str))
    fuzz(examples(profile, request), st.tuples(CONTENT_TYPES, _form_bodies(), seeds), check)
