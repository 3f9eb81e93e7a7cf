"""Hospital-style readers: RSNA Pneumonia, DICOM folders, CheXpert, MIMIC-CXR-JPG (hand-written
layouts with their quirks, the privacy rule, and the real RSNA subset when present)."""
from __future__ import annotations

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


CHEXPERT_HEAD = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
                 "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
                 "Fracture,Support Devices\n")


def _chexpert_row(path, view="AP", lateral=False, nofind="", effusion=""):
    v = ["" for _ in range(14)]
    v[0], v[10] = nofind, effusion
    return f"CheXpert-v1.0-small/{path},Female,68,{'Lateral' if lateral else 'Frontal'},{'' if lateral else view}," \
        + ",".join(v) + "\n"


@pytest.fixture
def chexpert_root(tmp_path, write_image):
    base = tmp_path / "CheXpert-v1.0-small"
    rows = [("train/patient00001/study1/view1_frontal.jpg", {"effusion": "1.0"}),
            ("train/patient00001/study1/view2_lateral.jpg", {"effusion": "1.0", "lateral": True}),
            ("train/patient00002/study1/view1_frontal.jpg", {"effusion": "-1.0"}),
            ("train/patient00003/study2/view1_frontal.jpg", {"nofind": "1.0", "view": "PA"}),
            ("train/patient00004/study1/view1_frontal.jpg", {"effusion": "0.0"}),
            ("train/patient00005/study1/view1_frontal.jpg", {"nofind": "1.0"})]  # listed, not on disk
    base.mkdir()
    (base / "train.csv").write_text(CHEXPERT_HEAD + "".join(_chexpert_row(p, **kw) for p, kw in rows))
    (base / "valid.csv").write_text(CHEXPERT_HEAD + _chexpert_row("valid/patient64541/study1/view1_frontal.jpg",
                                                                  nofind="1.0"))
    for i, (p, _) in enumerate(rows[:5]):
        write_image(base / p, fmt="JPEG", seed=i)
    write_image(base / "valid/patient64541/study1/view1_frontal.jpg", fmt="JPEG", seed=9)
    return tmp_path


@pytest.mark.parametrize("policy, effusion", [("ignore", 1), ("positive", 2), ("negative", 1)])
def test_chexpert_uncertainty_policy(chexpert_root, policy, effusion):
    res = load_index("chexpert", chexpert_root, uncertain=policy, progress=False)
    idx = res.index.set_index("path")
    assert (idx["label"] == "pleural_effusion").sum() == effusion
    assert idx.loc["train/patient00003/study2/view1_frontal.jpg", "patient_id"] == "patient00003"
    assert idx.loc["train/patient00003/study2/view1_frontal.jpg", "view"] == "PA"
    assert idx.loc["valid/patient64541/study1/view1_frontal.jpg", "official_split"] == "val"
    rep = res.report.set_index("path")
    assert rep.loc["train/patient00005/study1/view1_frontal.jpg", "reason"] == "missing file"
    assert rep.loc["train/patient00001/study1/view2_lateral.jpg", "reason"] == "filtered: view"
    unsure = rep.loc["train/patient00002/study1/view1_frontal.jpg"] if policy != "positive" else None
    if policy == "ignore":
        assert unsure["reason"] == "uncertain label" and "train.csv line 4" in unsure["detail"]
    elif policy == "positive":
        assert idx.loc["train/patient00002/study1/view1_frontal.jpg", "label"] == "pleural_effusion"
        assert any("counted as positive" in n for n in res.notes)
    else:  # a -1 counted as 0 is still not 'No Finding': outside an effusion-vs-normal task
        assert unsure["reason"] == "label outside task"
    rest, _ = load_index("chexpert", chexpert_root, uncertain=policy, negative="rest", progress=False)
    assert set(rest["label"]) == {"pleural_effusion", "other"}


