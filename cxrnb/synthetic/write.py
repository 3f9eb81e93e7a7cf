"""Writing synthetic datasets: `generate` lays rendered films out like a real source, `ensure` reuses them.

`generate` writes a whole dataset in the on-disk layout of a real source (Kaggle
chest-xray-pneumonia folders, or the ieee8023 covid-chestxray `metadata.csv` + ``images/``) so
the real readers load it unchanged, with lung and lesion masks and a manifest; `ensure` reuses a
dataset that was already generated with the same arguments. With ``realistic=True`` each layout
holds its real source's population (`POPULATIONS`) and the mess a lesson needs: imbalance, views
that differ by class, mixed sizes and modes, exact duplicates under other patient ids and an
official split with a few patients across it. The Kaggle layout's train/val/test
folders come from `cxrnb.splits.split_by_patient`, the same patient-level split the notebooks
use. A seed gives byte-identical files.
"""
from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..splits import split_by_patient
from . import hospital
from .render import (_T_CLASSES, _T_META, _T_SHORTCUT, _T_VIEW, CLASSES, _check_int, _check_label, _check_unit,
                     _image_view, _patient_meta, _rng, render_image)

LAYOUTS = ("kaggle-pneumonia", "covid-chestxray", "nih") + hospital.LAYOUTS

#: `shortcut_class` value that marks films of every class alike (the marker is then no shortcut).
ANY_CLASS = "any"

#: Bumped whenever the files change for the same arguments, so `ensure` regenerates older data.
GENERATOR_VERSION = 9  # 2: Kaggle folders split by cxrnb.splits; 3: nih layout, realistic, kaggle_split;
#                        4: realistic covid-chestxray films look like publication figures;
#                        5: rsna-pneumonia, dicom, chexpert, mimic-cxr-jpg layouts;
#                        6: larger bacterial consolidations and marker; difficulty ranges;
#                        7: each layout named as its source (kaggle -> kaggle-pneumonia), same films;
#                           `mimics` (normal films with a faint look-alike of the finding)
#                        8: shortcut_class "any" marks a fixed share of each class's films, spread
#                           evenly over its patients (`_evenly_marked`), not an independent draw per film
#                        9: the burnt-in marker is a fifth of the film's height (was a sixth)

#: The population of each layout's real source, used when ``realistic=True`` and no classes
#: are given: patient share per class, share of AP films per class (AP: sicker, bed-bound
#: patients), age range in years, share of files stored in RGB.
POPULATIONS = {
    # Kaggle chest-xray-pneumonia: paediatric (1-5 years), about 3 pneumonia films per normal one
    "kaggle-pneumonia": dict(class_fractions={"normal": 0.27, "pneumonia": 0.73},
                   ap_share={"normal": 0.3, "pneumonia": 0.3}, ages=(1, 5), rgb=0.06),
    # ieee8023 covid-chestxray: adults; COVID-19 films mostly AP, the few normals mostly PA
    # Its films are figures taken from publications: cropped tighter, contrast-stretched, and
    # often with burnt-in letters or arrows (see `_publication_figure`).
    "covid-chestxray": dict(class_fractions={"covid": 0.6, "pneumonia": 0.28, "normal": 0.12},
                            ap_share={"covid": 0.8, "pneumonia": 0.5, "normal": 0.2}, ages=(18, 92),
                            rgb=0.15, publication=True),
    # NIH ChestX-ray14, effusion vs no finding: about 1 effusion patient in 10
    "nih": dict(class_fractions={"normal": 0.9, "effusion": 0.1},
                ap_share={"normal": 0.3, "effusion": 0.6}, ages=(18, 92), rgb=0.0),
    # RSNA Pneumonia: about 1 film in 4 with opacity, the rest normal or "not normal"; positives
    # mostly AP (38 % of AP vs 9 % of PA patients positive in the real set: the AP shortcut)
    "rsna-pneumonia": dict(class_fractions={"normal": 0.3, "pneumonia": 0.25, "effusion": 0.45},
                           ap_share={"normal": 0.3, "pneumonia": 0.75, "effusion": 0.45}, ages=(6, 90), rgb=0.0),
    "dicom": dict(class_fractions={"normal": 0.5, "pneumonia": 0.5},
                  ap_share={"normal": 0.3, "pneumonia": 0.6}, ages=(18, 92), rgb=0.0),
    # CheXpert and MIMIC-CXR: inpatients, mostly AP; effusion common
    "chexpert": dict(class_fractions={"normal": 0.3, "effusion": 0.45, "pneumonia": 0.25},
                     ap_share={"normal": 0.5, "effusion": 0.85, "pneumonia": 0.8}, ages=(18, 90), rgb=0.0),
    "mimic-cxr-jpg": dict(class_fractions={"normal": 0.4, "effusion": 0.35, "pneumonia": 0.25},
                          ap_share={"normal": 0.4, "effusion": 0.8, "pneumonia": 0.75}, ages=(18, 91), rgb=0.0),
}
#: Columns of NIH's `Data_Entry_2017.csv`, in the original order.
NIH_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
               "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
               "OriginalImagePixelSpacing[x", "y]"]
_T_STORE = 103  # random stream of the stored size/mode of one image (realistic)
_T_DIFFICULTY = 104  # random stream of a patient's difficulty when `difficulty` is a range
_T_MIMIC = 7777  # random stream of a normal patient's look-alike (the stream the imbalance lesson was measured with)

