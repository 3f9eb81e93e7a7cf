"""DICOM files: detection by preamble, the few header fields the series uses, and 8-bit pixels.

Hospitals store radiographs as DICOM, often without a file extension, so a file is DICOM when
bytes 128-131 are ``DICM`` (`is_dicom`), whatever its name says. `cxrnb.images` sends such a file
here and then treats the returned 8-bit gray array exactly like a decoded PNG or JPEG (same base
image, same cache).

The 8-bit rule (`to_uint8`), in the order DICOM defines (PS3.3 C.11):

1. Modality LUT: RescaleSlope/RescaleIntercept (or a Modality LUT Sequence) give real values.
2. VOI: a VOI LUT Sequence when present, else the first WindowCenter/WindowWidth (the linear
   window of C.11.2.1.2), maps those values to display grey levels 0..255.
3. No VOI: 8-bit data with no rescale is used as stored (the real RSNA files are display-ready);
   deeper or rescaled data is stretched from the image's own minimum to its maximum, the rule
   `cxrnb.images` applies to 16-bit PNGs, so a film stored either way gives the same pixels.
4. MONOCHROME1 (higher value = darker) is inverted last, so bone is always bright.

Privacy: `header` reads only `HEADER_FIELDS` (patient id, view, sex, age, study); names, birth
dates, accession numbers and institutions are never read into the index, CSVs or reports.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

#: Header fields the index may keep (tag keyword -> index column). Nothing else is read.
HEADER_FIELDS = {"PatientID": "patient_id", "ViewPosition": "view", "PatientSex": "sex",
                 "PatientAge": "age", "StudyInstanceUID": "study", "Modality": "modality"}
#: Extensions DICOM files come with (many have none; detection is by preamble).
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")
#: pip packages that decode each compressed transfer syntax family (named in the error).
_DECODER_PACKAGES = {
    "JPEG 2000": "pylibjpeg-openjpeg", "High-Throughput JPEG 2000": "pylibjpeg-openjpeg",
    "JPEG-LS": "pyjpegls", "JPEG": "pylibjpeg pylibjpeg-libjpeg",
}


class DicomError(ValueError):
    """A DICOM file that gives no usable image; `reason` is a short category for reports."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def is_dicom(path: str | Path) -> bool:
    """Whether `path` starts with a DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            return is_dicom_head(f.read(132))
    except OSError:
        return False


def is_dicom_head(head: bytes) -> bool:
    """Whether a file's first 132 bytes are a DICOM Part 10 preamble (for a caller that has
    the file open already)."""
    return len(head) >= 132 and head[128:132] == b"DICM"


def sniff(path: str | Path) -> str:
    """What a file's first bytes say it is: ``DICOM``, ``JPEG``, ``PNG``, or ``unknown``."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return "unreadable"
    if is_dicom_head(head):
        return "DICOM"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return "unknown"


def _dcmread(path: str | Path, **kwargs):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():  # a truncated file warns, then is reported by `read_pixels`
            warnings.simplefilter("ignore", UserWarning)
            return pydicom.dcmread(path, **kwargs)
    except InvalidDicomError as e:
        raise DicomError("not a DICOM file", f"{sniff(path)} content: {e}") from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DicomError("corrupt image", f"DICOM header cannot be read ({type(e).__name__}: {e})") from None


def header(path: str | Path) -> dict[str, str | None]:
    """The `HEADER_FIELDS` of a DICOM file as index columns (blank -> None), pixels not read.

    Raises `DicomError` ("not a DICOM file", "corrupt image") for a file without a readable header.
    """
    if not is_dicom(path):
        raise DicomError("not a DICOM file", f"no DICM preamble; the content is {sniff(path)}")
    ds = _dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_FIELDS))
    out: dict[str, str | None] = {}
    for kw, col in HEADER_FIELDS.items():
        v = ds.get(kw)
        out[col] = str(v).strip() or None if v is not None else None
    return out


def _no_decoder(ds) -> DicomError:
    uid = ds.file_meta.TransferSyntaxUID
    name = getattr(uid, "name", str(uid))
    family = next((k for k in _DECODER_PACKAGES if name.startswith(k)), None)
    how = (f"pip install {_DECODER_PACKAGES[family]}" if family else
           "no Python decoder is known for it; convert the file (e.g. dcmdjpeg/gdcmconv) first")
    return DicomError("no decoder", f"transfer syntax {name} ({uid}) cannot be decoded here: {how}")


