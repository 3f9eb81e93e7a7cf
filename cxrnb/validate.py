"""Validation: open every image once, keep the good rows, report every dropped one.

`load_index` is the one call a notebook or the CLI makes: read a source, drop what the task
does not want, decode every remaining image (readable, decodable, dimensions, mode, bit
depth, decompression-bomb guard), and return the index of good rows plus a report with one
line per dropped row and its reason. Decoding happens in a thread pool (PIL releases the GIL)
and, given an `ImageCache`, keeps each file's base image (`cxrnb.images`), from which training
derives its pixels at any usual model size without decoding again. Exact-duplicate base images
are hashed and flagged: the same image under two patient ids would otherwise leak across a
patient-level split.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import images
from .images import MAX_PIXELS, ImageCache, ImageError, map_threads
from .index import INDEX_COLUMNS, REPORT_COLUMNS, check_index, image_paths, plural, scrub_paths
from .sources import DISK_REASONS, SOURCES, read_source
from .splits import patient_groups


@dataclass
class LoadResult:
    """What `load_index` returns: the good rows, the dropped rows with reasons, and notes."""

    index: pd.DataFrame
    report: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # error texts quote absolute paths (OSError): keep a user's folders out of the report
        if "detail" in self.report and len(self.report):
            # once per distinct text: a 377,110-row MIMIC report holds a handful of them
            clean = {d: scrub_paths(d) for d in self.report["detail"].dropna().unique() if isinstance(d, str)}
            self.report = self.report.assign(detail=self.report["detail"].map(lambda d: clean.get(d, d)))

    def __iter__(self):  # allows `index, report = load_index(...)`
        return iter((self.index, self.report))

    def summary(self) -> str:
        """Counts per label and per drop reason, as printed by the CLI and notebooks."""
        lines = [f"{len(self.index)} images kept, {len(self.report)} dropped"]
        if len(self.index):
            counts = self.index["label"].value_counts().sort_index()
            lines.append("kept per label: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            lines.append(f"patients: {self.index['patient_id'].nunique()}")
        if len(self.report):
            lines.append("dropped per reason: " + ", ".join(
                f"{k} {v}" for k, v in self.report["reason"].value_counts().sort_index().items()))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


class NoImagesError(ValueError):
    """`load_index` kept no image; `result` still holds the drop report (and notes)."""

    def __init__(self, message: str, result: LoadResult):
        super().__init__(message)
        self.result = result


def _file_problem(path: str | Path) -> tuple[str, str] | None:
    """(reason, detail) when `path` cannot be opened for reading, else None (no decoding)."""
    try:
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return "missing file", "listed in the metadata but not on disk"
    except IsADirectoryError:
        return "not an image file", "a folder, not a file"
    except PermissionError as e:
        return "unreadable file", f"{e.strerror or 'Permission denied'}: the file exists but cannot be read"
    except OSError as e:
        return "unreadable file", f"{type(e).__name__}: {e.strerror or e}"


def _check_one(path: Path, cache: ImageCache | None, max_pixels: int) -> dict:
    """Facts of one file from one decode (its base image), which also fills `cache`."""
    try:
        base, info = images.read_base(path, max_pixels=max_pixels)
    except ImageError as e:
        return {"reason": e.reason, "detail": e.detail}
    if cache is not None:
        cache.put_base(path, base)
    digest = hashlib.sha1(base)  # the base's bytes, then its shape: no copy of the pixels
    digest.update(bytes(str(base.shape), "ascii"))
    suffix = path.suffix.lower().lstrip(".")
    ext_ok = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "dcm": "DICOM", "dicom": "DICOM",
              "dic": "DICOM"}.get(suffix) in (None, info.format)
    return {"width": info.width, "height": info.height, "mode": info.mode, "format": info.format,
            "bit_depth": info.bit_depth, "extension_matches": ext_ok,
            "pixel_hash": digest.hexdigest()[:16]}


def validate_images(
    index: pd.DataFrame,
    *,
    cache: ImageCache | None = None,
    max_pixels: int = MAX_PIXELS,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decode every image of `index` once; return (good rows with image facts, drop report).

    Good rows gain ``width, height, mode, format, bit_depth, extension_matches, pixel_hash``
    (the hash of the base image, the pixels training is derived from). The report has one row
    per unusable file: missing, unreadable, empty, not an image, corrupt or truncated,
    decompression bomb, too small. With `cache`, each base image is stored as it is decoded.
    """
    results = map_threads(lambda p: _check_one(p, cache, max_pixels), image_paths(index),
                          desc="validate", progress=progress, workers=workers)
    facts = pd.DataFrame(results, index=index.index)
    for c in ("reason", "detail"):
        if c not in facts:
            facts[c] = None
    bad = facts["reason"].notna()
    good = index.loc[~bad].copy()
    for c in ("width", "height", "mode", "format", "bit_depth", "extension_matches", "pixel_hash"):
        if c in facts:
            good[c] = facts.loc[~bad, c]
    for c in ("width", "height", "bit_depth"):
        if c in good:
            good[c] = good[c].astype("int64")
    report = index.loc[bad, ["path", "source"]].assign(reason=facts.loc[bad, "reason"],
                                                       detail=facts.loc[bad, "detail"])
    return good, report[REPORT_COLUMNS]


