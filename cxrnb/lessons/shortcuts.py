"""The lessons of notebook 05 (shortcut learning): markers, counterfactual films, blanked lungs,
the collection as label.

A model trained where a burnt-in marker comes with one class can score well by reading the
marker. These helpers turn that suspicion into numbers: the share of CAM energy on the marker
(`marker_masks` + `cxrnb.explain.energy_share`), the accuracy on the same films re-rendered
without the marker or with it on the other class (`counterfactual_accuracy`), the accuracy with
the lungs blanked (`blank_lungs`, `lungs_blanked`, after Maguolo & Nanni), and whether the image
*source* alone is predictable (`source_split` / `train_source_classifier`, and `source_probe`
from grey levels alone: the set-up of articles that took COVID films from one collection and
normal films from another).

Two lessons are measured with their margins and judged, each with a verdict line (a `Lesson`,
`cxrnb.lessons.core`): `marker_effect` (the drop without the marker for a marker model and a
control, paired, and the Grad-CAM energy on the marker box) judged by `marker_lesson`, and
`collection_effect` (how often normal films are called COVID, by collection, after DeGrave et
al. 2021) judged by `collection_lesson`; `collection_test` trains the articles' set-up and
measures that lesson on it. The counterfactual films are the test files remade (`rerender`), so
they differ from the films the model was tested on by the marker alone. Predictions go through
`cxrnb.models.probabilities`, as a run's own do.
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import pandas as pd

from ..evaluate import Interval, _percentiles, bootstrap_ci, evaluate
from ..explain import Explainer, cam, energy_share, explainer
from ..images import read_gray, resize_gray
from ..models import probabilities
from ..pipeline import labels_to_ids, load_images, load_masks, model_input
from ..splits import group_column, split_by_patient
from ..synthetic.render import marker_box, render_image
from ..synthetic.write import encode, film, read_settings
from ..train import Run, TrainConfig, train
from .core import Lesson, effect

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


def _stored_settings(index: pd.DataFrame) -> list[dict] | None:
    """Per row, the generation settings of its dataset (``root/synthetic.json``), or None for a
    bare manifest without `root` (then films are drawn at the requested size, not as stored)."""
    if "root" not in index.columns:
        return None
    found = {r: read_settings(r) for r in index["root"].astype(str).unique()}
    out = [found[r] for r in index["root"].astype(str)]
    for st, r in zip(out, index.itertuples()):
        if _patient(r.patient_id) > st["n_patients"]:
            raise ValueError(f"row {r.Index!r}: {r.patient_id} is not one of the {st['n_patients']} rendered "
                             "patients of its dataset (a copied or defective file the generator added): "
                             "drop such rows before re-rendering")
    return out


def marker_cells(index: pd.DataFrame, size: int, grid: int) -> float:
    """Mean side of the marker's box on these films at `size` px, in cells of a `grid` x `grid` CAM:
    about 1 means the map cannot tell "on the marker" from "next to it"."""
    area = (marker_masks(index, size) > 0).sum(axis=(1, 2)).mean()
    return float(np.sqrt(area) / (size / grid))


def marker_masks(index: pd.DataFrame, size: int) -> np.ndarray:
    """uint8 (N, size, size) marker-box masks of a synthetic manifest's rows (drawn or not).

    Rows with a `root` (an index read from the data) get the box of the stored film, resized as
    `cxrnb.images.resize_gray` resizes the film: every model pixel the marker touches. A bare
    manifest gets the box `render_image` burns at `size`.
    """
    rows = _rows(index)
    stored = _stored_settings(rows)
    masks = []
    for i, r in enumerate(rows.itertuples()):
        key = (int(r.seed), _patient(r.patient_id), int(r.image_index))
        if stored is None:
            masks.append(marker_mask(*key, size))
            continue
        if stored[i]["realistic"]:
            raise ValueError("marker boxes of a realistic dataset are not known: its films are cropped "
                             "and resized one by one after the marker is burnt in")
        masks.append(np.where(resize_gray(marker_mask(*key, stored[i]["size"]), size) > 0, 255, 0).astype(np.uint8))
    return np.stack(masks) if masks else np.zeros((0, size, size), np.uint8)


def rerender(index: pd.DataFrame, size: int, marker: bool | Sequence[bool] | None = None,
             difficulty: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-render a synthetic manifest's films at `size`: (images uint8 (N, size, size), lung masks).

    `marker` None keeps each row's own marker; True/False puts it on every film or none; a
    sequence gives it per row. Everything else (anatomy, lesion, exposure, noise) is the same film.

    Rows with a `root` (an index read from the data, as the model was tested on) are made as
    the files were: rendered with the dataset's arguments (``synthetic.json``) at its stored
    size, encoded as its files are (JPEG at its quality, or PNG), decoded and resized by
    `cxrnb.images.read_gray` as `cxrnb.pipeline.load_images` does; with the rows' own markers
    they equal the test films pixel for pixel, so a counterfactual differs only by its marker
    (and the JPEG ringing around it). Lung masks are then `cxrnb.pipeline.load_masks`'. A bare
    manifest (no `root`) is drawn by `render_image` at `size`, without file or resize.
    `difficulty` overrides the dataset's.
    """
    rows = _rows(index)
    marks = rows["marker"].astype(bool).to_numpy() if marker is None else \
        np.broadcast_to(np.asarray(marker, bool), (len(rows),))
    if len(marks) != len(rows):
        raise ValueError(f"marker has {len(marks)} values for {len(rows)} rows")
    if not len(rows):
        return np.zeros((0, size, size), np.uint8), np.zeros((0, size, size), np.uint8)
    stored = _stored_settings(rows)
    if stored is not None:
        return _as_stored(rows, stored, marks, size, difficulty), load_masks(rows, size)[0]
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
    return np.stack(imgs), np.stack(lungs)