#: Columns of the covid-chestxray `metadata.csv` (ieee8023), in the original order.
METADATA_COLUMNS = [
    "patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival", "intubated",
    "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2", "extubated",
    "temperature", "pO2_saturation", "leukocyte_count", "neutrophil_count", "lymphocyte_count",
    "view", "modality", "date", "location", "folder", "filename", "doi", "url", "license",
    "clinical_notes", "other_notes",
]
#: ieee8023 `finding` of each class (pneumonia by subtype).
FINDINGS = {
    "normal": "No Finding",
    "bacteria": "Pneumonia/Bacterial/Streptococcus",
    "virus": "Pneumonia/Viral/Influenza",
    "covid": "Pneumonia/Viral/COVID-19",
    "effusion": "Effusion",
}
MANIFEST = "synthetic.csv"
SETTINGS = "synthetic.json"

_NOTES = {
    "normal": ["Routine pre-operative chest film, no acute findings.",
               "Screening film; heart size normal, lungs clear, no effusion."],
    "bacteria": ["Fever, productive cough, raised CRP; lobar consolidation, started on antibiotics.",
                 "Cough and pleuritic pain for 4 days, crackles at the base, focal opacity."],
    "virus": ["Influenza A positive, dry cough, myalgia; bilateral perihilar interstitial markings.",
              "Viral syndrome, low-grade fever, diffuse interstitial pattern, no focal consolidation."],
    "covid": ["SARS-CoV-2 RT-PCR positive, fever, dyspnoea; bilateral peripheral ground-glass opacities.",
              "COVID-19 confirmed, anosmia, cough, SpO2 falling; patchy peripheral opacities, lower zones."],
    "effusion": ["Breathlessness, dullness to percussion at the base; blunted costophrenic angle.",
                 "Known heart failure, orthopnoea, ankle oedema; basal pleural effusion with meniscus."],
}


def _defaults() -> dict:
    """Generation arguments of `generate` with their defaults (what `ensure` compares)."""
    return dict(layout="kaggle-pneumonia", n_patients=120, classes=None, class_fractions=None, size=256,
                images_per_patient=(1, 4), difficulty=0.5, shortcut=0.0, shortcut_class=None,
                seed=0, image_format=None, jpeg_quality=90, split_fractions=(0.75, 0.05, 0.20),
                defects=False, realistic=False, likeness=0.0, mimics=0.0)


def _check_classes(classes, fractions) -> tuple[list[str], dict[str, float] | None]:
    """The class list and each class's share of patients (None: balanced), validated.

    `classes` defaults to the keys of `fractions` when only those are given, else to `CLASSES`;
    given both, they must name the same classes."""
    shares = None
    if fractions is not None:
        if not isinstance(fractions, Mapping) or not fractions:
            raise ValueError(f"class_fractions must be a non-empty mapping class -> share of patients, "
                             f"got {fractions!r}")
        shares = {}
        for c, f in fractions.items():
            _check_label("class_fractions", c)
            try:
                shares[c] = float(f)
            except (TypeError, ValueError):
                shares[c] = float("nan")
            if not shares[c] >= 0:  # also NaN
                raise ValueError(f"class_fractions: the share of {c!r} must be a number >= 0, got {f!r}")
        if abs(sum(shares.values()) - 1) > 1e-6:
            raise ValueError(f"class_fractions must sum to 1, got {sum(shares.values()):g} for {shares}")
    if classes is None:
        classes = CLASSES if shares is None else list(shares)
    if isinstance(classes, str) or not isinstance(classes, Sequence) or len(classes) == 0:
        raise ValueError(f"classes must be a non-empty sequence of names from {list(CLASSES)}, "
                         f"got {classes!r}")
    for c in classes:
        _check_label("classes", c)
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes: duplicate class names in {list(classes)}")
    classes = [str(c) for c in classes]
    if shares is not None and set(shares) != set(classes):
        raise ValueError(f"class_fractions names {sorted(shares)} but classes are {classes}: "
                         "give the same classes, or leave classes out")
    return classes, None if shares is None else {c: shares[c] for c in classes}