def _dedupe_listings(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[str, str]]]:
    """Drop second listings of the same file; merge the patient ids that share it.

    covid-chestxray lists some files under two patient ids. Keeping both rows would put the
    same pixels in two splits; keeping one and recording the other id in ``patient_group``
    (see `patient_groups`) keeps the split honest.
    """
    key = df["root"].astype(str) + "/" + df["path"].astype(str)
    dup = key.duplicated(keep="first")
    if dup.any():
        firsts = df.loc[~dup].assign(_key=key[~dup]).set_index("_key")["patient_id"]
        detail = "same file listed again (first under patient " + key[dup].map(firsts).astype(str) \
                 + ", here patient " + df.loc[dup, "patient_id"].astype(str) + ")"
        rep = df.loc[dup, ["path", "source"]].assign(reason="duplicate listing", detail=detail)
        links = list(zip(key[dup].map(firsts).astype(str), df.loc[dup, "patient_id"].astype(str)))
        return df.loc[~dup].copy(), rep, links
    return df, df.iloc[:0][["path", "source"]].assign(reason=[], detail=[]), []


def _conflicting_listings(raw: pd.DataFrame) -> None:
    """Mark every listing of a file whose listings disagree (in place): not trained on under either.

    covid-chestxray lists some files twice with different findings; which is right is unknown.
    The rows are compared by ``finding`` when the source has it, else by task label; the
    detail names each listing (CSV line, patient, finding). Rows already dropped keep their reason.
    """
    listed = ~raw["reason"].isin(DISK_REASONS)
    if not listed.any():
        return
    sub = raw[listed]
    what = (sub["finding"] if "finding" in sub else sub["label"]).fillna("(blank)").astype(str)
    key = sub["root"].astype(str) + "/" + sub["path"].astype(str)
    bad = what.groupby(key).transform("nunique") > 1
    if not bad.any():
        return
    line = ("line " + sub["csv_row"].astype(str) + ", ") if "csv_row" in sub else ""
    desc = line + "patient " + sub["patient_id"].astype(str) + ": " + what
    listing = desc[bad].groupby(key[bad]).agg("; ".join)
    rows = bad[bad].index
    detail = "listed " + key[bad].map(key.value_counts()).astype(str) + " times with different findings (" \
        + key[bad].map(listing) + "): which is right is unknown, so the film is not used under either"
    todo = rows[raw.loc[rows, "reason"].isna()]
    raw.loc[todo, "reason"] = "conflicting listings"
    raw.loc[todo, "detail"] = detail[todo]


def duplicate_pixels(index: pd.DataFrame) -> pd.DataFrame:
    """Rows whose pixels occur more than once (same ``pixel_hash``), sorted by hash."""
    if "pixel_hash" not in index:
        return index.iloc[:0]
    d = index[index["pixel_hash"].duplicated(keep=False)]
    return d.sort_values(["pixel_hash", "path"])[["path", "label", "patient_id", "pixel_hash"]]


