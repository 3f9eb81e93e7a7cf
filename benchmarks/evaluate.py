"""Seconds for the patient-level bootstrap of `cxrnb.evaluate`: vectorised vs a Python loop.

    python benchmarks/evaluate.py [--n 10000 --n-boot 2000 --repeats 3]
                                  [--out benchmarks/results/evaluate.json]

Times `bootstrap_ci` (accuracy, balanced accuracy, ROC AUC and the majority baseline, all
resamples at once) and the whole `evaluate` (adds the scikit-learn metrics) on synthetic
predictions: a binary task with 4 films per patient, the same with every film its own patient
(the most patients, the worst case), and a 3-class task (three one-vs-rest AUCs). Each is run
on 1 core (process pinned to one CPU, BLAS limited to 1 thread) and on 2 cores; the figure is
the median of `--repeats` runs. For scale, the textbook loop (one resample at a time, scikit-
learn's accuracy and roc_auc_score) is timed over a few resamples and extrapolated.
Prints a table and writes benchmarks/results/evaluate.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402
from sklearn.metrics import accuracy_score, roc_auc_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from cxrnb.evaluate import bootstrap_ci, evaluate  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)


def predictions(n: int, k: int, per_patient: int, seed: int = 0):
    """(y, proba, groups): labels shared within a patient, informative noisy probabilities."""
    rng = np.random.default_rng(seed)
    g = np.arange(n) // per_patient
    y = rng.integers(0, k, g.max() + 1)[g]
    logits = rng.normal(0, 1.0, (n, k)) + 1.2 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p, g


def loop_bootstrap(y, p, g, n_boot: int, seed: int = 0) -> None:
    """The textbook patient bootstrap: one resample at a time, scikit-learn per resample."""
    rng = np.random.default_rng(seed)
    pats = np.unique(g)
    rows = {q: np.flatnonzero(g == q) for q in pats}
    for _ in range(n_boot):
        idx = np.concatenate([rows[q] for q in rng.choice(pats, len(pats))])
        accuracy_score(y[idx], p[idx].argmax(1))
        if len(np.unique(y[idx])) > 1:
            roc_auc_score(y[idx], p[idx, 1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="predictions")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-boot", type=int, default=40, help="resamples timed for the Python loop")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "evaluate.json")
    args = ap.parse_args(argv)

    cases = [("binary, 4 films/patient", 2, 4), ("binary, 1 film/patient", 2, 1),
             ("3-class, 4 films/patient", 3, 4)]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    settings = [(1, {cores[0]} if cores else None)] + ([(2, set(cores[:2]))] if len(cores) >= 2 else [])
    rows = []
    for name, k, per in cases:
        y, p, g = predictions(args.n, k, per)
        for n_cores, cpus in settings:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)
            with threadpool_limits(n_cores):
                boot = median_seconds(lambda: bootstrap_ci(y, p, g, n_boot=args.n_boot, seed=0), args.repeats)
                full = median_seconds(lambda: evaluate(y, p, [str(i) for i in range(k)], groups=g,
                                                    n_boot=args.n_boot, seed=0), args.repeats)
            rows.append({"case": name, "predictions": args.n, "patients": int(g.max() + 1),
                         "resamples": args.n_boot, "cores": n_cores, "bootstrap_s": round(boot, 3),
                         "evaluate_s": round(full, 3)})
    if cores:
        os.sched_setaffinity(0, set(cores))

    y, p, g = predictions(args.n, 2, 4)
    if cores:
        os.sched_setaffinity(0, {cores[0]})
    with threadpool_limits(1):
        per = median_seconds(lambda: loop_bootstrap(y, p, g, args.loop_boot), args.repeats) / args.loop_boot
    if cores:
        os.sched_setaffinity(0, set(cores))
    vec = next(r["bootstrap_s"] for r in rows if r["case"] == cases[0][0] and r["cores"] == 1)
    loop = {"resamples_timed": args.loop_boot, "seconds_per_resample": round(per, 5),
            "extrapolated_s": round(per * args.n_boot, 2), "speedup_of_vectorised": round(per * args.n_boot / vec, 1)}

    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    print(f"\nPython loop (scikit-learn per resample, binary, 1 core): {per * 1000:.1f} ms per resample, "
          f"~{loop['extrapolated_s']} s for {args.n_boot}; vectorised is {loop['speedup_of_vectorised']}x faster")
    report = {"benchmark": "evaluate", "config": vars(args) | {"out": str(args.out)}, "rows": rows,
              "python_loop": loop, "target": "bootstrap of 10,000 predictions x 2,000 resamples < 1 s on 1 core",
              "environment": {"python": platform.python_version(), "numpy": np.__version__,
                              "scipy": scipy.__version__, "sklearn": sklearn.__version__,
                              "cpus": len(cores) or os.cpu_count(), "machine": platform.machine()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