def _as_stored(rows: pd.DataFrame, stored: list[dict], marks: np.ndarray, size: int,
               difficulty: float | None) -> np.ndarray:
    """The films as `generate` wrote them (with `marks` for markers), read back at `size`."""
    out = np.empty((len(rows), size, size), np.uint8)
    with tempfile.TemporaryDirectory(prefix="cxrnb-rerender-") as tmp:
        path = Path(tmp) / "film"
        for i, (r, st, mk) in enumerate(zip(rows.itertuples(), stored, marks)):
            st = st if difficulty is None else {**st, "difficulty": float(difficulty)}
            _, img, _, _, mode = film(st, _patient(r.patient_id), int(r.image_index), str(r.label), marker=bool(mk))
            path.write_bytes(encode(st, img, mode))
            out[i] = read_gray(path, size)[0]
    return out


def _probabilities(model: keras.Model | Explainer, images, classes: Sequence[str]) -> np.ndarray:
    """Class probabilities (N, K) of uint8 (N, H, W) or float model-input images: the films made
    model inputs (`cxrnb.pipeline.model_input`), then `cxrnb.models.probabilities`, checked to
    give one column per class name."""
    net = model.model if isinstance(model, Explainer) else model
    proba = probabilities(net, model_input(images, net.input_shape[-1]))
    if len(classes) != proba.shape[1]:
        raise ValueError(f"{len(classes)} class names {list(classes)} for a model with {proba.shape[1]} classes")
    return proba


def predict_labels(model: keras.Model | Explainer, images, classes: Sequence[str]) -> np.ndarray:
    """Predicted class names for uint8 (N, H, W) or float model-input images (argmax of the
    probabilities; for one sigmoid unit, p > 0.5 is ``classes[1]``)."""
    return np.asarray(classes, dtype=object)[_probabilities(model, images, classes).argmax(axis=1)]


def accuracy(model: keras.Model | Explainer, images, labels: Sequence[str], classes: Sequence[str]) -> float:
    """Share of images whose predicted class name equals its label."""
    labels = np.asarray(labels, dtype=object)
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    return float(np.mean(predict_labels(model, images, classes) == labels))


#: The three versions of each film that `counterfactual_accuracy` and `marker_effect` score.
WAYS = ("as generated", "no marker", "marker on the other class")


def _ways(labels: np.ndarray, classes: Sequence[str], shortcut_class: str) -> dict[str, np.ndarray | bool | None]:
    """The `rerender` marker argument of each of `WAYS`: the rows' own, none, and the marker on
    every film not of `shortcut_class` (off every film of it)."""
    if shortcut_class not in classes:
        raise ValueError(f"shortcut_class {shortcut_class!r} is not one of the classes {list(classes)}")
    return dict(zip(WAYS, (None, False, labels != shortcut_class)))


def counterfactual_accuracy(model: keras.Model | Explainer, index: pd.DataFrame, classes: Sequence[str],
                            size: int, shortcut_class: str) -> pd.DataFrame:
    """Accuracy on the same synthetic films three ways: as generated (each row's own marker), with
    no marker at all, and with the marker swapped to the other class(es) (on every film not of
    `shortcut_class`, off every film of it). A model that reads the marker collapses on the swap."""
    labels = _rows(index)["label"].to_numpy()
    rows = []
    for name, marker in _ways(labels, classes, shortcut_class).items():
        imgs, _ = rerender(index, size, marker)
        rows.append({"films": name, "accuracy": accuracy(model, imgs, labels, classes),
                     "with_marker": float(np.mean(np.broadcast_to(
                         index["marker"].astype(bool).to_numpy() if marker is None else marker, len(labels)))),
                     "n": len(labels)})
    return pd.DataFrame(rows).set_index("films")


