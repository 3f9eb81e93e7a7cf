"""The index: the one contract between the stages of cxrnb.

An index is a pandas DataFrame with one row per image. Every reader returns one, validation
and splitting take and return one, and the pipeline builds a `tf.data.Dataset` from one, so
a notebook can show it, filter it with pandas and save it as CSV between notebooks.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

#: Columns every index has (strings; `view` may be missing). `root` is the dataset folder the
#: relative `path` is resolved against, so indexes of several sources can be concatenated.
INDEX_COLUMNS = ["path", "label", "patient_id", "view", "source", "root"]
#: Columns of a drop report: one row per image that did not make it into the index.
REPORT_COLUMNS = ["path", "source", "reason", "detail"]
SPLITS = ("train", "val", "test")


def empty_report() -> pd.DataFrame:
    """A drop report with no rows (and the right columns)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in REPORT_COLUMNS})


def check_index(index: pd.DataFrame, *, where: str = "index") -> pd.DataFrame:
    """Raise a clear error if `index` lacks contract columns or has empty paths/labels/patients."""
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; an index needs {INDEX_COLUMNS}")
    for col in ("path", "label", "patient_id"):
        bad = index[col].isna() | (index[col].astype(str).str.strip() == "")
        if bad.any():
            rows = list(index.index[bad][:5])
            raise ValueError(f"{where}: empty {col!r} in row(s) {rows} ({int(bad.sum())} in all)")
    return index


def image_paths(index: pd.DataFrame) -> list[Path]:
    """Absolute-or-relative file paths of the rows: `root / path`."""
    return [Path(r) / p for r, p in zip(index["root"].astype(str), index["path"].astype(str))]


def read_index(csv: str | Path) -> pd.DataFrame:
    """Load an index or split CSV written by `DataFrame.to_csv(..., index=False)`, keeping ids as text."""
    df = pd.read_csv(csv, dtype={"patient_id": str, "path": str, "label": str, "view": str,
                                 "source": str, "root": str, "split": str})
    return check_index(df, where=str(csv))
