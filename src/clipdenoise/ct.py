"""CT slices: readers (DICOM/IMA, ``.npy``, 16-bit PNG/TIFF), HU <-> model units, display
windows, the Mayo/AAPM low-dose CT dataset, and DICOM-in -> DICOM-out writing.

Units, as the reference (``basicsr/data/CT_image_dataset.py``, ``basicsr/metrics/CT_psnr_ssim.py``,
``Denoising/test_real_denoising_CT.py`` of alwaysuu/CLIPDenoising, data prepared as RED-CNN's
``prep.py`` does):

- Model units: ``x = (HU - (-1024)) / (3072 - (-1024))``, so HU [-1024, 3072] <-> [0, 1]
  (:func:`hu_to_model`, :func:`model_to_hu`). Not clipped, as in the reference (whose data
  preparation first sets the scanner's padding outside the scan circle to -1024 HU, as
  :func:`prepare_mayo_dataset` and ``read_dicom_series(padding_hu=-1024)`` do). The
  reference's CT test script maps model units back with 3096 instead of 3072, a quirk that
  :func:`clipdenoise.metrics.ct_psnr` reproduces by default.
- Training noise (paper Sec. 4.1, ``CLIPDenoising_LDCTDenoising_GaussianSigma5.yml``): additive
  Gaussian, sigma = 5 on the [0, 255] scale *in model units*, i.e. ``5 / 255 = 0.0196`` of the
  4096 HU range = 80.3 HU (:data:`CT_TRAIN_NOISE` = ``"gaussian:5"`` for
  :mod:`clipdenoise.noise`), added to the normal-dose slices of the training patients.
- Metrics truncate HU to [-1024, 3072] (:mod:`clipdenoise.metrics`); for viewing, the usual
  abdomen window is [-160, 240] HU (:func:`apply_window`, :data:`DISPLAY_WINDOWS`).
- The Mayo/AAPM 2016 challenge data as the reference lays it out: one flat folder of slices
  ``{patient}_{index}_input.npy`` (quarter dose) and ``{patient}_{index}_target.npy`` (full
  dose) in model units; patient ``L506`` is held out for testing (:class:`MayoCTDataset`;
  :func:`prepare_mayo_dataset` or ``clipdenoise synth mayo`` builds that folder from the
  challenge's DICOM series; :func:`read_dicom_series` reads any series in table order).

pydicom is imported inside the functions that need it (``pip install 'clipdenoise[ct]'``).
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clipdenoise.atomic import atomic_write
from clipdenoise.errors import (
    ConfigError,
    DatasetError,
    DatasetNotFoundError,
    ImageReadError,
    one_line,
)
from clipdenoise.image_io import encode_png16

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

HU_MIN = -1024.0
"""HU value of model unit 0 (the reference's ``norm_range_min``)."""
HU_MAX = 3072.0
"""HU value of model unit 1 (the reference's ``norm_range_max`` for training and data)."""
CT_TRAIN_SIGMA_255 = 5.0
"""Training noise level of the LDCT recipe: Gaussian sigma on the [0, 255] scale, model units."""
CT_TRAIN_NOISE = "gaussian:5"
"""The same as a :mod:`clipdenoise.noise` spec."""
DEFAULT_TEST_PATIENT = "L506"
MAYO_PATIENTS = ("L067", "L096", "L109", "L143", "L192", "L286", "L291", "L310", "L333", "L506")
"""The ten patients of the AAPM/Mayo 2016 low-dose CT grand challenge training release."""

DISPLAY_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (-160.0, 240.0),
    "soft_tissue": (-160.0, 240.0),
    "lung": (-1350.0, 150.0),
    "bone": (-450.0, 1050.0),
    "brain": (0.0, 80.0),
    "full": (HU_MIN, HU_MAX),
}
"""Named display windows ``(low, high)`` in HU; ``abdomen`` is the reference's [-160, 240]."""

CT_SUFFIXES = (".dcm", ".dicom", ".ima", ".npy", ".png", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NpyUnits = Literal["hu", "model"]

_REQUIRED_DICOM_TAGS = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
)
_PYDICOM_HINT = "pydicom is needed to read DICOM files: pip install 'clipdenoise[ct]'"


# --------------------------------------------------------------------------- units and windows


