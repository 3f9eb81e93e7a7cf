"""Source readers: one function per on-disk layout, each returning the index contract.

Readers only parse metadata and folder structure; they never open images (that is
`cxrnb.validate`). Every listed image becomes a row. Rows the task does not want (a label
outside the task, a lateral view, a CT slice, a listing twice) are kept in the returned
frame with a `reason`, so `load_index` can put them in the drop report: nothing vanishes.
Every image file on disk that no listing uses (a stray file at the top, a hidden copy, a
file the CSV does not list, a second file of the same name) is a row with a reason too, as
is every CSV line that cannot be parsed. Notes for the user (said once, not per row) travel
in ``frame.attrs["notes"]``. Task options are checked against the layout's vocabulary: a
typo is an error that lists the valid choices, never a one-class index.

Layouts:
- ``synthetic``: the embedded generator's manifest ``synthetic.csv`` (either layout).
- ``covid-chestxray``: ieee8023 ``metadata.csv`` + ``images/`` (also Actualmed/Figure1 with
  ``imagename``), old flat and new hierarchical ``finding`` vocabularies.
- ``kaggle-pneumonia``: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``, 2- or 3-class.
- ``nih``: ChestX-ray14 ``Data_Entry_2017.csv`` (or v2020, or Kaggle's ``sample_labels.csv``).
- ``folder``: ``root/<class>/*.png|jpg|jpeg``, one patient per image (ids unknown).
- ``rsna-pneumonia``, ``dicom``, ``chexpert``, ``mimic-cxr-jpg``: see `cxrnb.radiology`.
"""
from __future__ import annotations

import csv
import inspect
import io
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .index import INDEX_COLUMNS

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".dic")  # DICOM also found by preamble
#: Frontal projections; lateral (L) and CT (Axial, Coronal) rows are filtered by default.
FRONTAL_VIEWS = ("PA", "AP", "AP Supine", "AP Erect", "AP semi erect")
#: Task classes each layout can label (see `finding_label` and `task_label`).
COVID_CLASSES = ("covid", "normal", "pneumonia", "bacteria", "virus", "fungal", "effusion",
                 "tuberculosis", "other")
KAGGLE_CLASSES = ("normal", "pneumonia", "bacteria", "virus")
#: The fourteen ChestX-ray14 findings (``Finding Labels``; ``No Finding`` is the negative).
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema",
                "Fibrosis", "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening",
                "Pneumonia", "Pneumothorax")
#: Drop reasons of rows that stand for a file found on disk (or a CSV line), not for a
#: metadata listing: `cxrnb.validate.load_index` does not look for these files again.
DISK_REASONS = ("not an image file", "hidden file", "hidden folder", "broken link",
                "unreadable folder", "symlink loop", "not in a class folder", "outside the layout",
                "not listed in the metadata", "same file name", "ambiguous file", "malformed CSV row",
                "not a DICOM file")
#: Oldest plausible age; NIH lists a few ages like ``414Y``.
MAX_AGE = 120

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


def _read_csv(path: Path, root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a source CSV as text: (one row per record, report rows for the lines that are broken).

    Parsed with the `csv` module, never letting pandas infer an index column: a row with one
    field too many (an unquoted ``COVID-19, ARDS``) would otherwise shift every column. Such a
    row is dropped and reported by line number; trailing empty fields (a trailing comma on the
    header or on the rows) are ignored and short rows padded. ``csv_row`` is the line a
    record starts on (the header is line 1). Tolerant of a BOM, CRLF and quoted commas.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata file not found")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise ValueError(f"{path}: empty file ({path.stat().st_size} bytes); expected a CSV "
                         "whose first line names the columns")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
        while header and header[-1] == "":
            header.pop()
        header = [h or f"column {i + 1}" for i, h in enumerate(header)]
        n, records, lines, bad = len(header), [], [], []
        start = reader.line_num + 1
        for row in reader:
            if any(f.strip() for f in row):
                if any(f.strip() for f in row[n:]):
                    bad.append(f"line {start}: {len(row)} fields where the header has {n} (an "
                               f"unquoted comma?), row dropped: {','.join(row)[:100]}")
                else:
                    records.append([f.strip() for f in row[:n]] + [""] * (n - len(row)))
                    lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise ValueError(f"{path}: line {reader.line_num}: cannot parse the CSV ({e})") from None
    df = pd.DataFrame(records, columns=header, dtype=object) if records else \
        pd.DataFrame({h: pd.Series(dtype=object) for h in header})
    df["csv_row"] = lines
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    return df, _frame({"path": [rel] * len(bad), "reason": "malformed CSV row", "detail": bad}, len(bad))


