"""Readers of hospital-style sources: RSNA Pneumonia (DICOM + boxes), DICOM class folders,
CheXpert and MIMIC-CXR-JPG. Same contract as `cxrnb.sources`; the end of this module registers
them in its `SOURCES` (`cxrnb.readers.hospital` imports it, as `cxrnb.sources` imports every
module of `cxrnb.readers`).

The DICOM readers read each file's header (`cxrnb.dicom.header`: patient id, view, sex, age,
study, nothing else, so names, birth dates, accession numbers and institutions never reach an
index, CSV or report); pixels are decoded later by validation, like every other image.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import sources as S
from .dicom import DICOM_EXTENSIONS, DicomError, header, is_dicom, sniff

#: Task classes of RSNA Pneumonia: Target 1/0 (``pneumonia``/``no_pneumonia``) or the three
#: detailed classes (``pneumonia`` = Lung Opacity, ``normal``, ``abnormal`` = No Lung Opacity / Not Normal).
RSNA_CLASSES = ("pneumonia", "no_pneumonia", "normal", "abnormal")
_RSNA_DETAILED = {"lung opacity": "pneumonia", "normal": "normal", "no lung opacity / not normal": "abnormal"}


def _age_years(values: pd.Series, where: str, notes: list[str]) -> pd.Series:
    """Ages in years from DICOM AS strings (``032Y``, bare ``32`` as in RSNA, ``011M``); impossible
    ages over `cxrnb.sources.MAX_AGE` become NaN with one note."""
    age = values.map(lambda v: S._nih_age(v) if isinstance(v, str) else np.nan).astype(float)
    old = age > S.MAX_AGE
    if old.any():
        notes.append(f"{where}: {int(old.sum())} impossible age(s) over {S.MAX_AGE} years set to NaN")
    return age.mask(old)


def _headers(paths: list[Path]) -> list[dict | tuple[str, str]]:
    """`header` of each file (threads), or (reason, detail) when it has none."""
    from .images import map_threads

    def one(p: Path) -> dict | tuple[str, str]:
        if not p.is_file():
            return {}  # missing: `load_index` reports it
        try:
            return header(p)
        except DicomError as e:
            return (e.reason, e.detail)

    return map_threads(one, paths, desc="DICOM headers", progress=False)


def _apply_headers(df: pd.DataFrame, heads: list, root: Path, notes: list[str]) -> None:
    """Fill view, sex, age, study from the headers (in place); files without one are dropped."""
    for col in ("view", "sex", "study"):
        df[col] = pd.Series([h.get(col) if isinstance(h, dict) else None for h in heads], index=df.index, dtype=object)
    df["age"] = _age_years(pd.Series([h.get("age") if isinstance(h, dict) else None for h in heads], index=df.index),
                           str(root), notes)
    bad = pd.Series([isinstance(h, tuple) for h in heads], index=df.index)
    if bad.any():
        for reason in {h[0] for h in heads if isinstance(h, tuple)}:
            m = pd.Series([isinstance(h, tuple) and h[0] == reason for h in heads], index=df.index)
            S._drop(df, m, reason, pd.Series([h[1] if isinstance(h, tuple) else "" for h in heads], index=df.index))


def read_rsna_pneumonia(
    root: str | Path,
    *,
    classes: Sequence[str] = ("no_pneumonia", "pneumonia"),
    views: Sequence[str] | None = S.FRONTAL_VIEWS,
) -> pd.DataFrame:
    """Rows of the Kaggle RSNA Pneumonia Detection Challenge (``stage_2_train_labels.csv`` + DICOMs).

    One row per image (``stage_2_train_images/<patientId>.dcm``; the CSV has one row per box).
    `classes`: Target (``no_pneumonia``, ``pneumonia``, the default) or the detailed classes of
    ``stage_2_detailed_class_info.csv`` (``normal``, ``abnormal``, ``pneumonia``, any two or three).
    View, sex, age and study come from the DICOM header. Boxes (x, y, width, height in pixels
    of the stored image) are kept as JSON in ``boxes`` (see `box_masks`); ``n_boxes`` counts them.
    A patient whose rows disagree (Target 0 and 1, or a detailed class against Target) is dropped
    as "conflicting listings"; rows of a missing file say how many boxes they carried.
    """
    root = Path(root)
    S._check_classes(classes, RSNA_CLASSES, "rsna-pneumonia")
    detailed = [c for c in classes if c in ("normal", "abnormal")]
    if detailed and "no_pneumonia" in classes:
        raise ValueError("rsna-pneumonia: 'no_pneumonia' (Target 0) cannot be combined with the detailed classes "
                         f"{detailed}; choose ('no_pneumonia', 'pneumonia') or from ('normal', 'abnormal', 'pneumonia')")
    name = next((n for n in ("stage_2_train_labels.csv", "stage_1_train_labels.csv") if (root / n).is_file()),
                "stage_2_train_labels.csv")
    meta, bad_lines = S._read_csv(root / name, root)
    need = ["patientId", "x", "y", "width", "height", "Target"]
    if any(c not in meta for c in need):
        raise ValueError(f"{root / name}: need columns {need}; found {[c for c in meta.columns if c != 'csv_row']}")
    images = "stage_2_train_images" if name.startswith("stage_2") or not (root / "stage_1_train_images").is_dir() \
        else "stage_1_train_images"
    box = meta[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce")
    meta["_box"] = [None if r.isna().any() else [float(v) for v in r] for _, r in box.iterrows()]
    g = meta.groupby("patientId", sort=False)
    pids = list(g.groups)
    targets = g["Target"].agg(lambda s: sorted(set(s)))
    lines = g["csv_row"].agg(lambda s: ", ".join(map(str, s)))
    boxes = g["_box"].agg(lambda s: [b for b in s if b is not None])
    df = S._frame({"path": [f"{images}/{p}.dcm" for p in pids], "patient_id": pids,
                   "source": "rsna-pneumonia", "root": str(root),
                   "target": [t[0] if len(t) == 1 else None for t in targets],
                   "boxes": [json.dumps(b) for b in boxes], "n_boxes": [len(b) for b in boxes]}, len(pids))
    rows_note = [f"its {n} label row(s) in {name} (line(s) {ln}) carry {len(b)} box(es)"
                        for n, ln, b in zip(g.size(), lines, boxes)]
    S._drop(df, pd.Series([len(t) > 1 for t in targets]), "conflicting listings",
            pd.Series([f"Target {' and '.join(t)} on lines {ln} of {name}" for t, ln in zip(targets, lines)]))
    S._drop(df, pd.Series([t not in (["0"], ["1"]) and len(t) == 1 for t in targets]), "no label",
            pd.Series([f"Target {t[0]!r} on line(s) {ln} (expected 0 or 1)" for t, ln in zip(targets, lines)]))
    notes: list[str] = []
    fine = df["target"].map({"1": "pneumonia", "0": "no_pneumonia"})
    what = "Target " + df["target"].fillna("?").astype(str)
    info = root / "stage_2_detailed_class_info.csv"
    if info.is_file():
        cls, _ = S._read_csv(info, root)
        per = cls.groupby("patientId")["class"].agg(lambda s: sorted({_RSNA_DETAILED.get(c.lower(), c) for c in s}))
        dclass = df["patient_id"].map(per)
        df["rsna_class"] = [c[0] if isinstance(c, list) and len(c) == 1 else None for c in dclass]
        clash = pd.Series([isinstance(c, list) and (len(c) > 1 or (t in ("0", "1") and (c[0] == "pneumonia") != (t == "1")))
                           for c, t in zip(dclass, df["target"])])
        S._drop(df, clash, "conflicting listings", "detailed class " + dclass.astype(str) + " against " + what)
        if detailed:
            fine, what = df["rsna_class"], "class " + df["rsna_class"].fillna("(not in the class file)")
    elif detailed:
        raise FileNotFoundError(f"{info}: needed for the detailed classes {detailed}; it is not there "
                                "(use classes=('no_pneumonia', 'pneumonia') with Target alone)")
    heads = _headers([root / p for p in df["path"]])
    _apply_headers(df, heads, root, notes)
    S._filter_views(df, views)
    S._apply_task(df, fine, classes, what)
    unlisted, outside = S._unlisted(df, root, "rsna-pneumonia")
    df["near_match"] = df["near_match"].fillna(pd.Series(rows_note, index=df.index))  # said if the file is missing
    out = pd.concat([df, bad_lines, unlisted], ignore_index=True)
    out.attrs["notes"] = notes + S._outside_note(outside, root)
    return out


def parse_boxes(text: object) -> list[list[float]]:
    """Boxes of a ``boxes`` cell ([[x, y, width, height], ...]; blank or NaN: none)."""
    if not isinstance(text, str) or not text.strip():
        return []
    return [list(map(float, b)) for b in json.loads(text)]


def box_mask(boxes: Sequence[Sequence[float]], stored: tuple[int, int], size: int | tuple[int, int]) -> np.ndarray:
    """A uint8 lesion mask (0/255) of shape `size` from boxes given in pixels of the `stored`
    (height, width) image: each box is scaled with the image, so it fits any model size."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    sh, sw = stored
    m = np.zeros((h, w), np.uint8)
    for x, y, bw, bh in boxes:
        x0, y0 = int(np.floor(x * w / sw)), int(np.floor(y * h / sh))
        x1, y1 = int(np.ceil((x + bw) * w / sw)), int(np.ceil((y + bh) * h / sh))
        m[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = 255
    return m


def box_masks(index: pd.DataFrame, size: int | tuple[int, int]) -> np.ndarray | None:
    """Lesion masks (N, H, W) uint8 from the index's ``boxes`` (RSNA), or None when it has none.

    The stored size is the index's ``height``/``width`` (added by validation), else 1024 x 1024.
    """
    if "boxes" not in index:
        return None
    hh = index["height"] if "height" in index else pd.Series(1024, index=index.index)
    ww = index["width"] if "width" in index else pd.Series(1024, index=index.index)
    return np.stack([box_mask(parse_boxes(b), (int(h), int(w)), size) for b, h, w in zip(index["boxes"], hh, ww)]) \
        if len(index) else np.zeros((0, *((size, size) if isinstance(size, int) else size)), np.uint8)


def read_dicom_folder(
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    views: Sequence[str] | None = S.FRONTAL_VIEWS,
) -> pd.DataFrame:
    """Rows of ``root/<class>/**`` DICOM files (a PACS export sorted into class folders).

    A file is DICOM by its ``DICM`` preamble, with or without an extension (``IM0001``); a
    ``.dcm`` that is not DICOM (a JPEG saved under that name) is reported. Patient id from
    PatientID (a file without one counts as its own patient, said in a note), view from
    ViewPosition (lateral and missing views filtered by `views`, like the other readers; None
    keeps all), sex, age and study from the header. A DICOMDIR or any file at the top is reported.
    """
    root = Path(root)
    rows, report = [], []
    own_masks = (root / "synthetic.csv").is_file()  # a cxrnb.synthetic set's masks/ are not films
    for rel, reason, detail in S._scan(root):
        parts = rel.split("/")
        p = root / rel
        if own_masks and parts[0] == "masks":
            continue
        dicom = reason in (None, "not an image file") and is_dicom(p)
        named = os.path.splitext(rel)[1].lower() in DICOM_EXTENSIONS
        if len(parts) == 1:
            if reason not in (None, "not an image file"):  # hidden, broken link ...
                report.append((rel, reason, detail))
            elif dicom or named or S._keep_reported(rel, reason):
                report.append((rel, "not in a class folder", "a DICOMDIR (the export's table of contents), not an image"
                               if parts[0].upper() == "DICOMDIR" else
                               "at the top of the folder; files belong in <class>/ folders"))
        elif dicom:
            rows.append({"path": rel, "folder_class": parts[0].lower()})
        elif reason is None:  # a .dcm (or .png/.jpg) file without the DICM preamble
            report.append((rel, "not a DICOM file", f"no DICM preamble; the content is {sniff(p)}"))
        else:
            report.append((rel, reason, detail))
    present = S._class_dirs(root)
    if classes is not None:
        S._check_classes(classes, present, f"dicom {root}")
    n = len(rows)
    df = S._frame({c: pd.Series([r[c] for r in rows], dtype=object) for c in ("path", "folder_class")}
                  | {"source": "dicom", "root": str(root)}, n)
    notes: list[str] = []
    heads = _headers([root / r["path"] for r in rows])
    _apply_headers(df, heads, root, notes)
    pid = pd.Series([h.get("patient_id") if isinstance(h, dict) else None for h in heads], index=df.index, dtype=object)
    if pid.isna().any():
        notes.append(f"{int(pid.isna().sum())} DICOM file(s) have no PatientID: each counts as its own patient")
    df["patient_id"] = pid.fillna("file:" + df["path"].astype(str))
    wanted = classes if classes is not None else sorted(df["folder_class"].unique())
    S._filter_views(df, views)
    S._apply_task(df, df["folder_class"], wanted, "class folder " + df["folder_class"])
    out = pd.concat([df, S._disk_rows(report, "dicom", root)], ignore_index=True)
    out.attrs["notes"] = notes
    return out


#: The 14 observations of the CheXpert labeler (CheXpert and MIMIC-CXR-JPG label files).
CHEXPERT_FINDINGS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                     "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                     "Pleural Other", "Fracture", "Support Devices")
#: What an uncertain (-1) mention becomes: dropped and reported, a positive (U-Ones) or a negative (U-Zeros).
UNCERTAINTY_POLICIES = ("ignore", "positive", "negative")


def _check_findings_task(source: str, finding: str, negative: str, uncertain: str) -> str:
    """The finding's column name; errors list the choices."""
    known = {f.lower(): f for f in CHEXPERT_FINDINGS if f != "No Finding"}
    if not isinstance(finding, str) or finding.lower() not in known:
        raise ValueError(f"{source}: unknown finding {finding!r}; choose from {list(known.values())}")
    if negative not in ("no finding", "rest"):
        raise ValueError(f"{source}: negative must be 'no finding' or 'rest', not {negative!r}")
    if uncertain not in UNCERTAINTY_POLICIES:
        raise ValueError(f"{source}: unknown uncertainty policy {uncertain!r}; choose from {list(UNCERTAINTY_POLICIES)}")
    return known[finding.lower()]


def _findings_task(df: pd.DataFrame, labels: pd.DataFrame, column: str, negative: str, uncertain: str,
                   where: pd.Series, notes: list[str], source: str) -> None:
    """Label `df` (in place) from CheXpert-style columns: 1 positive, 0 negative, -1 uncertain,
    blank not mentioned. Uncertain rows follow `uncertain`; "ignore" reports each one."""
    def value(col: str) -> pd.Series:
        v = pd.to_numeric(labels[col], errors="coerce") if col in labels else pd.Series(np.nan, index=labels.index)
        return pd.Series(v.to_numpy(), index=df.index)

    pos, nofind = value(column), value("No Finding")
    unsure = pos == -1
    positive = (pos == 1) | (unsure & (uncertain == "positive"))
    name = column.lower().replace(" ", "_")
    neg_name = "normal" if negative == "no finding" else "other"
    neg = (nofind == 1) if negative == "no finding" else ~positive
    df["label"] = np.where(positive, name, np.where(neg & ~(unsure & (uncertain == "ignore")), neg_name, None))
    df[name] = pos.to_numpy()
    if uncertain == "ignore":
        S._drop(df, unsure, "uncertain label", f"{column} = -1 (uncertain) in " + where
                + f"; uncertainty policy 'ignore' (others: {list(UNCERTAINTY_POLICIES[1:])})")
    elif unsure.any():
        notes.append(f"{source}: {int(unsure.sum())} uncertain (-1) {column} mention(s) counted as {uncertain} "
                     f"(uncertainty policy {uncertain!r})")
    S._drop(df, df["label"].isna(), "label outside task",
            f"{column} " + pos.map(lambda v: "blank" if pd.isna(v) else f"{v:g}").astype(str)
            + ", No Finding " + nofind.map(lambda v: "blank" if pd.isna(v) else f"{v:g}").astype(str)
            + f" (task: {column} vs " + ("No Finding)" if negative == "no finding" else "the rest)"))


def _chexpert_base(root: Path) -> Path:
    """The folder holding train.csv / valid.csv: root or root/CheXpert-v1.0(-small)."""
    for cand in (root, root / "CheXpert-v1.0-small", root / "CheXpert-v1.0"):
        if (cand / "train.csv").is_file() or (cand / "valid.csv").is_file():
            return cand
    raise FileNotFoundError(f"{root}: no train.csv or valid.csv here or under CheXpert-v1.0(-small)/")


def read_chexpert(
    root: str | Path,
    *,
    finding: str = "Pleural Effusion",
    negative: str = "no finding",
    uncertain: str = "ignore",
    views: Sequence[str] | None = S.FRONTAL_VIEWS,
) -> pd.DataFrame:
    """Rows of CheXpert (``train.csv`` + ``valid.csv``, paths ``CheXpert-v1.0(-small)/train/patient00001/study1/view1_frontal.jpg``).

    A binary task like NIH's: `finding` (one of `CHEXPERT_FINDINGS`) against ``No Finding``
    (``normal``) or every other film (``other``, `negative="rest"`). `uncertain` is the policy
    for -1 mentions (`UNCERTAINTY_POLICIES`; "ignore" reports each such row). Lateral films are
    view ``L``; frontal ones take their ``AP/PA`` value. Patient id and study come from the path;
    ``official_split`` is ``train`` (train.csv) or ``val`` (valid.csv).
    """
    root = Path(root)
    column = _check_findings_task("chexpert", finding, negative, uncertain)
    base = _chexpert_base(root)
    frames, bad = [], []
    for name, split in (("train.csv", "train"), ("valid.csv", "val")):
        if (base / name).is_file():
            meta, b = S._read_csv(base / name, base)
            if "Path" not in meta:
                raise ValueError(f"{base / name}: need a 'Path' column; found {[c for c in meta.columns if c != 'csv_row']}")
            frames.append(meta.assign(official_split=split, _where=f"{name} line " + meta["csv_row"].astype(str)))
            bad.append(b)
    meta = pd.concat(frames, ignore_index=True)
    parts = meta["Path"].str.split("/", n=1)
    path = [p[1] if len(p) == 2 and p[0].lower().startswith("chexpert") else p[0] if len(p) == 1 else "/".join(p)
            for p in parts]
    pid = meta["Path"].str.extract(r"(patient\d+)", expand=False)
    study = meta["Path"].str.extract(r"(patient\d+/study\d+)", expand=False)
    lateral = S._column(meta, "Frontal/Lateral").str.lower().eq("lateral")
    view = S._column(meta, "AP/PA").replace("", None).where(~lateral, "L")
    n = len(meta)
    df = S._frame({"path": path, "patient_id": pid, "view": view, "source": "chexpert", "root": str(base),
                   "study": study, "sex": S._column(meta, "Sex").replace("", None),
                   "age": pd.to_numeric(S._column(meta, "Age"), errors="coerce"),
                   "official_split": meta["official_split"]}, n)
    notes: list[str] = []
    S._drop(df, df["patient_id"].isna(), "no patient id", "no patientNNNNN in Path " + meta["Path"])
    S._filter_views(df, views)
    _findings_task(df, meta, column, negative, uncertain, meta["_where"], notes, "chexpert")
    unlisted, outside = S._unlisted(df, base, "chexpert")
    out = pd.concat([df, *bad, unlisted], ignore_index=True)
    out.attrs["notes"] = notes + S._outside_note(outside, base)
    return out


_MIMIC = "mimic-cxr-2.0.0-"


def _mimic_csv(root: Path, kind: str, required: bool = True) -> pd.DataFrame | None:
    """``mimic-cxr-2.0.0-<kind>.csv`` (or ``.csv.gz``, as released) read as text, fast (pandas' C parser)."""
    for name in (f"{_MIMIC}{kind}.csv", f"{_MIMIC}{kind}.csv.gz"):
        if (root / name).is_file():
            try:
                return pd.read_csv(root / name, dtype=str, keep_default_na=False, index_col=False)
            except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as e:
                raise ValueError(f"{root / name}: cannot parse the CSV ({type(e).__name__}: {e})") from None
    if required:
        raise FileNotFoundError(f"{root}: {_MIMIC}{kind}.csv(.gz) not found (MIMIC-CXR-JPG)")
    return None


def read_mimic_cxr_jpg(
    root: str | Path,
    *,
    finding: str = "Pleural Effusion",
    negative: str = "no finding",
    uncertain: str = "ignore",
    labeler: str = "chexpert",
    views: Sequence[str] | None = S.FRONTAL_VIEWS,
) -> pd.DataFrame:
    """Rows of MIMIC-CXR-JPG: ``mimic-cxr-2.0.0-metadata.csv`` joined by study with the
    ``-chexpert.csv`` (or ``-negbio.csv``, `labeler`) labels; images ``files/p10/p10000032/s50414267/<dicom_id>.jpg``.

    Patient = ``subject_id``, ``study`` = ``study_id``, view from ViewPosition (``LATERAL``/``LL``
    filtered by `views`). The task is `read_chexpert`'s (`finding`, `negative`, `uncertain`).
    ``-split.csv``, when present, gives ``official_split`` (train / val / test; use
    `cxrnb.splits.official_split`, which warns about patients found in two splits). Vectorised:
    pixels are not read here, and 377,110 rows take seconds.
    """
    root = Path(root)
    column = _check_findings_task("mimic-cxr-jpg", finding, negative, uncertain)
    if labeler not in ("chexpert", "negbio"):
        raise ValueError(f"mimic-cxr-jpg: labeler must be 'chexpert' or 'negbio', not {labeler!r}")
    meta = _mimic_csv(root, "metadata")
    need = ["dicom_id", "subject_id", "study_id"]
    if any(c not in meta for c in need):
        raise ValueError(f"{root / (_MIMIC + 'metadata.csv')}: need columns {need}; found {list(meta.columns)}")
    labels = _mimic_csv(root, labeler)
    dup = labels.duplicated("study_id", keep=False)
    if dup.any():
        raise ValueError(f"{_MIMIC}{labeler}.csv: study_id {labels.loc[dup, 'study_id'].iloc[0]} is listed "
                         f"{int((labels['study_id'] == labels.loc[dup, 'study_id'].iloc[0]).sum())} times; one row per study expected")
    joined = meta[need + [c for c in ("ViewPosition",) if c in meta]].merge(
        labels.drop(columns=["subject_id"], errors="ignore"), on="study_id", how="left", indicator=True)
    sid, st = joined["subject_id"], joined["study_id"]
    path = "files/p" + sid.str[:2] + "/p" + sid + "/s" + st + "/" + joined["dicom_id"] + ".jpg"
    n = len(joined)
    df = S._frame({"path": path, "patient_id": sid, "view": S._column(joined, "ViewPosition").replace("", None),
                   "source": "mimic-cxr-jpg", "root": str(root), "study": st, "dicom_id": joined["dicom_id"]}, n)
    split = _mimic_csv(root, "split", required=False)
    if split is not None:
        df["official_split"] = joined["dicom_id"].map(split.set_index("dicom_id")["split"]) \
            .replace({"validate": "val"}).to_numpy()
    notes: list[str] = []
    where = "metadata row " + pd.Series(np.arange(2, n + 2), index=df.index).astype(str)
    S._filter_views(df, views)
    S._drop(df, pd.Series((joined["_merge"] == "left_only").to_numpy(), index=df.index), "no label",
            "study s" + st + f" has no row in {_MIMIC}{labeler}.csv")
    _findings_task(df, joined, column, negative, uncertain, where, notes, "mimic-cxr-jpg")
    if (root / "files").is_dir():
        unlisted, outside = S._unlisted(df, root, "mimic-cxr-jpg")
    else:
        unlisted, outside = S._disk_rows([], "mimic-cxr-jpg", root), []
        notes.append(f"{root}: no files/ folder: the images are not there (every row will be a missing file)")
        df["near_match"] = None
    out = pd.concat([df, unlisted], ignore_index=True)
    out.attrs["notes"] = notes + S._outside_note(outside, root)
    return out


S.register("rsna-pneumonia", read_rsna_pneumonia,
           layout="stage_2_train_labels.csv and stage_2_train_images/*.dcm",
           download="kaggle competitions download -c rsna-pneumonia-detection-challenge")
S.register("dicom", read_dicom_folder, layout="<class>/**/DICOM files (any name)",
           download="a PACS export sorted into <class>/ folders of DICOM files")
S.register("chexpert", read_chexpert, layout="train.csv/valid.csv and train/patient*/study*/view*.jpg",
           download="https://stanfordmlgroup.github.io/competitions/chexpert/ (CheXpert-v1.0-small: train.csv, valid.csv)")
S.register("mimic-cxr-jpg", read_mimic_cxr_jpg,
           layout="mimic-cxr-2.0.0-metadata.csv(.gz), -chexpert.csv(.gz) and files/p1x/p*/s*/*.jpg",
           download="https://physionet.org/content/mimic-cxr-jpg/2.0.0/ (credentialed access; metadata, chexpert, "
                    "split CSVs and files/)")