def _window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """The linear VOI window of DICOM PS3.3 C.11.2.1.2, to 0..255 (float)."""
    width = max(float(width), 1.0)
    y = ((x - (center - 0.5)) / (width - 1 if width > 1 else 1) + 0.5) * 255.0
    return np.clip(y, 0.0, 255.0)


def _first(value) -> float:
    """First value of a (possibly multi-valued) DS element."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def to_uint8(arr: np.ndarray, ds) -> np.ndarray:
    """Stored pixel values of one frame to 8-bit display grey levels (the module's rule)."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    x = apply_modality_lut(arr, ds).astype(np.float32) if rescaled else arr.astype(np.float32)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        y = apply_voi(arr if not rescaled else x, ds, index=0).astype(np.float32)
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float32)
        lo, hi = float(lut.min()), float(lut.max())
        y = (y - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(y)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        y = _window(x, _first(ds.WindowCenter), _first(ds.WindowWidth))
    elif int(ds.get("BitsStored", 8)) <= 8 and not rescaled and arr.dtype == np.uint8:
        y = x
    else:
        lo, hi = float(x.min()), float(x.max())
        y = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
    out = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255 - out
    return out


def _jpeg_frame(ds, side: int | None) -> np.ndarray | None:
    """A JPEG Baseline 8-bit grey frame decoded by Pillow (draft-reduced for base side `side`,
    exactly as a JPEG file is), or None when the file is not that case or Pillow refuses it.

    This is the common case (every real RSNA file) and libjpeg's reduced decoding makes it as
    cheap as a JPEG file; other syntaxes go through pydicom's decoders (pylibjpeg).
    """
    import io

    from PIL import Image
    from pydicom.encaps import generate_frames
    from pydicom.uid import JPEGBaseline8Bit

    if ds.file_meta.get("TransferSyntaxUID") != JPEGBaseline8Bit or int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        with Image.open(io.BytesIO(frame)) as img:
            if img.mode != "L":
                return None
            if side is not None:
                img.draft("L", (side, side))
            return np.asarray(img)
    except (OSError, ValueError, StopIteration, SyntaxError):
        return None  # let pydicom's decoder say what is wrong


def read_pixels(path: str | Path, max_pixels: int | None = None, side: int | None = None
                ) -> tuple[np.ndarray, dict]:
    """(8-bit gray array, facts) of a one-frame DICOM image; `DicomError` for every bad case.

    Facts: ``width, height, bit_depth`` (BitsStored) and ``mode`` (the PhotometricInterpretation).
    `side` lets a JPEG Baseline file decode at reduced size (see `_jpeg_frame`; the result's
    shorter side stays at least `side`). Bad cases: more pixels than `max_pixels` (from the header, before decoding), no pixel data (a structured report, a DICOMDIR), multi-frame, a transfer syntax
    with no decoder installed (the detail names the package), a truncated or corrupt file.
    """
    ds = _dcmread(path)
    if "PixelData" not in ds and ("Rows" in ds or not len(ds)):
        what = f"the header describes a {ds.Columns}x{ds.Rows} image" if "Rows" in ds else \
            "no data element could be read after the file meta header"
        raise DicomError("corrupt image", f"truncated: {what}, but the file ends before its pixel data")
    if "PixelData" not in ds:
        what = getattr(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", ""), "name", "unknown")
        raise DicomError("no pixel data", f"a DICOM object without an image (SOP class {what})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DicomError("multi-frame", f"{frames} frames; a radiograph is one frame (which one to use is unknown)")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if max_pixels is not None and rows * cols > max_pixels:
        raise DicomError("decompression bomb", f"{cols}x{rows} = {rows * cols:,} pixels exceeds the limit of {max_pixels:,}")
    arr = _jpeg_frame(ds, side)
    try:
        arr = ds.pixel_array if arr is None else arr
    except (RuntimeError, NotImplementedError) as e:
        if "missing dependencies" in str(e) or "no pixel data decoders" in str(e).lower() \
                or isinstance(e, NotImplementedError):
            raise _no_decoder(ds) from None
        raise DicomError("corrupt image", f"{type(e).__name__}: {e}") from None
    except (ValueError, EOFError, OSError, AttributeError, KeyError, TypeError) as e:
        raise DicomError("corrupt image", f"pixel data cannot be decoded ({type(e).__name__}: {str(e)[:200]})") from None
    if arr.ndim == 3:  # colour (RGB / YBR converted by pydicom): luminance
        arr = (arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        gray, mode = arr, "RGB"
    else:
        gray, mode = to_uint8(arr, ds), str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    return gray, {"width": cols or gray.shape[1], "height": rows or gray.shape[0], "mode": mode,
                  "bit_depth": int(ds.get("BitsStored", 8))}


def _uid(*parts: object) -> str:
    """A deterministic UID from `parts` (so a seed gives byte-identical files)."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(p) for p in parts])


def stored_values(gray: np.ndarray, *, bits: int = 8, slope: float = 1.0, intercept: float = 0.0,
                  window: tuple[float, float] | None = None, monochrome1: bool = False) -> np.ndarray:
    """Stored values that `to_uint8` maps back to about `gray` (uint8): the inverse of the rule.

    With `window` (center, width) the values are placed inside the window; without it, over the
    full `bits` range. For MONOCHROME1 the grey levels are inverted first.
    """
    v = (255 - gray if monochrome1 else gray).astype(np.float64) / 255.0
    if window is not None:
        c, w = window
        real = c - 0.5 + (v - 0.5) * (w - 1)
    else:
        real = v * (2 ** bits - 1) * slope + intercept
    s = np.rint((real - intercept) / slope)
    return np.clip(s, 0, 2 ** bits - 1).astype(np.uint8 if bits <= 8 else np.uint16)


def write_dicom(path: str | Path, gray: np.ndarray, *, patient_id: str | None, view: str | None = "PA",
                sex: str | None = None, age: str | None = None, study: str = "1", bits: int = 8,
                slope: float = 1.0, intercept: float = 0.0, window: tuple[float, float] | None = None,
                monochrome1: bool = False, compression: str | None = None, frames: int = 1,
                pixels: bool = True, identifiers: dict[str, str] | None = None, modality: str = "CR",
                seed: int = 0) -> Path:
    """Write `gray` (uint8 H x W) as a DICOM radiograph, deterministically (used by the generator).

    `bits` 8 or 12 (stored in 16), `slope`/`intercept` the modality rescale, `window` the VOI
    (center, width) tags, `monochrome1` the inverted photometric, `compression` None
    (explicit VR little endian), ``"jpeg"`` (JPEG Baseline, 8-bit only, encoded by Pillow) or
    ``"rle"`` (RLE Lossless, any depth). `frames` > 1 repeats the frame (a multi-frame file);
    `pixels=False` writes a header without pixel data. `identifiers` adds tags such as
    PatientName that a real export carries (the privacy test checks they never leak).
    Written atomically. Returns `path`.
    """
    import io as _io

    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit, PYDICOM_IMPLEMENTATION_UID,
                             RLELossless, SecondaryCaptureImageStorage)

    from .index import atomic_write

    if compression == "jpeg" and bits != 8:
        raise ValueError("JPEG Baseline holds 8-bit data only; use compression='rle' for 12 bits")
    arr = stored_values(gray, bits=bits, slope=slope, intercept=intercept, window=window, monochrome1=monochrome1)
    sop = _uid(seed, patient_id, study, path.name if isinstance(path, Path) else Path(path).name)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = JPEGBaseline8Bit if compression == "jpeg" else ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, sop
    ds.StudyInstanceUID = _uid(seed, patient_id, "study", study)
    ds.SeriesInstanceUID = _uid(seed, patient_id, "series", study)
    ds.Modality, ds.ConversionType, ds.BodyPartExamined = modality, "WSD", "CHEST"
    ds.StudyDate, ds.StudyTime = "19010101", "000000.00"
    with warnings.catch_warnings():  # RSNA writes ages as bare '32', not the standard '032Y'
        warnings.simplefilter("ignore", UserWarning)
        for kw, v in (("PatientID", patient_id), ("ViewPosition", view), ("PatientSex", sex), ("PatientAge", age)):
            if v is not None:
                setattr(ds, kw, v)
    for kw, v in (identifiers or {}).items():
        setattr(ds, kw, v)
    if pixels:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
        ds.Rows, ds.Columns = arr.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8, 8, 7) if bits <= 8 else (16, bits, bits - 1)
        ds.PixelRepresentation = 0
        if slope != 1.0 or intercept != 0.0:
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:g}", f"{intercept:g}", "US"
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
        if frames > 1:
            ds.NumberOfFrames = frames
        if compression == "jpeg":
            buf = _io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=95)
            ds.PixelData = encapsulate([buf.getvalue()] * frames)
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
        else:
            ds.PixelData = np.ascontiguousarray(np.repeat(arr[None], frames, 0) if frames > 1 else arr).tobytes()
            ds["PixelData"].VR = "OB" if bits <= 8 else "OW"
            if compression == "rle":
                ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))
    return path