def _column(meta: pd.DataFrame, *names: str) -> pd.Series:
    """The first of `names` that is a column of `meta` (empty strings when none is)."""
    for name in names:
        if name in meta:
            return meta[name]
    return pd.Series([""] * len(meta), index=meta.index, dtype=object)


def _is_image_name(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS


def _scan(root: Path) -> list[tuple[str, str | None, str | None]]:
    """Every file under `root` as (relative path, reason, detail); reason None for an image.

    Symlinked folders are followed (a link back to a folder above it is reported once as a
    loop); files in folders named ``.*`` or ``__*`` (``__MACOSX``, ``.ipynb_checkpoints``) and
    hidden files are reported, not read; a folder that cannot be listed is one row.
    """
    out: list[tuple[str, str | None, str | None]] = []

    def onerror(e: OSError) -> None:
        rel = os.path.relpath(e.filename, root).replace(os.sep, "/")
        out.append((rel, "unreadable folder", f"{e.strerror or e} ({type(e).__name__}): the "
                    "images in it cannot be listed"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        d = Path(dirpath)
        parts = d.relative_to(root).parts
        real = os.path.realpath(d)
        if any(os.path.realpath(root.joinpath(*parts[:i])) == real for i in range(len(parts))):
            out.append(("/".join(parts), "symlink loop", f"links back to a folder above it ({real}): not read"))
            dirnames[:] = []
            continue
        dirnames.sort()
        hidden = next((q for q in parts if q.startswith((".", "__"))), None)
        for f in sorted(filenames):
            rel, p = "/".join(parts + (f,)), d / f
            if hidden:
                out.append((rel, "hidden folder", f"in {hidden}/: folders named '.*' or '__*' "
                            "(such as __MACOSX) are not read"))
            elif f.startswith("."):
                out.append((rel, "hidden file", "the name starts with '.' (like macOS '._' copies "
                            "and .DS_Store): not read"))
            elif not p.exists():
                out.append((rel, "broken link", f"symbolic link to {os.readlink(p)}, which does not exist"))
            elif not _is_image_name(rel):
                out.append((rel, "not an image file", f"extension {p.suffix or '(none)'!r} is not "
                            f"one of {IMAGE_EXTENSIONS}"))
            else:
                out.append((rel, None, None))
    return out


def _disk_rows(rows: list[tuple[str, str | None, str | None]], source: str, root: Path) -> pd.DataFrame:
    """Report rows (path, reason, detail) of files on disk, in the reader's frame format."""
    return _frame({"path": [r[0] for r in rows], "source": source, "root": str(root),
                   "reason": [r[1] for r in rows], "detail": [r[2] for r in rows]}, len(rows))


def _keep_reported(rel: str, reason: str | None) -> bool:
    """Outside a layout's folders, only image-like files and unlistable folders are reported."""
    return _is_image_name(rel) or reason in ("unreadable folder", "symlink loop")


def _outside_note(rels: list[str], root: Path) -> list[str]:
    """One note for image files in folders that are not the layout's (masks, annotations).

    The lung and lesion masks of a `cxrnb.synthetic` dataset (``masks/`` beside its
    ``synthetic.csv``) are its own and go unmentioned.
    """
    if (root / "synthetic.csv").is_file():
        rels = [r for r in rels if not r.startswith("masks/")]
    if not rels:
        return []
    tops = pd.Series([r.split("/", 1)[0] + "/" for r in rels]).value_counts().sort_index()
    return [f"{root}: {len(rels)} image file(s) in folders outside the layout were not read ("
            + ", ".join(f"{k} {v}" for k, v in tops.items()) + ")"]


def _class_dirs(folder: Path) -> list[str]:
    """Lower-cased names of the non-hidden sub-folders of `folder` ([] if it cannot be listed)."""
    try:
        return sorted({d.name.lower() for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))})
    except OSError:
        return []


def _name_key(rel: str) -> str:
    return unicodedata.normalize("NFC", rel).casefold()


def _differs(a: str, b: str) -> str:
    """How two names that match up to case and Unicode form differ."""
    same_nfc = unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b)
    return "only in Unicode normalisation (NFC/NFD)" if same_nfc else "in upper/lower case"


