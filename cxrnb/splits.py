"""Patient-level train/val/test splits, and the check that no patient crosses them.

Several images per patient are the rule in chest X-ray sets. A split by image puts the same
patient (same ribs, same heart, same burnt-in letters) in train and test, and the test score
then measures recognition of patients rather than of disease. Splits here are grouped by
``patient_group`` (patients merged when they share a file or identical pixels, see
`patient_groups`) or ``patient_id``, stratified by label, and seeded.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .index import SPLITS, check_index


class LeakageError(AssertionError):
    """Raised when a patient (or an exact-duplicate image) appears in more than one split."""


#: Columns a source's own split can be in: Kaggle's folders, the official CSVs of CheXpert
#: (train.csv / valid.csv) and MIMIC-CXR-JPG (-split.csv).
OFFICIAL_COLUMNS = ("kaggle_split", "official_split")


def official_column(index: pd.DataFrame) -> str | None:
    """The column holding the source's own split (see `OFFICIAL_COLUMNS`), or None when it has none."""
    return next((c for c in OFFICIAL_COLUMNS if c in index and index[c].notna().any()), None)


def group_column(index: pd.DataFrame) -> str:
    """The column that names a row's patient for splitting and resampling: ``patient_group``
    (patients joined by shared files or pixels) when the index has it, else ``patient_id``."""
    return "patient_group" if "patient_group" in index else "patient_id"


def patient_groups(index: pd.DataFrame, extra_links: Sequence[tuple[str, str]] = ()) -> pd.Series:
    """A group id per row joining patients that share identical pixels (or given links).

    Patient ids are nodes of a graph whose edges are the `extra_links` (e.g. two ids listing
    the same file) and shared ``pixel_hash`` values; a group is a connected component, named
    by its smallest patient id. A split by group can then never put the same pixels in two
    splits, however long the chain of ids joining them.
    """
    pids = index["patient_id"].astype(str)
    names, codes = np.unique(np.concatenate([pids.to_numpy(), np.asarray(extra_links, dtype=str).ravel()]),
                             return_inverse=True)
    codes = codes.ravel()
    rows, links = codes[:len(pids)], codes[len(pids):].reshape(-1, 2)
    edges = [links]
    if "pixel_hash" in index:  # join every hashed row to the first row with the same pixels
        hashed = index["pixel_hash"].notna().to_numpy()
        first = pd.Series(rows[hashed]).groupby(index["pixel_hash"].to_numpy()[hashed]).transform("first")
        edges.append(np.column_stack([rows[hashed], first.to_numpy()]))
    e = np.concatenate(edges).astype(int)
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(names), len(names)))
    n_comp, comp = connected_components(graph, directed=False)
    first = np.full(n_comp, len(names))
    np.minimum.at(first, comp, np.arange(len(names)))  # names are sorted: a component's first is its min
    return pd.Series(names[first[comp]][rows], index=index.index, name="patient_group")