def _settings(**kwargs) -> dict:
    """Validate generation arguments and return them normalised (JSON-friendly, defaults filled)."""
    unknown = sorted(set(kwargs) - set(_defaults()))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; allowed: {sorted(_defaults())}")
    a = {**_defaults(), **kwargs}
    if a["layout"] not in LAYOUTS:
        raise ValueError(f"layout: unknown layout {a['layout']!r}; allowed: {list(LAYOUTS)}")
    if not isinstance(a["realistic"], bool):
        raise ValueError(f"realistic must be True or False, got {a['realistic']!r}")
    if a["realistic"] and a["classes"] is None and a["class_fractions"] is None:
        a["class_fractions"] = POPULATIONS[a["layout"]]["class_fractions"]
    classes, fractions = _check_classes(a["classes"], a["class_fractions"])
    n_patients = _check_int("n_patients", a["n_patients"], 1)
    size = _check_int("size", a["size"], 32)
    if size > 4096:
        raise ValueError(f"size must be <= 4096, got {size}")
    ipp = a["images_per_patient"]
    if (isinstance(ipp, (str, bytes)) or not isinstance(ipp, Sequence) or len(ipp) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in ipp)
            or not 1 <= ipp[0] <= ipp[1]):
        raise ValueError(f"images_per_patient must be a (min, max) pair of integers with "
                         f"1 <= min <= max, got {ipp!r}")
    difficulty = _difficulty(a["difficulty"])
    shortcut = _check_unit("shortcut", a["shortcut"])
    sc = a["shortcut_class"]
    if sc is None:
        sc = next((c for c in classes if c != "normal" and (fractions is None or fractions[c] > 0)), classes[0])
    elif sc != ANY_CLASS and sc not in classes:
        raise ValueError(f"shortcut_class: {sc!r} is not one of the classes {classes} (or {ANY_CLASS!r})")
    seed = _check_int("seed", a["seed"], 0)
    fmt = a["image_format"]
    if fmt is None:
        # NIH: PNG, covid-chestxray: mostly PNG; the DICOM layouts ignore it
        fmt = "jpeg" if a["layout"] in ("kaggle-pneumonia", "chexpert", "mimic-cxr-jpg") else "png"
    fmt = str(fmt).lower()
    fmt = {"jpg": "jpeg"}.get(fmt, fmt)
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"image_format: unknown format {a['image_format']!r}; "
                         "allowed: 'jpeg', 'jpg', 'png' or None (the layout's default)")
    q = _check_int("jpeg_quality", a["jpeg_quality"], 1)
    if q > 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {q}")
    fr = a["split_fractions"]
    try:
        fr = [float(f) for f in fr]
    except (TypeError, ValueError):
        raise ValueError(f"split_fractions must be three numbers (train, val, test), got {fr!r}") from None
    if len(fr) != 3 or any(not f >= 0 for f in fr) or abs(sum(fr) - 1) > 1e-6 or fr[0] <= 0:
        raise ValueError(f"split_fractions must be three numbers >= 0 (train, val, test) that sum "
                         f"to 1 with train > 0, got {a['split_fractions']!r}")
    if not isinstance(a["defects"], bool):
        raise ValueError(f"defects must be True or False, got {a['defects']!r}")
    return dict(defects=a["defects"], realistic=a["realistic"], layout=a["layout"], n_patients=n_patients, classes=classes,
                class_fractions=fractions, size=size,
                images_per_patient=[int(ipp[0]), int(ipp[1])], difficulty=difficulty,
                shortcut=shortcut, shortcut_class=sc, seed=seed, image_format=fmt,
                jpeg_quality=q, split_fractions=fr, likeness=_check_unit("likeness", a["likeness"]),
                mimics=_check_unit("mimics", a["mimics"]))


