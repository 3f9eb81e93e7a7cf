"""Shortcut learning made measurable: markers, counterfactual films, blanked lungs, source labels.

A model trained where a burnt-in marker comes with one class can score well by reading the
marker. These helpers turn that suspicion into numbers: the share of CAM energy on the marker
(`marker_masks` + `cxrnb.explain.energy_share`), the accuracy on the same films re-rendered
without the marker or with it on the other class (`counterfactual_accuracy`), the accuracy with
the lungs blanked (`blank_lungs`, after Maguolo & Nanni), and whether the image *source* alone is
predictable (`source_split` / `train_source_classifier`, and `source_probe` from grey levels
alone: the set-up of articles that took COVID films from one collection and normal films from
another).
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd

from .explain import Explainer, explainer
from .synthetic.render import marker_box, render_image

#: Lung-field box used to blank the lungs when a source has no lung masks, as fractions of the
#: image (top, bottom, left, right): rows 15-85 %, columns 10-90 % of a frontal film. On the
#: synthetic films it covers nearly all of every lung mask.
LUNG_BOX = (0.15, 0.85, 0.10, 0.90)

_MANIFEST_COLUMNS = ("seed", "patient_id", "image_index", "label", "marker")


def marker_mask(seed: int, patient: int, image: int, size: int) -> np.ndarray:
    """uint8 (size, size) mask, 255 on the box of the marker `render_image(..., marker=True)` burns."""
    top, left, h, w = marker_box(seed, patient, image, size)
    m = np.zeros((size, size), np.uint8)
    m[top:top + h, left:left + w] = 255
    return m


def _rows(index: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _MANIFEST_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks column(s) {missing}: re-rendering needs a synthetic manifest "
                         f"(columns {list(_MANIFEST_COLUMNS)})")
    return index


def _patient(pid: str) -> int:
    s = str(pid)
    if not (s.startswith("p") and s[1:].isdigit()):
        raise ValueError(f"patient_id {s!r} is not a synthetic patient id like 'p0012'")
    return int(s[1:])


def marker_masks(index: pd.DataFrame, size: int) -> np.ndarray:
    """uint8 (N, size, size) marker-box masks of a synthetic manifest's rows (drawn or not)."""
    rows = _rows(index)
    return np.stack([marker_mask(int(r.seed), _patient(r.patient_id), int(r.image_index), size)
                     for r in rows.itertuples()]) if len(rows) else np.zeros((0, size, size), np.uint8)


