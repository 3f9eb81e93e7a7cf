"""DICOM pixels: preamble detection, modality/VOI LUT, MONOCHROME1, bit depth, bad files, the real RSNA files."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from conftest import xray_like
from PIL import Image
from pydicom.uid import HTJ2KLossless

from cxrnb.dicom import DicomError, header, is_dicom, read_pixels, write_dicom
from cxrnb.images import ImageCache, ImageError, read_base, read_gray

GRAY = xray_like(96, seed=3)


def _stretched(g: np.ndarray) -> np.ndarray:
    """The 8-bit rule without VOI for deep data: the image's own range to 0..255."""
    f = g.astype(np.float64)
    return np.rint((f - f.min()) * 255 / (f.max() - f.min())).astype(np.uint8)


@pytest.mark.parametrize("kw, expect, tol", [
    (dict(), "same", 0),  # 8-bit uncompressed: as stored
    (dict(compression="jpeg"), "same", 12),  # JPEG Baseline (lossy): close
    (dict(bits=12, slope=0.5, intercept=-200.0, window=(800.0, 1600.0)), "same", 1),  # rescale + window
    (dict(bits=12, window=(2000.0, 3000.0), monochrome1=True, compression="rle"), "same", 1),
    (dict(bits=12, slope=2.0, intercept=-100.0), "stretched", 1),  # no window: own range
    (dict(bits=16, monochrome1=True), "stretched", 1),
])
def test_dicom_pixels_follow_the_documented_rule(tmp_path, kw, expect, tol):
    p = write_dicom(tmp_path / "x.dcm", GRAY, patient_id="p1", **kw)
    arr, facts = read_pixels(p)
    want = GRAY if expect == "same" else _stretched(GRAY)
    assert arr.dtype == np.uint8 and arr.shape == GRAY.shape
    assert np.abs(arr.astype(int) - want).max() <= tol
    assert facts["mode"] == ("MONOCHROME1" if kw.get("monochrome1") else "MONOCHROME2")
    assert facts["bit_depth"] == kw.get("bits", 8)


def test_monochrome1_is_inverted_so_bone_stays_bright(tmp_path):
    m1 = write_dicom(tmp_path / "m1.dcm", GRAY, patient_id="p", bits=12, window=(2048.0, 4096.0), monochrome1=True)
    raw = pydicom.dcmread(m1).pixel_array.astype(int)
    bright = GRAY > 200
    assert raw[bright].mean() < raw[~bright].mean()  # stored: bright bone is a low value
    arr, _ = read_pixels(m1)
    assert arr[bright].mean() > arr[~bright].mean()  # shown: bone bright again


def test_dicom_found_by_preamble_not_by_name(tmp_path):
    no_ext = write_dicom(tmp_path / "IM0001", GRAY, patient_id="p1")
    as_jpg = write_dicom(tmp_path / "film.jpg", GRAY, patient_id="p1")
    jpeg_dcm = tmp_path / "fake.dcm"
    Image.fromarray(GRAY).save(jpeg_dcm, format="JPEG")
    assert is_dicom(no_ext) and is_dicom(as_jpg) and not is_dicom(jpeg_dcm)
    for p in (no_ext, as_jpg):
        base, info = read_base(p)
        assert info.format == "DICOM" and np.array_equal(base, GRAY)
    _, info = read_base(jpeg_dcm)  # a .dcm that is a JPEG decodes as the JPEG it is
    assert info.format == "JPEG"
    with pytest.raises(DicomError, match="no DICM preamble; the content is JPEG"):
        header(jpeg_dcm)


def test_dicom_shares_the_base_image_and_cache_path_with_png(tmp_path):
    big = np.asarray(Image.fromarray(xray_like(200, seed=1)).resize((1000, 900)))
    dcm = write_dicom(tmp_path / "a.dcm", big, patient_id="p1")
    png = tmp_path / "a.png"
    Image.fromarray(big).save(png)
    assert np.array_equal(read_base(dcm)[0], read_base(png)[0])
    assert np.array_equal(read_gray(dcm, 128)[0], read_gray(png, 128)[0])
    cache = ImageCache(tmp_path / "cache", size=128)
    first = cache.read(dcm)
    assert cache.get(dcm) is not None and np.array_equal(first, read_gray(png, 128)[0])


