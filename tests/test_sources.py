"""Readers: every real layout (written by hand with its quirks, and the real subsets when present)."""
from __future__ import annotations

import sys
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
    assert any(n.startswith("1 file is listed more than once") for n in res.notes)  # not "1 files are"
    assert any(n.startswith("1 group of images with identical pixels") for n in res.notes)


def test_covid_chestxray_ct_kept_only_when_asked(covid_root):
    raw = read_source("covid-chestxray", covid_root, classes=("covid",), views=None, modality=None)
    assert pd.isna(raw.set_index("path").loc["volumes/g.nii.gz", "reason"])  # a covid row, kept
    raw = read_source("covid-chestxray", covid_root, classes=("covid",), views=None)
    assert raw.set_index("path").loc["volumes/g.nii.gz", "reason"] == "filtered: modality"


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
    assert rep["reason"].tolist() == ["hidden file"]  # .DS_Store reported, not silent
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


# --- issue 10: no silent swaps or losses, clear errors ---------------------------------------

def _all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


NIH_HEAD = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"


def test_nih_same_named_files_prefer_the_release_images_folders(tmp_path, write_image):
    (tmp_path / "Data_Entry_2017.csv").write_text(
        NIH_HEAD + "x.png,Effusion,000,00000001,058Y,M,PA\ny.png,No Finding,000,00000002,040Y,F,PA\n")
    write_image(tmp_path / "images" / "x.png", seed=1)
    (tmp_path / "thumbs").mkdir()
    (tmp_path / "thumbs" / "x.png").write_bytes(b"")  # an empty copy, found after images/
    write_image(tmp_path / "zbackup" / "x.png", seed=2)
    write_image(tmp_path / "a" / "y.png", seed=3)  # two copies, neither in images*/: ambiguous
    write_image(tmp_path / "b" / "y.png", seed=4)
    res = load_index("nih", tmp_path, progress=False)
    assert res.index["path"].tolist() == ["images/x.png"]
    reasons = res.report.set_index("path")["reason"].to_dict()
    assert reasons == {"thumbs/x.png": "same file name", "zbackup/x.png": "same file name",
                       "a/y.png": "ambiguous file", "b/y.png": "ambiguous file"}
    detail = res.report.set_index("path")["detail"]
    assert "images/x.png" in detail["thumbs/x.png"] and "a/y.png" in detail["b/y.png"]


def test_csv_row_with_an_extra_field_is_reported_by_line_not_shifted(tmp_path, write_image):
    (tmp_path / "images").mkdir()
    (tmp_path / "metadata.csv").write_text(
        "patientid,finding,view,modality,folder,filename\n"
        "1,COVID-19,PA,X-ray,images,a.png\n"
        "2,COVID-19, ARDS,PA,X-ray,images,b.png\n"  # unquoted comma: one field too many
        "3,No Finding,PA,X-ray,images,c.png\n")
    for i, n in enumerate("abc"):
        write_image(tmp_path / "images" / f"{n}.png", seed=i)
    res = load_index("covid-chestxray", tmp_path, progress=False)
    assert res.index.set_index("path")["patient_id"].to_dict() == {"images/a.png": "1", "images/c.png": "3"}
    rep = res.report.set_index("path")
    assert rep.loc["metadata.csv", "reason"] == "malformed CSV row"
    assert "line 3" in rep.loc["metadata.csv", "detail"] and "7 fields" in rep.loc["metadata.csv", "detail"]
    assert rep.loc["images/b.png", "reason"] == "not listed in the metadata"


def test_nih_rows_with_a_trailing_comma_keep_their_columns(tmp_path, write_image):
    (tmp_path / "Data_Entry_2017.csv").write_text(
        NIH_HEAD + "x.png,Cardiomegaly,000,00000001,058Y,M,PA,\ny.png,No Finding,000,00000002,040Y,F,PA,\n")
    write_image(tmp_path / "images" / "x.png", seed=1)
    write_image(tmp_path / "images" / "y.png", seed=2)
    res = load_index("nih", tmp_path, finding="Cardiomegaly", progress=False)
    assert res.index.set_index("path")["label"].to_dict() == {"images/x.png": "cardiomegaly",
                                                               "images/y.png": "normal"}
    assert res.index.set_index("path").loc["images/y.png", "sex"] == "F"
    assert len(res.report) == 0