def _difficulty(value) -> float | list[float]:
    """`difficulty` checked: one number in [0, 1], or a (low, high) range of them."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return _check_unit("difficulty", value)
    if len(value) != 2 or not _check_unit("difficulty", value[0]) <= _check_unit("difficulty", value[1]):
        raise ValueError(f"difficulty must be a number in [0, 1] or a (low, high) pair of them with "
                         f"low <= high, got {value!r}")
    return [float(value[0]), float(value[1])]


def patient_difficulty(settings: dict, patient: int) -> float:
    """The difficulty a patient's films are drawn at: the dataset's, or for a (low, high) range a
    uniform draw per patient (independent of the label), so findings run from subtle to obvious
    within one set, as in a real collection."""
    d = settings["difficulty"]
    if isinstance(d, (int, float)):
        return float(d)
    return float(d[0] + (d[1] - d[0]) * _rng(settings["seed"], patient, _T_DIFFICULTY).random())


def patient_mimic(settings: dict, patient: int, label: str) -> tuple[str, float] | None:
    """(finding, difficulty) of the faint look-alike a normal patient's films show, or None.

    A normal patient is a mimic with probability ``settings["mimics"]``; the look-alike is one
    of the set's findings, drawn at a difficulty from the subtler half of the set's range (the
    set's difficulty when it is one number): it looks like the faint true findings, so a film
    alone cannot tell the two apart."""
    share = settings.get("mimics", 0.0)
    findings = [c for c in settings["classes"] if c != "normal"]
    if label != "normal" or not share or not findings:
        return None
    u = _rng(settings["seed"], patient, _T_MIMIC).random(2)
    if u[0] >= share:
        return None
    d = settings["difficulty"]
    lo, hi = (float(d), float(d)) if isinstance(d, (int, float)) else ((d[0] + d[1]) / 2, float(d[1]))
    return findings[min(int(u[0] / share * len(findings)), len(findings) - 1)], lo + (hi - lo) * float(u[1])


def _class_counts(n: int, classes: Sequence[str], fractions: Mapping[str, float] | None) -> list[int]:
    """Patients per class: the largest remainders of ``n * share`` (ties to the earlier class), and
    at least one for every class with a positive share when `n` allows. Balanced when `fractions`
    is None."""
    shares = np.array([1 / len(classes) if fractions is None else fractions[c] for c in classes])
    raw = n * shares
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    if n >= (shares > 0).sum():
        for i in np.flatnonzero((counts == 0) & (shares > 0)):
            counts[np.argmax(counts)] -= 1
            counts[i] += 1
    return counts.tolist()


def _patient_labels(n: int, classes: Sequence[str], seed: int,
                    fractions: Mapping[str, float] | None = None) -> list[str]:
    """The class of each patient (patient p = index + 1): `_class_counts` of each class dealt
    round-robin, then shuffled with the seed."""
    counts = _class_counts(n, classes, fractions)
    dealt = sorted((j, k) for k, count in enumerate(counts) for j in range(count))
    labels = np.array([classes[k] for _, k in dealt], dtype=object)
    return list(labels[_rng(seed, _T_CLASSES).permutation(n)])


def _patient_splits(labels: Sequence[str], fractions: Sequence[float], seed: int) -> list[str]:
    """train/val/test per patient from `cxrnb.splits.split_by_patient` (stratified by class,
    seeded) on one row per patient. A set too small for the val split gets none (then none for
    the test split either): `split_by_patient` refuses it with a ValueError."""
    ids = [f"p{i + 1:04d}" for i in range(len(labels))]
    frame = pd.DataFrame({"path": ids, "label": list(labels), "patient_id": ids, "view": "PA",
                          "source": "synthetic", "root": "."})
    _, val, test = fractions
    for v, t in ((val, test), (0.0, test)):
        if v > 0 or t > 0:
            try:
                return split_by_patient(frame, val=v, test=t, seed=seed)["split"].tolist()
            except ValueError:
                continue
    return ["train"] * len(labels)


def _write_png(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def _mask_name(rel: str) -> str:
    """Unique mask file name for an image path: slashes become ``__``, extension ``.png``."""
    return str(Path(rel).with_suffix(".png")).replace("\\", "/").replace("/", "__")


def _prepare_dir(out: Path) -> None:
    """Make `out` an empty folder, wiping it only if it is empty or a synthetic dataset."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SETTINGS).is_file():
            raise ValueError(f"out_dir {out} is not empty and is not a synthetic dataset "
                             f"(no {SETTINGS}); refusing to delete its contents. "
                             "Choose an empty or new folder.")
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_settings(out: Path, settings: dict, complete: bool) -> None:
    info = {"generator": "cxrnb.synthetic", "version": GENERATOR_VERSION,
            "arguments": settings, "complete": complete}
    (out / SETTINGS).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


_STR_COLUMNS = ("path", "label", "patient_id", "kaggle_patient", "kaggle_split", "view", "source", "sex",
                "subtype", "lung_mask", "lesion_mask", "split")


def read_manifest(out_dir: str | Path) -> pd.DataFrame:
    """The manifest `out_dir/synthetic.csv` as `generate` returns it (ids kept as text)."""
    path = Path(out_dir) / MANIFEST
    head = pd.read_csv(path, nrows=0).columns
    return pd.read_csv(path, dtype={c: str for c in _STR_COLUMNS if c in head})


def _evenly_marked(c: int, share: float, phase: float) -> bool:
    """Whether a class's `c`-th film (0-based, patient by patient) carries the marker, for
    ``shortcut_class="any"``: marks at the fixed rate `share`, evenly spaced along the class's
    films (`phase` in [0, 1) shifts the start), so every run of films, hence every patient,
    holds the share to within one film.

    Why not an independent draw per film (the other classes' shortcut): chance then ties the
    marker to a class. With 240 patients, one seed's validation patients had it on 38 % of normal
    and 57 % of pneumonia films; the control model learned "marker -> pneumonia" and lost 0.09 of
    accuracy without it. Spread evenly, a split of whole patients can differ from the share only
    by its patients' odd films.
    """
    return int((c + 1) * share + phase) > int(c * share + phase)


def generate(out_dir: str | Path, *, layout: str = "kaggle-pneumonia", n_patients: int = 120,
             classes: Sequence[str] | None = None, class_fractions: Mapping[str, float] | None = None,
             size: int = 256,
             images_per_patient: tuple[int, int] = (1, 4),
             difficulty: float | tuple[float, float] = 0.5,
             shortcut: float = 0.0, shortcut_class: str | None = None, seed: int = 0,
             image_format: str | None = None, jpeg_quality: int = 90,
             split_fractions: Sequence[float] = (0.75, 0.05, 0.20),
             defects: bool = False, realistic: bool = False, likeness: float = 0.0,
             mimics: float = 0.0, progress: bool = True) -> pd.DataFrame:
    """Write the dataset under out_dir and return its manifest (also written as out_dir/synthetic.csv).

    `layout` (a source's name, `cxrnb.sources.SOURCES`) picks the on-disk layout of that real source, so its
    reader loads the data unchanged:
    ``kaggle-pneumonia`` = ``chest_xray/<train|val|test>/<CLASS>/`` with Kaggle file names (split by
    patient with `cxrnb.splits.split_by_patient` and `split_fractions`; a set too small for a val
    or test split gets none; the folder is the manifest's ``kaggle_split``), ``covid-chestxray`` =
    ieee8023 ``metadata.csv`` + ``images/``, ``nih`` = ``Data_Entry_2017.csv`` +
    ``images_001/images/``, and the hospital-style layouts of `hospital` (``rsna-pneumonia``: one
    JPEG DICOM per patientId + ``stage_2_train_labels.csv`` with boxes from the lesion mask;
    ``dicom``: ``<class>/<patient>/IM0001`` in four DICOM encodings; ``chexpert``:
    ``CheXpert-v1.0-small/{train,valid}.csv``; ``mimic-cxr-jpg``: ``files/p1x/...`` + gzipped
    metadata, labels and official split). `defects` applies to the first three layouts only.
    `classes` (default: all of `CLASSES`, or the keys of `class_fractions`) get a balanced share
    of the patients, or the shares `class_fractions` gives, e.g. ``{"normal": 0.9,
    "effusion": 0.1}`` (each class with a positive share gets a patient when `n_patients` allows).
    Masks go to ``masks/lung/`` and ``masks/lesion/``. Images of `shortcut_class` (default: the
    first non-normal class) carry the burnt-in marker with probability `shortcut`; other classes
    never do. ``shortcut_class="any"`` puts it on that share of every class's films, spread evenly
    over each class's patients (`_evenly_marked`): a marker that says nothing about the label
    (the marker lesson's control). `difficulty` (0..1:
    subtler findings, more varied anatomy, noisier films) is one number, or a (low, high) range
    drawn per patient (`patient_difficulty`): findings from obvious to subtle in one set. An existing `out_dir` is wiped only if it is empty or a synthetic dataset.
    `defects=True` adds the problems real collections have (see `_write_defects`), so the
    readers' drop report has something to show on the embedded data too. `realistic=True` gives
    the layout its real source's population (`POPULATIONS`: classes and imbalance unless
    given, ages, views by class (none recorded in the Kaggle layout, as in Kaggle), stored sizes
    and RGB files) plus two exact duplicates under new
    patient ids and, in the Kaggle layout, a few patients whose last film sits in another
    official split folder, as in the real collections. `likeness` (0..1) is how much of a film's
    pose and exposure is its patient's own (follow-up films that look alike, as in real
    collections): the leakage lesson needs it, 0 draws every film independently. `mimics` (0..1)
    is the share of normal patients whose films show a faint look-alike of the finding, drawn
    like the subtler half of the set's findings (`patient_mimic`), while the label and lesion
    mask stay normal: equivocal films, on which readers disagree and a film alone cannot settle
    the label (the imbalance lesson needs them).
    """
    from tqdm import tqdm

    st = _settings(layout=layout, n_patients=n_patients, classes=classes,
                   class_fractions=class_fractions, size=size,
                   images_per_patient=images_per_patient, difficulty=difficulty,
                   shortcut=shortcut, shortcut_class=shortcut_class, seed=seed,
                   image_format=image_format, jpeg_quality=jpeg_quality,
                   split_fractions=split_fractions, defects=defects, realistic=realistic,
                   likeness=likeness, mimics=mimics)
    out = Path(out_dir)
    _prepare_dir(out)
    _write_settings(out, st, complete=False)
    seed, fmt = st["seed"], st["image_format"]
    kaggle, nih = st["layout"] == "kaggle-pneumonia", st["layout"] == "nih"
    other = st["layout"] if st["layout"] in hospital.LAYOUTS else None  # see `hospital.place`
    pop = POPULATIONS[st["layout"]] if st["realistic"] else None
    labels = _patient_labels(st["n_patients"], st["classes"], seed, st["class_fractions"])
    official = kaggle or other in ("chexpert", "mimic-cxr-jpg")
    splits = _patient_splits(labels, st["split_fractions"], seed) if official else [""] * len(labels)
    lo, hi = st["images_per_patient"]
    (out / "masks" / "lung").mkdir(parents=True)
    (out / "masks" / "lesion").mkdir(parents=True)
    made_dirs: set[Path] = set()
    rows, meta = [], []
    n_cross = 0
    phase = {c: _rng(seed, j, _T_SHORTCUT).random() for j, c in enumerate(st["classes"])}
    n_seen = dict.fromkeys(st["classes"], 0)  # films of each class so far (`_evenly_marked`)
    for i in tqdm(range(st["n_patients"]), desc="synthetic patients", disable=not progress):
        p, label = i + 1, labels[i]
        sex, age, sub = _patient_meta(seed, p)
        if pop is not None:
            age = int(_rng(seed, p, _T_META, 3).integers(pop["ages"][0], pop["ages"][1] + 1))
        sub = sub if label == "pneumonia" else ""
        r = _rng(seed, p, _T_META, 2)
        n_img = int(r.integers(lo, hi + 1))
        if other == "rsna-pneumonia":
            n_img = 1  # RSNA's patientId names one film
        start = np.datetime64("2020-01-01") + int(r.integers(0, 700))
        gaps = np.cumsum(np.concatenate([[0], r.integers(1, 15, max(0, n_img - 1))]))
        # Kaggle's official split keeps a few patients in two folders: the last film moves to test
        cross = (pop is not None and kaggle and splits[i] == "train" and n_img > 1 and n_cross < 3
                 and _rng(seed, p, _T_STORE, 2).random() < 0.15)
        n_cross += cross
        for k in range(n_img):
            if st["shortcut_class"] == ANY_CLASS:
                marked = _evenly_marked(n_seen[label], st["shortcut"], phase[label])
                n_seen[label] += 1
            else:
                marked = st["shortcut_class"] == label and _rng(seed, p, k, _T_SHORTCUT).random() < st["shortcut"]
            view, img, lung, les, mode = film(st, p, k, label, marker=marked)
            ext = ".jpeg" if fmt == "jpeg" else ".png"
            split = "test" if cross and k == n_img - 1 else splits[i]
            if other:
                rel = hospital.place(out, other, p, k, label, img, les, view=view, sex=sex, age=age, seed=seed,
                                     split=split, r=r, meta=meta, quality=st["jpeg_quality"])
                kp = None
            elif kaggle:
                if label == "normal":
                    name, kp = f"IM-{p:04d}-{k + 1:04d}{ext}", f"IM-{p:04d}"
                else:
                    tag = sub if label == "pneumonia" else label
                    name, kp = f"person{p}_{tag}_{k}{ext}", f"person{p}"
                folder = Path("chest_xray") / split / label.upper()
            elif nih:
                name, kp, folder = f"{p:08d}_{k:03d}.png", None, Path("images_001/images")
            else:
                ext = ".jpg" if fmt == "jpeg" else ".png"
                name, kp, folder = f"synth-{p:04d}-{k}{ext}", None, Path("images")
            if not other:
                rel = (folder / name).as_posix()
                if folder not in made_dirs:
                    (out / folder).mkdir(parents=True, exist_ok=True)
                    made_dirs.add(folder)
                (out / rel).write_bytes(encode(st, img, mode))
            lung_rel = f"masks/lung/{_mask_name(rel)}"
            les_rel = f"masks/lesion/{_mask_name(rel)}"
            _write_png(lung, out / lung_rel)
            _write_png(les, out / les_rel)
            row = {"path": rel, "label": label, "patient_id": f"p{p:04d}"}
            if kaggle:
                row["kaggle_patient"] = kp
                if pop is not None:  # the official split a lesson compares with
                    row["kaggle_split"] = split
            # the real Kaggle collection records no view
            row.update(view=None if pop is not None and kaggle else view, source="synthetic", sex=sex, age=age, subtype=sub,
                       lung_mask=lung_rel, lesion_mask=les_rel, marker=bool(marked),
                       split=split, image_index=k, seed=seed, difficulty=patient_difficulty(st, p))
            rows.append(row)
            if nih:
                meta.append(_nih_row(p, k, label, sex, age, view, name, img.shape, r))
            elif not kaggle and not other:
                meta.append(_metadata_row(p, k, label, sub, sex, age, view, name,
                                          int(gaps[k]), str(start + int(gaps[k])), r))
    if pop is not None and not nih and not other:
        _write_duplicates(out, rows, meta, kaggle, seed)
    if st["defects"] and not other:
        _write_defects(out, rows, meta, st)
    manifest = pd.DataFrame(rows)  # never empty: n_patients >= 1, images_per_patient >= 1
    if other:
        hospital.finish(out, other, meta)
    elif nih:
        pd.DataFrame(meta, columns=NIH_COLUMNS).to_csv(out / "Data_Entry_2017.csv", index=False)
    elif not kaggle:
        pd.DataFrame(meta, columns=METADATA_COLUMNS).to_csv(out / "metadata.csv", index=False)
    manifest.to_csv(out / MANIFEST, index=False)
    _write_settings(out, st, complete=True)
    return read_manifest(out)


def film(settings: dict, patient: int, image: int, label: str, *, marker: bool
         ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, str]:
    """(view, image, lung mask, lesion mask, file mode) of one film as `generate` stores it.

    `settings` are the normalised generation arguments (`read_settings`). The film is rendered
    at the dataset's size with its difficulty, view draw and pneumonia subtype; a realistic
    layout then gets its publication look and stored size. `marker` says whether it carries the
    burnt-in marker, so a counterfactual film is the stored film with only the marker changed.
    """
    seed, nih = settings["seed"], settings["layout"] == "nih"
    pop = POPULATIONS[settings["layout"]] if settings["realistic"] else None
    sub = _patient_meta(seed, patient)[2] if label == "pneumonia" else None
    view = (_image_view(seed, patient, image) if pop is None
            else _real_view(seed, patient, image, pop["ap_share"][label], nih))
    img, lung, les = render_image(seed, patient, image, label, size=settings["size"],
                                  difficulty=patient_difficulty(settings, patient), marker=marker, subtype=sub, view=view,
                                  likeness=settings.get("likeness", 0.0), mimic=patient_mimic(settings, patient, label))
    mode = "L"
    if pop is not None:
        if pop.get("publication"):
            img, lung, les = _publication_figure(img, lung, les, _rng(seed, patient, image, _T_STORE, 3))
        img, lung, les, mode = _stored(img, lung, les, _rng(seed, patient, image, _T_STORE), pop,
                                       nih or settings["layout"] in hospital.LAYOUTS)
    return view, img, lung, les, mode


def encode(settings: dict, img: np.ndarray, mode: str = "L") -> bytes:
    """The file bytes `generate` writes for a film: JPEG at the dataset's quality (NIH: always
    PNG) or PNG, in file mode `mode` ("L" or "RGB")."""
    buf = io.BytesIO()
    pil = Image.fromarray(img).convert(mode)
    if settings["image_format"] == "jpeg" and settings["layout"] != "nih":
        pil.save(buf, format="JPEG", quality=settings["jpeg_quality"])
    else:
        pil.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def read_settings(out_dir: str | Path) -> dict:
    """The normalised generation arguments recorded in `out_dir/synthetic.json` (see `generate`)."""
    path = Path(out_dir) / SETTINGS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; only a dataset written by cxrnb.synthetic.generate "
                                "records how its films were made")
    info = json.loads(path.read_text())
    if info.get("version") != GENERATOR_VERSION or not info.get("complete"):
        raise ValueError(f"{path}: written by generator version {info.get('version')} "
                         f"(complete: {info.get('complete')}), this is version {GENERATOR_VERSION}: "
                         "generate the data again")
    return _settings(**info["arguments"])


