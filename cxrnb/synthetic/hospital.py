"""Synthetic layouts of the hospital-style sources: RSNA Pneumonia, DICOM folders, CheXpert, MIMIC-CXR-JPG.

`generate` (write.py) calls `place` for each rendered film and `finish` once at the end. Files
are laid out and labelled as the real releases document them, so `cxrnb.radiology`'s readers load
them unchanged. DICOM files are written by `cxrnb.dicom.write_dicom`: RSNA films as JPEG
Baseline 8-bit MONOCHROME2 (as the real ones); DICOM-folder films cycle through the cases a
reader must get right (8-bit uncompressed, JPEG, 12-bit with rescale and window tags and no
extension, 12-bit MONOCHROME1 RLE). Every DICOM carries a made-up PatientName, birth date,
accession number and institution, which no index may show.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..dicom import write_dicom

LAYOUTS = ("rsna-pneumonia", "dicom", "chexpert", "mimic-cxr-jpg")
#: Made-up identifiers every synthetic DICOM carries (the privacy tests look for them).
IDENTIFIERS = {"PatientName": "SYNTHETIC^PATIENT", "PatientBirthDate": "19610704",
               "AccessionNumber": "SYNACC0001", "InstitutionName": "Synthetic General Hospital"}
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                    "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
                    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"]
MIMIC_METADATA = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                  "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                  "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
_RSNA_CLASS = {"normal": "Normal", "pneumonia": "Lung Opacity", "covid": "Lung Opacity"}
#: The CheXpert-labeler columns set to 1 for each class (others blank).
_FINDINGS = {"normal": ("No Finding",), "pneumonia": ("Pneumonia", "Lung Opacity"),
             "covid": ("Lung Opacity", "Consolidation"), "effusion": ("Pleural Effusion",)}
#: The four DICOM encodings the dicom layout cycles through (see module doc).
_DICOM_VARIANTS = [dict(ext=".dcm"), dict(ext=".dcm", compression="jpeg"),
                   dict(ext="", bits=12, slope=0.5, intercept=-200.0, window=(800.0, 1600.0)),
                   dict(ext="", bits=12, window=(2048.0, 3600.0), monochrome1=True, compression="rle")]


def boxes(lesion: np.ndarray) -> list[list[float]]:
    """Bounding boxes [x, y, width, height] of the lesion mask's connected parts (RSNA style)."""
    from scipy import ndimage

    lab, _ = ndimage.label(lesion > 127)
    return [[float(s[1].start), float(s[0].start), float(s[1].stop - s[1].start), float(s[0].stop - s[0].start)]
            for s in ndimage.find_objects(lab) if s is not None]


def _labels_row(label: str, r: np.random.Generator, uncertain: bool) -> dict:
    """CheXpert-labeler values: 1.0 for the class's findings (about 1 in 5 written -1.0, uncertain)."""
    row = dict.fromkeys(CHEXPERT_COLUMNS[5:], "")
    for f in _FINDINGS.get(label, ("No Finding",)):
        row[f] = "-1.0" if uncertain and f != "No Finding" and r.random() < 0.2 else "1.0"
    return row