def test_folder_layout_accounts_for_every_image(tmp_path, write_image):
    write_image(tmp_path / "covid" / "x1.png")
    write_image(tmp_path / "covid" / ".x2.png", seed=1)  # hidden
    write_image(tmp_path / "stray.png", seed=2)  # at the root, no class
    write_image(tmp_path / ".cache" / "c.png", seed=3)  # hidden class folder
    write_image(tmp_path / "__old" / "o.png", seed=4)
    write_image(tmp_path / "elsewhere" / "n1.png", seed=5)
    (tmp_path / "normal").symlink_to(tmp_path / "elsewhere")  # symlinked class folder
    (tmp_path / "covid" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # broken link
    (tmp_path / "covid" / "again").symlink_to(tmp_path)  # a loop back to the top
    res = load_index("folder", tmp_path, classes=("covid", "normal"), progress=False)
    assert set(res.index["path"]) == {"covid/x1.png", "normal/n1.png"}
    reasons = res.report.set_index("path")["reason"].to_dict()
    assert reasons == {"covid/.x2.png": "hidden file", "stray.png": "not in a class folder",
                       ".cache/c.png": "hidden folder", "__old/o.png": "hidden folder",
                       "covid/gone.png": "broken link", "elsewhere/n1.png": "label outside task",
                       "covid/again": "symlink loop"}
    assert "nowhere.png" in res.report.set_index("path").loc["covid/gone.png", "detail"]


def test_unreadable_subfolder_is_reported(tmp_path, write_image, monkeypatch):
    import os

    write_image(tmp_path / "covid" / "x1.png")
    write_image(tmp_path / "normal" / "locked" / "n1.png")
    locked = tmp_path / "normal" / "locked"
    if os.geteuid() == 0:  # root reads anything: make the listing fail as it would for a user
        real = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        locked.chmod(0)
        monkeypatch.setattr(locked, "chmod", locked.chmod)  # keep tmp_path removable
    res = load_index("folder", tmp_path, progress=False)
    row = res.report.set_index("path").loc["normal/locked"]
    assert row["reason"] == "unreadable folder" and "Permission denied" in row["detail"]
    if os.geteuid() != 0:
        locked.chmod(0o755)


def _kaggle_messy(base: Path, write_image) -> None:
    write_image(base / "train/NORMAL/0001.jpeg", fmt="JPEG", seed=1)
    write_image(base / "train/PNEUMONIA/0001.jpeg", fmt="JPEG", seed=2)
    write_image(base / "train/PNEUMONIA/person3_virus_7.jpeg", fmt="JPEG", seed=3)
    write_image(base / "train/loose.jpeg", fmt="JPEG", seed=4)  # directly in train/
    write_image(base / "validation/NORMAL/IM-0009-0001.jpeg", fmt="JPEG", seed=5)
    write_image(base / "root.jpeg", fmt="JPEG", seed=6)
    write_image(base / "test/__MACOSX/x.jpeg", fmt="JPEG", seed=7)


def test_kaggle_messy_layout_indexes_or_reports_every_image(tmp_path, write_image):
    _kaggle_messy(tmp_path / "chest_xray", write_image)
    res = load_index("kaggle-pneumonia", tmp_path, progress=False)
    idx = res.index.set_index("path")
    assert set(idx.index) == {"chest_xray/train/NORMAL/0001.jpeg", "chest_xray/train/PNEUMONIA/0001.jpeg",
                              "chest_xray/train/PNEUMONIA/person3_virus_7.jpeg",
                              "chest_xray/validation/NORMAL/IM-0009-0001.jpeg"}
    assert idx.loc["chest_xray/validation/NORMAL/IM-0009-0001.jpeg", "kaggle_split"] == "val"
    # same file name in two class folders: two patients, as in the folder layout
    assert idx.loc["chest_xray/train/NORMAL/0001.jpeg", "patient_id"] != \
        idx.loc["chest_xray/train/PNEUMONIA/0001.jpeg", "patient_id"]
    assert res.report.set_index("path")["reason"].to_dict() == {
        "chest_xray/train/loose.jpeg": "not in a class folder", "chest_xray/root.jpeg": "outside the layout",
        "chest_xray/test/__MACOSX/x.jpeg": "hidden folder"}


def test_covid_and_nih_report_images_the_csv_does_not_list(covid_root, tmp_path, write_image):
    write_image(covid_root / "images" / "extra.png", seed=9)
    write_image(covid_root / "stray.jpg", fmt="JPEG", seed=9)
    rep = load_index("covid-chestxray", covid_root, progress=False).report.set_index("path")["reason"]
    assert rep["images/extra.png"] == rep["stray.jpg"] == "not listed in the metadata"
    nih = tmp_path / "nih"
    nih.mkdir()
    (nih / "Data_Entry_2017.csv").write_text(NIH_HEAD + "x.png,Effusion,000,00000001,058Y,M,PA\n")
    write_image(nih / "images" / "x.png")
    write_image(nih / "images" / "unlisted.png", seed=1)
    rep = load_index("nih", nih, progress=False).report.set_index("path")["reason"]
    assert rep.to_dict() == {"images/unlisted.png": "not listed in the metadata"}


def test_listed_name_differing_in_case_or_unicode_names_the_near_match(tmp_path, write_image):
    import unicodedata

    (tmp_path / "metadata.csv").write_text(
        "patientid,finding,view,filename\n1,COVID-19,PA,A.png\n2,No Finding,PA,"
        + unicodedata.normalize("NFC", "caf\u00e9.png") + "\n3,No Finding,PA,ok.png\n", encoding="utf-8")
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / unicodedata.normalize("NFD", "caf\u00e9.png"), seed=1)
    write_image(tmp_path / "images" / "ok.png", seed=2)
    rep = load_index("covid-chestxray", tmp_path, progress=False).report.set_index("path")
    assert rep.loc["images/A.png", "reason"] == "missing file"
    assert "images/a.png" in rep.loc["images/A.png", "detail"]
    nfc = "images/" + unicodedata.normalize("NFC", "caf\u00e9.png")
    assert rep.loc[nfc, "reason"] == "missing file" and "Unicode" in rep.loc[nfc, "detail"]