def hu_to_model(
    hu: np.ndarray, *, hu_min: float = HU_MIN, hu_max: float = HU_MAX, clip: bool = False
) -> np.ndarray:
    """Hounsfield units -> model units: ``(hu - hu_min) / (hu_max - hu_min)``.

    Args:
        hu: any shape, HU.
        hu_min, hu_max: the HU values of model units 0 and 1 (reference: -1024, 3072).
        clip: clip to [0, 1] (the reference does not).

    Returns:
        Same shape, float32.
    """
    model = (np.asarray(hu, dtype=np.float64) - hu_min) / (hu_max - hu_min)
    if clip:
        model = np.clip(model, 0.0, 1.0)
    return model.astype(np.float32)


def model_to_hu(model: np.ndarray, *, hu_min: float = HU_MIN, hu_max: float = HU_MAX) -> np.ndarray:
    """Model units -> Hounsfield units (inverse of :func:`hu_to_model`), float32."""
    hu = np.asarray(model, dtype=np.float64) * (hu_max - hu_min) + hu_min
    return hu.astype(np.float32)


def resolve_window(window: str | tuple[float, float]) -> tuple[float, float]:
    """A display window by name (:data:`DISPLAY_WINDOWS`) or as ``(low, high)`` HU.

    Raises:
        ConfigError: unknown name (the message lists the valid ones) or ``low >= high``.
    """
    if isinstance(window, str):
        try:
            return DISPLAY_WINDOWS[window.lower()]
        except KeyError:
            valid = ", ".join(sorted(DISPLAY_WINDOWS))
            raise ConfigError(f"unknown CT window {window!r}; valid: {valid}") from None
    low, high = (float(v) for v in window)
    if not low < high:
        raise ConfigError(f"a CT window needs low < high, got ({low}, {high})")
    return low, high


def window_from_center_width(center: float, width: float) -> tuple[float, float]:
    """``(low, high)`` HU of a DICOM-style window level/width."""
    if width <= 0:
        raise ConfigError(f"window width must be > 0, got {width}")
    return center - width / 2.0, center + width / 2.0


def clip_to_window(hu: np.ndarray, window: str | tuple[float, float] = "abdomen") -> np.ndarray:
    """Clip HU to a window (the reference metric's ``trunc``); float32 HU."""
    low, high = resolve_window(window)
    return np.clip(np.asarray(hu, dtype=np.float32), low, high)


