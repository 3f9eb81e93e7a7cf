"""Reference articles 001-004 reproduced on the real subsets, honestly: writes docs/reproduction.md.

    python benchmarks/reproduce.py DATA [--out docs/reproduction.md] [--runs benchmarks/results/reproduce]
                                   [--epochs N] [--articles 001,004] [--n-boot 2000] [--render-only]

DATA is a folder holding the three small real subsets under these names:
``actualmed-covid/`` (covid-chestxray layout), ``kaggle-pneumonia/`` and ``nih-chestxray14/``.

For each article: its task and claimed number (as printed in the article), the test-set size it
states, and our result with the article's training preset (`cxrnb.train.TrainConfig.preset`) on
the matching subset, split by patient (`split_by_patient(val=0.15, test=0.15, seed=0)`): test
accuracy and ROC AUC (macro one-vs-rest for 3 classes) with 95 % patient-bootstrap intervals,
the majority-class baseline, macro F1, test images and patients, epochs run and wall time.
Where an article mixed collections (001, 004: COVID-19 films from one, normal and bacterial
films from another) the subsets are combined the same way, so the source predicts the label
here as it did there. Article 004's VGG16 needs ImageNet weights, which cannot be downloaded
offline: it runs with ``weights=None``, a different experiment, and the table says so.

``--epochs N`` caps every preset's epochs (a quick look); the document records any cap. Run
folders go under ``--runs``; their numbers are also kept in ``results.json`` there, so
``--render-only`` rewrites the document from them without training again. The document is
written atomically: an interrupted run leaves the previous one.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import pandas as pd  # noqa: E402

#: The subsets DATA must hold: name used below -> folder name under DATA.
SUBSETS = {"actualmed": "actualmed-covid", "kaggle": "kaggle-pneumonia", "nih": "nih-chestxray14"}


@dataclass(frozen=True)
class Article:
    """One reference article: what it did and claimed, and how we rerun it."""

    id: str
    task: str
    claim: str
    claim_value: float | None  # the claimed accuracy-like figure, for comparison with our interval
    test_size: int | None  # the test-set size the article states
    test_size_note: str
    preset: str
    data: str  # how our data is assembled (one sentence)
    load: Callable[[Path, Any], pd.DataFrame] = field(repr=False)
    changes: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""  # set when our run is a different experiment from the article's
    caveat: str = ""  # what, besides the interval, separates our number from the article's


def _covid(data: Path, cache) -> pd.DataFrame:
    from cxrnb.validate import load_index

    idx = load_index("covid-chestxray", data / SUBSETS["actualmed"], classes=["covid", "normal"],
                     cache=cache, progress=False).index
    return idx[idx["label"] == "covid"]


def _kaggle(data: Path, cache, classes: Sequence[str], keep: Sequence[str]) -> pd.DataFrame:
    from cxrnb.validate import load_index

    idx = load_index("kaggle-pneumonia", data / SUBSETS["kaggle"], classes=list(classes), cache=cache,
                     progress=False).index
    return idx[idx["label"].isin(keep)]


def load_001(data: Path, cache) -> pd.DataFrame:
    """COVID-19 films from Actualmed, normal films from Kaggle (two collections, as in article 001)."""
    from cxrnb.validate import combine

    return combine(_covid(data, cache), _kaggle(data, cache, ["normal", "pneumonia"], ["normal"]))


def load_002(data: Path, cache) -> pd.DataFrame:
    """Kaggle normal vs pneumonia (bacterial and viral together)."""
    return _kaggle(data, cache, ["normal", "pneumonia"], ["normal", "pneumonia"])


def load_003(data: Path, cache) -> pd.DataFrame:
    """NIH films whose labels include Effusion vs those labelled No Finding."""
    from cxrnb.validate import load_index

    return load_index("nih", data / SUBSETS["nih"], finding="Effusion", cache=cache, progress=False).index


def load_004(data: Path, cache) -> pd.DataFrame:
    """COVID-19 from Actualmed, normal and bacterial pneumonia from Kaggle (as in article 004)."""
    from cxrnb.validate import combine

    return combine(_covid(data, cache),
                   _kaggle(data, cache, ["normal", "bacteria", "virus"], ["normal", "bacteria"]))


SOURCE_CAVEAT = ("Every COVID-19 film comes from Actualmed and every other film from the Kaggle "
                 "paediatric set, so the collection alone predicts COVID-19 (adult vs child, other "
                 "scanners and file handling): a high score here can be the source, not the disease, "
                 "as it could in the article.")

ARTICLES = (
    Article("001", "COVID-19 vs normal", "81 % accuracy", 0.81, 550,
            "550 of 3,500 images (70/15/15 split, half COVID-19)", "article001",
            "Actualmed COVID-19 films + Kaggle normal films", load_001,
            caveat="The article's set was balanced (half COVID-19); ours is about 1 : 8, so its 81 % "
                   "compares with a 50 % baseline and ours with the majority baseline in the table. "
                   + SOURCE_CAVEAT),
    Article("002", "pneumonia vs normal", "95 % accuracy after 80 epochs (experiment V)", 0.95, 624,
            "624 images (Kaggle's official test folder)", "article002",
            "Kaggle normal vs pneumonia (bacterial + viral)", load_002,
            caveat="The article scored Kaggle's official test folder, 170 of whose 202 pneumonia person "
                   "numbers recur in its train folder (whether they are the same children is not "
                   "documented); ours is split by patient. Half of our "
                   "subset (Kaggle's test folder) was resized to 224 x 224 without keeping the aspect "
                   "ratio by the repository we took it from, in both classes."),
    Article("003", "effusion vs no finding", "no number given", None, None,
            "not stated", "article003", "NIH films with Effusion (alone or with other findings) "
            "vs No Finding", load_003,
            caveat="Without a claim there is nothing to confirm: the row says what the recipe does on "
                   "a real 1 : 2 sample. The article's 1 : 9 ratio would make the majority baseline "
                   "0.90, which is why it warns that accuracy means little."),
    Article("004", "normal / COVID-19 / bacterial pneumonia", "97 % macro F1 (accuracy 0.97)", 0.97, 180,
            "180 images, 60 per class", "article004",
            "Actualmed COVID-19 + Kaggle normal and bacterial films", load_004,
            changes={"weights": None, "model_options": {"trainable": "all"}},
            label="different experiment: VGG16 from random weights (no ImageNet offline), every layer trained",
            caveat="The article fine-tuned ImageNet weights; without them a VGG16 has to learn from a few "
                   "hundred films from scratch, so every layer trains (the preset's frozen blocks would "
                   "stay random). Its classes were balanced (179 each); ours are not. " + SOURCE_CAVEAT),
)


# --------------------------------------------------------------------------- running

def check_data(data: Path) -> None:
    """Fail before any training when DATA lacks a subset, naming the folder that is missing."""
    missing = [name for name in SUBSETS.values() if not (data / name).is_dir()]
    if missing:
        raise SystemExit(f"error: {data} has no {', '.join(missing)} folder(s): DATA must hold the real "
                         f"subsets {', '.join(SUBSETS.values())}")


def run_article(article: Article, data: Path, runs: Path, cache, *, epochs_cap: int | None,
                n_boot: int) -> dict[str, Any]:
    """Train the article's preset on its patient-level split; the numbers of one table row."""
    from cxrnb.splits import split_by_patient
    from cxrnb.train import TrainConfig, train

    t0 = time.perf_counter()
    index = article.load(data, cache)
    split = split_by_patient(index, val=0.15, test=0.15, seed=0)
    config = TrainConfig.preset(article.preset, **article.changes)
    preset_epochs = config.epochs
    if epochs_cap is not None and epochs_cap < config.epochs:
        config = config.replace(epochs=epochs_cap)
    result = train(config, split, runs / f"article{article.id}", overwrite=True, cache=cache, n_boot=n_boot)
    test = result.metrics["test"]
    return {
        "id": article.id, "preset": article.preset, "changes": dict(article.changes),
        "classes": result.classes,
        "counts": {c: int(v) for c, v in index["label"].value_counts().sort_index().items()},
        "test_counts": {c: int(v) for c, v in split.loc[split["split"] == "test", "label"].value_counts()
                        .sort_index().items()},
        "epochs": config.epochs, "preset_epochs": preset_epochs, "epochs_run": result.metrics["epochs_run"],
        "best_epoch": result.metrics["best_epoch"], "fit_seconds": round(result.seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "test": {k: test[k] for k in ("n_images", "n_patients", "accuracy", "auc", "majority_baseline",
                                      "majority_class", "macro_f1", "ci", "classes", "confusion")},
    }


def environment() -> dict[str, Any]:
    """Versions and machine, for the document."""
    import keras
    import numpy
    import scipy
    import sklearn
    import tensorflow as tf

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "pandas": pd.__version__, "scikit-learn": sklearn.__version__,
            "scipy": scipy.__version__, "platform": platform.platform(), "processor": platform.machine(),
            "cpus": cpus, "gpus": len(tf.config.list_physical_devices("GPU"))}