def test_a_missing_file_without_a_near_match_has_a_clean_detail_and_notes_count_right(tmp_path):
    from cxrnb import synthetic

    synthetic.generate(tmp_path, layout="kaggle-pneumonia", n_patients=12, size=64, defects=True, seed=0, progress=False)
    res = load_index("synthetic", tmp_path, progress=False)
    missing = res.report[res.report["reason"] == "missing file"]
    assert list(missing["detail"]) == ["listed in the metadata but not on disk"]  # no "; nan"
    assert any(n.startswith("1 file is listed more than once") for n in res.notes)  # not "1 files are"


def test_kaggle_patient_ids_fall_back_to_the_relative_path(tmp_path, write_image):
    _kaggle_messy(tmp_path, write_image)
    raw = read_source("kaggle-pneumonia", tmp_path)
    pid = raw.set_index("path")["patient_id"]
    assert pid["train/NORMAL/0001.jpeg"] == "file:train/NORMAL/0001"


NIH_V2020_HEAD = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,View Position\n"


def test_nih_v2020_sex_ages_and_conflicting_listings(tmp_path, write_image):
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(
        NIH_V2020_HEAD + "a.png,Effusion,0,1,58,M,PA\nb.png,No Finding,0,2,414,F,PA\n"
        "c.png,Effusion,0,3,30,F,PA\nc.png,No Finding,0,3,30,F,PA\n")
    for i, n in enumerate("abc"):
        write_image(tmp_path / "images" / f"{n}.png", seed=i)
    res = load_index("nih", tmp_path, progress=False)
    idx = res.index.set_index("path")
    assert idx["sex"].to_dict() == {"images/a.png": "M", "images/b.png": "F"}
    assert idx.loc["images/a.png", "age"] == 58 and np.isnan(idx.loc["images/b.png", "age"])
    assert any("414" in n and "120" in n for n in res.notes)
    conflict = res.report[res.report["reason"] == "conflicting listings"]
    assert conflict["path"].tolist() == ["images/c.png", "images/c.png"]
    assert "Effusion" in conflict["detail"].iloc[0] and "No Finding" in conflict["detail"].iloc[0]


