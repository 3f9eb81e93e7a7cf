"""Honest evaluation of a classifier's test predictions: metrics, baselines, patient-level CIs.

Inputs are plain arrays, so this module does not need TensorFlow:

- ``y_true``: int class ids, shape (N,);
- ``proba``: class probabilities, shape (N, K), K >= 2 (a binary task has K = 2, positive
  class = column 1; for a single sigmoid output ``p`` pass ``np.column_stack([1 - p, p])``);
- ``classes``: the K class names;
- ``groups``: the patient of each image (the index's ``patient_group`` or ``patient_id``).

Confidence intervals come from a bootstrap that resamples **patients**, not images: a
patient's films are correlated (same anatomy, same scanner, usually the same label), so
resampling images pretends there are more independent cases than there are and makes the
intervals too narrow. The bootstrap is vectorised: resamples are drawn in blocks as a matrix
of how often each resample drew each patient, and accuracy, balanced accuracy and a weighted
(Mann-Whitney) ROC AUC are computed for every resample with array operations. Metrics on the
full test set come from scikit-learn.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.calibration import calibration_curve
from sklearn.metrics import (accuracy_score, average_precision_score,
                             brier_score_loss, classification_report, confusion_matrix, f1_score,
                             precision_recall_curve, roc_auc_score, roc_curve)

METRICS = ("accuracy", "balanced_accuracy", "auc", "majority_baseline")
RULES = ("youden", "f1", "balanced_accuracy")
_CHUNK = 250  # resamples drawn and scored per block: bounds memory, fixed so draws never depend on it
_SUM_TOL = 1e-3  # probability rows must sum to 1 within this (float32 softmax rounding)


# ----------------------------------------------------------------------------- input checks

def check_inputs(y_true, proba, classes: Sequence[str], groups=None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate and convert the evaluation inputs; raise ValueError saying what is wrong where.

    Returns ``(y_true as int64 (N,), proba as float64 (N, K), groups as str (N,) or None)``.
    """
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    k = len(classes)
    if y.ndim != 1:
        raise ValueError(f"y_true must be 1-D class ids, got shape {y.shape}")
    if k < 2:
        raise ValueError(f"classes must name at least 2 classes, got {list(classes)}")
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"proba must have shape (N, {k}) for classes {list(classes)}, got {p.shape}"
                         " (for one sigmoid output p, pass np.column_stack([1 - p, p]))")
    if len(y) != len(p):
        raise ValueError(f"length mismatch: y_true has {len(y)} rows, proba has {len(p)}")
    if len(y) == 0:
        raise ValueError("nothing to evaluate: y_true and proba are empty")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ValueError(f"y_true must hold integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        raise ValueError(f"y_true has labels outside 0..{k - 1} at rows {bad[:5].tolist()}: "
                         f"{sorted(set(y[bad].tolist()))[:5]}")
    bad = np.flatnonzero(~np.isfinite(p).all(1) | (p < -1e-6).any(1) | (p > 1 + 1e-6).any(1))
    if bad.size:
        raise ValueError(f"proba must be finite probabilities in [0, 1]; rows {bad[:5].tolist()} are not")
    bad = np.flatnonzero(np.abs(p.sum(1) - 1) > _SUM_TOL)
    if bad.size:
        raise ValueError(f"proba rows must sum to 1 (softmax output), rows {bad[:5].tolist()} sum to "
                         f"{np.round(p[bad[:5]].sum(1), 4).tolist()}")
    p = p / p.sum(1, keepdims=True)  # float32 softmax rounding: exact rows for scikit-learn
    g = None
    if groups is not None:
        gs = pd.Series(np.asarray(groups, dtype=object))
        if len(gs) != len(y):
            raise ValueError(f"length mismatch: groups has {len(gs)} rows, y_true has {len(y)}")
        bad = np.flatnonzero(gs.isna().to_numpy())
        if bad.size:
            raise ValueError(f"groups has missing patient ids at rows {bad[:5].tolist()}")
        g = gs.astype(str).to_numpy()
    return y, p, g


# ----------------------------------------------------------------------------- vectorised bootstrap

