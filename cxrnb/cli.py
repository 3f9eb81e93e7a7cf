"""The `cxrnb` command: the data steps of the notebooks, for the shell and for scripts.

    cxrnb synth OUT_DIR [--layout kaggle-pneumonia|covid-chestxray|nih|rsna-pneumonia|dicom|chexpert|mimic-cxr-jpg] [--n-patients N] [--classes ...]
                        [--class-fractions normal=0.9,effusion=0.1] [--size S] [--shortcut P] [--seed K]
    cxrnb index SOURCE ROOT --out index.csv [--report dropped.csv] [task options]
    cxrnb split index.csv --out split.csv [--val F --test F --seed K] [--official [--fix-leaks]]
    cxrnb train split.csv --preset default --out RUN_DIR [--epochs N --image-size N ...]
    cxrnb evaluate RUN_DIR [--split other_split.csv]

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
from .sources import SOURCES
from .synthetic.write import LAYOUTS as SYNTH_LAYOUTS


def _class_fractions(text: str) -> dict[str, float]:
    """``normal=0.9,effusion=0.1`` -> {"normal": 0.9, "effusion": 0.1} (values checked by `generate`)."""
    out = {}
    for item in text.split(","):
        name, _, share = item.partition("=")
        try:
            out[name.strip()] = float(share)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected CLASS=SHARE[,CLASS=SHARE...], e.g. normal=0.9,effusion=0.1; "
                                             f"got {item!r}") from None
    return out


def _synth(a: argparse.Namespace) -> int:
    from .synthetic import generate

    check_output(a.out_dir, "OUT_DIR", folder=True)

    m = generate(a.out_dir, layout=a.layout, n_patients=a.n_patients,
                 classes=None if a.classes is None else tuple(a.classes), class_fractions=a.class_fractions,
                 size=a.size, difficulty=a.difficulty, shortcut=a.shortcut, seed=a.seed,
                 progress=not a.quiet)
    print(f"wrote {len(m)} images of {m['patient_id'].nunique()} patients to {a.out_dir} "
          f"({a.layout} layout)")
    print(m["label"].value_counts().sort_index().to_string())
    return 0


def _index(a: argparse.Namespace) -> int:
    from .validate import NoImagesError, load_index

    check_output(a.out, "--out", example="index.csv")
    if a.report:
        check_output(a.report, "--report", example="dropped.csv")
    if a.cache:
        check_output(a.cache, "--cache", folder=True)
    # Only the options given are passed: the reader rejects one its layout does not take.
    given = {"classes": a.classes and tuple(a.classes), "finding": a.finding, "negative": a.negative,
             "uncertain": a.uncertain, "labeler": a.labeler,
             "views": a.views and (None if a.views == ["all"] else tuple(a.views)),
             "modality": a.modality and (None if a.modality == "all" else a.modality)}
    task = {k: v for k, v in given.items() if getattr(a, k) is not None}
    try:
        res = load_index(a.source, a.root, progress=not a.quiet, cache=a.cache, **task)
    except NoImagesError as e:
        if a.report:
            write_index(e.result.report, a.report)
        raise ValueError(f"{e}" + (f"; drop report: {a.report}" if a.report else "")) from None
    if a.report:
        write_index(res.report, a.report)
    write_index(res.index, a.out)
    print(res.summary())
    print(f"index: {a.out}")
    if a.report:
        print(f"drop report: {a.report}")
    return 0


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


def _train(a: argparse.Namespace) -> int:
    from .index import read_index
    from .train import TrainConfig, train

    changes = {k: v for k, v in dict(epochs=a.epochs, image_size=a.image_size, batch_size=a.batch_size,
                                     learning_rate=a.learning_rate, augment=a.augment, seed=a.seed,
                                     weights=a.weights).items() if v is not None}
    if a.weights == "none":
        changes["weights"] = None
    config = TrainConfig.preset(a.preset, **changes)
    result = train(config, read_index(a.split), a.out, cache=a.cache, overwrite=a.overwrite,
                   progress=not a.quiet)
    print(result.summary())
    print(f"run folder: {a.out}")
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from .train import evaluate_run

    print(evaluate_run(a.run_dir, split=a.split, n_boot=a.n_boot, progress=not a.quiet))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrnb", description=__doc__.split("\n")[0])
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write the embedded synthetic chest X-ray dataset")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--layout", default="kaggle-pneumonia", choices=list(SYNTH_LAYOUTS))
    s.add_argument("--n-patients", type=int, default=120)
    s.add_argument("--classes", nargs="+", help="default: normal pneumonia covid effusion, or those of "
                   "--class-fractions")
    s.add_argument("--class-fractions", type=_class_fractions, metavar="CLASS=SHARE,...",
                   help="share of patients per class, summing to 1, e.g. normal=0.9,effusion=0.1 "
                   "(default: balanced)")
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--difficulty", type=float, default=0.5)
    s.add_argument("--shortcut", type=float, default=0.0, help="marker/class correlation 0..1")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)

    i = sub.add_parser("index", help="read a source, validate every image, write the index CSV")
    i.add_argument("source", choices=list(SOURCES))
    i.add_argument("root", type=Path)
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--report", type=Path, help="CSV of dropped rows and reasons")
    i.add_argument("--classes", nargs="+", help="task classes, e.g. covid normal | normal bacteria virus")
    i.add_argument("--views", nargs="+", help="views to keep (covid-chestxray, nih, rsna-pneumonia, dicom, chexpert, "
                   "mimic-cxr-jpg; 'all' for every view)")
    i.add_argument("--modality", help="covid-chestxray modality to keep ('all' for every modality)")
    i.add_argument("--finding", help="nih: positive finding (default Effusion); chexpert / mimic-cxr-jpg: "
                   "a CheXpert observation (default 'Pleural Effusion')")
    i.add_argument("--negative", choices=["no finding", "rest"],
                   help="nih / chexpert / mimic-cxr-jpg: negative class (default 'no finding')")
    i.add_argument("--uncertain", help="chexpert / mimic-cxr-jpg: what a -1 (uncertain) label becomes: "
                   "ignore (dropped and reported, default), positive or negative")
    i.add_argument("--labeler", choices=["chexpert", "negbio"], help="mimic-cxr-jpg: label file (default chexpert)")
    i.add_argument("--cache", type=Path, help="folder keeping each decoded image once, reused by training at any size")
    i.set_defaults(func=_index)

    t = sub.add_parser("split", help="patient-level train/val/test split of an index CSV")
    t.add_argument("index", type=Path)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--val", type=float, default=0.15)
    t.add_argument("--test", type=float, default=0.15)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--official", action="store_true",
                   help="keep the source's own split (kaggle_split, or official_split of chexpert / "
                        "mimic-cxr-jpg) and carve val from train")
    t.add_argument("--fix-leaks", action="store_true",
                   help="with --official: move each patient found in two official splits into the "
                        "one holding most of its images")
    t.set_defaults(func=_split)

    r = sub.add_parser("train", help="train a preset on a split CSV; writes a run folder")
    r.add_argument("split", type=Path, help="split CSV (cxrnb split)")
    r.add_argument("--preset", default="default", help="default, article001 .. article004")
    r.add_argument("--out", type=Path, required=True, help="run folder to create")
    r.add_argument("--epochs", type=int)
    r.add_argument("--image-size", type=int)
    r.add_argument("--batch-size", type=int)
    r.add_argument("--learning-rate", type=float)
    r.add_argument("--augment", help="augmentation preset (none, default, article002 ..)")
    r.add_argument("--weights", help="'imagenet', a weights file, or 'none' (backbone presets)")
    r.add_argument("--seed", type=int)
    r.add_argument("--cache", type=Path, help="image cache folder (as given to cxrnb index)")
    r.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    r.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="re-evaluate a run folder (or its model on another split CSV)")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--split", type=Path, help="evaluate on this split CSV instead of the run's own")
    e.add_argument("--n-boot", type=int, default=2000, help="patient bootstrap resamples for the CIs")
    e.set_defaults(func=_evaluate)
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