def _assign(labels: np.ndarray, groups: np.ndarray, fracs: dict[str, float], seed: int,
            where: str) -> np.ndarray:
    """Split name per row: whole groups, image counts close to `fracs`, stratified by label.

    A seeded greedy assignment. Groups are shuffled, then taken largest first, and each goes to
    the split where it most lowers a chi-square distance between the counts so far and the
    targets (images per split, and images per split and label). Small groups come last and
    fill the remaining gaps, so each split ends within about one group's worth of its target.
    scikit-learn's group splitters cannot do this: their sizes are whole folds or counts of
    groups, not of images. Warns when a split misses its target by more than a typical group,
    naming the largest groups (a patient with a large share of the images cannot be divided).
    """
    names = [n for n, f in fracs.items() if f > 0]
    uniq_g, g_idx = np.unique(groups, return_inverse=True)
    if len(uniq_g) < len(names):
        raise ValueError(f"{where}: cannot split {len(uniq_g)} patient group(s) into {', '.join(names)}: "
                         f"need at least {len(names)} (one per split); set val=0 or test=0 for fewer splits")
    uniq_l, l_idx = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(uniq_g), len(uniq_l)))
    np.add.at(counts, (g_idx, l_idx), 1)
    share = np.array([fracs[n] for n in names])[:, None]
    target = share * counts.sum(0)  # per split and label
    total_target = target.sum(1)
    got = np.zeros_like(target)
    where_to = np.empty(len(uniq_g), dtype=int)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq_g))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]

    def chi2(c: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.where(t > 0, (c - t) ** 2 / np.maximum(t, 1e-12), c ** 2)

    for g in order:
        c = counts[g]
        cost = (chi2(got + c, target) - chi2(got, target)).sum(1) \
            + chi2(got.sum(1) + c.sum(), total_target) - chi2(got.sum(1), total_target)
        s = int(np.argmin(cost))
        where_to[g] = s
        got[s] += c
    sizes = counts.sum(1)
    typical = max(1.0, float(np.percentile(sizes, 90)))
    achieved = got.sum(1)
    for s, name in enumerate(names):
        if abs(achieved[s] - total_target[s]) > typical + 1e-6 or achieved[s] == 0:
            big = np.argsort(-sizes, kind="stable")[:3]
            warnings.warn(
                f"{where}: {name} has {int(achieved[s])} images ({achieved[s] / sizes.sum():.1%}), "
                f"asked {fracs[name]:.1%}: patients are not divided between splits, and the largest "
                "group(s) are " + ", ".join(f"{uniq_g[b]} ({int(sizes[b])} images)" for b in big),
                UserWarning, stacklevel=3)
            break
    return np.asarray(names, dtype=object)[where_to[g_idx]]


def split_by_patient(
    index: pd.DataFrame,
    *,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> pd.DataFrame:
    """Return a copy of `index` with a ``split`` column (train/val/test) grouped by patient.

    Fractions are of images, stratified by ``label``; patients are indivisible, so each split
    is within about one patient group's worth of its fraction (a warning says when a large
    patient makes that impossible). `val=0` or `test=0` skips that split. Same seed, same split.
    """
    check_index(index, where="split_by_patient")
    for name, f in (("val", val), ("test", test)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} fraction must be in [0, 1), got {f}")
    if val + test >= 1:
        raise ValueError(f"val + test must leave images for training, got {val} + {test}")
    out = index.copy()
    out["split"] = _assign(out["label"].astype(str).to_numpy(), out[group_column(out)].astype(str).to_numpy(),
                           {"train": 1 - val - test, "val": val, "test": test}, seed, "split_by_patient")
    check_no_leakage(out)
    return out


def official_split(index: pd.DataFrame, *, column: str | None = None, val: float = 0.1,
                   seed: int = 0, fix_leaks: bool = False) -> pd.DataFrame:
    """Keep a source's own split (Kaggle's folders); carve a patient-level val out of train.

    `column` defaults to `official_column(index)`. Kaggle's official val has 16 images (8 per
    class): too few to choose anything on. When
    `val` > 0 the official val images move to train and a new val of about `val` of the
    training images is drawn by patient. An official split may put one patient in two splits:
    that is warned, naming the patients; `fix_leaks=True` moves each such patient's images
    into the official split holding most of them (train on a tie).
    """
    column = column or official_column(index)
    if column is None or column not in index:
        raise ValueError(f"index has no {column or ' or '.join(OFFICIAL_COLUMNS)!r} column: this source has no "
                         "official split")
    out = index.copy()
    out["split"] = out[column].astype(str)
    if val > 0:
        out.loc[out["split"] == "val", "split"] = "train"
    group = group_column(out)
    leaks = leaking_patients(out, group)
    if len(leaks) and fix_leaks:
        rank = {s: i for i, s in enumerate(SPLITS)}
        held = out[out[group].isin(leaks[group])].groupby(group)["split"].agg(
            lambda s: min(s.value_counts().items(), key=lambda kv: (-kv[1], rank.get(kv[0], 9)))[0])
        rows = out[group].isin(held.index)
        out.loc[rows, "split"] = out.loc[rows, group].map(held)
    elif len(leaks):
        names = ", ".join(f"{p} ({s})" for p, s in zip(leaks[group].head(10), leaks["splits"].head(10)))
        more = f" and {len(leaks) - 10} more" if len(leaks) > 10 else ""
        warnings.warn(f"{len(leaks)} patient(s) in more than one official split: {names}{more}. "
                      "Pass fix_leaks=True (cxrnb split --official --fix-leaks) to move each into the "
                      "split holding most of its images, or split by patient instead",
                      UserWarning, stacklevel=2)
    if val > 0:
        train = out[out["split"] == "train"]
        out.loc[train.index, "split"] = _assign(
            train["label"].astype(str).to_numpy(), train[group].astype(str).to_numpy(),
            {"train": 1 - val, "val": val}, seed, "official_split")
    return out


def leaking_patients(index: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """Patients (or groups) found in more than one split, with the splits they are in."""
    col = column or group_column(index)
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


def leaky_pair(index: pd.DataFrame, *, val: float = 0.15, test: float = 0.15,
               seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two splits that differ only in leakage: ``(leaky, patient_level)``, for a paired comparison.

    Start from the patient-level split. Of each val and test patient with several films, half the
    films (rounded down) are moved to the leaky split's train part and left out of the
    patient-level split, as a random split of images would do; the other films form the val and
    test sets of *both* splits. The leaky train part gives back as many randomly chosen films of
    its own patients, so both models train on the same number of films and are tested on the same
    films: the only difference is whether the val and test patients' other films were seen in
    training, and a paired patient bootstrap (`cxrnb.evaluate.compare`) measures what that adds.
    """
    honest = split_by_patient(index, val=val, test=test, seed=seed)
    rng = np.random.default_rng(seed)
    held = honest[honest["split"].isin(["val", "test"])]
    moved = []
    for _, rows in held.groupby(group_column(honest), sort=True):
        k = len(rows) // 2
        if k:
            moved.extend(rng.choice(rows.index.to_numpy(), size=k, replace=False).tolist())
    train_rows = honest.index[honest["split"] == "train"].to_numpy()
    if len(moved) >= len(train_rows):
        raise ValueError(f"leaky_pair: {len(moved)} val and test films to move but only {len(train_rows)} train films")
    leaky = honest.copy()
    leaky.loc[moved, "split"] = "train"
    leaky = leaky.drop(index=rng.choice(train_rows, size=len(moved), replace=False))
    return leaky, honest.drop(index=moved)


def shuffle_labels(split: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """A copy of `split` whose train and val patients carry each other's labels at random (the test
    part is left as it is): the data-randomisation test of Adebayo et al. (2018) trains the same
    recipe on it, so the model can learn nothing but the films themselves. Labels are permuted
    between patients, not films, so each patient keeps one label, as in the real data."""
    col = group_column(split)
    out = split.copy()
    fit = out["split"].isin(["train", "val"])
    first = out[fit].groupby(col, sort=True)["label"].first()
    perm = pd.Series(np.random.default_rng(seed).permutation(first.to_numpy()), index=first.index)
    out.loc[fit, "label"] = out.loc[fit, col].map(perm).to_numpy()
    return out