def rerender(index: pd.DataFrame, size: int, marker: bool | Sequence[bool] | None = None,
             difficulty: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-render a synthetic manifest's films at `size`: (images uint8 (N, H, W), lung masks).

    `marker` None keeps each row's own marker; True/False puts it on every film or none; a
    sequence gives it per row. Everything else (anatomy, lesion, exposure, noise) is the same film.
    """
    rows = _rows(index)
    marks = rows["marker"].astype(bool).to_numpy() if marker is None else \
        np.broadcast_to(np.asarray(marker, bool), (len(rows),))
    if len(marks) != len(rows):
        raise ValueError(f"marker has {len(marks)} values for {len(rows)} rows")
    diff = rows["difficulty"] if difficulty is None and "difficulty" in rows else \
        pd.Series(0.5 if difficulty is None else difficulty, index=rows.index)
    subs = rows["subtype"] if "subtype" in rows else pd.Series(None, index=rows.index)
    imgs, lungs = [], []
    for r, mk, d, sub in zip(rows.itertuples(), marks, diff, subs):
        img, lung, _ = render_image(int(r.seed), _patient(r.patient_id), int(r.image_index), str(r.label),
                                    size=size, difficulty=float(d), marker=bool(mk),
                                    subtype=sub if isinstance(sub, str) and sub else None)
        imgs.append(img)
        lungs.append(lung)
    if not imgs:
        return np.zeros((0, size, size), np.uint8), np.zeros((0, size, size), np.uint8)
    return np.stack(imgs), np.stack(lungs)


def _to_input(images: np.ndarray, ex: Explainer) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]
    c = ex.input_shape[-1]
    if c not in (None, x.shape[-1]) and x.shape[-1] == 1:
        x = np.repeat(x, c, axis=-1)
    return x


def predict_labels(model: keras.Model | Explainer, images, classes: Sequence[str]) -> np.ndarray:
    """Predicted class names for uint8 (N, H, W) or float model-input images (argmax of the
    probabilities; for one sigmoid unit, p > 0.5 is ``classes[1]``)."""
    ex = explainer(model)
    if len(classes) != ex.n_classes:
        raise ValueError(f"{len(classes)} class names {list(classes)} for a model with {ex.n_classes} classes")
    p = ex.probabilities(_to_input(images, ex))
    return np.asarray(classes, dtype=object)[p.argmax(axis=1)]


def accuracy(model: keras.Model | Explainer, images, labels: Sequence[str], classes: Sequence[str]) -> float:
    """Share of images whose predicted class name equals its label."""
    labels = np.asarray(labels, dtype=object)
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    return float(np.mean(predict_labels(model, images, classes) == labels))


def counterfactual_accuracy(model: keras.Model | Explainer, index: pd.DataFrame, classes: Sequence[str],
                            size: int, shortcut_class: str) -> pd.DataFrame:
    """Accuracy on the same synthetic films three ways: as generated (each row's own marker), with
    no marker at all, and with the marker swapped to the other class(es) (on every film not of
    `shortcut_class`, off every film of it). A model that reads the marker collapses on the swap."""
    if shortcut_class not in classes:
        raise ValueError(f"shortcut_class {shortcut_class!r} is not one of the classes {list(classes)}")
    labels = _rows(index)["label"].to_numpy()
    ways = {"as generated": None, "no marker": False,
            "marker on the other class": labels != shortcut_class}
    rows = []
    for name, marker in ways.items():
        imgs, _ = rerender(index, size, marker)
        rows.append({"films": name, "accuracy": accuracy(model, imgs, labels, classes),
                     "with_marker": float(np.mean(np.broadcast_to(
                         index["marker"].astype(bool).to_numpy() if marker is None else marker, len(labels)))),
                     "n": len(labels)})
    return pd.DataFrame(rows).set_index("films")


def lung_box_mask(size: int | tuple[int, int]) -> np.ndarray:
    """uint8 mask (255 inside) of the `LUNG_BOX` lung-field box at an image size."""
    h, w = (size, size) if isinstance(size, int) else size
    t, b, left, r = LUNG_BOX
    m = np.zeros((h, w), np.uint8)
    m[round(t * h):round(b * h), round(left * w):round(r * w)] = 255
    return m


def blank_lungs(images, lung_masks=None, *, fill: float | str = "mean") -> tuple[np.ndarray, str]:
    """Images (N, H, W[, C]) with the lungs blanked, and which region was used.

    The region is each image's lung mask when `lung_masks` is given (N, H, W), else the fixed
    `LUNG_BOX`. It is filled with `fill`: a value in the images' range, or ``"mean"`` for each
    image's mean outside the region (a neutral grey, no new edge colour).
    """
    x = np.asarray(images)
    n, h, w = x.shape[:3]
    if lung_masks is None:
        region = np.broadcast_to(lung_box_mask((h, w)) > 0, (n, h, w))
        how = (f"lung-field box (rows {LUNG_BOX[0]:.0%}-{LUNG_BOX[1]:.0%}, "
               f"columns {LUNG_BOX[2]:.0%}-{LUNG_BOX[3]:.0%})")
    else:
        region = np.asarray(lung_masks)
        if region.shape != (n, h, w):
            raise ValueError(f"lung masks have shape {region.shape} but the images are {(n, h, w)}")
        region = region > 0
        how = "lung masks"
    out = x.astype(np.float32).copy()
    for i in range(n):
        if fill == "mean":
            outside = x[i][~region[i]]
            v = float(outside.mean()) if outside.size else float(x[i].mean())
        elif isinstance(fill, (int, float)):
            v = float(fill)
        else:
            raise ValueError(f"fill must be a number or 'mean', got {fill!r}")
        out[i][region[i]] = v
    return out.astype(x.dtype), how


def source_split(index: pd.DataFrame) -> pd.DataFrame:
    """The index relabelled by its `source` column (the original label kept as `finding`), so that
    a classifier trained on it predicts where a film comes from rather than what it shows."""
    for c in ("source", "label"):
        if c not in index.columns:
            raise ValueError(f"index lacks column {c!r}: a source classifier needs 'source' and 'label'")
    n = index["source"].nunique()
    if n < 2:
        raise ValueError(f"index has {n} source(s); a source classifier needs at least 2")
    finding = index["finding"] if "finding" in index else index["label"]  # relabelled already: keep it
    return index.assign(finding=finding, label=index["source"].astype(str))


def train_source_classifier(index: pd.DataFrame, train_fn: Callable, config, run_dir, **kwargs):
    """Train a classifier of the image *source* with `train_fn(config, split, run_dir, classes=...,
    **kwargs)` (e.g. `cxrnb.train.train`) on `source_split(index)`; returns what it returns.

    High accuracy means the sources differ visibly (scanner, text, processing): a COVID-vs-normal
    model built from two collections can score well by learning the collection.
    """
    split = source_split(index)
    return train_fn(config, split, run_dir, classes=sorted(split["label"].unique()), **kwargs)


#: Per-film grey-level statistics of `source_probe`: mean, spread and seven percentiles.
PROBE_FEATURES = ("mean", "std", "p1", "p5", "p25", "p50", "p75", "p95", "p99")


def grey_statistics(images: np.ndarray) -> np.ndarray:
    """(N, len(PROBE_FEATURES)) float64 of uint8 films (N, H, W): what a film's exposure and
    processing look like, with nothing about its anatomy or findings."""
    x = images.reshape(len(images), -1).astype(np.float32)
    pct = np.percentile(x, [1, 5, 25, 50, 75, 95, 99], axis=1).T
    return np.column_stack([x.mean(1), x.std(1), pct]).astype(np.float64)


def source_probe(index: pd.DataFrame, images: np.ndarray, *, folds: int = 5, seed: int = 0,
                 n_boot: int = 2000):
    """How well grey-level statistics alone (`grey_statistics`) predict each film's `source`.

    A logistic regression (balanced class weights) on nine numbers per film, evaluated out of
    fold: `StratifiedGroupKFold` keeps each patient group in one fold, so no patient is both
    learned and tested. It needs no training run and works on a few dozen films, where a CNN
    source classifier is unstable; anything clearly above chance (balanced accuracy 0.5) means
    the collections differ in exposure or processing, a cue any model can learn. Returns the
    `cxrnb.evaluate.Evaluation` of the out-of-fold predictions (patient-bootstrap CIs).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .evaluate import evaluate
    from .splits import group_column

    if "source" not in index.columns:
        raise ValueError("index lacks column 'source': the probe predicts where each film comes from")
    if len(images) != len(index):
        raise ValueError(f"{len(images)} images for {len(index)} index rows")
    classes = sorted(index["source"].astype(str).unique())
    if len(classes) < 2:
        raise ValueError(f"index has {len(classes)} source(s); the probe needs at least 2")
    y = index["source"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    groups = index[group_column(index)].astype(str).to_numpy()
    smallest = int(pd.Series(groups).groupby(y).nunique().min())
    if smallest < folds:
        raise ValueError(f"a source has {smallest} patient group(s), fewer than folds={folds}: lower folds")
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, grey_statistics(images), y, groups=groups, cv=cv, method="predict_proba")
    return evaluate(y, proba, classes, groups=groups, n_boot=n_boot, seed=seed)