@pytest.mark.parametrize("make, reason, words", [
    (lambda d: write_dicom(d / "sr.dcm", GRAY, patient_id="p", pixels=False), "no pixel data", "SOP class"),
    (lambda d: write_dicom(d / "mf.dcm", GRAY, patient_id="p", frames=3), "multi-frame", "3 frames"),
    (lambda d: _htj2k(d), "no decoder", "pip install pylibjpeg-openjpeg"),
    (lambda d: _truncated(d, compression=None), "corrupt image", "less than expected"),
    (lambda d: _truncated(d, compression="jpeg"), "corrupt image", "truncated"),
])
def test_bad_dicom_files_have_a_reason(tmp_path, make, reason, words):
    p = make(tmp_path)
    with pytest.raises(ImageError) as e:
        read_base(p)
    assert e.value.reason == reason and words in e.value.detail


def _htj2k(d):
    p = write_dicom(d / "h.dcm", GRAY, patient_id="p", compression="jpeg")
    ds = pydicom.dcmread(p)
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless  # a syntax no installed plugin decodes
    ds.save_as(p)
    return p


def _truncated(d, compression):
    p = write_dicom(d / "t.dcm", xray_like(64), patient_id="p", compression=compression)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def test_header_reads_only_the_fields_the_index_keeps(tmp_path):
    p = write_dicom(tmp_path / "x.dcm", GRAY, patient_id="P-7", view="AP", sex="F", age="032Y",
                    identifiers={"PatientName": "Doe^Jane", "InstitutionName": "St Example"})
    h = header(p)
    assert h["patient_id"] == "P-7" and h["view"] == "AP" and h["sex"] == "F" and h["age"] == "032Y"
    assert "Doe^Jane" not in repr(h) and "St Example" not in repr(h)


# --- the real RSNA Pneumonia subset (skipped without ../shared/data) ----------------------------

def test_real_rsna_files_decode_as_display_ready_8_bit(shared_data, tmp_path):
    files = sorted((shared_data("rsna-pneumonia") / "stage_2_train_images").glob("*.dcm"))
    assert len(files) == 16
    for f in files[:4]:
        full, info = read_gray(f)
        assert info.format == "DICOM" and (info.width, info.height) == (1024, 1024) and info.bit_depth == 8
        raw = pydicom.dcmread(f).pixel_array
        # no rescale, no window, MONOCHROME2: the stored 8 bits unchanged (decoders differ by +-1)
        assert np.abs(full.astype(int) - raw.astype(int)).max() <= 1
    # the JPEG inside a DICOM makes the same base image as that JPEG saved as a file (libjpeg's draft)
    from pydicom.encaps import generate_frames

    jpg = tmp_path / "frame.jpg"
    jpg.write_bytes(next(generate_frames(pydicom.dcmread(files[0]).PixelData, number_of_frames=1)))
    base, _ = read_base(files[0])
    assert base.shape == (512, 512) and np.array_equal(base, read_base(jpg)[0])


def test_declared_jpeg_decoder_is_installed_and_decodes(tmp_path):
    """pylibjpeg + pylibjpeg-libjpeg (pyproject dependencies) decode JPEG DICOMs on a fresh install."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1

    for uid in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1):
        assert "pylibjpeg" in get_decoder(uid).available_plugins, uid.name
    p = write_dicom(tmp_path / "j.dcm", GRAY, patient_id="p", compression="jpeg")
    ds = pydicom.dcmread(p)
    ds.pixel_array_options(decoding_plugin="pylibjpeg")
    assert np.abs(ds.pixel_array.astype(int) - GRAY).max() <= 12
