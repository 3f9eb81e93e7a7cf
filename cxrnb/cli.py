"""The `cxrnb` command: the data steps of the notebooks, for the shell and for scripts.

    cxrnb synth OUT_DIR [--layout kaggle|covid-chestxray] [--n-patients N] [--classes ...]
                        [--size S] [--shortcut P] [--seed K]
    cxrnb index SOURCE ROOT --out index.csv [--report dropped.csv] [task options]
    cxrnb split index.csv --out split.csv [--val F --test F --seed K] [--official [--fix-leaks]]

Every output is checked before any work starts and written atomically; CSVs store `root`
relative to their own folder (see `cxrnb.index`).
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .index import check_output, write_index


def _synth(a: argparse.Namespace) -> int:
    from .synthetic import generate

    check_output(a.out_dir, "OUT_DIR", folder=True)

    m = generate(a.out_dir, layout=a.layout, n_patients=a.n_patients, classes=tuple(a.classes),
                 size=a.size, difficulty=a.difficulty, shortcut=a.shortcut, seed=a.seed,
                 progress=not a.quiet)
    print(f"wrote {len(m)} images of {m['patient_id'].nunique()} patients to {a.out_dir} "
          f"({a.layout} layout)")
    print(m["label"].value_counts().sort_index().to_string())
    return 0


def _index(a: argparse.Namespace) -> int:
    from . import validate

    check_output(a.out, "--out", example="index.csv")
    if a.report:
        check_output(a.report, "--report", example="dropped.csv")
    if a.cache:
        check_output(a.cache, "--cache", folder=True)
    task = {}
    if a.classes:
        task["classes"] = tuple(a.classes)
    if a.source == "covid-chestxray":
        if a.views is not None:
            task["views"] = None if a.views == ["all"] else tuple(a.views)
        if a.modality is not None:
            task["modality"] = None if a.modality == "all" else a.modality
    if a.source == "nih":
        task.pop("classes", None)
        task["finding"] = a.finding
        task["negative"] = a.negative
    res = validate.load_index(a.source, a.root, progress=not a.quiet, cache=a.cache, **task)
    if a.report:
        write_index(res.report, a.report)
    write_index(res.index, a.out)
    print(res.summary())
    print(f"index: {a.out}")
    if a.report:
        print(f"drop report: {a.report}")
    return 0 if len(res.index) else 1


def _split(a: argparse.Namespace) -> int:
    from .index import read_index
    from .splits import official_split, split_by_patient, split_counts

    check_output(a.out, "--out", example="split.csv")
    index = read_index(a.index)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        if a.official:
            out = official_split(index, val=a.val, seed=a.seed, fix_leaks=a.fix_leaks)
        else:
            out = split_by_patient(index, val=a.val, test=a.test, seed=a.seed)
    for w in caught:
        print(f"cxrnb split: warning: {w.message}", file=sys.stderr)
    write_index(out, a.out)
    with pd.option_context("display.width", 200):
        print(split_counts(out).to_string())
    print(f"split: {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrnb", description=__doc__.split("\n")[0])
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the embedded synthetic chest X-ray dataset")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--layout", default="kaggle", choices=["kaggle", "covid-chestxray"])
    s.add_argument("--n-patients", type=int, default=120)
    s.add_argument("--classes", nargs="+", default=["normal", "pneumonia", "covid", "effusion"])
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--difficulty", type=float, default=0.5)
    s.add_argument("--shortcut", type=float, default=0.0, help="marker/class correlation 0..1")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)

    i = sub.add_parser("index", help="read a source, validate every image, write the index CSV")
    i.add_argument("source", choices=["synthetic", "covid-chestxray", "kaggle-pneumonia", "nih", "folder"])
    i.add_argument("root", type=Path)
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--report", type=Path, help="CSV of dropped rows and reasons")
    i.add_argument("--classes", nargs="+", help="task classes, e.g. covid normal | normal bacteria virus")
    i.add_argument("--views", nargs="+", help="covid-chestxray views to keep ('all' for every view)")
    i.add_argument("--modality", help="covid-chestxray modality to keep ('all' for every modality)")
    i.add_argument("--finding", default="Effusion", help="nih: positive finding")
    i.add_argument("--negative", default="no finding", choices=["no finding", "rest"])
    i.add_argument("--cache", type=Path, help="folder to keep decoded 256x256 pixels for training")
    i.set_defaults(func=_index)

    t = sub.add_parser("split", help="patient-level train/val/test split of an index CSV")
    t.add_argument("index", type=Path)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--val", type=float, default=0.15)
    t.add_argument("--test", type=float, default=0.15)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--official", action="store_true",
                   help="keep the source's own split (kaggle_split) and carve val from train")
    t.add_argument("--fix-leaks", action="store_true",
                   help="with --official: move each patient found in two official splits into the "
                        "one holding most of its images")
    t.set_defaults(func=_split)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"cxrnb {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
