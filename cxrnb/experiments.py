"""The measured lessons of notebook 03: each is one call that trains and returns a table with CIs.

* `leakage`: the same recipe trained and tested on an image-level random split (patients on
  both sides) and on the patient-level split. The gap is what a leaky split adds to the score.
* `imbalance`: the same recipe on a rare-finding task with no loss weighting, inverse-frequency
  class weights and article 003's "every mistake weighs 5", beside the majority-class baseline.

Tables hold numbers (estimates and 95 % patient-bootstrap intervals); `format_table` turns them
into the rounded text a notebook shows, so outputs are stable across machines.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .evaluate import Evaluation, compare, evaluate
from .splits import split_by_image, split_by_patient
from .train import TrainConfig, TrainResult, split_predictions, train


@dataclass
class Lesson:
    """A lesson's table, and the evaluations and training results behind it."""

    table: pd.DataFrame
    evaluations: dict[str, Evaluation]
    results: dict[str, TrainResult]

    def _repr_html_(self) -> str:  # notebooks show the rounded table
        return format_table(self.table)._repr_html_()

    def __repr__(self) -> str:
        return format_table(self.table).to_string()


def evaluation_on_test(result: TrainResult, *, n_boot: int = 2000, threshold: float | None = None) -> Evaluation:
    """The run's test-split evaluation (majority baseline from its train split), with the samples
    `compare` needs (the run folder's metrics.json keeps only the intervals)."""
    y, p, g = split_predictions(result.predictions, result.classes, "test")
    return evaluate(y, p, result.classes, groups=g, n_boot=n_boot, seed=result.config.seed,
                    threshold=threshold, majority_class=result.metrics["majority_class"])


def leakage(index: pd.DataFrame, config: TrainConfig, run_root: str | Path, *, val: float = 0.15,
            test: float = 0.15, seed: int = 0, n_boot: int = 2000, cache=None) -> Lesson:
    """Train `config` on an image-level and on a patient-level split of `index`; compare test scores.

    The table has one row per metric: each split's estimate with its interval, and the
    difference (image-level minus patient-level) with an interval from independent bootstraps
    (the two test sets differ). Row "test images whose patient is in train" says why.
    """
    run_root = Path(run_root)
    splits = {"image-level": split_by_image(index, val=val, test=test, seed=seed),
              "patient-level": split_by_patient(index, val=val, test=test, seed=seed)}
    results, evals, seen = {}, {}, {}
    for name, split in splits.items():
        results[name] = train(config, split, run_root / name, overwrite=True, cache=cache, n_boot=n_boot)
        evals[name] = evaluation_on_test(results[name], n_boot=n_boot)
        train_patients = set(split.loc[split["split"] == "train", "patient_id"])
        seen[name] = float(split.loc[split["split"] == "test", "patient_id"].isin(train_patients).mean())
    table = compare(evals["image-level"], evals["patient-level"], names=("image-level", "patient-level"),
                    metrics=("accuracy", "balanced_accuracy", "auc"), seed=seed)
    table.loc["test images whose patient is in train"] = pd.Series(
        {"image-level": seen["image-level"], "patient-level": seen["patient-level"]})
    return Lesson(table.drop(columns="paired"), evals, results)


def imbalance(split: pd.DataFrame, config: TrainConfig, run_root: str | Path, *,
              weightings: Sequence[str] = ("none", "balanced", "mistakes"), n_boot: int = 2000,
              cache=None) -> Lesson:
    """Train `config` with each loss weighting on the same (imbalanced) split; test scores side by side.

    Columns: the majority-class baseline, accuracy, balanced accuracy and ROC AUC with their
    intervals, and the recall of the rarest training class (how many of the rare findings the
    model catches) next to the recall of the commonest.
    """
    run_root = Path(run_root)
    counts = split.loc[split["split"] == "train", "label"].value_counts()
    rare, common = str(counts.idxmin()), str(counts.idxmax())
    rows, evals, results = {}, {}, {}
    for w in weightings:
        results[w] = train(config.replace(loss_weighting=w), split, run_root / w, overwrite=True,
                           cache=cache, n_boot=n_boot)
        ev = evals[w] = evaluation_on_test(results[w], n_boot=n_boot)
        row = {}
        for m in ("majority_baseline", "accuracy", "balanced_accuracy", "auc"):
            iv = ev.ci[m]
            row.update({m: iv.estimate, f"{m} low": iv.low, f"{m} high": iv.high})
        row[f"recall {rare}"] = float(ev.report[rare]["recall"])
        row[f"recall {common}"] = float(ev.report[common]["recall"])
        rows[w] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "loss weighting"
    return Lesson(table, evals, results)


def format_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Estimates with their intervals as text ("0.83 [0.75, 0.90]"), rounded to `digits`."""
    out = {}
    for col in table.columns:
        if col.endswith((" low", " high")):
            continue
        lo, hi = f"{col} low", f"{col} high"
        if col == "difference":
            lo, hi = "diff low", "diff high"
        if lo in table and hi in table:
            out[col] = [_ci(v, a, b, digits) for v, a, b in zip(table[col], table[lo], table[hi])]
        elif col not in ("diff low", "diff high"):
            out[col] = [("" if pd.isna(v) else f"{v:.{digits}f}") for v in table[col]]
    return pd.DataFrame(out, index=table.index)


def _ci(v: float, lo: float, hi: float, digits: int) -> str:
    if pd.isna(v):
        return ""
    if pd.isna(lo) or pd.isna(hi):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