def _check_classes(classes: Sequence[str], valid: Sequence[str], source: str) -> None:
    """Raise if `classes` is a bare string or names a class `source` cannot label."""
    if isinstance(classes, str):
        raise ValueError(f"classes must be a list of class names, not the string {classes!r}")
    bad = [c for c in classes if c not in valid]
    if bad:
        raise ValueError(f"{source}: unknown class(es) {', '.join(map(repr, bad))}; choose from {list(valid)}")


def _check_views(meta: pd.DataFrame, column: str, views: Sequence[str] | None, csv_path: Path) -> None:
    if views is not None and column not in meta:
        raise ValueError(f"{csv_path}: no {column!r} column, so views {list(views)} cannot be "
                         "chosen; pass views=None (CLI: --views all) to keep every image")


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
    ``effusion``, ``tuberculosis``, ``other``. `views` filters the projection (None keeps
    all); `modality` drops CT rows. Patient ids stay text (``311a`` occurs); without a
    ``patientid`` column every image counts as its own patient (said once in a note). Images
    under `root` that the CSV does not list are reported; a listed name that is not on disk
    but differs from a file there only in case or Unicode form names that file.
    """
    root = Path(root)
    _check_classes(classes, COVID_CLASSES, "covid-chestxray")
    meta, bad_lines = _read_csv(root / metadata, root)
    name_col = "filename" if "filename" in meta else "imagename" if "imagename" in meta else None
    if name_col is None or "finding" not in meta:
        raise ValueError(f"{root / metadata}: need columns 'finding' and 'filename' (or "
                         f"'imagename'); found {[c for c in meta.columns if c != 'csv_row']}")
    _check_views(meta, "view", views, root / metadata)
    folder = meta["folder"].replace("", "images") if "folder" in meta else "images"
    paths = folder + "/" + meta[name_col]
    notes = []
    if "patientid" in meta:
        pid = meta["patientid"].replace("", None)
    else:
        pid = "file:" + paths
        notes.append(f"{root / metadata} has no 'patientid' column: every image counts as its own "
                     "patient, so a patient-level split cannot be guaranteed")
    n = len(meta)
    df = _frame({"path": paths, "patient_id": pid, "view": _column(meta, "view").replace("", None),
                 "source": "covid-chestxray", "root": str(root)}, n)
    for col in ("sex", "age", "finding", "modality", "offset", "date"):
        if col in meta:
            df[col] = meta[col].replace("", None).values
    if "age" in df:
        df["age"] = pd.to_numeric(df["age"], errors="coerce")
    df["csv_row"] = meta["csv_row"].values
    _drop(df, meta[name_col] == "", "no file name", "empty " + name_col + " in CSV line "
          + df["csv_row"].astype(str))
    _drop(df, df["patient_id"].isna(), "no patient id", "empty patientid in CSV line "
          + df["csv_row"].astype(str))
    if modality is not None and "modality" in df:
        bad = df["modality"].fillna("").str.lower() != modality.lower()
        _drop(df, bad, "filtered: modality", "modality " + df["modality"].fillna("missing").astype(str))
    _filter_views(df, views)
    _apply_task(df, meta["finding"].map(finding_label), classes, "finding " + meta["finding"].replace("", "(blank)"))
    unlisted, outside = _unlisted(df, root, "covid-chestxray")
    out = pd.concat([df, bad_lines, unlisted], ignore_index=True)
    out.attrs["notes"] = notes + _outside_note(outside, root)
    return out


def _unlisted(df: pd.DataFrame, root: Path, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Report rows for files under `root` that no row of `df` lists; hints for near misses.

    Files at the top of `root` and in the folders the listings use (``images/`` ...) are
    reported; image files in other folders (masks, annotations) are returned for one note.
    Sets ``near_match`` on listed rows whose file is absent but whose name matches a file on
    disk up to case or Unicode normalisation (`load_index` puts it in the "missing file" detail).
    """
    scanned = _scan(root)
    listed = set(df["path"].astype(str))
    on_disk = {rel for rel, _, _ in scanned}
    disk_keys = {_name_key(rel): rel for rel in on_disk}
    listed_keys = {_name_key(rel): rel for rel in listed}
    folders = {p.split("/", 1)[0] for p in listed if "/" in p}
    near = {p: disk_keys.get(_name_key(p)) for p in listed if p not in on_disk}
    df["near_match"] = [None if near.get(p) is None else f"on disk there is {near[p]!r}, whose "
                        f"name differs {_differs(p, near[p])}" for p in df["path"].astype(str)]
    rows, outside = [], []
    for rel, reason, detail in scanned:
        if rel in listed or not _keep_reported(rel, reason):
            continue
        if "/" in rel and rel.split("/", 1)[0] not in folders:
            outside.append(rel)
            continue
        if reason is None:
            hit = listed_keys.get(_name_key(rel))
            reason, detail = "not listed in the metadata", "an image file that no metadata row lists" + (
                f"; the metadata lists {hit!r}, whose name differs {_differs(rel, hit)}" if hit else "")
        rows.append((rel, reason, detail))
    return _disk_rows(rows, source, root), outside


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