def apply_window(hu: np.ndarray, window: str | tuple[float, float] = "abdomen") -> np.ndarray:
    """Map HU to [0, 1] for display: ``low`` -> 0, ``high`` -> 1, clipped; float32.

    Example:
        >>> apply_window(np.array([-1000.0, 40.0, 500.0]), "abdomen").tolist()
        [0.0, 0.5, 1.0]
    """
    low, high = resolve_window(window)
    shown = (np.asarray(hu, dtype=np.float64) - low) / (high - low)
    return np.clip(shown, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- readers


def read_ct_slice(
    path: str | Path,
    *,
    npy_units: NpyUnits = "hu",
    png_offset: float = 1024.0,
    require_ct: bool = True,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read one CT slice as Hounsfield units.

    Formats, by suffix:

    - ``.dcm`` / ``.dicom`` / ``.ima`` (and files with a DICOM preamble): pydicom;
      ``HU = stored * RescaleSlope + RescaleIntercept``. The file must be a single-frame,
      single-sample CT image (``Modality`` CT unless ``require_ct=False``) with the rescale tags.
    - ``.npy``: a 2-D array (``(H, W)``, ``(H, W, 1)`` or ``(1, H, W)``) in HU
      (``npy_units="hu"``) or in model units (``"model"``, the reference's prepared slices).
    - ``.png`` / ``.tif`` / ``.tiff``: a 16-bit grey image; unsigned values are
      ``HU + png_offset`` (the common ``HU + 1024`` export), signed (int16 TIFF) and float
      values are HU.

    Args:
        path: the file.
        npy_units: units of ``.npy`` files.
        png_offset: the offset of unsigned 16-bit PNG/TIFF files.
        require_ct: reject DICOM files whose Modality is not CT.
        max_pixels: refuse DICOM slices of more pixels than this (Rows × Columns, from the
            header) before their pixel data is decoded.

    Returns:
        ``(H, W)`` float32 HU.

    Raises:
        ImageReadError: missing/unreadable file, not a 2-D CT slice, or missing tags; the
            message names the file and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _read_npy(path, npy_units)
    if suffix in (".png", ".tif", ".tiff"):
        return _read_16bit_image(path, png_offset)
    if suffix in DICOM_SUFFIXES or _has_dicom_preamble(path):
        return read_dicom_slice(path, require_ct=require_ct, max_pixels=max_pixels)[0]
    raise ImageReadError(
        f"{path}: unsupported CT file type {path.suffix!r}; use one of {', '.join(CT_SUFFIXES)}"
    )


def read_ct_model_units(path: str | Path, *, npy_units: NpyUnits = "model") -> np.ndarray:
    """Read one CT slice as ``(H, W, 1)`` float32 model units (the network's input scale).

    ``.npy`` slices already in model units (the reference's prepared slices) are only cast to
    float32, as the reference does: no HU round trip, so the values are bit-identical to the
    reference's inputs. Every other file is read by :func:`read_ct_slice` and scaled by
    :func:`hu_to_model`.

    Raises:
        ImageReadError: see :func:`read_ct_slice`.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy" and npy_units == "model":
        if not path.is_file():
            raise ImageReadError(f"{path}: file not found")
        return _read_npy_values(path)[..., None]
    return hu_to_model(read_ct_slice(path, npy_units=npy_units))[..., None]


def _has_dicom_preamble(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_slice(
    path: str | Path, *, require_ct: bool = True, max_pixels: int | None = None
) -> tuple[np.ndarray, Dataset]:
    """Read a DICOM CT slice: ``(hu (H, W) float32, the pydicom Dataset)``.

    ``max_pixels`` refuses slices whose header (Rows × Columns) exceeds it, before the pixel
    data is decoded.

    Raises:
        ImageReadError: not DICOM, not CT, multi-frame or colour, missing tags (all listed),
            too many pixels, undecodable pixel data; the message names the file.
    """
    path = Path(path)
    dataset = _read_dicom_dataset(path)
    try:
        return _decode_dicom(path, dataset, require_ct=require_ct, max_pixels=max_pixels)
    except ImageReadError:
        raise
    except Exception as error:  # elements are converted lazily: a damaged one fails here
        raise ImageReadError(f"{path}: invalid DICOM data ({one_line(error)})") from error


def _decode_dicom(
    path: Path, dataset: Dataset, *, require_ct: bool, max_pixels: int | None
) -> tuple[np.ndarray, Dataset]:
    check_ct_dataset(dataset, path, require_ct=require_ct)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if max_pixels is not None and rows * columns > max_pixels:
        raise ImageReadError(
            f"{path}: the slice is {columns}x{rows} pixels, over the limit of {max_pixels}"
        )
    try:
        stored = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for codec problems
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise ImageReadError(
            f"{path}: cannot decode the pixel data (transfer syntax {syntax}): {one_line(error)}"
        ) from error
    if stored.ndim != 2:
        raise ImageReadError(f"{path}: pixel data has shape {stored.shape}, not a 2-D slice")
    slope, intercept = float(dataset.RescaleSlope), float(dataset.RescaleIntercept)
    hu = stored.astype(np.float64) * slope + intercept
    return hu.astype(np.float32), dataset


def _read_dicom_dataset(path: Path) -> Dataset:
    pydicom = _import_pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(_in_memory(path))
    except InvalidDicomError as error:
        # Some scanner exports (older .IMA) lack the 128-byte preamble: parse them anyway,
        # and call the file "not DICOM" only if no image tags come out.
        dataset = _read_without_preamble(path)
        if dataset is None:
            raise ImageReadError(f"{path}: not a DICOM file ({error})") from error
        return dataset
    except Exception as error:  # a damaged file makes the parser fail in many ways
        raise ImageReadError(f"{path}: cannot read DICOM file ({one_line(error)})") from error


def _in_memory(path: Path) -> io.BytesIO:
    """The file's bytes as a stream for pydicom: an element whose stated length exceeds the
    file then reads what there is, instead of making the reader allocate the stated length
    (a file read allocates its requested size up front; 8 bytes can ask for 4 GiB)."""
    return io.BytesIO(path.read_bytes())


def _read_without_preamble(path: Path) -> Dataset | None:
    import pydicom

    try:
        dataset = pydicom.dcmread(_in_memory(path), force=True)
    except Exception:  # garbage makes the forced parser fail in many ways
        return None
    if not ("PixelData" in dataset and "Rows" in dataset):
        return None
    meta = getattr(dataset, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # Decoding needs a transfer syntax: take the encoding the parser found.
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = getattr(dataset, "original_encoding", (True, True))
        meta = meta if meta is not None else FileMetaDataset()
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        dataset.file_meta = meta
    return dataset


def check_ct_dataset(dataset: Dataset, path: str | Path, *, require_ct: bool = True) -> None:
    """Raise :class:`ImageReadError` naming ``path`` unless ``dataset`` is a single 2-D CT slice
    with every tag needed to get HU."""
    if "PixelData" not in dataset:
        raise ImageReadError(f"{path}: DICOM file has no pixel data (PixelData)")
    modality = dataset.get("Modality")
    if require_ct and modality is None:
        raise ImageReadError(f"{path}: DICOM file lacks Modality; expected a CT slice")
    if require_ct and str(modality).upper() != "CT":
        raise ImageReadError(f"{path}: Modality is {modality!r}, not a CT slice")
    missing = [tag for tag in _REQUIRED_DICOM_TAGS if dataset.get(tag) in (None, "")]
    if missing:
        raise ImageReadError(f"{path}: DICOM file lacks required tags: {', '.join(missing)}")
    samples = int(dataset.get("SamplesPerPixel", 1))
    if samples != 1:
        raise ImageReadError(f"{path}: has {samples} samples per pixel; a CT slice has 1 (grey)")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ImageReadError(f"{path}: holds {frames} frames; expected a single 2-D slice")


def _read_npy(path: Path, units: NpyUnits) -> np.ndarray:
    if units not in ("hu", "model"):
        raise ConfigError(f"npy_units must be 'hu' or 'model', got {units!r}")
    array = _read_npy_values(path)
    return model_to_hu(array) if units == "model" else array


def _read_npy_values(path: Path) -> np.ndarray:
    """The 2-D slice of a ``.npy`` file as float32, values unchanged."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ImageReadError(f"{path}: cannot read .npy file ({error})") from error
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iuf":
        raise ImageReadError(f"{path}: .npy file does not hold a numeric array")
    return _squeeze_slice(array, path).astype(np.float32)


def _squeeze_slice(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):
        array = array.reshape(array.shape[1:] if array.shape[0] == 1 else array.shape[:2])
    if array.ndim != 2 or min(array.shape) < 1:
        raise ImageReadError(f"{path}: holds an array of shape {array.shape}, not a 2-D CT slice")
    return array


def _read_16bit_image(path: Path, offset: float) -> np.ndarray:
    is_tiff = path.suffix.lower() in (".tif", ".tiff")
    array = _read_tiff(path) if is_tiff else _read_png(path)
    array = _squeeze_slice(array, path)
    if array.dtype.kind == "u":
        if array.dtype.itemsize < 2:
            raise ImageReadError(
                f"{path}: is an 8-bit image, which cannot hold HU; CT slices need 16 bits"
            )
        return (array.astype(np.float64) - offset).astype(np.float32)
    return array.astype(np.float32)


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(image, dtype=np.uint16)
            if mode == "I":
                # Pillow opens some 16-bit greyscale PNGs as 32-bit "I"; the values are uint16.
                return np.asarray(image, dtype=np.int64).astype(np.uint16)
            if mode in ("L", "P", "1"):
                raise ImageReadError(
                    f"{path}: is an 8-bit image, which cannot hold HU; CT slices need 16 bits"
                )
            raise ImageReadError(f"{path}: is a {mode} image; a CT slice is one grey channel")
    except UnidentifiedImageError as error:
        raise ImageReadError(f"{path}: not a readable image ({error})") from error
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, ImageReadError):
            raise
        raise ImageReadError(f"{path}: cannot decode image ({error})") from error


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError as error:
        raise ImageReadError(
            f"{path}: reading TIFF CT slices needs tifffile: pip install 'clipdenoise[tiff]'"
        ) from error
    try:
        return np.asarray(tifffile.imread(path))
    except Exception as error:  # tifffile raises several types for damaged files
        raise ImageReadError(f"{path}: cannot decode TIFF ({error})") from error


def _import_pydicom():
    try:
        import pydicom
    except ImportError as error:
        raise ImportError(_PYDICOM_HINT) from error
    return pydicom


# --------------------------------------------------------------------------- writers


def write_dicom_like(
    template: str | Path | Dataset,
    hu: np.ndarray,
    out_path: str | Path,
    *,
    series_description_suffix: str = " [denoised: clipdenoise]",
    series_instance_uid: str | None = None,
    keep_padding: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a HU slice as a DICOM file that copies ``template``'s metadata (DICOM in -> DICOM out).

    The pixel data go back in the template's stored representation: ``stored = round((hu -
    RescaleIntercept) / RescaleSlope)`` clipped to the range of ``BitsStored`` bits, signed or
    unsigned as ``PixelRepresentation`` says, in ``BitsAllocated`` bits (so the round-trip error
    is at most ``RescaleSlope / 2`` HU inside that range). Compressed or big-endian templates are
    written as Explicit VR Little Endian. The output is marked as a derived image: a new
    ``SOPInstanceUID``; a new ``SeriesInstanceUID`` derived deterministically from the template's
    (so every slice of one input series lands in the same output series, and a rerun gives the
    same UIDs); ``SeriesDescription`` + ``series_description_suffix``; ``ImageType`` DERIVED;
    ``DerivationDescription``. Everything else (patient, study, geometry, windows) is kept.

    Args:
        template: the source DICOM file or a pydicom Dataset (not modified).
        hu: ``(H, W)`` HU, e.g. the denoised slice; its shape may differ from the template's.
        out_path: the file to write (atomically).
        series_description_suffix: appended to SeriesDescription (kept within 64 characters).
        series_instance_uid: use this SeriesInstanceUID instead of the derived one.
        keep_padding: where the template holds ``PixelPaddingValue``, write it unchanged.
        overwrite: replace an existing ``out_path``.

    Returns:
        ``out_path``.

    Raises:
        ImageReadError: the template is not a usable CT slice (named).
        ConfigError: ``hu`` is not 2-D, or ``out_path`` exists and ``overwrite`` is false.
    """
    pydicom = _import_pydicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise ConfigError(f"{out_path}: exists already (pass overwrite=True to replace it)")
    if isinstance(template, (str, Path)):
        where = Path(template)
        if not where.is_file():
            raise ImageReadError(f"{where}: DICOM template not found")
        dataset = _read_dicom_dataset(where)
    else:
        where, dataset = "DICOM template", copy.deepcopy(template)
    check_ct_dataset(dataset, where, require_ct=False)
    hu = np.asarray(hu, dtype=np.float64)
    if hu.ndim != 2:
        raise ConfigError(f"write_dicom_like needs a 2-D HU slice, got shape {hu.shape}")

    stored = encode_stored_values(hu, dataset)
    padding = dataset.get("PixelPaddingValue")
    if keep_padding and padding is not None:
        try:
            original = dataset.pixel_array
        except Exception:
            original = None
        if original is not None and original.shape == stored.shape:
            mask = padding_mask(original, padding)
            stored = np.where(mask, np.asarray(padding).astype(stored.dtype), stored)

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or syntax.is_compressed or not syntax.is_little_endian:
        syntax = ExplicitVRLittleEndian
    meta = getattr(dataset, "file_meta", None)
    if not meta:
        meta = FileMetaDataset()
        dataset.file_meta = meta
    meta.TransferSyntaxUID = syntax
    if int(pydicom.__version__.split(".")[0]) < 3:
        dataset.is_little_endian = True
        dataset.is_implicit_VR = syntax == pydicom.uid.ImplicitVRLittleEndian

    dataset.Rows, dataset.Columns = int(hu.shape[0]), int(hu.shape[1])
    dataset.PixelData = _pixel_bytes(stored)
    dataset["PixelData"].VR = "OW" if stored.dtype.itemsize > 1 else "OB"
    # An encapsulated (compressed) template had undefined length; native data has a length.
    dataset["PixelData"].is_undefined_length = False
    for tag in ("SmallestImagePixelValue", "LargestImagePixelValue", "NumberOfFrames"):
        if tag in dataset:
            del dataset[tag]

    old_series = str(dataset.get("SeriesInstanceUID", ""))
    old_sop = str(dataset.get("SOPInstanceUID", ""))
    new_series = series_instance_uid or generate_uid(
        entropy_srcs=["clipdenoise", old_series, series_description_suffix]
    )
    new_sop = generate_uid(entropy_srcs=["clipdenoise", old_sop, str(new_series)])
    dataset.SeriesInstanceUID = new_series
    dataset.SOPInstanceUID = new_sop
    meta.MediaStorageSOPInstanceUID = new_sop
    if "SOPClassUID" not in dataset:
        dataset.SOPClassUID = CTImageStorage
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    description = str(dataset.get("SeriesDescription", ""))
    keep = max(0, 64 - len(series_description_suffix))
    dataset.SeriesDescription = (description[:keep] + series_description_suffix)[:64]
    image_type = list(dataset.get("ImageType", ["ORIGINAL", "PRIMARY", "AXIAL"]))
    dataset.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    dataset.DerivationDescription = "denoised with clipdenoise (CLIP-feature denoiser)"[:1024]

    # Always a standard Part 10 file (preamble + file meta), whatever the template was.
    if int(pydicom.__version__.split(".")[0]) >= 3:
        options = {"enforce_file_format": True}
    else:  # pragma: no cover - pydicom 2.x
        options = {"write_like_original": False}
    return atomic_write(out_path, lambda stream: pydicom.dcmwrite(stream, dataset, **options))


def stored_value_range(dataset: Dataset) -> tuple[int, int]:
    """The valid stored pixel values ``(low, high)`` of ``BitsStored`` bits, signed when
    ``PixelRepresentation`` is 1."""
    bits = int(dataset.BitsStored)
    if int(dataset.PixelRepresentation) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def encode_stored_values(hu: np.ndarray, dataset: Dataset) -> np.ndarray:
    """HU -> the stored integers of ``dataset``'s representation (rounded, clipped), in the dtype
    of ``BitsAllocated`` / ``PixelRepresentation``."""
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    low, high = stored_value_range(dataset)
    allocated = int(dataset.BitsAllocated)
    if allocated not in (8, 16, 32):
        raise ConfigError(f"unsupported BitsAllocated {allocated} (8, 16 or 32 are written)")
    signed = int(dataset.PixelRepresentation) == 1
    dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
    stored = np.rint((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    return np.clip(stored, low, high).astype(dtype)


def _pixel_bytes(stored: np.ndarray) -> bytes:
    data = np.ascontiguousarray(stored).tobytes()
    return data + b"\0" if len(data) % 2 else data


def write_ct_png16(hu: np.ndarray, out_path: str | Path, *, offset: float = 1024.0) -> Path:
    """Write HU as a 16-bit grey PNG holding ``HU + offset`` (rounded, clipped to 0..65535),
    the format :func:`read_ct_slice` reads back; atomic."""
    values = np.clip(np.rint(np.asarray(hu, dtype=np.float64) + offset), 0, 65535)
    data = encode_png16(values.astype(np.uint16))
    return atomic_write(out_path, lambda stream: stream.write(data))


# --------------------------------------------------------------------------- Mayo / AAPM dataset

# Mayo 2016 ids are L + 3 digits; the later TCIA LDCT release adds C (chest) and N (neuro).
_PATIENT_PATTERN = re.compile(r"(?<![A-Za-z0-9])([LCN]\d{3})(?!\d)")
MayoSplit = Literal["train", "train_pairs", "test"]


def patient_id_of(path: str | Path) -> str:
    """The Mayo patient id in a file name (``L067_12_input.npy`` -> ``L067``; also TCIA's
    ``C``/``N`` ids); otherwise the text before the first ``_``."""
    name = Path(path).name
    match = _PATIENT_PATTERN.search(name)
    return match.group(1) if match else name.split("_")[0]


@dataclass(frozen=True)
class MayoPair:
    """One slice position: ``input`` (quarter dose) and ``target`` (full dose) files."""

    patient: str
    name: str
    input: Path
    target: Path


class MayoCTDataset:
    """The Mayo/AAPM low-dose CT data in the reference's layout.

    ``root`` is one flat folder of slices whose names hold the patient id, ``input``
    (quarter dose) or ``target`` (full dose), e.g. ``L067_0_input.npy`` /
    ``L067_0_target.npy`` (RED-CNN's ``prep.py`` layout the reference reads); DICOM, 16-bit
    PNG/TIFF slices named the same way work too. A target is paired with the input of the same
    name (``input`` -> ``target``).

    Splits (the reference holds out one patient, ``L506``):

    - ``"train"``: the full-dose slices of every other patient, ``(H, W, 1)`` float32 model
      units; the recipe adds Gaussian noise sigma = 5/255 to them (:data:`CT_TRAIN_NOISE`).
    - ``"train_pairs"``: ``(name, quarter, full)`` of the other patients (supervised baselines).
    - ``"test"``: ``(name, quarter, full)`` of the held-out patient, for evaluation.

    Args:
        root: the folder.
        split: see above.
        test_patient: the held-out patient id.
        npy_units: units of ``.npy`` slices (the reference's are model units).

    Raises:
        DatasetNotFoundError: ``root`` does not exist.
        DatasetError: no slices for the split, or an input without its target (named).
    """

    def __init__(
        self,
        root: str | Path,
        split: MayoSplit = "test",
        *,
        test_patient: str = DEFAULT_TEST_PATIENT,
        npy_units: NpyUnits = "model",
    ) -> None:
        if split not in ("train", "train_pairs", "test"):
            raise ConfigError(f"unknown Mayo split {split!r}; valid: train, train_pairs, test")
        self.root = Path(root)
        self.split = split
        self.test_patient = test_patient
        self.npy_units = npy_units
        if not self.root.is_dir():
            raise DatasetNotFoundError(
                f"Mayo CT folder {self.root} does not exist; expected a flat folder of "
                "{patient}_{index}_input.npy / _target.npy slices (see prepare_mayo_dataset)"
            )
        held_out = split == "test"
        if split == "train":
            targets = [
                path
                for path in _ct_files(self.root, "target")
                if (patient_id_of(path) == test_patient) == held_out
            ]
            self.pairs: list[MayoPair] = []
            self.targets = targets
            count = len(targets)
        else:
            self.pairs = [
                pair
                for pair in find_mayo_pairs(self.root)
                if (pair.patient == test_patient) == held_out
            ]
            self.targets = [pair.target for pair in self.pairs]
            count = len(self.pairs)
        if count == 0:
            which = f"patient {test_patient}" if held_out else f"patients other than {test_patient}"
            raise DatasetError(f"Mayo CT folder {self.root} holds no {split} slices of {which}")

    @property
    def patients(self) -> list[str]:
        """The patient ids in this split, sorted."""
        return sorted({patient_id_of(path) for path in self.targets})

    def __len__(self) -> int:
        return len(self.targets)

    def read_model_units(self, path: Path) -> np.ndarray:
        """One slice as ``(H, W, 1)`` float32 model units (:func:`read_ct_model_units`)."""
        return read_ct_model_units(path, npy_units=self.npy_units)

    def __getitem__(self, index: int) -> np.ndarray | tuple[str, np.ndarray, np.ndarray]:
        if self.split == "train":
            return self.read_model_units(self.targets[index])
        pair = self.pairs[index]
        noisy, clean = self.read_model_units(pair.input), self.read_model_units(pair.target)
        if noisy.shape != clean.shape:
            raise DatasetError(
                f"{pair.input} and {pair.target}: shapes {noisy.shape[:2]} and "
                f"{clean.shape[:2]} differ"
            )
        return pair.name, noisy, clean

    def __iter__(self) -> Iterator[Any]:
        for index in range(len(self)):
            yield self[index]


def _ct_files(root: Path, kind: str) -> list[Path]:
    return sorted(
        path
        for path in root.iterdir()
        if path.is_file() and kind in path.name and path.suffix.lower() in CT_SUFFIXES
    )


def find_mayo_pairs(root: str | Path) -> list[MayoPair]:
    """Every ``*input*`` slice of ``root`` with its ``*target*`` partner, sorted by name.

    Raises:
        DatasetError: an input has no target or a target no input (the files are named).
    """
    root = Path(root)
    inputs = _ct_files(root, "input")
    targets = {path.name: path for path in _ct_files(root, "target")}
    pairs, missing = [], []
    for path in inputs:
        partner = path.name.replace("input", "target")
        if partner not in targets:
            missing.append(f"{path.name} (no {partner})")
            continue
        pairs.append(
            MayoPair(
                patient=patient_id_of(path),
                name=path.name.replace("_input", "").rsplit(".", 1)[0],
                input=path,
                target=targets.pop(partner),
            )
        )
    missing.extend(f"{name} (no input)" for name in sorted(targets))
    if missing:
        shown = ", ".join(missing[:10]) + (
            f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise DatasetError(f"Mayo CT folder {root}: unpaired slices: {shown}")
    return pairs


def prepare_mayo_dataset(
    raw_root: str | Path,
    out_dir: str | Path,
    *,
    thickness: str = "1mm",
    patients: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Convert the challenge's DICOM release to the reference's flat ``.npy`` layout.

    Reads ``raw_root/<patient>/quarter_<thickness>/*`` (input) and ``.../full_<thickness>/*``
    (target) DICOM/IMA series, orders each series by ``ImagePositionPatient[2]`` (then
    ``InstanceNumber``), maps padding (``PixelPaddingValue``, else stored -2000) to -1024 HU
    as RED-CNN's ``prep.py`` does, and writes ``{patient}_{i}_input.npy`` /
    ``{patient}_{i}_target.npy`` model units, atomically, as float32 (``prep.py`` writes
    float64; the reference converts to float32 on loading, so training sees the same values
    and the folder takes half the space).

    Args:
        raw_root: folder holding one folder per patient.
        out_dir: the flat output folder (created).
        thickness: slice thickness folder suffix (``1mm`` or ``3mm``).
        patients: restrict to these ids (default: every patient folder found).
        overwrite: replace existing ``.npy`` files.
        progress: show a progress bar (one step per patient) on stderr.

    Returns:
        The written files.

    Raises:
        DatasetNotFoundError / DatasetError: missing folders or series of different lengths
            (named); ImageReadError for unreadable slices (named).
    """
    from tqdm import tqdm

    raw_root, out_dir = Path(raw_root), Path(out_dir)
    if not raw_root.is_dir():
        raise DatasetNotFoundError(f"Mayo raw folder {raw_root} does not exist")
    found = sorted(p.name for p in raw_root.iterdir() if p.is_dir())
    chosen = list(patients) if patients is not None else found
    if not chosen:
        raise DatasetError(f"Mayo raw folder {raw_root} holds no patient folders")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for patient in tqdm(chosen, unit="patient", disable=not progress):
        series = {
            kind: _read_series(raw_root / patient / f"{dose}_{thickness}")
            for kind, dose in (("input", "quarter"), ("target", "full"))
        }
        if len(series["input"]) != len(series["target"]):
            raise DatasetError(
                f"{raw_root / patient}: quarter_{thickness} has {len(series['input'])} slices "
                f"but full_{thickness} has {len(series['target'])}"
            )
        for kind, slices in series.items():
            for index, hu in enumerate(slices):
                path = out_dir / f"{patient}_{index}_{kind}.npy"
                if path.exists() and not overwrite:
                    raise ConfigError(f"{path}: exists already (pass overwrite=True)")
                atomic_write(path, lambda stream, hu=hu: np.save(stream, hu_to_model(hu)))
                written.append(path)
    return written


def _read_series(folder: Path) -> list[np.ndarray]:
    if not folder.is_dir():
        raise DatasetNotFoundError(f"Mayo series folder {folder} does not exist")
    slices = read_dicom_series(folder, padding_hu=HU_MIN)
    if not slices:
        raise DatasetError(f"Mayo series folder {folder} holds no slices")
    return [item.hu for item in slices]


@dataclass(frozen=True)
class DicomSlice:
    """One slice of a series: its file, ``(H, W)`` float32 HU and pydicom Dataset."""

    path: Path
    hu: np.ndarray
    dataset: Dataset


def read_dicom_series(
    folder: str | Path,
    *,
    padding_hu: float | None = None,
    require_ct: bool = True,
) -> list[DicomSlice]:
    """Read every DICOM slice of a folder, ordered along the patient axis.

    Files are ordered by ``ImagePositionPatient[2]`` (then ``InstanceNumber``, then name), as
    RED-CNN's preparation of the Mayo data does. Hidden files are ignored; every other file must
    be a CT slice (errors name the file).

    Args:
        folder: one series.
        padding_hu: if set, pixels equal to ``PixelPaddingValue`` (or stored -2000 when the tag is
            absent) get this HU value (RED-CNN's preparation uses -1024).
        require_ct: reject non-CT modalities.

    Returns:
        The slices, in order (empty if the folder holds no files).

    Raises:
        DatasetNotFoundError: ``folder`` does not exist.
        ImageReadError: a file is not a usable CT slice.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"DICOM series folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    ordered = []
    for path in files:
        hu, dataset = read_dicom_slice(path, require_ct=require_ct)
        if padding_hu is not None:
            mask = padding_mask(dataset.pixel_array, dataset.get("PixelPaddingValue", -2000))
            hu = np.where(mask, np.float32(padding_hu), hu)
        position = dataset.get("ImagePositionPatient")
        z = float(position[2]) if position is not None and len(position) == 3 else 0.0
        instance = int(dataset.get("InstanceNumber", 0) or 0)
        ordered.append(((z, instance, path.name), DicomSlice(path, hu, dataset)))
    ordered.sort(key=lambda item: item[0])
    return [item for _, item in ordered]


def padding_mask(stored: np.ndarray, padding: int) -> np.ndarray:
    """Where stored pixels equal the padding value, comparing 16-bit data as two's complement
    (so -2000 matches an unsigned 63536, as RED-CNN's ``astype(np.int16)`` does)."""
    stored = np.asarray(stored)
    if stored.dtype.itemsize == 2:
        wrapped = np.int16(((int(padding) + 32768) % 65536) - 32768)
        return stored.view(np.int16) == wrapped
    return stored == padding