def _mean_interval(values, groups, *, n_boot: int, seed: int, ci: float = 0.95) -> Interval:
    """The mean of per-film `values` with its patient-bootstrap percentile interval (each resample
    draws as many patients as there are, with replacement, and keeps all their films, as
    `cxrnb.evaluate.bootstrap_ci` does). Non-finite values (e.g. the energy share of an all-zero
    map) are left out."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return Interval(math.nan, math.nan, math.nan, ci, n_boot, n_boot, "patient")
    codes, uniq = pd.factorize(np.asarray(groups)[ok], sort=True)
    sums, counts = np.bincount(codes, v[ok]), np.bincount(codes)
    draws = np.random.default_rng(seed).integers(0, len(uniq), size=(n_boot, len(uniq)))
    samples = sums[draws].sum(1) / counts[draws].sum(1)
    lo, hi = _percentiles(samples, ci)
    unit = "image" if len(uniq) == ok.sum() else "patient"
    return Interval(float(v[ok].mean()), lo, hi, ci, n_boot, 0, unit, samples)


def _difference(a: Interval, b: Interval) -> Interval:
    """a - b with the interval of the resample-wise differences: paired when a and b come from
    the same resamples (same films, patients, seed and n_boot), independent when drawn apart."""
    d = a.samples - b.samples
    lo, hi = _percentiles(d, a.level)
    return Interval(a.estimate - b.estimate, lo, hi, a.level, a.n_boot, int(np.isnan(d).sum()), a.unit, d)


@dataclass(frozen=True)
class MarkerEffect:
    """The marker lesson's numbers for a model trained with the marker and a control trained without.

    ``accuracy[model][way]``: accuracy on the test films each of `WAYS` (patient bootstrap, the
    same resamples for every model and way); ``drop[model]``: accuracy as generated minus with
    no marker, paired resample by resample; ``energy[model]``: mean share of the Grad-CAM energy
    of the film's true class on the marker box, over the marked films; ``box_area``: the box's
    share of those films, what a random map scores. Models are ``"marker"`` and ``"control"``.
    """

    accuracy: dict[str, dict[str, Interval]]
    drop: dict[str, Interval]
    energy: dict[str, Interval]
    box_area: float
    n_films: int
    n_marked: int
    n_patients: int

    def table(self) -> pd.DataFrame:
        """One row per model: accuracy each way, the drop and the marker energy, each with [low, high]."""
        rows = {}
        for m in self.drop:
            cells = {**self.accuracy[m], "drop": self.drop[m], "energy on marker": self.energy[m]}
            rows[m] = {k: v for name, iv in cells.items()
                       for k, v in ((name, iv.estimate), (f"{name} low", iv.low), (f"{name} high", iv.high))}
        return pd.DataFrame(rows).T.assign(**{"box area": self.box_area})


def marker_effect(model_marker: keras.Model | Explainer, model_control: keras.Model | Explainer,
                  test_index: pd.DataFrame, classes: Sequence[str], size: int, shortcut_class: str, *,
                  seed: int = 0, n_boot: int = 2000, ci: float = 0.95) -> MarkerEffect:
    """The marker lesson with margins: both models on the test films as generated, without the
    marker and with it on the other class (`rerender`: the test files themselves, remade), the
    paired drop, and how much of the marker model's Grad-CAM sits on the marker box.

    Intervals are patient-level bootstraps (`cxrnb.evaluate.bootstrap_ci`, one `seed`, so every
    model and way shares the resamples and the drop is paired); `classes` are both models' class
    names in output order.
    """
    rows = _rows(test_index)
    labels = rows["label"].to_numpy()
    y = labels_to_ids(labels, classes)
    groups = rows[group_column(rows)].astype(str).to_numpy()
    has = rows["marker"].to_numpy(bool)
    if not has.any():
        raise ValueError("no test film carries the marker: the marker lesson needs marked films "
                         "(generate with shortcut > 0)")
    models = {"marker": model_marker, "control": model_control}
    films = {way: rerender(rows, size, marker)[0] for way, marker in _ways(labels, classes, shortcut_class).items()}
    accuracy = {m: {way: bootstrap_ci(y, _probabilities(model, imgs, classes), groups, n_boot=n_boot, seed=seed,
                                      ci=ci)["accuracy"] for way, imgs in films.items()}
                for m, model in models.items()}
    box = marker_masks(rows[has], size)
    energy = {}
    for m, model in models.items():
        x = model_input(films["as generated"][has], explainer(model).input_shape[-1])
        maps = cam(model, x, y[has], "gradcam")
        energy[m] = _mean_interval(energy_share(maps, box), groups[has], n_boot=n_boot, seed=seed, ci=ci)
    drop = {m: _difference(accuracy[m]["as generated"], accuracy[m]["no marker"]) for m in models}
    return MarkerEffect(accuracy, drop, energy, float((box > 0).mean()), len(rows), int(has.sum()),
                        int(pd.unique(groups).size))


def marker_lesson(m: MarkerEffect, *, min_drop: float = 0.30, min_energy: float = 0.20,
                  max_control: float = 0.05) -> Lesson:
    """The marker lesson judged from `marker_effect`'s result `m`: removing the marker drops the
    marker model's accuracy by at least `min_drop` (interval above 0), at least `min_energy` of
    its Grad-CAM energy falls on the marker box, and the control model moves by less than `max_control`."""
    d, e, c = m.drop["marker"], m.energy["marker"], m.drop["control"]
    effects = [effect("marker model: accuracy drop without the marker", d.estimate, d.low, d.high,
                      at_least=min_drop, ci_above=0.0),
               effect("marker model: Grad-CAM energy on the marker box", e.estimate, e.low, e.high, at_least=min_energy),
               effect("control model: accuracy change without the marker", c.estimate, c.low, c.high, below=max_control)]
    return Lesson(m.table(), {}, {}, "The marker model reads the marker, not the lungs", effects)


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


def lungs_blanked(run: Run, *, masks: bool = True, cache=None) -> tuple[dict[str, float], str]:
    """A trained run's test accuracy on its films as they are and with the lungs blanked
    (`blank_lungs`: each film's lung mask when `masks` and the source has them, else the fixed
    `LUNG_BOX`), beside the majority baseline (the run's train majority class); and how the lungs
    were blanked. A model that keeps its accuracy without the lungs reads something outside them."""
    t = run.batch("test", cache=cache)
    blank, how = blank_lungs(t.images, t.lungs if masks else None)
    labels = t.rows["label"]
    return {"accuracy": accuracy(run.model, t.images, labels, run.classes),
            "lungs blanked": accuracy(run.model, blank, labels, run.classes),
            "majority baseline": float((labels == run.metrics["majority_class"]).mean())}, how


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


@dataclass(frozen=True)
class CollectionEffect:
    """The collection lesson's numbers (DeGrave et al. 2021): how often a model calls *normal*
    films `positive_class`, by the collection they come from.

    ``called[source]``: share of that source's normal films called `positive_class` (patient
    bootstrap); ``other``: the same over every source but `positive_source`, pooled;
    ``difference``: ``called[positive_source] - other``, the two resampled independently (they
    hold different patients). A model that learned the finding calls few normal films positive
    wherever they come from; one that learned the collection calls the positive collection's
    own normal films positive.
    """

    positive_class: str
    positive_source: str
    called: dict[str, Interval]
    other: Interval
    difference: Interval
    n_films: dict[str, int]

    def table(self) -> pd.DataFrame:
        """One row per source (then the other sources pooled, then the difference): the share of
        normal films called `positive_class`, [low, high], films."""
        ivs = {**self.called, "other sources": self.other, "difference": self.difference}
        n = {**self.n_films, "other sources": sum(v for k, v in self.n_films.items() if k != self.positive_source),
             "difference": math.nan}
        return pd.DataFrame({f"called {self.positive_class}": {k: iv.estimate for k, iv in ivs.items()},
                             "low": {k: iv.low for k, iv in ivs.items()},
                             "high": {k: iv.high for k, iv in ivs.items()}, "films": n})


def collection_effect(model: keras.Model | Explainer, normals_index: pd.DataFrame, images, classes: Sequence[str],
                      positive_class: str = "covid", source_column: str = "source", *, positive_source: str,
                      seed: int = 0, n_boot: int = 2000, ci: float = 0.95) -> CollectionEffect:
    """How often a model calls held-out *normal* films `positive_class`, by collection.

    The set-up of DeGrave et al. (2021): a COVID-vs-normal model trained on COVID films from one
    collection (`positive_source`) and normal films from another. Scored on normal films it
    never saw, from both collections (`images`, uint8 or model inputs, one per row of
    `normals_index`), a model that learned the finding calls few of either "covid"; one that
    learned the collection calls the COVID collection's own normal films "covid". Patient
    bootstrap intervals (`cxrnb.splits.group_column`); see `CollectionEffect`.
    """
    if source_column not in normals_index.columns:
        raise ValueError(f"normals_index lacks column {source_column!r}: the collection effect needs each film's source")
    if positive_class not in classes:
        raise ValueError(f"positive_class {positive_class!r} is not one of the model's classes {list(classes)}")
    if len(images) != len(normals_index):
        raise ValueError(f"{len(images)} images for {len(normals_index)} index rows")
    if "label" in normals_index.columns and (normals_index["label"] == positive_class).any():
        raise ValueError(f"normals_index holds films labelled {positive_class!r}: the collection effect is "
                         "measured on normal films only")
    src = normals_index[source_column].astype(str).to_numpy()
    sources = sorted(set(src))
    if len(sources) < 2:
        raise ValueError(f"column {source_column!r} names {len(sources)} source(s) {sources}; "
                         "the collection effect compares at least 2")
    if positive_source not in sources:
        raise ValueError(f"positive_source {positive_source!r} is not a value of column {source_column!r} {sources}")
    called = (predict_labels(model, images, classes) == positive_class).astype(np.float64)
    groups = (pd.Series(src) + "/" + normals_index[group_column(normals_index)].astype(str).to_numpy()).to_numpy()
    order = [positive_source, *(s for s in sources if s != positive_source)]
    shares = {s: _mean_interval(called[src == s], groups[src == s], n_boot=n_boot, seed=seed + i, ci=ci)
              for i, s in enumerate(order)}
    rest = src != positive_source
    other = shares[order[1]] if len(order) == 2 else \
        _mean_interval(called[rest], groups[rest], n_boot=n_boot, seed=seed + len(order), ci=ci)
    return CollectionEffect(positive_class, positive_source, shares, other,
                            _difference(shares[positive_source], other), {s: int((src == s).sum()) for s in order})


def collection_lesson(c: CollectionEffect, *, min_own: float = 0.5, max_other: float = 0.2) -> Lesson:
    """The collection lesson (DeGrave et al. 2021) judged from `collection_effect`'s result `c`:
    the model calls the COVID collection's own normal films COVID in at least `min_own` of
    cases, the other collection's normals in at most `max_other`, difference above 0."""
    own, other, diff = c.called[c.positive_source], c.other, c.difference
    effects = [effect(f"normal films of the {c.positive_class} collection called {c.positive_class}",
                      own.estimate, own.low, own.high, at_least=min_own),
               effect(f"normal films of the other collection called {c.positive_class}",
                      other.estimate, other.low, other.high, at_most=max_other),
               effect("difference", diff.estimate, diff.low, diff.high, ci_above=0.0)]
    return Lesson(c.table(), {}, {}, f"The model learned the collection: it calls normal films of the "
                  f"{c.positive_class} collection {c.positive_class}", effects)