#: Split folder names of Kaggle copies (some say ``validation``) -> ``kaggle_split``.
_KAGGLE_SPLITS = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}


def _kaggle_split_dirs(root: Path) -> Path:
    """The folder holding train/test(/val): root, root/chest_xray or root/chest_xray/chest_xray."""
    for cand in (root, root / "chest_xray", root / "chest_xray" / "chest_xray"):
        if any((cand / s).is_dir() for s in _KAGGLE_SPLITS):
            return cand
    raise FileNotFoundError(f"{root}: no train/ val/ test/ folders here or under chest_xray/ "
                            "(expected the Kaggle chest-xray-pneumonia layout)")


def read_kaggle_pneumonia(
    root: str | Path,
    *,
    classes: Sequence[str] = ("normal", "pneumonia"),
) -> pd.DataFrame:
    """Rows of the Kaggle chest-xray-pneumonia folders (``chest_xray/<split>/<CLASS>/``).

    Labels come from the class folder (lower-cased). For the 3-class task of article 004,
    ask for ``classes=("normal", "bacteria", "virus")``: pneumonia images are labelled by the
    subtype in their filename. Patient ids come from filenames (``person12``, ``IM-0115``);
    a filename with no id counts as its own patient (its relative path, as in the folder
    layout). The official split is kept in ``kaggle_split`` (a ``validation/`` folder is
    ``val``). Images elsewhere (at the top, directly in ``train/``, in a second copy of the
    dataset) are reported.
    """
    root = Path(root)
    base_dir = _kaggle_split_dirs(root)
    folders = {c for s in _class_dirs(base_dir) if s in _KAGGLE_SPLITS
               for c in _class_dirs(next(d for d in base_dir.iterdir() if d.name.lower() == s))}
    _check_classes(classes, sorted(set(KAGGLE_CLASSES) | folders), "kaggle-pneumonia")
    base = base_dir.relative_to(root).parts
    rows, report, outside = [], [], []
    for rel, reason, detail in _scan(root):
        parts = tuple(rel.split("/"))
        sub = parts[len(base):] if parts[:len(base)] == base else ()
        if not sub and len(parts) > 1:  # another folder beside chest_xray/ (masks ...)
            if _keep_reported(rel, reason):
                outside.append(rel)
            continue
        split = _KAGGLE_SPLITS.get(sub[0].lower()) if len(sub) > 1 else None
        if split and len(sub) > 2:  # inside a class folder: an image, or reported whatever it is
            if reason is None:
                name = parts[-1]
                sub_m = _KAGGLE_SUBTYPE.search(name)
                rows.append({"path": rel, "folder_class": sub[1].lower(), "kaggle_split": split,
                             "patient_id": kaggle_patient(name) or f"file:{os.path.splitext(rel)[0]}",
                             "subtype": sub_m.group(1).lower() if sub_m else None})
            else:
                report.append((rel, reason, detail))
        elif _keep_reported(rel, reason):
            where = "/".join(base + ("{train,val,test}", "<CLASS>"))
            report.append((rel, reason, detail) if reason else
                          (rel, "not in a class folder", f"directly in {'/'.join(parts[:-1])}/, not in {where}/")
                          if split else (rel, "outside the layout", f"not under {where}/"))
    order = {"train": 0, "val": 1, "test": 2}
    rows.sort(key=lambda r: order[r["kaggle_split"]])  # stable: keeps folder order within a split
    n = len(rows)
    df = _frame({c: pd.Series([r[c] for r in rows], dtype=object)
                 for c in ("path", "patient_id", "folder_class", "subtype", "kaggle_split")}
                | {"source": "kaggle-pneumonia", "root": str(root)}, n)
    use_subtype = (df["folder_class"] == "pneumonia") & df["subtype"].notna() & ("pneumonia" not in classes)
    fine = df["folder_class"].where(~use_subtype, df["subtype"])
    what = "class folder " + df["folder_class"].str.upper() + ["" if t is None else f" ({t})" for t in df["subtype"]]
    _apply_task(df, fine, classes, what)
    out = pd.concat([df, _disk_rows(report, "kaggle-pneumonia", root)], ignore_index=True)
    out.attrs["notes"] = _outside_note(outside, root)
    return out


