"""Source readers: one function per on-disk layout, each returning the index contract.

Readers only parse metadata and folder structure; they never open images (that is
`cxrnb.validate`). Every listed image becomes a row. Rows the task does not want (a label
outside the task, a lateral view, a CT slice, a listing twice) are kept in the returned
frame with a `reason`, so `load_index` can put them in the drop report: nothing vanishes.

Layouts:
- ``synthetic``: the embedded generator's manifest ``synthetic.csv`` (either layout).
- ``covid-chestxray``: ieee8023 ``metadata.csv`` + ``images/`` (also Actualmed/Figure1 with
  ``imagename``), old flat and new hierarchical ``finding`` vocabularies.
- ``kaggle-pneumonia``: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``, 2- or 3-class.
- ``nih``: ChestX-ray14 ``Data_Entry_2017.csv`` (or v2020, or Kaggle's ``sample_labels.csv``).
- ``folder``: ``root/<class>/*.png|jpg|jpeg``, one patient per image (ids unknown).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .index import INDEX_COLUMNS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Frontal projections; lateral (L) and CT (Axial, Coronal) rows are filtered by default.
FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP Erect", "AP semi erect")

_BACTERIA = ("bacteria", "streptococcus", "klebsiella", "legionella", "e.coli", "escherichia",
             "staphylococcus", "mycoplasma", "chlamydophila", "nocardia", "pseudomonas",
             "haemophilus", "moraxella")
_VIRUS = ("viral", "virus", "sars", "mers", "influenza", "varicella", "herpes", "h1n1",
          "adenovirus", "rsv")
_FUNGAL = ("fungal", "pneumocystis", "aspergillosis", "histoplasmosis", "candida", "pcp")


def finding_label(finding: object) -> str | None:
    """Map a covid-chestxray ``finding`` (flat or hierarchical vocabulary) to a fine label.

    ``COVID-19``, ``COVID-19, ARDS`` and ``Pneumonia/Viral/COVID-19`` -> ``covid``;
    ``No Finding`` -> ``normal``; bacterial/viral/fungal organisms -> ``bacteria``/``virus``/
    ``fungal``; other pneumonia -> ``pneumonia``; ``Effusion`` -> ``effusion``;
    ``Tuberculosis`` -> ``tuberculosis``; anything else -> ``other``; blank -> None.
    """
    if finding is None or (isinstance(finding, float) and np.isnan(finding)):
        return None
    f = str(finding).strip().lower()
    if not f or f in ("todo", "unknown", "nan"):
        return None
    if "covid" in f or "sars-cov-2" in f:
        return "covid"
    if f in ("no finding", "normal", "no findings"):
        return "normal"
    if any(k in f for k in _BACTERIA):
        return "bacteria"
    if any(k in f for k in _VIRUS):
        return "virus"
    if any(k in f for k in _FUNGAL):
        return "fungal"
    if "pneumonia" in f:
        return "pneumonia"
    if "effusion" in f:
        return "effusion"
    if "tuberculosis" in f:
        return "tuberculosis"
    return "other"


#: Fine labels that a task class named "pneumonia" (or "viral") absorbs when the task does
#: not ask for them separately.
_SUPERCLASSES = {"pneumonia": ("bacteria", "virus", "fungal", "covid", "pneumonia"),
                 "virus": ("covid",)}


def task_label(fine: str | None, classes: Sequence[str]) -> str | None:
    """The task class a fine label belongs to, or None when it is outside the task.

    A fine label that is itself a class wins; otherwise a superclass in `classes` absorbs it
    (``covid`` counts as ``pneumonia`` in a normal/pneumonia task, but stays ``covid`` in a
    covid/pneumonia/normal task).
    """
    if fine is None:
        return None
    if fine in classes:
        return fine
    for sup, members in _SUPERCLASSES.items():
        if sup in classes and fine in members:
            return sup
    return None


def _frame(rows: dict[str, object], n: int) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in INDEX_COLUMNS + ["reason", "detail"]:
        if c not in df:
            df[c] = pd.Series([None] * n, dtype="object")
    return df


def _drop(df: pd.DataFrame, mask: pd.Series, reason: str, detail: pd.Series | str) -> None:
    """Mark rows (not yet marked) with a drop reason, in place."""
    m = mask & df["reason"].isna()
    df.loc[m, "reason"] = reason
    df.loc[m, "detail"] = detail[m] if isinstance(detail, pd.Series) else detail


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a source CSV as text: tolerant of CRLF, quoted commas and trailing header commas."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata file not found")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=False,
                     encoding_errors="replace")
    df.columns = [str(c).strip() for c in df.columns]
    unnamed = [c for c in df.columns if c.startswith("Unnamed:") or c == ""]
    empty = [c for c in unnamed if (df[c].str.strip() == "").all()]
    df = df.drop(columns=empty)  # the trailing-comma column of some releases
    return df.apply(lambda s: s.str.strip())


def _filter_views(df: pd.DataFrame, views: Sequence[str] | None) -> None:
    if views is None:
        return
    wanted = {v.lower() for v in views}
    bad = ~df["view"].fillna("").str.lower().isin(wanted)
    _drop(df, bad, "filtered: view", "view " + df["view"].fillna("missing").astype(str)
          + f" not in {list(views)}")


def _apply_task(df: pd.DataFrame, fine: pd.Series, classes: Sequence[str], what: pd.Series) -> None:
    df["label"] = [task_label(f, classes) for f in fine]
    _drop(df, fine.isna(), "no label", "no usable label: " + what.astype(str))
    _drop(df, df["label"].isna(), "label outside task",
          what.astype(str) + f" is not one of {list(classes)}")


def read_covid_chestxray(
    root: str | Path,
    *,
    classes: Sequence[str] = ("covid", "normal"),
    views: Sequence[str] | None = FRONTAL_VIEWS,
    modality: str | None = "X-ray",
    metadata: str = "metadata.csv",
) -> pd.DataFrame:
    """Rows of an ieee8023 covid-chestxray style ``metadata.csv`` (also Actualmed/Figure1).

    `classes` picks the task, from ``covid``, ``normal``, ``pneumonia`` (all other
    pneumonias, and covid unless asked separately), ``bacteria``, ``virus``, ``fungal``,
    ``effusion``, ``tuberculosis``. `views` filters the projection (None keeps all);
    `modality` drops CT rows. Patient ids stay text (``311a`` occurs).
    """
    root = Path(root)
    meta = _read_csv(root / metadata)
    name_col = "filename" if "filename" in meta else "imagename" if "imagename" in meta else None
    if name_col is None or "finding" not in meta:
        raise ValueError(f"{root / metadata}: need columns 'finding' and 'filename' (or "
                         f"'imagename'); found {list(meta.columns)}")
    folder = meta["folder"].replace("", "images") if "folder" in meta else "images"
    n = len(meta)
    df = _frame({"path": folder + "/" + meta[name_col],
                 "patient_id": meta.get("patientid", pd.Series([""] * n)).replace("", None),
                 "view": meta.get("view", pd.Series([""] * n)).replace("", None),
                 "source": "covid-chestxray", "root": str(root)}, n)
    for col in ("sex", "age", "finding", "modality", "offset", "date"):
        if col in meta:
            df[col] = meta[col].replace("", None).values
    if "age" in df:
        df["age"] = pd.to_numeric(df["age"], errors="coerce")
    df["csv_row"] = np.arange(n) + 2  # 1-based line number in the CSV, header is line 1
    _drop(df, meta[name_col] == "", "no file name", "empty " + name_col + " in CSV line "
          + df["csv_row"].astype(str))
    _drop(df, df["patient_id"].isna(), "no patient id", "empty patientid in CSV line "
          + df["csv_row"].astype(str))
    if modality is not None and "modality" in df:
        bad = df["modality"].fillna("").str.lower() != modality.lower()
        _drop(df, bad, "filtered: modality", "modality " + df["modality"].fillna("missing").astype(str))
    _filter_views(df, views)
    _apply_task(df, meta["finding"].map(finding_label), classes, "finding " + meta["finding"].replace("", "(blank)"))
    return df


_KAGGLE_PATIENT = [re.compile(r"^(person\d+)_", re.I), re.compile(r"^(NORMAL2-IM-\d+)-", re.I),
                   re.compile(r"^(IM-\d+)-", re.I)]
_KAGGLE_SUBTYPE = re.compile(r"_(bacteria|virus)_", re.I)


def kaggle_patient(filename: str) -> str | None:
    """Patient id that a Kaggle pneumonia filename encodes (``person12``, ``IM-0115``), else None."""
    for rx in _KAGGLE_PATIENT:
        m = rx.match(filename)
        if m:
            return m.group(1)
    return None


def _kaggle_split_dirs(root: Path) -> Path:
    """The folder holding train/test(/val): root, root/chest_xray or root/chest_xray/chest_xray."""
    for cand in (root, root / "chest_xray", root / "chest_xray" / "chest_xray"):
        if any((cand / s).is_dir() for s in ("train", "test", "val")):
            return cand
    raise FileNotFoundError(f"{root}: no train/ val/ test/ folders here or under chest_xray/ "
                            "(expected the Kaggle chest-xray-pneumonia layout)")


def _walk_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, sorted, skipping macOS __MACOSX folders."""
    images, other = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX")
        for f in sorted(filenames):
            p = Path(dirpath) / f
            (images if p.suffix.lower() in IMAGE_EXTENSIONS and not f.startswith(".") else other).append(p)
    return images, other


