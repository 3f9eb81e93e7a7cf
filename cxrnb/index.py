"""The index: the one contract between the stages of cxrnb.

An index is a pandas DataFrame with one row per image. Every reader returns one, validation
and splitting take and return one, and the pipeline builds a `tf.data.Dataset` from one, so
a notebook can show it, filter it with pandas and save it as CSV between notebooks.
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

#: Columns every index has (strings; `view` may be missing). `root` is the dataset folder the
#: relative `path` is resolved against, so indexes of several sources can be concatenated.
#: In memory `root` is a usable path (absolute, or relative to the working directory, as the
#: folder was given). In a CSV written by `write_index` it is relative to the CSV's own folder,
#: so a saved index names no home folder and does not depend on the working directory;
#: `read_index` turns it back into a usable path. An absolute `root` in a CSV stays absolute.
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
    """File paths of the rows, `root / path`: absolute, or relative to the working directory."""
    return [Path(r) / p for r, p in zip(index["root"].astype(str), index["path"].astype(str))]


def scrub_paths(text: str) -> str:
    """`text` with quoted absolute paths cut to their file name and the home folder as ``~``.

    OSError messages quote the full path of the file (``Permission denied: '/home/u/x.png'``);
    in a drop report the row already gives the path relative to the dataset folder.
    """
    text = re.sub(r"""(['"])(?:/|[A-Za-z]:[\\/])[^'"]*?([^'"/\\]*)\1""", r"\1\2\1", text)
    home = str(Path.home())
    return text.replace(home, "~") if len(home) > 1 else text


def check_output(path: str | Path, option: str, *, folder: bool = False, example: str = "out.csv") -> Path:
    """Raise `ValueError` now, not after a long pass, if `path` cannot be written.

    A file output needs an existing, writable parent folder and must not name a folder; a
    folder output (`folder=True`) must not name a file, and the folder or the nearest folder
    above it that exists must be writable (missing folders are made later). The message
    starts with `option` (``--out``, ``--cache`` ...) and the path.
    """
    path = Path(path)
    where = f"{option} {path}"
    if folder:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{where}: is a file, not a folder")
        parent = next(p for p in (path, *path.parents) if p.exists())
    else:
        if path.is_dir():
            raise ValueError(f"{where}: is a folder; give a file name such as {example}")
        parent = path.parent
        if not parent.is_dir():
            raise ValueError(f"{where}: folder {parent} does not exist")
    probe = parent / f".cxrnb-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{where}: cannot write in {parent} ({e.strerror or e})") from None
    return path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it to `path`.

    A failed or interrupted write leaves the previous `path` (or none) and no partial file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_index(df: pd.DataFrame, csv: str | Path, *, mkdir: bool = False) -> Path:
    """Write an index, split or drop report to `csv` atomically, `root` relative to the CSV's folder.

    `mkdir` creates the folder first. Read it back with `read_index` from any working directory.
    """
    csv = Path(csv)
    if mkdir:
        csv.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    if "root" in out:
        base = os.path.abspath(csv.parent)

        def rel(root: str) -> str:
            try:
                return Path(os.path.relpath(os.path.abspath(root), base)).as_posix()
            except ValueError:  # another drive (Windows): no relative path exists
                return Path(root).as_posix()

        out["root"] = out["root"].map({r: rel(r) for r in out["root"].dropna().astype(str).unique()})
    return atomic_write(csv, lambda tmp: out.to_csv(tmp, index=False))


def read_index(csv: str | Path) -> pd.DataFrame:
    """Load an index or split CSV (see `write_index`), keeping ids as text and `root` usable.

    A folder, an empty file, a binary file (an image given by mistake) or a CSV without the
    index columns is a `ValueError` naming the file and what is wrong.
    """
    csv = Path(csv)
    hint = "give the CSV written by `cxrnb index --out` or `cxrnb split --out`"
    if csv.is_dir():
        raise ValueError(f"{csv}: is a folder, not an index CSV; {hint}")
    if not csv.is_file():
        raise FileNotFoundError(f"{csv}: file not found")
    with open(csv, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise ValueError(f"{csv}: empty file, not an index CSV; {hint}")
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, 0, 1, "NUL byte")
        df = pd.read_csv(csv, index_col=False, dtype={"patient_id": str, "path": str, "label": str,
                                                      "view": str, "source": str, "root": str, "split": str})
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ValueError(f"{csv}: not a CSV text file ({type(e).__name__}); {hint}") from None
    check_index(df, where=str(csv))
    df["root"] = df["root"].map(lambda r: os.path.normpath(os.path.join(csv.parent, r)) if isinstance(r, str) else r)
    return df


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 file"``, ``"2 files"``: a count with its noun in the right number."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
