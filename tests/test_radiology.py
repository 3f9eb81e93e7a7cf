"""Hospital-style readers: RSNA Pneumonia, DICOM folders, CheXpert, MIMIC-CXR-JPG (hand-written
layouts with their quirks, the privacy rule, and the real RSNA subset when present)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import xray_like
from PIL import Image

from cxrnb.dicom import write_dicom
from cxrnb.index import write_index
from cxrnb.radiology import box_mask, box_masks, parse_boxes
from cxrnb.sources import read_source
from cxrnb.validate import load_index

#: What a real export carries and the index must never hold.
SECRETS = {"PatientName": "Doe^Jane", "PatientBirthDate": "19700523", "AccessionNumber": "ACC0042",
           "InstitutionName": "St Example Hospital"}

RSNA_LABELS = (
    "patientId,x,y,width,height,Target\n"
    "a1,,,,,0\n"
    "b2,10.0,20.0,30.0,40.0,1\n"
    "b2,60.0,20.0,30.0,40.0,1\n"
    "c3,,,,,0\n"
    "gone,5.0,5.0,10.0,10.0,1\n"  # a box row for a file that is missing
    "gone,20.0,5.0,10.0,10.0,1\n"
    "clash,,,,,0\n"
    "clash,1.0,1.0,5.0,5.0,1\n"  # Target 0 and 1 for one film
    "fake,,,,,0\n"
    "lat,,,,,0\n"
)
RSNA_CLASS = ("patientId,class\na1,Normal\nb2,Lung Opacity\nb2,Lung Opacity\nc3,No Lung Opacity / Not Normal\n"
              "gone,Lung Opacity\ngone,Lung Opacity\nclash,Normal\nclash,Lung Opacity\nfake,Normal\nlat,Normal\n")


@pytest.fixture
def rsna_root(tmp_path):
    root = tmp_path / "rsna"
    img = root / "stage_2_train_images"
    img.mkdir(parents=True)
    (root / "stage_2_train_labels.csv").write_text(RSNA_LABELS)
    (root / "stage_2_detailed_class_info.csv").write_text(RSNA_CLASS)
    for i, (pid, view, kw) in enumerate([("a1", "PA", {}), ("b2", "AP", dict(compression="jpeg")),
                                         ("c3", "PA", dict(bits=12, window=(2048.0, 4000.0), monochrome1=True)),
                                         ("clash", "AP", {}), ("lat", "LL", {}), ("extra", "PA", {})]):
        write_dicom(img / f"{pid}.dcm", xray_like(128, seed=i), patient_id=pid, view=view, sex="F", age=str(30 + i),
                    identifiers=SECRETS, seed=i, **kw)
    Image.fromarray(xray_like(128, seed=9)).save(img / "fake.dcm", format="JPEG")  # a .dcm that is a JPEG
    return root


def test_rsna_reader_boxes_labels_and_bad_rows(rsna_root):
    res = load_index("rsna-pneumonia", rsna_root, progress=False)
    idx = res.index.set_index("patient_id")
    assert idx["label"].to_dict() == {"a1": "no_pneumonia", "b2": "pneumonia", "c3": "no_pneumonia"}
    assert parse_boxes(idx.loc["b2", "boxes"]) == [[10.0, 20.0, 30.0, 40.0], [60.0, 20.0, 30.0, 40.0]]
    assert idx.loc["b2", "view"] == "AP" and idx.loc["a1", "age"] == 30 and idx.loc["c3", "mode"] == "MONOCHROME1"
    rep = res.report.set_index("path")
    assert rep.loc["stage_2_train_images/gone.dcm", "reason"] == "missing file"
    assert "carry 2 box(es)" in rep.loc["stage_2_train_images/gone.dcm", "detail"]
    assert rep.loc["stage_2_train_images/clash.dcm", "reason"] == "conflicting listings"
    assert "Target 0 and 1" in rep.loc["stage_2_train_images/clash.dcm", "detail"]
    assert rep.loc["stage_2_train_images/fake.dcm", "reason"] == "not a DICOM file"
    assert "JPEG" in rep.loc["stage_2_train_images/fake.dcm", "detail"]
    assert rep.loc["stage_2_train_images/lat.dcm", "reason"] == "filtered: view"
    assert rep.loc["stage_2_train_images/extra.dcm", "reason"] == "not listed in the metadata"
    assert len(res.index) + len(res.report) == 8  # 7 listed films + 1 unlisted file


def test_rsna_detailed_classes_and_bad_options(rsna_root):
    idx, _ = load_index("rsna-pneumonia", rsna_root, classes=("normal", "abnormal", "pneumonia"), progress=False)
    assert idx.set_index("patient_id")["label"].to_dict() == {"a1": "normal", "b2": "pneumonia", "c3": "abnormal"}
    with pytest.raises(ValueError, match="cannot be combined"):
        read_source("rsna-pneumonia", rsna_root, classes=("no_pneumonia", "normal"))
    with pytest.raises(ValueError, match="choose from"):
        read_source("rsna-pneumonia", rsna_root, classes=("opacity",))


def test_box_masks_scale_with_the_image():
    m = box_mask([[256.0, 512.0, 256.0, 128.0]], (1024, 1024), 64)
    assert m.shape == (64, 64) and m.sum() // 255 == 16 * 8
    assert m[32:40, 16:32].all() and not m[:32].any()
    idx = pd.DataFrame({"boxes": ["[[0, 0, 512, 512]]", "[]"], "width": [1024, 1024], "height": [1024, 1024]})
    ms = box_masks(idx, (32, 16))
    assert ms.shape == (2, 32, 16) and ms[0, :16, :8].all() and not ms[0, 16:].any() and not ms[1].any()


def _dicom_tree(root):
    write_dicom(root / "normal" / "pat1" / "IM0001", xray_like(96, 1), patient_id="P1", view="PA",
                identifiers=SECRETS)  # no extension
    write_dicom(root / "normal" / "pat1" / "IM0002", xray_like(96, 2), patient_id="P1", view="LL")  # lateral
    write_dicom(root / "pneumonia" / "a.dcm", xray_like(96, 3), patient_id="P2", view="AP", bits=12,
                slope=0.5, intercept=-200.0, window=(800.0, 1600.0), identifiers=SECRETS)
    write_dicom(root / "pneumonia" / "b.dcm", xray_like(96, 4), patient_id=None, view="PA", compression="jpeg")
    write_dicom(root / "pneumonia" / "sr.dcm", xray_like(96, 5), patient_id="P3", view="PA", pixels=False)
    write_dicom(root / "pneumonia" / "cine.dcm", xray_like(96, 6), patient_id="P3", view="PA", frames=2)
    Image.fromarray(xray_like(96, 7)).save(root / "pneumonia" / "c.dcm", format="JPEG")
    write_dicom(root / "DICOMDIR", xray_like(96, 8), patient_id=None, view=None, pixels=False)
    (root / "normal" / "notes.txt").write_text("report")


def test_dicom_folder_reader(tmp_path):
    _dicom_tree(tmp_path)
    res = load_index("dicom", tmp_path, progress=False)
    idx = res.index.set_index("path")
    assert idx["label"].to_dict() == {"normal/pat1/IM0001": "normal", "pneumonia/a.dcm": "pneumonia",
                                      "pneumonia/b.dcm": "pneumonia"}
    assert idx.loc["normal/pat1/IM0001", "patient_id"] == "P1"
    assert idx.loc["pneumonia/b.dcm", "patient_id"] == "file:pneumonia/b.dcm"
    assert any("no PatientID" in n for n in res.notes)
    rep = res.report.set_index("path")["reason"].to_dict()
    assert rep == {"normal/pat1/IM0002": "filtered: view", "pneumonia/sr.dcm": "no pixel data",
                   "pneumonia/cine.dcm": "multi-frame", "pneumonia/c.dcm": "not a DICOM file",
                   "DICOMDIR": "not in a class folder", "normal/notes.txt": "not an image file"}
    every, _ = load_index("dicom", tmp_path, views=None, progress=False)
    assert len(every) == 4


def test_no_identifying_header_field_reaches_index_report_or_csv(tmp_path, rsna_root):
    """Names, birth dates, accession numbers and institutions stay in the DICOM files."""
    _dicom_tree(tmp_path / "dicom")
    for source, root in (("rsna-pneumonia", rsna_root), ("dicom", tmp_path / "dicom")):
        res = load_index(source, root, progress=False)
        write_index(res.index, tmp_path / f"{source}-index.csv")
        write_index(res.report, tmp_path / f"{source}-report.csv")
        text = ((tmp_path / f"{source}-index.csv").read_text() + (tmp_path / f"{source}-report.csv").read_text()
                + res.summary() + repr(res.index.to_dict()) + repr(res.report.to_dict()))
        for secret in SECRETS.values():
            assert secret not in text and secret.replace("^", " ") not in text, (source, secret)
        assert {"sex", "age", "study", "view", "patient_id"} <= set(res.index.columns)
        assert not {"PatientName", "PatientBirthDate", "AccessionNumber", "InstitutionName"} & set(res.index.columns)


# --- the real RSNA Pneumonia subset (skipped without ../shared/data) ----------------------------

def test_real_rsna_subset(shared_data):
    root = shared_data("rsna-pneumonia")
    res = load_index("rsna-pneumonia", root, progress=False)
    idx = res.index
    assert len(idx) == 16 and len(res.report) == 0  # SOURCE.md: 16 films, all usable
    assert idx["label"].value_counts().to_dict() == {"no_pneumonia": 11, "pneumonia": 5}
    assert idx["view"].value_counts().to_dict() == {"PA": 10, "AP": 6}
    assert idx["sex"].value_counts().to_dict() == {"M": 9, "F": 7}
    assert idx["n_boxes"].sum() == 10 and set(idx.loc[idx["label"] == "pneumonia", "n_boxes"]) == {2}
    assert (idx.loc[idx["label"] == "pneumonia", "view"] == "AP").sum() == 4  # the AP shortcut
    assert idx["age"].min() == 6 and idx["age"].max() == 78  # bare AS strings '6' .. '78'
    assert set(idx["format"]) == {"DICOM"} and set(idx["width"]) == {1024}
    det, _ = load_index("rsna-pneumonia", root, classes=("normal", "abnormal", "pneumonia"), progress=False)
    assert det["label"].value_counts().to_dict() == {"abnormal": 7, "pneumonia": 5, "normal": 4}
    masks = box_masks(idx, 128)
    pos = (idx["label"] == "pneumonia").to_numpy()
    assert masks[pos].any(axis=(1, 2)).all() and not masks[~pos].any()
    assert 0.02 < masks[pos].mean() / 255 < 0.5  # boxes cover part of the film, not all of it
