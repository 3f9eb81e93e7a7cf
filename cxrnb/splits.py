"""Patient-level train/val/test splits, and the check that no patient crosses them.

Several images per patient are the rule in chest X-ray sets. A split by image puts the same
patient (same ribs, same heart, same burnt-in letters) in train and test, and the test score
then measures recognition of patients rather than of disease. Splits here are grouped by
``patient_group`` (patients merged when they share a file or identical pixels, see
`cxrnb.validate`) or ``patient_id``, stratified by label, and seeded.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from .index import SPLITS, check_index


class LeakageError(AssertionError):
    """Raised when a patient (or an exact-duplicate image) appears in more than one split."""


def _group_col(index: pd.DataFrame) -> str:
    return "patient_group" if "patient_group" in index else "patient_id"


def _hold_out(labels: np.ndarray, groups: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Boolean mask of a held-out part of about `frac`, grouped and stratified.

    One fold of a seeded `StratifiedGroupKFold` with round(1/frac) folds; with too few groups
    (or images in the largest class) for that many folds, fewer folds, so a larger share.
    """
    n_groups = len(np.unique(groups))
    largest_class = int(np.unique(labels, return_counts=True)[1].max()) if len(labels) else 0
    k = int(min(max(2, round(1 / frac)), n_groups, largest_class))
    if k < 2:
        raise ValueError(f"cannot split {n_groups} patient(s): need at least 2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        _, held = next(cv.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def split_by_patient(
    index: pd.DataFrame,
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a copy of `index` with a ``split`` column (train/val/test) grouped by patient.

    Fractions are of images, approximate (patients are indivisible; the fold count is
    round(1 / fraction)), and stratified by ``label``. `val=0` or `test=0` skips that split.
    """
    check_index(index, where="split_by_patient")
    for name, f in (("val", val), ("test", test)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} fraction must be in [0, 1), got {f}")
    if val + test >= 1:
        raise ValueError(f"val + test must leave images for training, got {val} + {test}")
    out = index.copy()
    groups = out[_group_col(out)].astype(str).to_numpy()
    labels = out["label"].astype(str).to_numpy()
    split = np.full(len(out), "train", dtype=object)
    if test > 0:
        held = _hold_out(labels, groups, test, seed)
        split[held] = "test"
    if val > 0:
        rest = split == "train"
        held = _hold_out(labels[rest], groups[rest], val / (1 - test), seed + 1)
        split[np.flatnonzero(rest)[held]] = "val"
    out["split"] = split
    check_no_leakage(out)
    return out


def official_split(index: pd.DataFrame, *, column: str = "kaggle_split", val: float = 0.1,
                   seed: int = 0) -> pd.DataFrame:
    """Keep a source's own split (Kaggle's folders); carve a patient-level val out of train.

    Kaggle's official val has 16 images (8 per class): too few to choose anything on. When
    `val` > 0 the official val images move to train and a new val of about `val` of the
    training images is drawn by patient. No leakage check is made here: call
    `check_no_leakage` to see whether the official split keeps patients apart.
    """
    if column not in index:
        raise ValueError(f"index has no {column!r} column: this source has no official split")
    out = index.copy()
    out["split"] = out[column].astype(str)
    if val > 0:
        out.loc[out["split"] == "val", "split"] = "train"
        train = out[out["split"] == "train"]
        held = _hold_out(train["label"].astype(str).to_numpy(),
                         train[_group_col(out)].astype(str).to_numpy(), val, seed)
        out.loc[train.index[held], "split"] = "val"
    return out


def leaking_patients(index: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """Patients (or groups) found in more than one split, with the splits they are in."""
    col = column or _group_col(index)
    if "split" not in index:
        raise ValueError("index has no 'split' column: split it first")
    per = index.groupby(col)["split"].agg(lambda s: sorted(set(s)))
    per = per[per.map(len) > 1]
    return pd.DataFrame({col: per.index, "splits": per.map(", ".join).values,
                         "images": index[index[col].isin(per.index)].groupby(col).size()
                         .reindex(per.index).values})


def check_no_leakage(index: pd.DataFrame) -> None:
    """Raise `LeakageError` naming the patients, or identical images, found in two splits."""
    problems = []
    cols = ["patient_id"]
    if "patient_group" in index and (index["patient_group"] != index["patient_id"]).any():
        cols.append("patient_group")
    for col in cols:
        leaks = leaking_patients(index, col)
        if len(leaks):
            names = ", ".join(f"{v} ({sp})" for v, sp in zip(leaks[col].head(10), leaks["splits"].head(10)))
            more = f" and {len(leaks) - 10} more" if len(leaks) > 10 else ""
            problems.append(f"{len(leaks)} {col} value(s) in more than one split: {names}{more}")
    if "pixel_hash" in index:
        leaks = leaking_patients(index, "pixel_hash")
        if len(leaks):
            problems.append(f"{len(leaks)} identical image(s) in more than one split "
                            f"(pixel_hash {', '.join(leaks['pixel_hash'].head(5))})")
    if problems:
        raise LeakageError("patient leakage across splits: " + "; ".join(problems))


def split_counts(index: pd.DataFrame) -> pd.DataFrame:
    """Images per split and label, with patients per split: the table the CLI prints."""
    order = [s for s in SPLITS if s in set(index["split"])]
    t = pd.crosstab(index["split"], index["label"]).reindex(order)
    t["images"] = t.sum(axis=1)
    t["patients"] = index.groupby("split")["patient_id"].nunique().reindex(order)
    t["multi-image patients"] = (index.groupby(["split", "patient_id"]).size() > 1).groupby("split").sum().reindex(order)
    t.columns.name = None
    return t


def split_by_image(index: pd.DataFrame, *, val: float = 0.15, test: float = 0.15, seed: int = 0) -> pd.DataFrame:
    """The wrong way, for demonstration only: a random split of images, ignoring patients.

    Notebooks use it to count how many patients such a split puts on both sides.
    """
    rng = np.random.default_rng(seed)
    u = rng.random(len(index))
    out = index.copy()
    out["split"] = np.where(u < test, "test", np.where(u < test + val, "val", "train"))
    return out
