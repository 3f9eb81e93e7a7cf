"""The measured lessons of notebook 03 (training): each returns a `Lesson` with its table, its
effects and a verdict line (`cxrnb.lessons.core`).

* `learned`: the main model beats chance on new patients.
* `leakage`: the same recipe on two splits that differ only in leakage (`splits.leaky_pair`),
  scored on the same test films with a paired patient bootstrap.
* `imbalance`: the same recipe on a rare-finding task with no loss weighting, inverse-frequency
  class weights and article 003's "every mistake weighs 5", beside the majority-class baseline.

The models are trained by `cxrnb.train.train` and scored by `cxrnb.evaluate`; this module only
sets the experiments up and judges them.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..evaluate import compare
from ..splits import leaky_pair
from ..train import Run, TrainConfig, train
from .core import Lesson, effect


def learned(result: Run, *, n_boot: int = 2000) -> Lesson:
    """Did the model learn the finding? Test AUC and balanced accuracy, both with their interval
    above chance (0.5), beside the majority baseline: the first verdict of notebook 03."""
    ev = result.evaluate("test", n_boot=n_boot)
    effects = [effect(f"test {m.replace('_', ' ')}", ev.ci[m].estimate, ev.ci[m].low, ev.ci[m].high, ci_above=0.5)
               for m in ("auc", "balanced_accuracy")]
    table = pd.DataFrame({m: {"value": ev.ci[m].estimate, "value low": ev.ci[m].low, "value high": ev.ci[m].high}
                          for m in ("accuracy", "majority_baseline", "balanced_accuracy", "auc")}).T
    return Lesson(table, {"test": ev}, {"main": result},
                  "The model tells the classes apart on new patients (AUC and balanced accuracy above chance)", effects)


def leakage(index: pd.DataFrame, config: TrainConfig, run_root: str | Path, *, val: float = 0.15,
            test: float = 0.15, seed: int = 0, n_boot: int = 2000, cache=None,
            min_gap: float = 0.10, min_auc: float = 0.65) -> Lesson:
    """Train `config` twice on splits that differ only in leakage (`cxrnb.splits.leaky_pair`) and
    compare their scores on the *same* test films with a paired patient bootstrap.

    The leaky model has seen other films of the test patients; the patient-level model has not.
    Verdict: the AUC gap (leaky minus patient-level) is at least `min_gap` with its paired
    interval above 0, and the patient-level model is no dead model (AUC >= `min_auc`; on a test
    set of a few dozen patients its interval is too wide to ask more). Row "test images whose
    patient is in train" says why.
    """
    run_root = Path(run_root)
    leaky, honest = leaky_pair(index, val=val, test=test, seed=seed)
    splits = {"image-level": leaky, "patient-level": honest}
    results, evals, seen = {}, {}, {}
    for name, split in splits.items():
        results[name] = train(config, split, run_root / name, overwrite=True, cache=cache, n_boot=n_boot)
        evals[name] = results[name].evaluate("test", n_boot=n_boot)
        train_patients = set(split.loc[split["split"] == "train", "patient_id"])
        seen[name] = float(split.loc[split["split"] == "test", "patient_id"].isin(train_patients).mean())
    table = compare(evals["image-level"], evals["patient-level"], names=("image-level", "patient-level"),
                    metrics=("accuracy", "balanced_accuracy", "auc"), paired=True, seed=seed)
    table.loc["test images whose patient is in train"] = pd.Series(
        {"image-level": seen["image-level"], "patient-level": seen["patient-level"]})
    gap, auc = table.loc["auc"], evals["patient-level"].ci["auc"]
    effects = [effect("AUC gap, image-level minus patient-level", gap["difference"], gap["diff low"],
                      gap["diff high"], at_least=min_gap, ci_above=0.0),
               effect("patient-level AUC", auc.estimate, auc.low, auc.high, at_least=min_auc)]
    return Lesson(table.drop(columns="paired"), evals, results,
                  "Seeing the test patients' other films inflates the score", effects)


def imbalance(split: pd.DataFrame, config: TrainConfig, run_root: str | Path, *,
              weightings: Sequence[str] = ("none", "balanced", "mistakes"), n_boot: int = 2000,
              cache=None, min_recall_gain: float = 0.20, min_bacc_gain: float = 0.10) -> Lesson:
    """Train `config` with each loss weighting on the same (imbalanced) split; test scores side by side.

    Columns: the majority-class baseline, accuracy, balanced accuracy and ROC AUC with their
    intervals, and the recall of the rarest training class (how many of the rare findings the
    model catches) next to the recall of the commonest. Verdict: class weights raise the rare
    class's recall by at least `min_recall_gain` and the balanced accuracy by at least
    `min_bacc_gain` (its paired interval, same test films and resamples, is printed beside it:
    with a dozen rare test films it is too wide to ask that it exclude 0).
    """
    run_root = Path(run_root)
    counts = split.loc[split["split"] == "train", "label"].value_counts()
    rare, common = str(counts.idxmin()), str(counts.idxmax())
    rows, evals, results = {}, {}, {}
    for w in weightings:
        results[w] = train(config.replace(loss_weighting=w), split, run_root / w, overwrite=True,
                           cache=cache, n_boot=n_boot)
        ev = evals[w] = results[w].evaluate("test", n_boot=n_boot)
        row = {}
        for m in ("majority_baseline", "accuracy", "balanced_accuracy", "auc"):
            iv = ev.ci[m]
            row.update({m: iv.estimate, f"{m} low": iv.low, f"{m} high": iv.high})
        row[f"recall {rare}"] = float(ev.report[rare]["recall"])
        row[f"recall {common}"] = float(ev.report[common]["recall"])
        rows[w] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "loss weighting"
    effects = []
    if {"none", "balanced"} <= set(evals):
        gain = compare(evals["balanced"], evals["none"], metrics=("balanced_accuracy",), paired=True)
        g = gain.loc["balanced_accuracy"]
        effects = [effect(f"recall of {rare}, class weights minus none",
                          rows["balanced"][f"recall {rare}"] - rows["none"][f"recall {rare}"], at_least=min_recall_gain),
                   effect("balanced accuracy, class weights minus none", g["difference"], g["diff low"],
                          g["diff high"], at_least=min_bacc_gain)]
    return Lesson(table, evals, results, f"Class weights find the rare class ({rare}) that plain training misses",
                  effects)