# --------------------------------------------------------------------------- the document

def _ci(iv: Mapping[str, Any], digits: int = 2) -> str:
    if iv["estimate"] is None:
        return "n/a"
    if iv["low"] is None:
        return f"{iv['estimate']:.{digits}f}"
    return f"{iv['estimate']:.{digits}f} [{iv['low']:.{digits}f}, {iv['high']:.{digits}f}]"


def claim_interval(value: float, n: int) -> tuple[float, float]:
    """95 % Wilson interval of a claimed proportion on `n` test images, as if images were independent."""
    from scipy.stats import binomtest

    ci = binomtest(round(value * n), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def verdict(article: Article, row: Mapping[str, Any]) -> str:
    """A short honest paragraph: what our interval says about the article's claim."""
    t = row["test"]
    acc, auc = t["ci"]["accuracy"], t["ci"]["auc"]
    n, p = t["n_images"], t["n_patients"]
    smallest = min(row["test_counts"].values())
    counts = ", ".join(f"{c} {v}" for c, v in row["test_counts"].items())
    parts = [f"Our test set has {n} images of {p} patients ({counts}); "
             f"accuracy {_ci(acc)} against a majority baseline of {t['majority_baseline']:.2f}, AUC {_ci(auc)}."]
    if article.claim_value is not None and acc["low"] is not None:
        c = article.claim_value
        width = acc["high"] - acc["low"]
        if c > acc["high"]:
            rel = f"the claimed {c:.2f} lies above our whole interval: this recipe on this sample does not reach it"
        elif c < acc["low"]:
            given_away = (", which is no evidence of skill where the collection gives the label away "
                          "(as the last sentences say)") if SOURCE_CAVEAT in article.caveat else ""
            rel = (f"the claimed {c:.2f} lies below our whole interval: here the recipe scores higher than "
                   f"the article claims{given_away}")
        else:
            rel = (f"the claimed {c:.2f} lies inside our interval, {width:.2f} wide: our sample can neither "
                   f"confirm nor refute it")
        lo, hi = claim_interval(c, article.test_size)
        parts.append(f"{rel[0].upper()}{rel[1:]}. Even the article's own {article.test_size} test images "
                     f"pin its figure down only to about [{lo:.2f}, {hi:.2f}] (Wilson, images treated as "
                     f"independent; it does not say its patients were kept apart, and if they were not, "
                     f"the honest interval is wider and the figure itself optimistic).")
    if acc["low"] is not None and acc["high"] - acc["low"] < 1e-9:
        k = round(acc["estimate"] * n)
        lo, hi = claim_interval(k / n, n)
        parts.append(f"An interval of zero width means every bootstrap resample scored the same ({k} of {n} "
                     f"right), not that the score is certain: a resample cannot show a mistake the test set "
                     f"never made. The Wilson interval for {k} of {n} is [{lo:.2f}, {hi:.2f}], and fewer patients "
                     f"than images make even that too narrow.")
    base = t["majority_baseline"]
    if acc["low"] is not None and acc["low"] <= base:
        parts.append(f"Our accuracy interval reaches down to the majority baseline: on accuracy alone, this "
                     f"model is not distinguishable from always answering \"{t['majority_class']}\".")
    if auc["low"] is not None:
        parts.append("Its AUC interval includes 0.5: on this test set the model has shown no skill at ranking "
                     "the classes either." if auc["low"] <= 0.5 else
                     "Its AUC interval lies above 0.5 (chance): it ranks the classes better than chance, "
                     "whatever a threshold makes of that.")
    if "confusion" in t:
        found = [(c, r[i], sum(r)) for i, (c, r) in enumerate(zip(t["classes"], t["confusion"]))]
        never = [c for i, c in enumerate(t["classes"]) if not any(r[i] for r in t["confusion"])]
        parts.append("Per class it finds " + ", ".join(f"{c} {k} of {m}" for c, k, m in found)
                     + f" (macro F1 {t['macro_f1']:.2f})"
                     + (f"; it never predicts {' or '.join(never)}, which accuracy hides." if never else "."))
    if smallest < 10:
        parts.append(f"With {smallest} test images in the smallest class, one image more or less right moves "
                     f"that class's recall by {1 / smallest:.2f}.")
    if article.caveat:
        parts.append(article.caveat)
    return " ".join(parts)


def render(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """The Markdown document."""
    by_id = {a.id: a for a in ARTICLES}
    env = meta["environment"]
    capped = [r for r in rows if r["epochs"] < r["preset_epochs"]]
    lines = [
        "# The reference articles reproduced",
        "",
        "Generated by `benchmarks/reproduce.py`; do not edit by hand. Each row is one reference article "
        "(see the README's \"Reference articles\"): its task and claimed number, the test-set size it "
        "states, and our result with that article's training preset (`cxrnb.train.TrainConfig.preset`) "
        "on the matching small real subset, split by patient (`split_by_patient(val=0.15, test=0.15, "
        "seed=0)`). Intervals are 95 % bootstrap intervals that resample patients "
        f"({meta['n_boot']} resamples); AUC is macro one-vs-rest for 3 classes; accuracy and F1 use the "
        "most probable class. Majority baseline: always predicting the training split's commonest class.",
        "",
        "| article | task | claimed | its test set | our data, preset | test images / patients "
        "| accuracy [95 % CI] | majority baseline | AUC [95 % CI] | macro F1 | epochs run / set | train time |",
        "| --- | --- | --- | --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        a, t = by_id[r["id"]], r["test"]
        preset = f"`{a.preset}`" + (f" with {', '.join(f'{k}={v!r}' for k, v in r['changes'].items())}"
                                    if r["changes"] else "")
        label = f" **({a.label})**" if a.label else ""
        epochs = f"{r['epochs_run']} / {r['epochs']}" + (f" (capped from {r['preset_epochs']})"
                                                          if r["epochs"] < r["preset_epochs"] else "")
        lines.append(
            f"| {a.id} | {a.task} | {a.claim} | {a.test_size_note} | {a.data}; {preset}{label} "
            f"| {t['n_images']} / {t['n_patients']} | {_ci(t['ci']['accuracy'])} | {t['majority_baseline']:.2f} "
            f"| {_ci(t['ci']['auc'])} | {t['macro_f1']:.2f} | {epochs} | {r['fit_seconds'] / 60:.1f} min |")
    lines += ["", "Train time is `model.fit` alone; with loading, prediction and the bootstrap, the rows took "
              + ", ".join(f"{r['id']}: {r['total_seconds'] / 60:.1f} min" for r in rows) + ".", ""]
    lines += ["## What the intervals mean for each claim", ""]
    for r in rows:
        a = by_id[r["id"]]
        lines += [f"**Article {a.id}** ({a.task}; claim: {a.claim}). {verdict(a, r)}", ""]
    lines += [
        "## What this is and is not",
        "",
        "The subsets are small real samples (a few hundred films; see each folder's `SOURCE.md`), not the "
        "articles' datasets, and none of the articles says its split kept patients apart. So no row can "
        "confirm or refute an article: the rows show how much (how little) a test set this size can "
        "say, and what the same recipe does when patients are kept apart. An interval that contains "
        "the claim means \"not ruled out\", not \"reproduced\". Scores are on the most probable "
        "class; the run folders' `metrics.json` (under `--runs`) also hold scores at a threshold chosen on val.",
        "",
        "## How it was made",
        "",
        f"- Command: `{meta['command']}` ({meta['date']}), DATA being the folder that holds "
        f"{', '.join(f'`{n}/`' for n in SUBSETS.values())}.",
        "- Epochs: " + ("every preset's own epoch count (early stopping, where a preset has it, may stop sooner)."
                        if not capped else
                        "capped with `--epochs`: " + ", ".join(f"article {r['id']} {r['epochs']} of "
                                                                f"{r['preset_epochs']}" for r in capped)
                        + (f". Why: {meta['cap_reason']}" if meta.get("cap_reason") else "") + "."),
        f"- Versions: Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"NumPy {env['numpy']}, pandas {env['pandas']}, scikit-learn {env['scikit-learn']}, SciPy {env['scipy']}.",
        f"- Machine: {env['platform']}, {env['cpus']} CPU cores, {env['gpus']} GPU; the cores were shared with "
        f"other jobs and loaded (load average {meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at "
        "the end), so the times are upper bounds. Seeded (seed 0) and deterministic on CPU: the same "
        "command gives the same numbers, the times aside.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="folder holding " + ", ".join(SUBSETS.values()))
    ap.add_argument("--out", type=Path, default=HERE.parent / "docs" / "reproduction.md")
    ap.add_argument("--runs", type=Path, default=HERE / "results" / "reproduce", help="run folders and results.json")
    ap.add_argument("--epochs", type=int, default=None, help="cap every preset's epochs (quick look)")
    ap.add_argument("--cap-reason", default="", help="why epochs were capped, for the document")
    ap.add_argument("--articles", default=",".join(a.id for a in ARTICLES), help="comma-separated ids")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--render-only", action="store_true", help="rewrite the document from results.json")
    args = ap.parse_args(argv)
    ids = [s.strip() for s in args.articles.split(",") if s.strip()]
    unknown = sorted(set(ids) - {a.id for a in ARTICLES})
    if unknown or not ids:
        ap.error(f"--articles: unknown id(s) {unknown}; choose from {[a.id for a in ARTICLES]}")
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs must be a positive integer, got {args.epochs}")
    from cxrnb.train import write_text

    results_json = args.runs / "results.json"
    if args.render_only:
        if not results_json.is_file():
            ap.error(f"--render-only: {results_json} does not exist; run without --render-only first")
        saved = json.loads(results_json.read_text())
        rows, meta = [r for r in saved["rows"] if r["id"] in ids], saved["meta"]
    else:
        check_data(args.data)
        from cxrnb.images import ImageCache

        args.runs.mkdir(parents=True, exist_ok=True)
        cache = ImageCache(args.runs / "cache")
        load_start = os.getloadavg()[0]
        rows = []
        for a in (a for a in ARTICLES if a.id in ids):
            print(f"article {a.id}: {a.task} ({a.preset}) ...", flush=True)
            rows.append(run_article(a, args.data, args.runs, cache, epochs_cap=args.epochs, n_boot=args.n_boot))
            t = rows[-1]["test"]
            print(f"  accuracy {_ci(t['ci']['accuracy'])} (baseline {t['majority_baseline']:.2f}), "
                  f"AUC {_ci(t['ci']['auc'])}, {rows[-1]['epochs_run']} epochs, "
                  f"{rows[-1]['total_seconds'] / 60:.1f} min", flush=True)
        command = ["python", "benchmarks/reproduce.py", "DATA"]  # DATA: a folder outside the repository
        command += [f"--articles {args.articles}"] if set(ids) != {a.id for a in ARTICLES} else []
        command += [f"--epochs {args.epochs}"] if args.epochs is not None else []
        command += [f"--n-boot {args.n_boot}"] if args.n_boot != 2000 else []
        meta = {"command": " ".join(command), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                "n_boot": args.n_boot, "load_start": load_start, "load_end": os.getloadavg()[0],
                "cap_reason": args.cap_reason, "environment": environment()}
        write_text(results_json, json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, render(rows, meta))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
