"""Readers: every real layout (written by hand with its quirks, and the real subsets when present)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrnb.sources import finding_label, kaggle_patient, read_source, task_label
from cxrnb.validate import load_index


@pytest.mark.parametrize("finding, fine", [
    ("COVID-19", "covid"), ("COVID-19, ARDS", "covid"), ("Pneumonia/Viral/COVID-19", "covid"),
    ("No Finding", "normal"), ("SARS", "virus"), ("Pneumonia/Viral/SARS", "virus"),
    ("Streptococcus", "bacteria"), ("Pneumonia/Bacterial/Klebsiella", "bacteria"),
    ("Pneumonia/Fungal/Pneumocystis", "fungal"), ("Pneumonia/Lipoid", "pneumonia"),
    ("Tuberculosis", "tuberculosis"), ("", None), ("todo", None), ("Effusion", "effusion"),
])
def test_finding_vocabularies_flat_and_hierarchical(finding, fine):
    assert finding_label(finding) == fine


def test_task_label_superclasses():
    assert task_label("covid", ("normal", "pneumonia")) == "pneumonia"
    assert task_label("covid", ("normal", "pneumonia", "covid")) == "covid"
    assert task_label("bacteria", ("covid", "normal")) is None
    assert task_label("normal", ("covid", "normal")) == "normal"


@pytest.mark.parametrize("name, pid", [
    ("person1_bacteria_1.jpeg", "person1"), ("person1423_virus_2438.jpeg", "person1423"),
    ("IM-0115-0001.jpeg", "IM-0115"), ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
    ("IM-0011-0001-0002.jpeg", "IM-0011"), ("scan.jpeg", None),
])
def test_kaggle_patient_ids_from_filenames(name, pid):
    assert kaggle_patient(name) == pid


COVID_CSV = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,view,modality,date,location,"
    "folder,filename,doi,url,license,clinical_notes,other_notes,\n"
    "2,0,M,65,COVID-19,Y,,PA,X-ray,\"January 22, 2020\",China,images,a.png,,,,\"fever, cough\",,\n"
    "2,3,M,65,\"COVID-19, ARDS\",Y,,PA,X-ray,2020-01-25,China,images,b.jpg,,,,,,\n"
    "311a,,F,40,Pneumonia/Viral/COVID-19,,,AP Supine,X-ray,3/4/2020,Italy,images,c.JPG,,,,,,\n"
    "7,,F,33,No Finding,,,PA,X-ray,2020,,images,d.png,,,,,,\n"
    "8,,M,50,Streptococcus,,,PA,X-ray,,,images,e.png,,,,,,\n"
    "9,,M,51,Pneumonia/Viral/COVID-19,,,L,X-ray,,,images,f.png,,,,,,\n"
    "10,,M,52,Pneumonia/Viral/COVID-19,,,Axial,CT,,,volumes,g.nii.gz,,,,,,\n"
    "11,,F,60,COVID-19,,,PA,X-ray,,,images,a.png,,,,listed again,,\n"
    "12,,F,61,No Finding,,,PA,X-ray,,,images,h.png,,,,,,\n"
    "13,,F,62,No Finding,,,PA,X-ray,,,images,gone.png,,,,,,\n"
)


@pytest.fixture
def covid_root(tmp_path, write_image):
    root = tmp_path / "covid-chestxray-dataset"
    (root / "images").mkdir(parents=True)
    (root / "metadata.csv").write_text(COVID_CSV)
    write_image(root / "images/a.png", seed=1)
    write_image(root / "images/b.jpg", seed=2, fmt="PNG")  # a .jpg that is a PNG
    write_image(root / "images/c.JPG", seed=3, mode="RGB", fmt="JPEG")  # upper-case extension
    write_image(root / "images/d.png", seed=4, mode="P")
    write_image(root / "images/e.png", seed=5, mode="RGBA")
    write_image(root / "images/f.png", seed=6)
    write_image(root / "images/h.png", seed=4, mode="P")  # identical pixels to d.png, other patient
    return root


def test_covid_chestxray_reader_handles_real_quirks(covid_root):
    res = load_index("covid-chestxray", covid_root, classes=("covid", "normal"), progress=False)
    idx, rep = res
    assert sorted(idx["path"]) == ["images/a.png", "images/b.jpg", "images/c.JPG", "images/d.png", "images/h.png"]
    by_path = idx.set_index("path")
    assert by_path.loc["images/c.JPG", "patient_id"] == "311a"
    assert by_path.loc["images/b.jpg", "label"] == "covid"  # old flat "COVID-19, ARDS"
    assert by_path.loc["images/c.JPG", "label"] == "covid"  # new hierarchy
    assert not by_path.loc["images/b.jpg", "extension_matches"]
    assert "Unnamed: 18" not in idx.columns  # trailing header comma dropped
    reasons = rep.set_index("path")["reason"]
    assert reasons["images/e.png"] == "label outside task"  # Streptococcus in covid-vs-normal
    assert reasons["images/f.png"] == "filtered: view"  # lateral
    assert reasons["volumes/g.nii.gz"] == "missing file"
    assert reasons["images/gone.png"] == "missing file"
    assert (rep["reason"] == "duplicate listing").sum() == 1
    # every listed row is accounted for: kept or reported
    assert len(idx) + len(rep) == COVID_CSV.count("\n") - 1
    # the file listed under patients 2 and 11 merges them; identical pixels merge 7 and 12
    groups = idx.set_index("path")["patient_group"]
    assert groups["images/d.png"] == groups["images/h.png"]
    assert any("listed more than once" in n for n in res.notes)
    assert any("identical pixels" in n for n in res.notes)


def test_covid_chestxray_ct_kept_only_when_asked(covid_root):
    raw = read_source("covid-chestxray", covid_root, classes=("covid",), views=None, modality=None)
    assert raw.set_index("path").loc["volumes/g.nii.gz", "reason"] != "filtered: modality"


def test_covid_chestxray_pneumonia_task_absorbs_bacteria(covid_root):
    idx, _ = load_index("covid-chestxray", covid_root, classes=("pneumonia", "normal"), progress=False)
    assert idx.set_index("path").loc["images/e.png", "label"] == "pneumonia"


def test_covid_chestxray_missing_columns_error(tmp_path):
    (tmp_path / "metadata.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="finding"):
        read_source("covid-chestxray", tmp_path)


def _kaggle_tree(root: Path, write_image) -> None:
    base = root / "chest_xray"
    write_image(base / "train/NORMAL/IM-0001-0001.jpeg", fmt="JPEG", seed=1)
    write_image(base / "train/NORMAL/IM-0001-0002.jpeg", fmt="JPEG", seed=2)
    write_image(base / "train/PNEUMONIA/person3_bacteria_7.jpeg", fmt="JPEG", seed=3)
    write_image(base / "train/PNEUMONIA/person4_virus_8.jpeg", fmt="JPEG", seed=4, mode="RGB")
    write_image(base / "test/NORMAL/NORMAL2-IM-0005-0001.jpeg", fmt="JPEG", seed=5)
    write_image(base / "test/PNEUMONIA/person6_bacteria_9.jpeg", fmt="JPEG", seed=6)
    (base / "test/PNEUMONIA/.DS_Store").write_bytes(b"\0\0")
    (base / "__MACOSX").mkdir()


def test_kaggle_two_and_three_class(tmp_path, write_image):
    _kaggle_tree(tmp_path, write_image)
    idx, rep = load_index("kaggle-pneumonia", tmp_path, progress=False)
    assert idx["label"].value_counts().to_dict() == {"normal": 3, "pneumonia": 3}
    assert set(idx["patient_id"]) == {"IM-0001", "person3", "person4", "NORMAL2-IM-0005", "person6"}
    assert idx.groupby("kaggle_split").size().to_dict() == {"test": 2, "train": 4}
    assert rep["reason"].tolist() == ["not an image file"]  # .DS_Store reported, not silent
    idx3, _ = load_index("kaggle-pneumonia", tmp_path, classes=("normal", "bacteria", "virus"), progress=False)
    assert idx3["label"].value_counts().to_dict() == {"normal": 3, "bacteria": 2, "virus": 1}


def test_kaggle_missing_layout_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/ val/ test/"):
        read_source("kaggle-pneumonia", tmp_path)


NIH_CSV = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\r\n"
    "00000001_000.png,Cardiomegaly|Effusion,000,00000001,058Y,M,PA,2682,2749,0.143,0.143\r\n"
    "00000001_001.png,No Finding,001,00000001,058Y,M,PA,2894,2729,0.143,0.143\r\n"
    "00000002_000.png,Infiltration,000,00000002,011M,F,AP,2500,2048,0.168,0.168\r\n"
    "00000003_000.png,No Finding,000,00000003,005D,F,PA,2500,2048,0.168,0.168\r\n"
    "00000004_000.png,Effusion,000,00000004,081Y,M,PA,2500,2048,0.168,0.168\r\n"
)


def test_nih_reader_2017_quirks(tmp_path, write_image):
    (tmp_path / "Data_Entry_2017.csv").write_bytes(NIH_CSV.encode())
    for i, name in enumerate(["00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"]):
        write_image(tmp_path / "images_001" / "images" / name, seed=i, mode="RGBA" if i == 3 else "L")
    idx, rep = load_index("nih", tmp_path, finding="Effusion", progress=False)
    assert idx.set_index("path")["label"].to_dict() == {
        "images_001/images/00000001_000.png": "effusion",
        "images_001/images/00000001_001.png": "normal",
        "images_001/images/00000003_000.png": "normal"}
    assert set(idx["patient_id"]) == {"1", "3"}
    ages = idx.set_index("patient_id")["age"]
    assert ages["1"].iloc[0] == 58 and ages["3"] == pytest.approx(5 / 365.25)
    assert rep.set_index("path")["reason"].to_dict() == {
        "images_001/images/00000002_000.png": "label outside task", "images/00000004_000.png": "missing file"}
    idx_rest, _ = load_index("nih", tmp_path, finding="Effusion", negative="rest", progress=False)
    assert (idx_rest["label"] == "other").sum() == 3


def test_folder_reader_one_patient_per_image(tmp_path, write_image):
    write_image(tmp_path / "covid" / "x1.png")
    write_image(tmp_path / "covid" / "x2.JPG", fmt="JPEG")
    write_image(tmp_path / "normal" / "n1.jpeg", fmt="JPEG")
    (tmp_path / "normal" / "notes.txt").write_text("hi")
    res = load_index("folder", tmp_path, progress=False)
    assert res.index["label"].value_counts().to_dict() == {"covid": 2, "normal": 1}
    assert res.index["patient_id"].is_unique
    assert any("own patient" in n for n in res.notes)
    assert res.report["reason"].tolist() == ["not an image file"]


def test_unknown_source_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        read_source("mimic", tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_source("nih", tmp_path / "nope")


# --- the real subsets in ../shared/data (skipped when absent) -------------------------------

def test_real_actualmed_counts(shared_data):
    res = load_index("covid-chestxray", shared_data("actualmed-covid"), progress=False)
    reasons = res.report["reason"].value_counts().to_dict()
    assert reasons["missing file"] == 184  # SOURCE.md: 54 of 238 images present
    assert res.index["label"].value_counts().to_dict() == {"covid": 26, "normal": 18}
    assert reasons["no label"] == 10  # blank finding, inconclusive
    assert (res.index["mode"] == "RGBA").sum() == 1


def test_real_kaggle_subset(shared_data):
    root = shared_data("kaggle-pneumonia")
    idx, rep = load_index("kaggle-pneumonia", root, progress=False)
    assert len(idx) == 400 and len(rep) == 0
    assert set(idx["kaggle_split"]) == {"train", "test"}  # no val/ in this subset
    test = idx[idx["kaggle_split"] == "test"]
    assert set(zip(test["width"], test["height"])) == {(224, 224)} and set(test["mode"]) == {"RGB"}
    idx3, _ = load_index("kaggle-pneumonia", root, classes=("normal", "bacteria", "virus"), progress=False)
    assert idx3["label"].value_counts().to_dict() == {"normal": 200, "bacteria": 130, "virus": 70}


def test_real_nih_subset(shared_data):
    idx, rep = load_index("nih", shared_data("nih-chestxray14"), progress=False)
    assert idx["label"].value_counts().to_dict() == {"normal": 108, "effusion": 50}
    assert (rep["reason"] == "missing file").sum() == 20
    assert (rep["reason"] == "label outside task").sum() == 42
    assert idx.set_index("path").loc["images/00000100_000.png", "mode"] == "RGBA"  # the 3 RGBA files
    rest, _ = load_index("nih", shared_data("nih-chestxray14"), negative="rest", progress=False)
    assert len(rest) == 200 and (rest["mode"] == "RGBA").sum() == 3
    assert idx.groupby("patient_id").size().max() >= 2  # patients with follow-ups