def _other_files(other: list[Path], root: Path, source: str) -> pd.DataFrame:
    n = len(other)
    return _frame({"path": [p.relative_to(root).as_posix() for p in other], "source": source,
                   "root": str(root), "reason": ["not an image file"] * n,
                   "detail": [f"extension {p.suffix or '(none)'!r} is not one of {IMAGE_EXTENSIONS}"
                              for p in other]}, n)


def read_kaggle_pneumonia(
    root: str | Path,
    *,
    classes: Sequence[str] = ("normal", "pneumonia"),
) -> pd.DataFrame:
    """Rows of the Kaggle chest-xray-pneumonia folders (``chest_xray/<split>/<CLASS>/``).

    Labels come from the class folder (lower-cased). For the 3-class task of article 004,
    ask for ``classes=("normal", "bacteria", "virus")``: pneumonia images are labelled by the
    subtype in their filename. Patient ids come from filenames (``person12``, ``IM-0115``);
    a filename with no id counts as its own patient. The official split is kept in
    ``kaggle_split``.
    """
    root = Path(root)
    base = _kaggle_split_dirs(root)
    rows, others = [], []
    for split in ("train", "val", "test"):
        if not (base / split).is_dir():
            continue
        for cls_dir in sorted(p for p in (base / split).iterdir() if p.is_dir() and p.name != "__MACOSX"):
            images, other = _walk_images(cls_dir)
            others += other
            for p in images:
                pid = kaggle_patient(p.name)
                sub = _KAGGLE_SUBTYPE.search(p.name)
                rows.append({"path": p.relative_to(root).as_posix(),
                             "patient_id": pid or f"file:{p.stem}",
                             "folder_class": cls_dir.name.lower(),
                             "subtype": sub.group(1).lower() if sub else None,
                             "kaggle_split": split})
    n = len(rows)
    df = _frame({**pd.DataFrame(rows, columns=["path", "patient_id", "folder_class", "subtype",
                                               "kaggle_split"]).to_dict("list"),
                 "source": "kaggle-pneumonia", "root": str(root)}, n)
    use_subtype = (df["folder_class"] == "pneumonia") & df["subtype"].notna() & ("pneumonia" not in classes)
    fine = df["folder_class"].where(~use_subtype, df["subtype"])
    _apply_task(df, fine, classes, "class folder " + df["folder_class"].str.upper()
                + np.where(df["subtype"].notna(), " (" + df["subtype"].fillna("") + ")", ""))
    return pd.concat([df, _other_files(others, root, "kaggle-pneumonia")], ignore_index=True)


