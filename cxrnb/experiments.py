"""The measured lessons of notebooks 03-05: each returns a `Lesson` with its table, its effects
(estimate, 95 % interval, the rule that judges it) and a one-line verdict.

* `learned`: the main model beats chance on new patients (03).
* `leakage`: the same recipe on two splits that differ only in leakage (`splits.leaky_pair`),
  scored on the same test films with a paired patient bootstrap (03).
* `imbalance`: the same recipe on a rare-finding task with no loss weighting, inverse-frequency
  class weights and article 003's "every mistake weighs 5", beside the majority-class baseline (03).
* `gradcam_lesson`, `faithfulness_lesson`, `sanity_lesson`: is the map of the finding class on the
  lesion, faithful, and dependent on what the model learned (04).
* `marker_lesson`, `collection_lesson`: the shortcut tests of `cxrnb.shortcut` judged (05).

A verdict depends on the effect *and* its interval, so it is the same on every CPU where the
effect is real (docs/lessons.md, from `benchmarks/lessons.py`); the numbers beside it are not.
`format_table` turns tables into the rounded text a notebook shows.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .evaluate import Evaluation, compare, format_interval
from .splits import leaky_pair
from .train import Run, TrainConfig, train

if TYPE_CHECKING:
    from .explain import Curves

#: Environment variable naming a JSON-lines file that `Lesson.verdict` appends to (benchmarks).
LESSONS_LOG = "LESSONS_LOG"


@dataclass(frozen=True)
class Effect:
    """One measured effect of a lesson, with its 95 % interval and the rule that judges it.

    `holds` is decided from the estimate *and* the interval (e.g. "gap >= 0.10 and interval above
    0"), never from the estimate alone, so a verdict printed from it survives the run-to-run noise
    of seeds, CPUs and thread counts that `benchmarks/lessons.py` measures.
    """

    name: str
    estimate: float
    low: float
    high: float
    rule: str
    holds: bool

    def __str__(self) -> str:
        judged = f"needs {self.rule}: {'met' if self.holds else 'not met'}" if self.rule else "shown, not judged"
        return f"{self.name} {format_interval(self.estimate, self.low, self.high, signed=True)} ({judged})"


def effect(name: str, estimate: float, low: float = float("nan"), high: float = float("nan"), *,
           at_least: float | None = None, at_most: float | None = None, below: float | None = None,
           ci_above: float | None = None) -> Effect:
    """An `Effect` judged by thresholds: ``estimate >= at_least``, ``estimate <= at_most``,
    ``|estimate| < below`` and the interval's lower end ``> ci_above`` (each only when given).
    With none given, the effect is shown beside the verdict and not judged (it always holds)."""
    rules = [f"{op} {v:g}" for op, v in ((">=", at_least), ("<=", at_most), ("|x| <", below),
                                           ("interval above", ci_above)) if v is not None]
    rule = " and ".join(rules)
    return Effect(name, float(estimate), float(low), float(high), rule, judge(rule, estimate, low))


def judge(rule: str, estimate: float, low: float = float("nan")) -> bool:
    """Whether an estimate (and its interval's lower end) meets `rule`, the text `effect` writes
    (e.g. ">= 0.1 and interval above 0"): so a logged effect can be judged again later."""
    ok = True
    for part in filter(None, rule.split(" and ")):
        op, value = part.rsplit(" ", 1)
        v = float(value)
        ok &= {">=": estimate >= v, "<=": estimate <= v, "|x| <": abs(estimate) < v,
               "interval above": low > v}[op]
    return bool(ok)


@dataclass
class Lesson:
    """A lesson's table, its judged effects, and the evaluations and training results behind it.

    `claim` is the sentence the lesson teaches; `verdict` prints it with "yes" when every effect
    holds and "no" otherwise: the line a notebook compares strictly across machines.
    """

    table: pd.DataFrame
    evaluations: dict[str, Evaluation]
    results: dict[str, Run]
    claim: str = ""
    effects: list[Effect] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return bool(self.effects) and all(e.holds for e in self.effects)

    def verdict(self) -> str:
        """The claim with "yes" or "no". When the environment variable `LESSONS_LOG` names a file,
        the lesson's effects are appended there as one JSON line (how `benchmarks/lessons.py`
        collects every verdict of a notebook run without touching the notebooks)."""
        line = f"{self.claim}: {'yes' if self.holds else 'no'}"
        log = os.environ.get(LESSONS_LOG)
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"claim": self.claim, "holds": self.holds,
                                    "effects": [dataclasses.asdict(e) for e in self.effects]}) + "\n")
        return line

    def report(self) -> str:
        """The effects behind the verdict, one per line (numbers: not for strict comparison)."""
        return "\n".join(str(e) for e in self.effects)

    def _repr_html_(self) -> str:  # notebooks show the rounded table
        return format_table(self.table)._repr_html_()

    def __repr__(self) -> str:
        return format_table(self.table).to_string()


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
            out[col] = [format_interval(v, a, b, digits) for v, a, b in zip(table[col], table[lo], table[hi])]
        elif col not in ("diff low", "diff high"):
            out[col] = [("" if pd.isna(v) else f"{v:.{digits}f}") for v in table[col]]
    return pd.DataFrame(out, index=table.index)


# --------------------------------------------------------------------------- notebook 04

def gradcam_lesson(maps: dict[str, np.ndarray], lungs, lesions, *, groups=None, seed: int = 0,
                   n_boot: int = 1000, min_ratio: float = 3.0, min_pointing: float = 0.5) -> Lesson:
    """Does the finding class's map point at the lesion? `maps` must be of the *finding* class
    (films with a lesion, correctly classified). Verdict: Grad-CAM puts at least `min_ratio`
    times the lesion's share of the film on the lesion (interval above 1) and its peak falls in
    the lesion on at least `min_pointing` of the films; a smooth random map scores its area share.
    """
    from .explain import localisation

    loc = localisation(maps, lungs, lesions, seed=seed, groups=groups, n_boot=n_boot)
    g = loc.loc["gradcam"]
    effects = [effect("lesion energy / lesion area", g["lesion_energy_ratio"], g["lesion_energy_ratio_low"],
                      g["lesion_energy_ratio_high"], at_least=min_ratio, ci_above=1.0),
               effect("peak inside the lesion (pointing game)", g["pointing_game"], g["pointing_game_low"],
                      g["pointing_game_high"], at_least=min_pointing)]
    return Lesson(loc, {}, {}, "Grad-CAM of the finding class points at the lesion", effects)


def faithfulness_lesson(curves: Mapping[str, Curves], films=None, *, groups=None, seed: int = 0,
                        n_boot: int = 1000) -> Lesson:
    """Deleting what Grad-CAM highlights must lower the class score faster than deleting a smooth
    random region: the deletion AUC of the random map minus Grad-CAM's, with its patient
    interval above 0. `curves` are `cxrnb.explain.faithfulness`'s; `films` (a boolean mask)
    the films judged: notebook 04 passes those with a finding that the model called correctly,
    whose evidence (the lesion) deletion can remove; a normal film's evidence is an absence.
    The insertion gap is shown beside it, not judged: inserting sharp pixels into a blurred film
    makes a film unlike any training film, and the score can saturate for any map."""
    from .explain import faithfulness_gaps, faithfulness_table

    keep = slice(None) if films is None else np.asarray(films, bool)
    sub = {m: c.select(keep) for m, c in curves.items()}
    g = faithfulness_gaps(sub, groups=None if groups is None else np.asarray(groups)[keep], seed=seed, n_boot=n_boot)
    d, i = g.loc["deletion"], g.loc["insertion"]
    effects = [effect("deletion AUC, random minus Grad-CAM", d["estimate"], d["low"], d["high"],
                      at_least=0.0, ci_above=0.0),
               effect("insertion AUC, Grad-CAM minus random", i["estimate"], i["low"], i["high"])]
    return Lesson(faithfulness_table(sub), {}, {}, "Removing what Grad-CAM highlights changes the score faster "
                  "than removing a random smooth region", effects)


def sanity_lesson(model_check: pd.DataFrame, data_check: pd.DataFrame, *, threshold: float = 0.5) -> Lesson:
    """Adebayo et al. (2018): Grad-CAM's maps must change when the weights are randomised (the
    lowest rank correlation over the cascade's steps where the maps are defined,
    `explain.randomisation_check`'s verdict table: a blank map is never a change) and when the
    same architecture is trained on shuffled labels (`explain.data_randomisation_check`'s).
    Verdict: mean Spearman correlation with the trained model's maps at most `threshold` in both."""
    effects = [effect("Spearman, trained vs weights randomised (lowest over the cascade)",
                      model_check.loc["gradcam", "spearman_lowest"], at_most=threshold),
               effect("Spearman, trained vs trained on shuffled labels", data_check.loc["gradcam", "spearman"],
                      at_most=threshold)]
    table = pd.DataFrame({"weights randomised (lowest)": model_check["spearman_lowest"],
                          "all layers randomised": model_check["spearman_all_random"],
                          "labels shuffled": data_check["spearman"]})
    return Lesson(table, {}, {}, "Grad-CAM's maps depend on what the model learned", effects)


# --------------------------------------------------------------------------- notebook 05

def marker_lesson(m, *, min_drop: float = 0.30, min_energy: float = 0.20, max_control: float = 0.05) -> Lesson:
    """The marker lesson from `cxrnb.shortcut.marker_effect`'s result `m`: removing the marker drops
    the marker model's accuracy by at least `min_drop` (interval above 0), at least `min_energy` of
    its Grad-CAM energy falls on the marker box, and the control model moves by less than `max_control`."""
    d, e, c = m.drop["marker"], m.energy["marker"], m.drop["control"]
    effects = [effect("marker model: accuracy drop without the marker", d.estimate, d.low, d.high,
                      at_least=min_drop, ci_above=0.0),
               effect("marker model: Grad-CAM energy on the marker box", e.estimate, e.low, e.high, at_least=min_energy),
               effect("control model: accuracy change without the marker", c.estimate, c.low, c.high, below=max_control)]
    return Lesson(m.table(), {}, {}, "The marker model reads the marker, not the lungs", effects)


def collection_lesson(c, *, min_own: float = 0.5, max_other: float = 0.2) -> Lesson:
    """The collection lesson (DeGrave et al. 2021) from `cxrnb.shortcut.collection_effect`'s
    result `c`: the model calls the COVID collection's own normal films COVID in at least
    `min_own` of cases, the other collection's normals in at most `max_other`, difference above 0."""
    own, other, diff = c.called[c.positive_source], c.other, c.difference
    effects = [effect(f"normal films of the {c.positive_class} collection called {c.positive_class}",
                      own.estimate, own.low, own.high, at_least=min_own),
               effect(f"normal films of the other collection called {c.positive_class}",
                      other.estimate, other.low, other.high, at_most=max_other),
               effect("difference", diff.estimate, diff.low, diff.high, ci_above=0.0)]
    return Lesson(c.table(), {}, {}, f"The model learned the collection: it calls normal films of the "
                  f"{c.positive_class} collection {c.positive_class}", effects)