def load_index(
    source: str,
    root: str | Path,
    *,
    check_images: bool = True,
    cache: ImageCache | str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
    **task,
) -> LoadResult:
    """Read `source` at `root`, apply the task, validate every image: the one loading call.

    `task` options go to the reader (`classes`, `views`, `modality`, `finding`, ...; see
    `cxrnb.sources`). `cache` (an `ImageCache` or a folder) keeps each decoded base image, so
    the pipeline does not decode again at any model size up to `cxrnb.images.BASE_SIDE`. Returns
    a `LoadResult` (unpackable as ``index, report``). Raises `NoImagesError` (whose `result`
    holds the drop report) when no image is kept.
    """
    raw = read_source(source, root, **task)
    notes = list(raw.attrs.get("notes", []))
    # A listed file that cannot be opened is reported as such whatever else is wrong with its
    # row, so "listed but missing" counts are complete (an open, no decoding). Rows that stand
    # for files found on disk are not listings: they are not looked for again.
    listed = ~raw["reason"].isin(DISK_REASONS)
    # rows without a near match hold NaN once sources are concatenated: "" says "none" for all
    near = (raw["near_match"] if "near_match" in raw else pd.Series(None, index=raw.index, dtype=object)).fillna("")
    files = raw.loc[listed, "root"].astype(str) + "/" + raw.loc[listed, "path"].astype(str)  # as `image_paths`, as text
    problems = {i: pr for i, p in zip(files.index, files) if (pr := _file_problem(p))}
    if problems:
        rows = list(problems)
        raw.loc[rows, "reason"] = [problems[i][0] for i in rows]
        raw.loc[rows, "detail"] = [problems[i][1] + (f"; {m}" if m else "") for i, m in zip(rows, near.loc[rows].to_numpy())]
    raw = raw.drop(columns=["near_match"], errors="ignore")
    _conflicting_listings(raw)
    dropped = raw["reason"].notna()
    report = raw.loc[dropped, REPORT_COLUMNS]
    kept = raw.loc[~dropped].drop(columns=["reason", "detail"])
    kept, dup_report, links = _dedupe_listings(kept)
    reports = [report, dup_report]
    if links:
        notes.append(f"{plural(len(links), 'file is', 'files are')} listed more than once: the second listing is dropped "
                     "and its patient id merged with the first into one patient_group")
    if check_images and len(kept):
        if cache is not None and not isinstance(cache, ImageCache):
            cache = ImageCache(cache)
        kept, bad = validate_images(kept, cache=cache, workers=workers, progress=progress)
        reports.append(bad)
    kept = kept.reset_index(drop=True)
    if len(kept):
        check_index(kept, where=f"{source} index")
        kept["patient_group"] = patient_groups(kept, links).values
        dups = duplicate_pixels(kept)
        crossing = dups.groupby("pixel_hash")["patient_id"].nunique().gt(1).sum() if len(dups) else 0
        if crossing:
            notes.append(f"{plural(int(crossing), 'group')} of images with identical pixels span different patient ids: "
                         "those patients are merged into one patient_group for splitting")
    if not SOURCES[source].patient_ids:
        notes.append(f"{source} layout has no patient ids: every image counts as its own patient, "
                     "so a patient-level split cannot be guaranteed")
    report = pd.concat([r for r in reports if len(r)], ignore_index=True) if any(len(r) for r in reports) \
        else raw.iloc[:0][REPORT_COLUMNS]
    cols = INDEX_COLUMNS + [c for c in kept.columns if c not in INDEX_COLUMNS]
    result = LoadResult(kept[cols], report.reset_index(drop=True), notes)
    if not len(kept):
        counts = ", ".join(f"{k} {v}" for k, v in result.report["reason"].value_counts().sort_index().items())
        raise NoImagesError(f"no images found: {source} at {root} (expected {SOURCES[source].layout}) gave no "
                            f"usable image; the drop report lists {len(result.report)} file(s)"
                            + (f" ({counts})" if counts else ""), result)
    return result


def combine(*results: LoadResult | pd.DataFrame) -> pd.DataFrame:
    """Concatenate indexes of several sources (COVID from one, normal from another), regrouped.

    Patient ids are only unique within a source, so each becomes ``<source>:<id>``. Patient
    groups are then made again over the whole: the groups each source had (or its patient ids,
    when a frame has no ``patient_group``) joined by identical pixels across sources, because
    collections re-publish each other's films under new ids. `source` is kept on every row:
    the source itself is a shortcut a model can learn, so check how well it predicts the label.
    """
    frames = [r.index if isinstance(r, LoadResult) else r for r in results]
    for f in frames:
        check_index(f)
    out = pd.concat(frames, ignore_index=True)
    prefix = out["source"].astype(str) + ":"
    out["patient_id"] = prefix + out["patient_id"].astype(str)
    links: list[tuple[str, str]] = []
    if "patient_group" in out:
        known = out["patient_group"].notna()
        links = list(zip(out.loc[known, "patient_id"], prefix[known] + out.loc[known, "patient_group"].astype(str)))
    out["patient_group"] = patient_groups(out, links).to_numpy()
    return out