def _nih_age(value: str) -> float:
    """Years from NIH ``Patient Age``: ``058Y``, ``011M``, ``005D`` (2017 release) or ``58``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([YMD]?)\s*", str(value), re.I)
    if not m:
        return float("nan")
    num, unit = float(m.group(1)), m.group(2).upper()
    return num / 12 if unit == "M" else num / 365.25 if unit == "D" else num


#: A path in the release's own image folders: ``images/x.png``, ``images_001/images/x.png``.
_NIH_RELEASE_PATH = re.compile(r"(images(_\d+)?/)+[^/]+", re.I)


def _nih_paths(names: pd.Series, scanned: list[tuple[str, str | None, str | None]]
               ) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Resolve each listed file name to one path on disk, by a documented rule.

    Same-named files in several places: the one in the release's ``images*/`` folders wins
    and the other copies are reported ("same file name"); with no such single winner, every
    copy is reported as "ambiguous file". Returns (name -> path, path -> (reason, detail)).
    """
    by_name: dict[str, list[str]] = {}
    for rel, reason, _ in scanned:
        if reason is None:
            by_name.setdefault(rel.rsplit("/", 1)[-1], []).append(rel)
    chosen, flagged = {}, {}
    for name in dict.fromkeys(names):
        cands = by_name.get(name, [])
        release = [c for c in cands if _NIH_RELEASE_PATH.fullmatch(c)]
        pick = release if len(release) == 1 else cands if len(cands) == 1 and not release else []
        if pick:
            chosen[name] = pick[0]
            for c in cands:
                if c != pick[0]:
                    flagged[c] = ("same file name", f"another file named {name} is indexed: {pick[0]} "
                                  "(rule: the release's images*/ folders come first)")
        elif cands:
            pool = release or cands
            chosen[name] = pool[0]
            for c in cands:
                flagged[c] = ("ambiguous file", f"{len(pool)} files named {name} ({', '.join(pool)}) "
                              "and no rule to choose one (the release's images*/ folders come first)")
    return chosen, flagged