def _nih_age(value: str) -> float:
    """Years from NIH ``Patient Age``: ``058Y``, ``011M``, ``005D`` (2017 release) or ``58``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([YMD]?)\s*", str(value), re.I)
    if not m:
        return float("nan")
    num, unit = float(m.group(1)), m.group(2).upper()
    return num / 12 if unit == "M" else num / 365.25 if unit == "D" else num


def read_nih(
    root: str | Path,
    *,
    finding: str = "Effusion",
    negative: str = "no finding",
    views: Sequence[str] | None = None,
    csv: str | None = None,
) -> pd.DataFrame:
    """Rows of NIH ChestX-ray14 (``Data_Entry_2017.csv``, its v2020 edition or ``sample_labels.csv``).

    A binary task: images whose pipe-separated ``Finding Labels`` include `finding` are
    labelled ``finding.lower()``; the negative class is ``normal`` (``No Finding`` images,
    `negative="no finding"`) or ``other`` (every other image, `negative="rest"`). Images are
    found anywhere under `root` (``images/`` or the release's ``images_001/images/`` ...).
    """
    root = Path(root)
    names = [csv] if csv else ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv", "sample_labels.csv"]
    found = [root / n for n in names if (root / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{root}: none of {names} found (NIH ChestX-ray14 label file)")
    meta = _read_csv(found[0])
    meta.columns = [re.sub(r"[\[\]]", "", c) for c in meta.columns]  # 'OriginalImage[Width' ...
    need = ["Image Index", "Finding Labels", "Patient ID"]
    if any(c not in meta for c in need):
        raise ValueError(f"{found[0]}: need columns {need}; found {list(meta.columns)}")
    if negative not in ("no finding", "rest"):
        raise ValueError(f"negative must be 'no finding' or 'rest', not {negative!r}")
    on_disk = {p.name: p.relative_to(root).as_posix() for p in _walk_images(root)[0]}
    n = len(meta)
    pid = meta["Patient ID"].map(lambda s: str(int(s)) if s.isdigit() else s)
    df = _frame({"path": [on_disk.get(f, f"images/{f}") for f in meta["Image Index"]],
                 "patient_id": pid.replace("", None),
                 "view": meta.get("View Position", pd.Series([""] * n)).replace("", None),
                 "source": "nih", "root": str(root),
                 "finding_labels": meta["Finding Labels"],
                 "sex": meta.get("Patient Gender", pd.Series([""] * n)).replace("", None),
                 "age": meta.get("Patient Age", pd.Series([""] * n)).map(_nih_age),
                 "follow_up": pd.to_numeric(meta.get("Follow-up #", pd.Series([""] * n)), errors="coerce")}, n)
    labels = meta["Finding Labels"].str.split("|").map(lambda ls: {s.strip().lower() for s in ls})
    pos = labels.map(lambda s: finding.lower() in s)
    nofind = labels.map(lambda s: s == {"no finding"})
    neg_name = "normal" if negative == "no finding" else "other"
    fine = pd.Series(np.where(pos, finding.lower(), np.where(nofind | (negative == "rest"), neg_name, None)),
                     dtype="object")
    _drop(df, df["patient_id"].isna(), "no patient id", "empty Patient ID")
    _filter_views(df, views)
    df["label"] = fine.values
    _drop(df, df["label"].isna(), "label outside task",
          "Finding Labels " + meta["Finding Labels"] + f" (task: {finding} vs No Finding)")
    return df


def read_folder(root: str | Path, *, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of ``root/<class>/...`` image folders; every image is its own patient (ids unknown)."""
    root = Path(root)
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    if not dirs:
        raise FileNotFoundError(f"{root}: no class sub-folders (expected root/<class>/*.png|jpg)")
    rows, others = [], []
    for d in dirs:
        images, other = _walk_images(d)
        others += other
        rows += [{"path": p.relative_to(root).as_posix(), "folder_class": d.name.lower(),
                  "patient_id": f"file:{p.relative_to(root).with_suffix('').as_posix()}"} for p in images]
    n = len(rows)
    df = _frame({**pd.DataFrame(rows, columns=["path", "folder_class", "patient_id"]).to_dict("list"),
                 "source": "folder", "root": str(root)}, n)
    wanted = classes if classes is not None else sorted(df["folder_class"].unique())
    _apply_task(df, df["folder_class"], wanted, "class folder " + df["folder_class"])
    return pd.concat([df, _other_files(others, root, "folder")], ignore_index=True)


def read_synthetic(root: str | Path, *, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the embedded synthetic dataset from its manifest ``synthetic.csv`` (with masks)."""
    root = Path(root)
    manifest = root / "synthetic.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found; create the data with "
                                "cxrnb.synthetic.generate(...) or `cxrnb synth`")
    df = pd.read_csv(manifest, dtype={"patient_id": str, "path": str, "label": str, "view": str},
                     keep_default_na=True)
    df["root"] = str(root)
    df["source"] = "synthetic"
    for c in ("reason", "detail"):
        df[c] = pd.Series([None] * len(df), dtype="object")
    wanted = classes if classes is not None else list(dict.fromkeys(df["label"]))
    fine = df["label"].copy()
    _apply_task(df, fine, wanted, "label " + fine.astype(str))
    return df


READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "synthetic": read_synthetic,
    "covid-chestxray": read_covid_chestxray,
    "kaggle-pneumonia": read_kaggle_pneumonia,
    "nih": read_nih,
    "folder": read_folder,
}


def read_source(source: str, root: str | Path, **task) -> pd.DataFrame:
    """Dispatch to the reader of `source` (see `READERS`) with task options."""
    if source not in READERS:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found (source {source!r})")
    return READERS[source](root, **task)
