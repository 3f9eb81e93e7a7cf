"""Seconds to index a MIMIC-CXR-JPG-sized metadata file (377,110 rows), pixels not read; and
DICOM decoding against the same pixels as PNG.

    python benchmarks/mimic_index.py [--rows 377110 --repeats 3 --dicom 40]
                                     [--out benchmarks/results/mimic_index.json]

Writes synthetic ``mimic-cxr-2.0.0-metadata.csv.gz``, ``-chexpert.csv.gz`` and ``-split.csv.gz``
with the release's shape (about 1.7 films per study, 3.5 studies per subject, the release's
columns; no image files) and times (a) the reader (`read_source`: CSVs, join by study, labels,
views, paths) and (b) the whole of `load_index(..., check_images=False)` (also the per-row file
check, the drop report and the checks of the index; every file is absent here, so it ends in
`NoImagesError` after doing all of that work). The issue's target: under 30 s on 2 cores.
Then `--dicom` 1024 x 1024 films are decoded to base images as JPEG DICOM (pylibjpeg), 12-bit
uncompressed DICOM and PNG (target: DICOM within 1.5x of PNG). Medians of `--repeats` runs.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from timing import median_seconds  # noqa: E402

from cxrnb.radiology import CHEXPERT_FINDINGS  # noqa: E402
from cxrnb.sources import read_source  # noqa: E402
from cxrnb.validate import NoImagesError, load_index  # noqa: E402


def write_mimic(root: Path, rows: int, seed: int = 0) -> None:
    """MIMIC-CXR-JPG's three CSVs (gzipped) with `rows` films, vectorised."""
    rng = np.random.default_rng(seed)
    study_of = np.cumsum(rng.random(rows) < 1 / 1.7)  # a new study every ~1.7 films
    subject_of_study = np.cumsum(rng.random(study_of.max() + 1) < 1 / 3.5)
    subject = 10000000 + subject_of_study[study_of]
    study = 50000000 + study_of
    dicom = pd.Series(rng.integers(0, 2**63, rows)).map("{:016x}".format)
    views = rng.choice(["PA", "AP", "LATERAL", "LL", ""], rows, p=[0.3, 0.4, 0.25, 0.03, 0.02])
    meta = pd.DataFrame({"dicom_id": dicom, "subject_id": subject, "study_id": study,
                         "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": views,
                         "Rows": 3056, "Columns": 2544, "StudyDate": 21800506, "StudyTime": "213014.531",
                         "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                         "ViewCodeSequence_CodeMeaning": "postero-anterior",
                         "PatientOrientationCodeSequence_CodeMeaning": "Erect"})
    studies = meta.drop_duplicates("study_id")[["subject_id", "study_id"]].reset_index(drop=True)
    for f in CHEXPERT_FINDINGS:
        studies[f] = rng.choice(["", "1.0", "0.0", "-1.0"], len(studies), p=[0.7, 0.15, 0.1, 0.05])
    split = meta[["dicom_id", "study_id", "subject_id"]].assign(
        split=np.where(subject % 50 == 0, "test", np.where(subject % 60 == 1, "validate", "train")))
    for name, df in (("metadata", meta), ("chexpert", studies), ("split", split)):
        with gzip.GzipFile(root / f"mimic-cxr-2.0.0-{name}.csv.gz", "wb", mtime=0, compresslevel=1) as fh:
            fh.write(df.to_csv(index=False).encode())


def index_all(root: Path) -> int:
    """The CLI's work without writing CSVs: read, check every listed file, build the report."""
    try:
        res = load_index("mimic-cxr-jpg", root, check_images=False, progress=False)
        return len(res.report)
    except NoImagesError as e:
        return len(e.result.report)


def dicom_vs_png(n: int, repeats: int, tmp: Path) -> dict:
    """Seconds per film to decode a base image from JPEG DICOM, 12-bit DICOM and PNG (same pixels)."""
    from PIL import Image

    from cxrnb.dicom import write_dicom
    from cxrnb.images import read_base
    from cxrnb.synthetic import render_image

    files: dict[str, list[Path]] = {"dicom_jpeg": [], "dicom_12bit": [], "png": []}
    for i in range(n):
        img, _, _ = render_image(0, i + 1, 0, "normal", size=1024)
        files["png"].append(tmp / f"{i}.png")
        Image.fromarray(img).save(files["png"][-1], compress_level=1)
        files["dicom_jpeg"].append(write_dicom(tmp / f"{i}.dcm", img, patient_id=str(i), compression="jpeg"))
        files["dicom_12bit"].append(write_dicom(tmp / f"{i}", img, patient_id=str(i), bits=12,
                                                window=(2048.0, 4000.0)))
    return {k: median_seconds(lambda fs=fs: [read_base(f) for f in fs], repeats, warmup=True) / n
            for k, fs in files.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=377_110)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dicom", type=int, default=40, help="films for the DICOM vs PNG decode timing (0: skip)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "mimic_index.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        write_mimic(root, a.rows)
        reader = median_seconds(lambda: read_source("mimic-cxr-jpg", root), a.repeats)
        whole = median_seconds(lambda: index_all(root), a.repeats)
        raw = read_source("mimic-cxr-jpg", root)
        result = {"rows": a.rows, "kept_by_task": int(raw["reason"].isna().sum()),
                  "reader_s": round(reader, 2), "load_index_s": round(whole, 2), "target_s": 30,
                  "cores": len(os.sched_getaffinity(0)), "python": platform.python_version()}
        if a.dicom:
            (root / "films").mkdir()
            per = dicom_vs_png(a.dicom, a.repeats, root / "films")
            result |= {f"{k}_ms_per_film": round(v * 1000, 2) for k, v in per.items()}
            result["dicom_jpeg_vs_png"] = round(per["dicom_jpeg"] / per["png"], 2)
            result["dicom_12bit_vs_png"] = round(per["dicom_12bit"] / per["png"], 2)
    for k, v in result.items():
        print(f"{k:>24}: {v}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