def read_nih(
    root: str | Path,
    *,
    finding: str = "Effusion",
    negative: str = "no finding",
    views: Sequence[str] | None = None,
    csv: str | None = None,
) -> pd.DataFrame:
    """Rows of NIH ChestX-ray14 (``Data_Entry_2017.csv``, its v2020 edition or ``sample_labels.csv``).

    A binary task: images whose pipe-separated ``Finding Labels`` include `finding` (one of
    `NIH_FINDINGS`) are labelled ``finding.lower()``; the negative class is ``normal``
    (``No Finding`` images, `negative="no finding"`) or ``other`` (every other image,
    `negative="rest"`). Images are found anywhere under `root` (``images/`` or the release's
    ``images_001/images/`` ...); see `_nih_paths` for same-named files. Ages over `MAX_AGE`
    become NaN (with a note); an image listed twice with different findings is reported.
    """
    root = Path(root)
    known = {f.lower(): f for f in NIH_FINDINGS}
    if not isinstance(finding, str) or finding.lower() not in known:
        raise ValueError(f"nih: unknown finding {finding!r}; choose from {list(NIH_FINDINGS)}")
    if negative not in ("no finding", "rest"):
        raise ValueError(f"nih: negative must be 'no finding' or 'rest', not {negative!r}")
    names = [csv] if csv else ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv", "sample_labels.csv"]
    found = [root / n for n in names if (root / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{root}: none of {names} found (NIH ChestX-ray14 label file)")
    meta, bad_lines = _read_csv(found[0], root)
    meta.columns = [re.sub(r"[\[\]]", "", c) for c in meta.columns]  # 'OriginalImage[Width' ...
    need = ["Image Index", "Finding Labels", "Patient ID"]
    if any(c not in meta for c in need):
        raise ValueError(f"{found[0]}: need columns {need}; found {[c for c in meta.columns if c != 'csv_row']}")
    _check_views(meta, "View Position", views, found[0])
    scanned = _scan(root)
    chosen, flagged = _nih_paths(meta["Image Index"], scanned)
    n = len(meta)
    pid = meta["Patient ID"].map(lambda s: str(int(s)) if s.isdigit() else s)
    age_text = _column(meta, "Patient Age")
    age = age_text.map(_nih_age)
    notes = []
    old = age > MAX_AGE
    if old.any():
        first = old.idxmax()
        notes.append(f"{found[0].name}: {int(old.sum())} row(s) with an impossible age over {MAX_AGE} "
                     f"years (e.g. {age_text[first]!r} on line {meta.loc[first, 'csv_row']}): age set to NaN")
        age = age.mask(old)
    df = _frame({"path": [chosen.get(f, f"images/{f}") for f in meta["Image Index"]],
                 "patient_id": pid.replace("", None),
                 "view": _column(meta, "View Position").replace("", None),
                 "source": "nih", "root": str(root),
                 "finding_labels": meta["Finding Labels"],
                 "sex": _column(meta, "Patient Gender", "Patient Sex").replace("", None),
                 "age": age,
                 "follow_up": pd.to_numeric(_column(meta, "Follow-up #"), errors="coerce")}, n)
    labels = meta["Finding Labels"].str.split("|").map(lambda ls: frozenset(s.strip().lower() for s in ls))
    conflict = labels.groupby(meta["Image Index"]).transform("nunique") > 1
    if conflict.any():
        listed = ("line " + meta["csv_row"].astype(str) + ": " + meta["Finding Labels"]).groupby(meta["Image Index"])
        _drop(df, conflict, "conflicting listings", "listed with different Finding Labels ("
              + meta["Image Index"].map(listed.agg("; ".join)) + "): which is right is unknown")
    first = known[finding.lower()]
    pos = labels.map(lambda s: finding.lower() in s)
    nofind = labels.map(lambda s: s == {"no finding"})
    neg_name = "normal" if negative == "no finding" else "other"
    fine = pd.Series(np.where(pos, finding.lower(), np.where(nofind | (negative == "rest"), neg_name, None)),
                     dtype="object")
    _drop(df, df["patient_id"].isna(), "no patient id", "empty Patient ID")
    _filter_views(df, views)
    df["label"] = fine.values
    _drop(df, df["label"].isna(), "label outside task",
          "Finding Labels " + meta["Finding Labels"] + f" (task: {first} vs No Finding)")
    used, extra = set(df["path"]), []
    own_masks = (root / "synthetic.csv").is_file()  # a cxrnb.synthetic set's masks/ are not films
    for rel, reason, detail in scanned:
        if rel in used or (own_masks and rel.startswith("masks/")):
            continue  # a listing row stands for it
        if rel in flagged:
            extra.append((rel, *flagged[rel]))
        elif reason is None:
            extra.append((rel, "not listed in the metadata", "an image file that no metadata row lists"))
        elif _keep_reported(rel, reason):
            extra.append((rel, reason, detail))
    amb = df["path"].map(lambda p: flagged.get(p, (None, None)))
    _drop(df, amb.map(lambda t: t[0] == "ambiguous file"), "ambiguous file", amb.map(lambda t: t[1]))
    out = pd.concat([df, bad_lines, _disk_rows(extra, "nih", root)], ignore_index=True)
    out.attrs["notes"] = notes
    return out


def read_folder(root: str | Path, *, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of ``root/<class>/...`` image folders; every image is its own patient (ids unknown).

    Images at the top of `root`, in hidden folders (``.*``, ``__*``) or behind broken links
    are reported; symlinked class folders are read.
    """
    root = Path(root)
    rows, report = [], []
    for rel, reason, detail in _scan(root):
        parts = rel.split("/")
        if len(parts) > 1 and not parts[0].startswith((".", "__")):
            if reason is None:
                rows.append({"path": rel, "folder_class": parts[0].lower(),
                             "patient_id": f"file:{os.path.splitext(rel)[0]}"})
            else:
                report.append((rel, reason, detail))
        elif _keep_reported(rel, reason):
            report.append((rel, reason, detail) if reason else
                          (rel, "not in a class folder", "at the top of the folder; images belong in <class>/ folders"))
    present = _class_dirs(root)
    if classes is not None:
        _check_classes(classes, present, f"folder {root}")
    n = len(rows)
    df = _frame({c: pd.Series([r[c] for r in rows], dtype=object) for c in ("path", "folder_class", "patient_id")}
                | {"source": "folder", "root": str(root)}, n)
    wanted = classes if classes is not None else sorted(df["folder_class"].unique())
    _apply_task(df, df["folder_class"], wanted, "class folder " + df["folder_class"])
    return pd.concat([df, _disk_rows(report, "folder", root)], ignore_index=True)


def read_synthetic(root: str | Path, *, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of the embedded synthetic dataset from its manifest ``synthetic.csv`` (with masks)."""
    root = Path(root)
    manifest = root / "synthetic.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found; create the data with "
                                "cxrnb.synthetic.generate(...) or `cxrnb synth`")
    df = pd.read_csv(manifest, dtype={"patient_id": str, "path": str, "label": str, "view": str},
                     keep_default_na=True, index_col=False)
    present = list(dict.fromkeys(df["label"].dropna()))
    if classes is not None:
        _check_classes(classes, present, f"synthetic {manifest}")
    df["root"] = str(root)
    df["source"] = "synthetic"
    for c in ("reason", "detail"):
        df[c] = pd.Series([None] * len(df), dtype="object")
    wanted = classes if classes is not None else present
    fine = df["label"].copy()
    _apply_task(df, fine, wanted, "label " + fine.astype(str))
    return df


@dataclass(frozen=True)
class Source:
    """A data source, the one record everything else reads: the CLI's choices, the missing-folder
    hint (`cxrnb.notebook.prepare_data`), error messages and the validation notes.

    `reader(root, **task)` returns the raw index (`read_source` checks the options); `layout` says
    what its folder looks like; `download` where to get it; `patient_ids` whether its files carry
    patient ids (without them every image is its own patient and a patient-level split cannot be
    guaranteed). A synthetic layout (`cxrnb.synthetic.LAYOUTS`) has its source's name.
    """

    name: str
    reader: Callable[..., pd.DataFrame]
    layout: str
    download: str
    patient_ids: bool = True


#: Every registered source by name (`register`).
SOURCES: dict[str, Source] = {}


def register(name: str, reader: Callable[..., pd.DataFrame], *, layout: str, download: str,
             patient_ids: bool = True) -> Source:
    """Add a source: one call per reader, next to it (a new source needs no other edit)."""
    SOURCES[name] = Source(name, reader, layout, download, patient_ids)
    return SOURCES[name]


register("synthetic", read_synthetic, layout="synthetic.csv written by cxrnb synth",
         download="cxrnb synth OUT_DIR (the embedded generator: no download)")
register("covid-chestxray", read_covid_chestxray, layout="metadata.csv and images/",
         download="git clone https://github.com/ieee8023/covid-chestxray-dataset")
register("kaggle-pneumonia", read_kaggle_pneumonia, layout="chest_xray/{train,val,test}/<CLASS>/*.jpeg",
         download="kaggle datasets download -d paultimothymooney/chest-xray-pneumonia")
register("nih", read_nih, layout="Data_Entry_2017.csv and images/",
         download="https://nihcc.app.box.com/v/ChestXray-NIHCC (Data_Entry_2017.csv + images_*/)")
register("folder", read_folder, layout="<class>/*.png|jpg|jpeg folders", download="any folder of <class>/<image> files",
         patient_ids=False)


# More sources: every module of cxrnb.readers (and the cxrnb.sources entry points) registers its
# own, after this module's helpers and readers exist (they build on them).
from .readers import load as _load_readers  # noqa: E402

_load_readers()


def read_source(source: str, root: str | Path, **task) -> pd.DataFrame:
    """Dispatch to the reader of `source` (see `SOURCES`) with task options.

    An option the reader does not take (``classes`` for nih, ``views`` for kaggle-pneumonia)
    is an error listing the options it does take.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {sorted(SOURCES)}")
    reader = SOURCES[source].reader
    takes = [k for k, p in inspect.signature(reader).parameters.items() if p.kind is p.KEYWORD_ONLY]
    for k in task:
        if k not in takes:
            raise ValueError(f"source {source!r} does not take option {k!r}; its options are {takes}")
    root = Path(root)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "dataset folder not found"
        raise FileNotFoundError(f"{root}: {what} (source {source!r}, expected {SOURCES[source].layout})")
    return reader(root, **task)