def test_chexpert_and_mimic_reject_unknown_options(chexpert_root, tmp_path):
    with pytest.raises(ValueError, match=r"unknown uncertainty policy 'maybe'; choose from \['ignore', 'positive', 'negative'\]"):
        read_source("chexpert", chexpert_root, uncertain="maybe")
    with pytest.raises(ValueError, match="unknown finding"):
        read_source("chexpert", chexpert_root, finding="Effusion")
    with pytest.raises(ValueError, match="unknown uncertainty policy"):
        read_source("mimic-cxr-jpg", tmp_path, uncertain="U-Ones")


MIMIC_META = ("dicom_id,subject_id,study_id,ViewPosition\n"
              "d1,10000032,50414267,PA\nd2,10000032,50414267,LATERAL\nd3,10000032,53189527,AP\n"
              "d4,10000764,57375967,AP\nd5,10000898,50771383,PA\nd6,10000935,99999999,PA\n")
MIMIC_LABELS = ("subject_id,study_id,Atelectasis,Pleural Effusion,No Finding\n"
                "10000032,50414267,,,1.0\n10000032,53189527,,1.0,\n10000764,57375967,1.0,-1.0,\n"
                "10000898,50771383,,0.0,1.0\n")
MIMIC_SPLIT = ("dicom_id,study_id,subject_id,split\nd1,50414267,10000032,train\nd2,50414267,10000032,train\n"
               "d3,53189527,10000032,test\nd4,57375967,10000764,validate\nd5,50771383,10000898,train\n"
               "d6,99999999,10000935,train\n")


@pytest.fixture
def mimic_root(tmp_path, write_image):
    import gzip

    (tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(gzip.compress(MIMIC_META.encode()))  # as released
    (tmp_path / "mimic-cxr-2.0.0-chexpert.csv").write_text(MIMIC_LABELS)
    (tmp_path / "mimic-cxr-2.0.0-negbio.csv").write_text(MIMIC_LABELS.replace("10000764,57375967,1.0,-1.0,",
                                                                              "10000764,57375967,1.0,1.0,"))
    (tmp_path / "mimic-cxr-2.0.0-split.csv").write_text(MIMIC_SPLIT)
    for i, (d, s, st) in enumerate([("d1", "10000032", "50414267"), ("d2", "10000032", "50414267"),
                                    ("d3", "10000032", "53189527"), ("d4", "10000764", "57375967"),
                                    ("d5", "10000898", "50771383"), ("d6", "10000935", "99999999")]):
        write_image(tmp_path / f"files/p{s[:2]}/p{s}/s{st}/{d}.jpg", fmt="JPEG", seed=i)
    return tmp_path


def test_mimic_reader_joins_labels_by_study_and_keeps_the_official_split(mimic_root):
    import warnings

    from cxrnb.splits import official_split

    res = load_index("mimic-cxr-jpg", mimic_root, progress=False)
    idx = res.index.set_index("dicom_id")
    assert idx["label"].to_dict() == {"d1": "normal", "d3": "pleural_effusion", "d5": "normal"}
    assert idx.loc["d1", "path"] == "files/p10/p10000032/s50414267/d1.jpg"
    assert idx.loc["d3", "patient_id"] == "10000032" and idx.loc["d3", "study"] == "53189527"
    assert idx["official_split"].to_dict() == {"d1": "train", "d3": "test", "d5": "train"}
    rep = res.report.set_index("path")["reason"]
    assert rep["files/p10/p10000032/s50414267/d2.jpg"] == "filtered: view"  # LATERAL
    assert rep["files/p10/p10000764/s57375967/d4.jpg"] == "uncertain label"
    assert rep["files/p10/p10000935/s99999999/d6.jpg"] == "no label"  # study missing from the labels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = official_split(res.index, val=0.0)
    assert any("10000032" in str(w.message) for w in caught)  # subject in train and test: the leak check
    fixed = official_split(res.index, val=0.0, fix_leaks=True)
    assert fixed.groupby("patient_id")["split"].nunique().max() == 1 and len(split) == 3
    neg, _ = load_index("mimic-cxr-jpg", mimic_root, labeler="negbio", progress=False)
    assert neg.set_index("dicom_id").loc["d4", "label"] == "pleural_effusion"