def collection_test(config: TrainConfig, mixed: pd.DataFrame, normals: pd.DataFrame, run_dir: str | Path, *,
                    positive_source: str, positive_class: str = "covid", cache=None, seed: int = 0,
                    n_boot: int = 2000) -> tuple[Run, Lesson | None]:
    """The articles' set-up, trained, and its collection lesson (DeGrave et al. 2021).

    `config` is trained in `run_dir` (rewritten) on `mixed`, `positive_class` films from the
    collection `positive_source` and normal films from another, split by patient
    (`cxrnb.splits.split_by_patient`, `seed`). The model is then scored on the films of `normals`
    (the normal films of every collection, column ``source``) whose patients it neither trained
    nor validated on, read at the config's image size (`collection_effect`), and judged by
    `collection_lesson`. Returns the run and the lesson; the lesson is None when fewer than two
    collections have held-out normal films, as the test compares them.
    """
    split = split_by_patient(mixed, seed=seed)
    run = train(config, split, run_dir, overwrite=True, cache=cache)
    fitted = split.loc[split["split"] != "test", "patient_id"]
    held_out = normals[~normals["patient_id"].isin(fitted)]  # normal films the model never trained on
    if held_out["source"].nunique() < 2:
        return run, None
    images = load_images(held_out, config.image_size, cache=cache, progress=False)
    measured = collection_effect(run.model, held_out, images, run.classes, positive_class,
                                 positive_source=positive_source, seed=seed, n_boot=n_boot)
    return run, collection_lesson(measured)