@dataclass(frozen=True)
class _AucOperator:
    """Sparse operators that turn row weights into a Mann-Whitney ROC AUC, many weightings at once.

    With the positive images' distinct scores v_1 < ... < v_m, the AUC numerator is
    sum_k pos_k * (negative weight below v_k + half the negative weight tied with v_k). ``pos``
    sums the positive weight per v_k; ``gap`` puts each negative image's weight at the first
    v_k above its score, so a cumulative sum over k gives the weight below; ``tie`` adds the
    halves. Only m (not the number of images) rows are summed cumulatively, and the roles of
    the classes are swapped (AUC(y, s) = AUC(1 - y, -s)) so that m is the smaller class's.
    """

    pos: sparse.csr_matrix  # (m, n_rows)
    gap: sparse.csr_matrix  # (m + 1, n_rows); row m: negatives above every positive
    tie: sparse.csr_matrix  # (m, n_rows)

    @classmethod
    def build(cls, y01: np.ndarray, scores: np.ndarray, rows: np.ndarray, n_rows: int) -> _AucOperator:
        y01, s = np.asarray(y01, dtype=bool), np.asarray(scores, dtype=np.float64)
        if np.unique(s[y01]).size > np.unique(s[~y01]).size:
            y01, s = ~y01, -s
        v, k = np.unique(s[y01], return_inverse=True)
        m, sn, rn = len(v), s[~y01], rows[~y01]
        lo, hi = np.searchsorted(v, sn, "left"), np.searchsorted(v, sn, "right")
        tie = lo < hi  # the negative's score equals v[lo]

        def mat(r, c, val, n):
            return sparse.csr_matrix((np.broadcast_to(val, r.shape), (r, c)), shape=(n, n_rows))

        return cls(mat(k, rows[y01], 1.0, m), mat(hi, rn, 1.0, m + 1), mat(lo[tie], rn[tie], 0.5, m))

    def __call__(self, weights_t: np.ndarray) -> np.ndarray:
        """AUC per column of ``weights_t`` (n_rows, B); NaN where a class has no weight."""
        wp = self.pos @ weights_t
        below = np.cumsum(self.gap @ weights_t, axis=0)
        neg = below[-1].copy()  # total negative weight
        below = below[:-1] + self.tie @ weights_t
        num = np.einsum("kb,kb->b", wp, below)
        den = wp.sum(0) * neg
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_auc(y01, scores, weights) -> np.ndarray | float:
    """ROC AUC of binary labels ``y01`` and ``scores`` under image weights, vectorised over rows.

    ``weights``: (N,) or (B, N); each row is one weighting (e.g. a bootstrap resample's image
    counts). Equals ``sklearn.metrics.roc_auc_score(y01, scores, sample_weight=w)`` for each row;
    NaN where a row gives one class no weight.
    """
    y01, s, w = np.asarray(y01), np.asarray(scores, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    one = w.ndim == 1
    w = np.atleast_2d(w)
    if w.shape[1] != len(y01) or len(s) != len(y01):
        raise ValueError(f"weighted_auc: y01 ({len(y01)}), scores ({len(s)}) and weights "
                         f"({w.shape[1]} per row) must have the same length")
    auc = _AucOperator.build(y01, s, np.arange(len(y01)), len(y01))(np.ascontiguousarray(w.T))
    return float(auc[0]) if one else auc


def format_interval(estimate, low=None, high=None, digits: int = 2, *, signed: bool = False,
                    width: int = 0, gap: str = " ") -> str:
    """An estimate with its interval as text, the one format every table and report uses:
    ``0.83 [0.75, 0.90]`` (``+0.12 [+0.03, +0.21]`` when `signed`; `width` pads the estimate and
    `gap` separates it from the interval, for aligned columns). Only the estimate when the
    interval is missing (None or NaN); an empty string when the estimate is."""
    def missing(v) -> bool:
        return v is None or (isinstance(v, (float, np.floating)) and np.isnan(v))

    if missing(estimate):
        return ""
    f = f"{'+' if signed else ''}.{digits}f"
    text = f"{estimate:{'+' if signed else ''}{width or ''}.{digits}f}"
    if missing(low) or missing(high):
        return text
    return f"{text}{gap}[{low:{f}}, {high:{f}}]"


@dataclass(frozen=True)
class Interval:
    """A point estimate on the full test set and its bootstrap percentile interval.

    ``n_undefined`` resamples (a class missing from the resample, so the metric is undefined)
    are excluded from the percentiles and counted here. ``samples`` keeps the resampled values
    (NaN where undefined) so that two evaluations can be compared; it is not serialised.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int
    n_undefined: int
    unit: str
    samples: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict:
        return {"estimate": _f(self.estimate), "low": _f(self.low), "high": _f(self.high),
                "level": _f(self.level), "n_boot": int(self.n_boot),
                "n_undefined": int(self.n_undefined), "unit": self.unit}


def _percentiles(samples: np.ndarray, ci: float) -> tuple[float, float]:
    ok = samples[np.isfinite(samples)]
    if ok.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(ok, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def bootstrap_ci(y_true, proba, groups, *, y_pred=None, majority_class: int | None = None,
                 n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, Interval]:
    """Patient-level bootstrap intervals for accuracy, balanced accuracy, ROC AUC, majority baseline.

    Each resample draws as many patients as the test set has, with replacement, and keeps all
    films of every drawn patient. Pass ``groups=np.arange(N)`` to resample images instead (the
    too-narrow interval, for comparison). ``y_pred`` defaults to the argmax of ``proba``; AUC is
    the positive class's (K = 2) or the macro one-vs-rest AUC (K > 2). ``majority_class``
    (default: the most frequent class of ``y_true``) is the constant prediction of the baseline.
    The same seed and the same test set give the same resamples, so two models scored on one
    test set are paired resample by resample (see `compare`).
    """
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    k = np.asarray(proba).shape[-1] if np.ndim(proba) == 2 else 0
    y, p, g = check_inputs(y_true, proba, [str(i) for i in range(max(k, 2))], groups)
    if g is None:
        raise ValueError("groups is required: the patient of each image (or np.arange(N) for images)")
    pred = p.argmax(1) if y_pred is None else np.asarray(y_pred, dtype=np.int64)
    if pred.shape != y.shape:
        raise ValueError(f"length mismatch: y_pred has shape {pred.shape}, y_true has {y.shape}")
    if ((pred < 0) | (pred >= k)).any():
        raise ValueError(f"y_pred has class ids outside 0..{k - 1}")
    maj = int(np.bincount(y, minlength=k).argmax()) if majority_class is None else int(majority_class)
    codes, uniq = pd.factorize(g, sort=True)
    n_pat = len(uniq)
    if n_pat * _CHUNK >= 2**31:
        raise ValueError(f"{n_pat} patients are too many for the int32 resampling index")
    unit = "image" if n_pat == len(y) else "patient"

    # per-patient sufficient statistics, one row each: images, right, of the majority class, then
    # per class images and right. Every metric is a ratio of count-weighted sums of these rows.
    # Sparse products (not BLAS) keep the bootstrap single-threaded and free of thread start-up.
    right = (pred == y).astype(float)
    per_image = np.column_stack([np.ones(len(y)), right, y == maj, np.eye(k)[y], np.eye(k)[y] * right[:, None]])
    member = sparse.csr_matrix((np.ones(len(y)), (codes, np.arange(len(y)))), shape=(n_pat, len(y)))
    stats = sparse.csr_matrix((member @ per_image).T)  # (3 + 2K, patients)
    auc_classes = [1] if k == 2 else list(range(k))
    aucs = [_AucOperator.build(y == c, p[:, c], codes, n_pat) for c in auc_classes]

    rng = np.random.default_rng(seed)
    out = {m: np.empty(n_boot) for m in METRICS}
    for start in range(0, n_boot, _CHUNK):  # a block of resamples at a time, never one by one
        b = min(_CHUNK, n_boot - start)
        draws = rng.integers(0, n_pat, size=(b, n_pat), dtype=np.int32)  # int32: half the memory traffic
        # counts[q, r]: how often resample r drew patient q (patients x resamples, C order)
        counts = np.bincount((draws * np.int32(b) + np.arange(b, dtype=np.int32)[:, None]).ravel(),
                             minlength=n_pat * b).reshape(n_pat, b).astype(np.float64)
        sl = slice(start, start + b)
        n_img, n_ok, n_maj, *per_class = stats @ counts
        out["accuracy"][sl] = n_ok / n_img
        out["majority_baseline"][sl] = n_maj / n_img
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.array(per_class[k:]) / np.array(per_class[:k])  # NaN: class absent from resample
        out["balanced_accuracy"][sl] = np.nanmean(recall, axis=0)
        out["auc"][sl] = np.mean([auc(counts) for auc in aucs], axis=0)  # NaN if any class AUC is undefined

    full = {"accuracy": accuracy_score(y, pred), "balanced_accuracy": _balanced_accuracy(y, pred),
            "auc": _auc(y, p)[0], "majority_baseline": float(np.mean(y == maj))}
    res = {}
    for m in METRICS:
        lo, hi = _percentiles(out[m], ci)
        res[m] = Interval(float(full[m]), lo, hi, ci, n_boot, int(np.isnan(out[m]).sum()), unit, out[m])
    return res


# ----------------------------------------------------------------------------- full-set metrics

def _balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in y (sklearn's, without its warning for absent ones)."""
    present = np.unique(y)
    return float(np.mean([np.mean(pred[y == c] == c) for c in present]))


def _auc(y: np.ndarray, p: np.ndarray) -> tuple[float, dict[int, float]]:
    """(ROC AUC, per-class AUCs): the positive class's for K = 2, else one-vs-rest per class + macro.

    A class that is absent (or the only one present) has an undefined AUC: NaN.
    """
    k = p.shape[1]
    per = {}
    for c in ([1] if k == 2 else range(k)):
        yc = y == c
        per[c] = float(roc_auc_score(yc, p[:, c])) if 0 < yc.sum() < len(y) else math.nan
    vals = list(per.values())
    return (math.nan if any(math.isnan(v) for v in vals) else float(np.mean(vals))), per


def _ap(y: np.ndarray, p: np.ndarray) -> tuple[float, dict[int, float]]:
    """Average precision (area under the PR curve), like `_auc`."""
    k = p.shape[1]
    per = {}
    for c in ([1] if k == 2 else range(k)):
        yc = y == c
        per[c] = float(average_precision_score(yc, p[:, c])) if yc.any() else math.nan
    vals = list(per.values())
    return (math.nan if any(math.isnan(v) for v in vals) else float(np.mean(vals))), per


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score: of the positive class for K = 2 (range 0..1), multi-class otherwise (0..2)."""
    if p.shape[1] == 2:
        return float(brier_score_loss(y == 1, p[:, 1], pos_label=True))
    return float(brier_score_loss(y, p, labels=list(range(p.shape[1]))))


def _f(x) -> float | None:
    """A JSON-friendly float: Python float, NaN as None."""
    x = float(x)
    return None if math.isnan(x) else x


def _fingerprint(y: np.ndarray, g: np.ndarray, n_boot: int, seed: int) -> str:
    h = hashlib.sha1(y.tobytes())
    h.update("\x00".join(g.tolist()).encode())
    h.update(f"{n_boot}/{seed}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Evaluation:
    """Everything a reviewer asks about one set of test predictions. Build it with `evaluate`."""

    classes: list[str]
    n_images: int
    n_patients: int
    threshold: float | None
    majority_class: str
    majority_source: str  # "train" when given by the caller, else "test" (most frequent in y_true)
    accuracy: float
    balanced_accuracy: float
    majority_baseline: float
    macro_f1: float
    report: dict
    confusion: list[list[int]]
    auc: float
    auc_per_class: dict[str, float]
    average_precision: float
    average_precision_per_class: dict[str, float]
    brier: float
    ci: dict[str, Interval]
    notes: list[str]
    y_true: np.ndarray = field(repr=False, compare=False)
    proba: np.ndarray = field(repr=False, compare=False)
    y_pred: np.ndarray = field(repr=False, compare=False)
    groups: np.ndarray = field(repr=False, compare=False)
    fingerprint: str = field(repr=False, compare=False, default="")

    def to_dict(self) -> dict:
        """JSON-friendly and deterministic: Python floats, NaN as None, no arrays."""
        def clean(v):
            if isinstance(v, dict):
                return {str(a): clean(b) for a, b in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(b) for b in v]
            if isinstance(v, Interval):
                return v.to_dict()
            if isinstance(v, (bool, np.bool_)):
                return bool(v)
            if isinstance(v, (int, np.integer)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                return _f(v)
            return v

        keys = ("classes", "n_images", "n_patients", "threshold", "majority_class", "majority_source",
                "accuracy", "balanced_accuracy", "majority_baseline", "macro_f1", "auc", "auc_per_class",
                "average_precision", "average_precision_per_class", "brier", "ci", "report",
                "confusion", "notes")
        return {k: clean(getattr(self, k)) for k in keys}

    def summary(self) -> str:
        """A short readable report: headline metrics with CIs beside the majority baseline."""
        def row(name: str, key: str) -> str:
            iv = self.ci[key]
            return f"  {name:<18} {format_interval(iv.estimate, iv.low, iv.high, 3, width=6, gap='  ')}"

        iv = self.ci["accuracy"]
        rule = "argmax" if self.threshold is None else f"p({self.classes[1]}) >= {self.threshold:.3f}"
        lines = [f"{self.n_images} images of {self.n_patients} patients; classes {', '.join(self.classes)};"
                 f" prediction: {rule}",
                 f"  {'metric':<18} {'value':>6}  {int(iv.level * 100)} % CI ({iv.n_boot} {iv.unit} resamples)",
                 row("accuracy", "accuracy"),
                 row("majority baseline", "majority_baseline")
                 + f"  (always '{self.majority_class}', majority of {self.majority_source})",
                 row("balanced accuracy", "balanced_accuracy"),
                 row("ROC AUC" + (" (macro)" if len(self.classes) > 2 else ""), "auc"),
                 f"  macro F1 {self.macro_f1:.3f}, average precision {self.average_precision:.3f},"
                 f" Brier {self.brier:.3f}"]
        per = pd.DataFrame(self.report).T.loc[self.classes, ["precision", "recall", "f1-score", "support"]]
        per = per.astype({"support": int}).round(3)
        lines += ["  " + per.to_string().replace("\n", "\n  ")]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def evaluate(y_true, proba, classes: Sequence[str], *, groups, threshold: float | None = None,
             majority_class: int | str | None = None, n_boot: int = 2000, seed: int = 0,
             ci: float = 0.95) -> Evaluation:
    """Evaluate test predictions: metrics (scikit-learn), majority baseline, patient bootstrap CIs.

    ``threshold`` (binary only) predicts the positive class when ``proba[:, 1] >= threshold``
    instead of taking the argmax; choose it on validation data with `choose_threshold`, never on
    the test set. ``majority_class`` is the class an "always predict the majority" model would
    answer: pass the TRAIN split's majority (name or id); without it the test set's most frequent
    class is used, which flatters the baseline. A class absent from ``y_true`` makes its AUC
    undefined: NaN and a note, not an error.
    """
    classes = [str(c) for c in classes]
    y, p, g = check_inputs(y_true, proba, classes, groups)
    if g is None:
        raise ValueError("groups is required: the patient of each image (patient_group or patient_id)")
    k = len(classes)
    if threshold is not None:
        if k != 2:
            raise ValueError(f"threshold applies to binary tasks only; this task has {k} classes {classes}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
        pred = (p[:, 1] >= threshold).astype(np.int64)
    else:
        pred = p.argmax(1)
    if majority_class is None:
        maj, source = int(np.bincount(y, minlength=k).argmax()), "test"
    else:
        if isinstance(majority_class, str):
            if majority_class not in classes:
                raise ValueError(f"majority_class {majority_class!r} is not one of {classes}")
            maj = classes.index(majority_class)
        else:
            maj = int(majority_class)
            if not 0 <= maj < k:
                raise ValueError(f"majority_class {maj} is outside 0..{k - 1}")
        source = "train"

    notes = []
    missing = [classes[c] for c in range(k) if not (y == c).any()]
    if missing:
        notes.append(f"class(es) {missing} absent from y_true: their AUC and average precision are "
                     "undefined (NaN), as is the task's AUC")
    intervals = bootstrap_ci(y, p, g, y_pred=pred, majority_class=maj, n_boot=n_boot, seed=seed, ci=ci)
    for m, iv in intervals.items():
        if iv.n_undefined and not missing:
            notes.append(f"{m}: {iv.n_undefined} of {n_boot} resamples lacked a class and were excluded")
    auc, auc_per = _auc(y, p)
    ap, ap_per = _ap(y, p)
    labels = list(range(k))
    return Evaluation(
        classes=classes, n_images=len(y), n_patients=int(pd.unique(g).size), threshold=threshold,
        majority_class=classes[maj], majority_source=source,
        accuracy=float(accuracy_score(y, pred)), balanced_accuracy=_balanced_accuracy(y, pred),
        majority_baseline=float(np.mean(y == maj)),
        macro_f1=float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        report=classification_report(y, pred, labels=labels, target_names=classes, output_dict=True,
                                     zero_division=0),
        confusion=confusion_matrix(y, pred, labels=labels).tolist(),
        auc=auc, auc_per_class={classes[c]: v for c, v in auc_per.items()},
        average_precision=ap, average_precision_per_class={classes[c]: v for c, v in ap_per.items()},
        brier=brier(y, p), ci=intervals, notes=notes, y_true=y, proba=p, y_pred=pred, groups=g,
        fingerprint=_fingerprint(y, g, n_boot, seed))


# ----------------------------------------------------------------------------- threshold, calibration

def choose_threshold(y_true_val, proba_val, *, rule: str = "youden") -> float:
    """A decision threshold on p(positive) chosen on VALIDATION predictions (binary tasks).

    Rules: ``"youden"`` maximises sensitivity + specificity - 1 (ROC curve); ``"balanced_accuracy"``
    maximises (sensitivity + specificity) / 2, the same threshold said differently; ``"f1"``
    maximises the positive class's F1 (PR curve). Pass the result to ``evaluate(...,
    threshold=t)`` on the test set. Never choose it on the test set: a threshold tuned on the
    data it is scored on inflates the score, exactly like training on the test set.
    """
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {RULES}")
    p = np.asarray(proba_val)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"choose_threshold is for binary tasks: proba_val must be (N, 2), got {p.shape}")
    y, p, _ = check_inputs(y_true_val, p, ["negative", "positive"])
    if len(np.unique(y)) < 2:
        raise ValueError("choose_threshold needs both classes in the validation labels; "
                         f"only class {int(y[0])} is present")
    s = p[:, 1]
    if rule == "f1":
        prec, rec, thr = precision_recall_curve(y, s)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * prec[:-1] * rec[:-1] / (prec[:-1] + rec[:-1]))
        return float(thr[int(np.argmax(f1))])
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    ok = np.isfinite(thr)  # the first threshold (inf) predicts nothing positive
    best = int(np.argmax(np.where(ok, tpr - fpr, -np.inf)))
    return float(min(thr[best], 1.0))


@dataclass(frozen=True)
class Calibration:
    """Reliability table (one row per non-empty bin), Brier score and expected calibration error."""

    table: pd.DataFrame
    brier: float
    ece: float
    what: str  # which probability is calibrated: the positive class's or the top class's
    brier_low: float = float("nan")  # patient-bootstrap interval (NaN without groups)
    brier_high: float = float("nan")
    ece_low: float = float("nan")
    ece_high: float = float("nan")


def calibration(y_true, proba, *, n_bins: int = 10, strategy: str = "uniform", groups=None,
                n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> Calibration:
    """Reliability of the predicted probabilities (sklearn.calibration.calibration_curve).

    Binary: p(positive) against the observed positive rate. Multi-class: the confidence of the
    predicted (top) class against how often that prediction is right. The table has, per
    non-empty bin, the mean predicted probability, the observed frequency and the image count;
    ``ece`` is the count-weighted mean gap between the two. With ``groups`` (the patient of each
    image), the Brier score and the ECE get percentile intervals from `n_boot` patient resamples;
    the bins stay those of the full set, so each resample's ECE is
    ``sum over bins |sum of c_i (hit_i - conf_i)| / sum of c_i`` with c_i how often image i was drawn.
    """
    p = np.asarray(proba, dtype=np.float64)
    k = p.shape[1] if p.ndim == 2 else 0
    y, p, _ = check_inputs(y_true, p, [str(i) for i in range(max(k, 2))])
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if k == 2:
        hit, conf, what = (y == 1), p[:, 1], "positive class probability"
    else:
        hit, conf, what = (p.argmax(1) == y), p.max(1), "top class confidence"
    frac, mean = calibration_curve(hit, conf, n_bins=n_bins, strategy=strategy)
    # calibration_curve does not return bin counts: recount with its own bin edges and rule
    edges = (np.percentile(conf, np.linspace(0, 100, n_bins + 1)) if strategy == "quantile"
             else np.linspace(0, 1, n_bins + 1))
    counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=n_bins)
    counts = counts[counts > 0]
    table = pd.DataFrame({"mean_predicted": mean, "observed": frac, "count": counts})
    ece = float(np.sum(table["count"] * (table["observed"] - table["mean_predicted"]).abs()) / len(y))
    if groups is None:
        return Calibration(table, brier(y, p), ece, what)
    codes, uniq = pd.factorize(np.asarray(groups), sort=True)
    if len(codes) != len(y):
        raise ValueError(f"groups has {len(codes)} entries for {len(y)} images")
    onehot = np.eye(p.shape[1])[y]
    sq = ((p[:, 1] - (y == 1)) ** 2) if k == 2 else ((p - onehot) ** 2).sum(1)  # as `brier`
    gap = np.zeros((len(y), n_bins))
    gap[np.arange(len(y)), np.searchsorted(edges[1:-1], conf)] = hit - conf
    draws = np.random.default_rng(seed).integers(0, len(uniq), size=(n_boot, len(uniq)))
    c = np.stack([np.bincount(d, minlength=len(uniq)) for d in draws])[:, codes].astype(float)  # (B, N)
    n = c.sum(1)
    b_lo, b_hi = _percentiles((c @ sq) / n, ci)
    e_lo, e_hi = _percentiles(np.abs(c @ gap).sum(1) / n, ci)
    return Calibration(table, brier(y, p), ece, what, b_lo, b_hi, e_lo, e_hi)


# ----------------------------------------------------------------------------- comparing two evaluations

def compare(a: Evaluation, b: Evaluation, *, names: tuple[str, str] = ("A", "B"),
            metrics: Sequence[str] = METRICS, paired: bool | None = None, seed: int = 0) -> pd.DataFrame:
    """Two evaluations side by side, with the difference A - B and its bootstrap interval.

    Paired when both were scored on the same test set with the same seed and resample count
    (e.g. with and without class weights): resample i of A and of B then hold the same patients,
    and the interval of the difference is much tighter than either. Otherwise (e.g. a leaky
    image-level split against a patient-level split, different test sets) the two bootstraps are
    treated as independent: B's resamples are shuffled before differencing. ``paired=None``
    decides by the test labels, patients, seed and resample count; True/False overrides (True
    needs the same resamples, so the same patients, seed and ``n_boot``).
    """
    same = bool(a.fingerprint) and a.fingerprint == b.fingerprint
    if paired is None:
        paired = same
    elif paired and not same:
        raise ValueError("compare(paired=True) needs both evaluations on the same test set (labels, "
                         "patients), with the same seed and n_boot; these differ")
    rows = []
    for m in metrics:
        ia, ib = a.ci[m], b.ci[m]
        sb = ib.samples if paired else np.random.default_rng(seed).permutation(ib.samples)
        n = min(len(ia.samples), len(sb))
        lo, hi = _percentiles(ia.samples[:n] - sb[:n], ia.level)
        rows.append({"metric": m,
                     f"{names[0]}": ia.estimate, f"{names[0]} low": ia.low, f"{names[0]} high": ia.high,
                     f"{names[1]}": ib.estimate, f"{names[1]} low": ib.low, f"{names[1]} high": ib.high,
                     "difference": ia.estimate - ib.estimate, "diff low": lo, "diff high": hi,
                     "paired": paired})
    return pd.DataFrame(rows).set_index("metric")