def test_zero_images_is_one_clear_error_with_the_report(tmp_path):
    from cxrnb.validate import NoImagesError

    (tmp_path / "chest_xray/train/NORMAL").mkdir(parents=True)
    (tmp_path / "chest_xray/train/PNEUMONIA").mkdir(parents=True)
    (tmp_path / "chest_xray/train/PNEUMONIA/.DS_Store").write_bytes(b"\0")
    with pytest.raises(NoImagesError, match="no images found") as e:
        load_index("kaggle-pneumonia", tmp_path, progress=False)
    assert e.value.result.report["path"].tolist() == ["chest_xray/train/PNEUMONIA/.DS_Store"]
    (tmp_path / "f" / "normal").mkdir(parents=True)
    with pytest.raises(NoImagesError, match="no images found"):
        load_index("folder", tmp_path / "f", progress=False)


@pytest.mark.parametrize("source, options, message", [
    ("covid-chestxray", {"classes": ("covid", "normall")}, r"'normall'.*'normal'"),
    ("kaggle-pneumonia", {"classes": ("normal", "pneumonai")}, r"'pneumonai'.*'pneumonia'"),
    ("nih", {"finding": "Efusion"}, r"'Efusion'.*'Effusion'"),
    ("nih", {"classes": ("effusion", "normal")}, r"does not take option 'classes'.*finding"),
    ("kaggle-pneumonia", {"views": ("PA",)}, r"does not take option 'views'.*classes"),
    ("folder", {"classes": ("covid", "normall")}, r"'normall'.*'normal'"),
])
def test_task_option_typos_and_foreign_options_are_errors(tmp_path, write_image, source, options, message):
    (tmp_path / "metadata.csv").write_text("patientid,finding,filename\n1,COVID-19,a.png\n")
    (tmp_path / "Data_Entry_2017.csv").write_text(NIH_HEAD + "a.png,Effusion,0,1,58,M,PA\n")
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "chest_xray/train/NORMAL/a.jpeg", fmt="JPEG")
    if source == "folder":
        tmp_path = tmp_path / "f"
        write_image(tmp_path / "covid" / "a.png")
        write_image(tmp_path / "normal" / "b.png")
    with pytest.raises(ValueError, match=message):
        read_source(source, tmp_path, **options)


def test_covid_missing_view_column_is_one_error_with_the_fix(tmp_path):
    (tmp_path / "metadata.csv").write_text("patientid,finding,filename\n1,COVID-19,a.png\n2,COVID-19,b.png\n")
    with pytest.raises(ValueError, match=r"metadata.csv: no 'view' column.*views=None.*--views all"):
        read_source("covid-chestxray", tmp_path)


def test_covid_missing_patientid_column_is_one_note(tmp_path, write_image):
    (tmp_path / "metadata.csv").write_text("finding,view,filename\nCOVID-19,PA,a.png\nNo Finding,PA,b.png\n")
    write_image(tmp_path / "images" / "a.png")
    write_image(tmp_path / "images" / "b.png", seed=1)
    res = load_index("covid-chestxray", tmp_path, progress=False)
    assert len(res.index) == 2 and res.index["patient_id"].is_unique and len(res.report) == 0
    assert sum("patientid" in n for n in res.notes) == 1