def _real_view(seed: int, p: int, k: int, ap_share: float, nih: bool) -> str:
    """The view of one image when a class's share of AP films is `ap_share` (a quarter of them
    supine; NIH records only PA and AP)."""
    u = _rng(seed, p, k, _T_VIEW).random()
    if u >= ap_share:
        return "PA"
    return "AP Supine" if u < ap_share / 4 and not nih else "AP"


def _publication_figure(img: np.ndarray, lung: np.ndarray, les: np.ndarray, r: np.random.Generator
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A film as a journal figure shows it: cropped tighter around the chest, contrast stretched
    (a steeper grey curve), and on most films a burnt-in letter and an arrow pointing into the chest.

    ieee8023's images were collected from papers and websites, so its collection looks unlike a
    hospital's archive; a model trained on COVID films from it and normal films from elsewhere can
    learn the look of the collection (notebook 05). The masks follow the crop; text is not lung.
    """
    from PIL import ImageDraw

    n = img.shape[0]
    c = int(round(n * r.uniform(0.04, 0.10)))  # crop margin, then back to n x n
    box = (c, c, n - c, n - c)
    crop = lambda a, how: np.asarray(Image.fromarray(a).crop(box).resize((n, n), how))  # noqa: E731
    img, lung, les = (crop(img, Image.Resampling.BILINEAR), crop(lung, Image.Resampling.NEAREST),
                      crop(les, Image.Resampling.NEAREST))
    g = r.uniform(1.3, 1.7)  # steeper curve: darker lungs, whiter bone
    img = (255.0 * (img / 255.0) ** g).astype(np.uint8)
    if r.random() < 0.7:
        pil = Image.fromarray(img)
        draw = ImageDraw.Draw(pil)
        s = max(8, n // 16)
        x0, y0 = int(r.uniform(0.04, 0.12) * n), int(r.uniform(0.04, 0.12) * n)
        draw.text((x0, y0), str(r.choice(["A", "B", "L", "R", "AP"])), fill=255, font_size=s * 2)
        tx, ty = int(r.uniform(0.25, 0.75) * n), int(r.uniform(0.35, 0.65) * n)  # arrow tip in the chest
        dx = s * 3 if tx < n / 2 else -s * 3
        draw.line([(tx + dx, ty - s * 2), (tx, ty)], fill=255, width=max(1, n // 128))
        draw.polygon([(tx, ty), (tx + dx // 3, ty - s // 4), (tx + dx // 6, ty - s)], fill=255)
        img = np.asarray(pil)
    return img, lung, les


def _stored(img: np.ndarray, lung: np.ndarray, les: np.ndarray, r: np.random.Generator, pop: dict,
            nih: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Image and masks at a stored size of their own (NIH: square, as released) and the file mode.

    Real collections mix landscape and portrait films of many sizes, and some files are RGB."""
    n = img.shape[0]
    w = n if nih else int(round(n * r.uniform(0.85, 1.5)))
    h = n if nih else int(round(n * r.uniform(0.8, 1.15)))
    mode = "RGB" if r.random() < pop["rgb"] else "L"
    if (w, h) == (n, n):
        return img, lung, les, mode
    resize = lambda a, how: np.asarray(Image.fromarray(a).resize((w, h), how))  # noqa: E731
    return (resize(img, Image.Resampling.BILINEAR), resize(lung, Image.Resampling.NEAREST),
            resize(les, Image.Resampling.NEAREST), mode)


def _write_duplicates(out: Path, rows: list[dict], meta: list[dict], kaggle: bool, seed: int) -> None:
    """Copy two films byte for byte under new patients 9101, 9102 (in place), as real collections
    hold the same film under two ids; in the Kaggle layout the copy sits in another split folder."""
    firsts = [j for j, row in enumerate(rows) if row["image_index"] == 0]
    picks = _rng(seed, _T_STORE, 1).choice(firsts, size=min(2, len(firsts)), replace=False)
    for n, j in enumerate(sorted(int(x) for x in picks)):
        src, p = rows[j], 9101 + n
        ext = Path(src["path"]).suffix
        if kaggle:
            split = "test" if src["kaggle_split"] == "train" else "train"
            name = (f"IM-{p:04d}-0001{ext}" if src["label"] == "normal"
                    else f"person{p}_{src['subtype'] or src['label']}_0{ext}")
            folder = Path("chest_xray") / split / src["label"].upper()
        else:
            split, name, folder = "", f"synth-{p:04d}-0{ext}", Path("images")
        rel = (folder / name).as_posix()
        (out / folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / src["path"], out / rel)
        row = {**src, "path": rel, "patient_id": f"p{p:04d}", "split": split}
        for col in ("lung_mask", "lesion_mask"):
            row[col] = f"masks/{col.split('_')[0]}/{_mask_name(rel)}"
            shutil.copyfile(out / src[col], out / row[col])
        if kaggle:
            row.update(kaggle_patient=name.split("_")[0] if "_" in name else f"IM-{p:04d}", kaggle_split=split)
        else:
            meta.append({**meta[j], "patientid": str(p), "filename": name})
        rows.append(row)


def _nih_row(p: int, k: int, label: str, sex: str, age: int, view: str, name: str, shape: tuple,
             r: np.random.Generator) -> dict:
    """One `Data_Entry_2017.csv` row; an effusion often comes with another finding, as in NIH."""
    finding = "No Finding"
    if label != "normal":
        finding = str(r.choice(["Effusion", "Effusion", "Atelectasis|Effusion", "Cardiomegaly|Effusion"]))
    return {"Image Index": name, "Finding Labels": finding, "Follow-up #": k, "Patient ID": p,
            "Patient Age": age, "Patient Gender": sex, "View Position": view,
            "OriginalImage[Width": shape[1], "Height]": shape[0],
            "OriginalImagePixelSpacing[x": 0.143, "y]": 0.143}


def _write_defects(out: Path, rows: list[dict], meta: list[dict], st: dict) -> None:
    """Add the defects of real collections, each listed like a normal image (in place).

    An empty file, a truncated JPEG, a text file with an image extension, a file listed but
    missing, a file listed twice under two patient ids, and (covid-chestxray layout) a lateral
    view and a CT row. Patients 9001.. never collide with the generated ones.
    """
    seed, size, layout = st["seed"], st["size"], st["layout"]
    kaggle, nih = layout == "kaggle-pneumonia", layout == "nih"
    folder = Path({"kaggle-pneumonia": "chest_xray/train/NORMAL", "nih": "images_001/images"}.get(layout, "images"))
    (out / folder).mkdir(parents=True, exist_ok=True)
    ext = ".jpeg" if kaggle else ".png" if nih else ".jpg"
    img, _, _ = render_image(seed, 9002, 0, "normal", size=size, difficulty=patient_difficulty(st, 9002))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=st["jpeg_quality"])
    files = {9001: b"", 9002: buf.getvalue()[: len(buf.getvalue()) // 3],
             9003: b"<html>404 Not Found</html>\n", 9004: None}
    for p, content in files.items():
        name = (f"IM-{p:04d}-0001{ext}" if kaggle else f"{p:08d}_000{ext}" if nih
                else f"synth-{p:04d}-0{ext}")
        rel = (folder / name).as_posix()
        if content is not None:
            (out / rel).write_bytes(content)
        rows.append({"path": rel, "label": "normal", "patient_id": f"p{p:04d}",
                     **({"kaggle_patient": f"IM-{p:04d}"} if kaggle else {}),
                     **({"kaggle_split": "train"} if kaggle and st["realistic"] else {}),
                     "view": "PA", "source": "synthetic", "sex": "F", "age": 50, "subtype": "",
                     "lung_mask": None, "lesion_mask": None, "marker": False,
                     "split": "train" if kaggle else "", "image_index": 0, "seed": seed,
                     "difficulty": patient_difficulty(st, p)})
        if nih:
            meta.append({**dict.fromkeys(NIH_COLUMNS, ""), "Image Index": name, "Finding Labels": "No Finding",
                         "Follow-up #": 0, "Patient ID": p, "Patient Age": 50, "Patient Gender": "F",
                         "View Position": "PA"})
        elif not kaggle:
            meta.append({**dict.fromkeys(METADATA_COLUMNS, ""), "patientid": str(p), "finding": "No Finding",
                         "view": "PA", "modality": "X-ray", "folder": "images", "filename": name})
    # the first image listed again under another patient id (covid-chestxray has such rows)
    rows.append({**rows[0], "patient_id": "p9005"})
    if nih:
        meta.append({**meta[0], "Patient ID": 9005})
    elif not kaggle:
        first = meta[0]
        meta.append({**first, "patientid": "9005"})
        meta.append({**first, "patientid": "9006", "view": "L", "filename": "synth-9006-0.png"})
        _write_png(img, out / "images" / "synth-9006-0.png")  # stands in for a lateral film
        meta.append({**first, "patientid": "9007", "view": "Axial", "modality": "CT",
                     "folder": "volumes", "filename": "synth-9007-0.nii.gz"})
        (out / "volumes").mkdir(exist_ok=True)
        (out / "volumes" / "synth-9007-0.nii.gz").write_bytes(gzip.compress(b"not a radiograph", mtime=0))


def _metadata_row(p: int, k: int, label: str, sub: str, sex: str, age: int, view: str,
                  filename: str, offset: int, date: str, r: np.random.Generator) -> dict:
    """One ieee8023 metadata.csv row (clinical columns plausible, mostly blank as in the real file)."""
    key = sub if label == "pneumonia" else label
    covid = label == "covid"
    sick = label != "normal"
    row = dict.fromkeys(METADATA_COLUMNS, "")
    row.update(
        patientid=str(p), offset=offset, sex=sex, age=age, finding=FINDINGS[key],
        RT_PCR_positive="Y" if covid else "",
        survival=("Y" if r.random() < 0.85 else "N") if sick else "",
        intubated=("Y" if r.random() < 0.15 else "N") if covid else "",
        went_icu=("Y" if r.random() < 0.2 else "N") if covid else "",
        needed_supplemental_O2=("Y" if r.random() < 0.5 else "N") if covid else "",
        temperature=round(float(r.normal(38.4, 0.6)), 1) if sick and r.random() < 0.5 else "",
        pO2_saturation=int(np.clip(r.normal(91, 4), 70, 99)) if sick and r.random() < 0.4 else "",
        view=view, modality="X-ray", date=date,
        location="Synthetown, Nowhere" if r.random() < 0.5 else "",
        folder="images", filename=filename, license="CC BY 4.0 (synthetic)",
        clinical_notes=_NOTES[key][int(r.integers(len(_NOTES[key])))] + f" Image {k + 1}, day {offset}.",
        other_notes="synthetic image, cxrnb" if k == 0 else "",
    )
    return row


def ensure(out_dir: str | Path, **kwargs) -> pd.DataFrame:
    """The manifest of a synthetic dataset in out_dir, generating it only when needed.

    Reuses the data if `out_dir/synthetic.json` records a complete run of this generator version
    with the same arguments (defaults filled in); otherwise regenerates (see `generate`). So a
    notebook can call it on every run and pay only once. `progress` is passed on, not compared.
    """
    progress = kwargs.pop("progress", True)
    st = _settings(**kwargs)
    out = Path(out_dir)
    info_path = out / SETTINGS
    if (out / MANIFEST).is_file() and info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        if (info.get("complete") and info.get("version") == GENERATOR_VERSION
                and info.get("arguments") == json.loads(json.dumps(st))):
            return read_manifest(out)
    return generate(out, **kwargs, progress=progress)