def place(out: Path, layout: str, p: int, k: int, label: str, img: np.ndarray, les: np.ndarray, *, view: str,
          sex: str, age: int, seed: int, split: str, r: np.random.Generator, meta: list[dict],
          quality: int) -> str:
    """Write one film in `layout` (and its metadata rows into `meta`); return its relative path."""
    if layout == "rsna-pneumonia":
        pid = f"synth-{p:04d}-{k}"
        rel = f"stage_2_train_images/{pid}.dcm"
        write_dicom(out / rel, img, patient_id=pid, view=view, sex=sex, age=str(age), compression="jpeg",
                    identifiers=IDENTIFIERS, seed=seed)
        found = boxes(les) if label in ("pneumonia", "covid") else []
        target = int(label in ("pneumonia", "covid"))
        for b in found or [None]:
            meta.append({"kind": "labels", "patientId": pid, "x": "" if b is None else b[0],
                         "y": "" if b is None else b[1], "width": "" if b is None else b[2],
                         "height": "" if b is None else b[3], "Target": target,
                         "class": _RSNA_CLASS.get(label, "No Lung Opacity / Not Normal")})
        return rel
    if layout == "dicom":
        v = dict(_DICOM_VARIANTS[(p + k) % len(_DICOM_VARIANTS)])
        ext = v.pop("ext")
        rel = f"{label}/p{p:04d}/IM{k + 1:04d}{ext}"
        write_dicom(out / rel, img, patient_id=f"p{p:04d}", view=view, sex=sex, age=f"{age:03d}Y", study=str(k),
                    identifiers=IDENTIFIERS, seed=seed, **v)
        return rel
    if layout == "chexpert":
        where = "valid" if split == "val" else "train"
        rel = f"{where}/patient{p:05d}/study{k + 1}/view1_frontal.jpg"
        (out / "CheXpert-v1.0-small" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out / "CheXpert-v1.0-small" / rel, format="JPEG", quality=quality)
        meta.append({"kind": where, "Path": f"CheXpert-v1.0-small/{rel}", "Sex": "Male" if sex == "M" else "Female",
                     "Age": age, "Frontal/Lateral": "Frontal", "AP/PA": "AP" if view.startswith("AP") else "PA",
                     **_labels_row(label, r, uncertain=where == "train")})
        return f"CheXpert-v1.0-small/{rel}"
    subject, study = 10000000 + p, 50000000 + 100 * p + k
    dicom_id = "-".join(f"{int(x):08x}" for x in r.integers(0, 2**32, 5))
    rel = f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom_id}.jpg"
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(out / rel, format="JPEG", quality=quality)
    meta.append({"kind": "mimic", "dicom_id": dicom_id, "subject_id": subject, "study_id": study,
                 "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view.split()[0],
                 "Rows": img.shape[0], "Columns": img.shape[1], "StudyDate": 21800101 + k, "StudyTime": "000000.000",
                 "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                 "ViewCodeSequence_CodeMeaning": "postero-anterior" if view == "PA" else "antero-posterior",
                 "PatientOrientationCodeSequence_CodeMeaning": "Erect",
                 "split": {"val": "validate"}.get(split, split), **_labels_row(label, r, uncertain=True)})
    return rel


def _csv(df: pd.DataFrame, path: Path) -> None:
    """Write a CSV (gzip with a fixed timestamp for ``.gz``, so a seed gives identical bytes)."""
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(df.to_csv(index=False).encode())
    else:
        df.to_csv(path, index=False)


def finish(out: Path, layout: str, meta: list[dict]) -> None:
    """Write the layout's label/metadata files from the rows `place` collected."""
    m = pd.DataFrame(meta)
    if layout == "rsna-pneumonia":
        _csv(m[["patientId", "x", "y", "width", "height", "Target"]], out / "stage_2_train_labels.csv")
        _csv(m[["patientId", "class"]], out / "stage_2_detailed_class_info.csv")
    elif layout == "chexpert":
        base = out / "CheXpert-v1.0-small"
        for kind, name in (("train", "train.csv"), ("valid", "valid.csv")):
            part = m[m["kind"] == kind] if len(m) else m
            _csv(part.reindex(columns=CHEXPERT_COLUMNS), base / name)
    elif layout == "mimic-cxr-jpg":
        pre = "mimic-cxr-2.0.0-"
        _csv(m[MIMIC_METADATA], out / f"{pre}metadata.csv.gz")
        studies = m.drop_duplicates("study_id")[["subject_id", "study_id", *CHEXPERT_COLUMNS[5:]]]
        _csv(studies, out / f"{pre}chexpert.csv.gz")
        _csv(studies, out / f"{pre}negbio.csv.gz")
        _csv(m[["dicom_id", "study_id", "subject_id", "split"]], out / f"{pre}split.csv.gz")