def test_zero_byte_metadata_names_the_file(tmp_path):
    (tmp_path / "metadata.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"metadata.csv: empty file"):
        read_source("covid-chestxray", tmp_path)


def test_synthetic_nih_layout_reads_without_reporting_its_own_masks(tmp_path):
    """The generator's nih layout is read by the real NIH reader; its masks/ are not unlisted films."""
    from cxrnb import cli
    from cxrnb.validate import load_index

    assert cli.main(["-q", "synth", str(tmp_path), "--layout", "nih", "--n-patients", "30", "--size", "64"]) == 0
    index, report = load_index("nih", tmp_path, progress=False)
    assert set(index["label"]) <= {"effusion", "normal"} and len(index) > 30
    assert not report["path"].astype(str).str.startswith("masks/").any(), report.head()


def test_covid_file_listed_twice_with_different_findings_is_used_under_neither(tmp_path, write_image):
    (tmp_path / "metadata.csv").write_text(
        "patientid,finding,view,modality,folder,filename\n"
        "1,COVID-19,PA,X-ray,images,a.png\n"
        "2,No Finding,PA,X-ray,images,a.png\n"  # the same file, another finding
        "3,No Finding,PA,X-ray,images,b.png\n"
        "4,No Finding,PA,X-ray,images,b.png\n"  # same file, same finding: an ordinary second listing
        "5,COVID-19,PA,X-ray,images,c.png\n")
    for i, n in enumerate("abc"):
        write_image(tmp_path / "images" / f"{n}.png", seed=i)
    res = load_index("covid-chestxray", tmp_path, progress=False)
    assert res.index.set_index("path")["label"].to_dict() == {"images/b.png": "normal", "images/c.png": "covid"}
    conflict = res.report[res.report["path"] == "images/a.png"]
    assert conflict["reason"].tolist() == ["conflicting listings"] * 2
    assert all("COVID-19" in d and "No Finding" in d and "line 2" in d and "line 3" in d for d in conflict["detail"])
    assert res.report.set_index("path").loc["images/b.png", "reason"] == "duplicate listing"


def test_a_source_is_one_register_call_that_the_cli_notebooks_and_generator_read(tmp_path, monkeypatch, write_image,
                                                                                  capsys):
    """Adding a source is one `register` call: the CLI accepts it, `load_index` reads it, the
    notebooks' missing-folder error shows its download hint and validation notes that it has no
    patient ids; every synthetic layout is a registered source's name."""
    import cxrnb.notebook as nb
    from cxrnb import sources, synthetic
    from cxrnb.cli import main

    assert set(synthetic.LAYOUTS) <= set(sources.SOURCES)
    assert all(s.name == k and s.layout and s.download for k, s in sources.SOURCES.items())
    monkeypatch.setitem(sources.SOURCES, "mine", None)  # removed again after the test

    def read_mine(root, *, classes=None):
        return sources.read_folder(root, classes=classes).assign(source="mine")

    sources.register("mine", read_mine, layout="<class>/ folders, my way", download="ask the archive",
                     patient_ids=False)
    for k, c in enumerate(("normal", "pneumonia")):
        for i in range(2):
            write_image(tmp_path / "data" / c / f"{i}.png", seed=2 * k + i)
    res = load_index("mine", tmp_path / "data", progress=False)
    assert len(res.index) == 4 and any("mine layout has no patient ids" in n for n in res.notes)
    assert main(["-q", "index", "mine", str(tmp_path / "data"), "--out", str(tmp_path / "i.csv")]) == 0
    assert (tmp_path / "i.csv").is_file()
    with pytest.raises(FileNotFoundError, match="ask the archive"):
        nb.prepare_data("mine", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no such source; choose one of"):
        nb.prepare_data("theirs", tmp_path / "absent")


def test_a_source_module_in_a_readers_package_registers_itself_when_the_package_is_loaded(tmp_path, monkeypatch):
    """`cxrnb.readers.load` imports every module of a package, as `cxrnb.sources` does with
    `cxrnb.readers` itself: a new source is one module there, with no other edit."""
    from cxrnb import readers, sources

    assert "cxrnb.readers.hospital" in readers.load()          # the built-in package, loaded again: cached
    assert {"rsna-pneumonia", "dicom", "chexpert", "mimic-cxr-jpg"} <= set(sources.SOURCES)
    pkg = tmp_path / "my_readers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "toy.py").write_text(
        "from cxrnb import sources\n"
        "def read_toy(root, *, classes=None):\n"
        "    return sources.read_folder(root, classes=classes)\n"
        "sources.register('toy-archive', read_toy, layout='<class>/ folders', download='ask the toy archive',\n"
        "                 patient_ids=False)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sources.SOURCES, "toy-archive", None)  # removed again after the test
    assert readers.load("my_readers", [str(pkg)], group="cxrnb.no-such-group") == ["my_readers.toy"]
    assert sources.SOURCES["toy-archive"].download == "ask the toy archive"
    assert not sources.SOURCES["toy-archive"].patient_ids
    for name in ("my_readers.toy", "my_readers"):
        sys.modules.pop(name)
