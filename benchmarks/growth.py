"""Cost as the work grows: `cxrnb index --cache` on 1,000, 5,000 and 20,000 NIH-sized films.

    python benchmarks/growth.py [--counts 1000 5000 20000] [--size 1024] [--pool 48] [--cores N]
                                [--data DIR] [--out benchmarks/results/growth.json]

Data, written once under benchmarks/data/ and then reused (and extended for a larger count):
`--pool` films rendered by `cxrnb.synthetic.render_image` at `--size` px and encoded as
`cxrnb.synthetic.encode` writes the nih layout (8-bit PNG, zlib level 1, as NIH ships). Film j is
pool film j % pool whose bottom-left STAMP_ROWS x STAMP_COLS pixels are noise seeded by j, so
every file is a distinct image (validation hashes every base image; copies would all be flagged as
one film). Rendering and PNG-encoding 20,000 films would take most of an hour on two cores, so the
stamp is spliced into the pool film's own PNG: the deflate state after its unchanged rows is kept
and only the stamped rows are compressed per file (`film_png`; the file decodes to exactly the
stamped image). Each count N gets a folder ``n{N}/`` laid out as NIH ships ChestX-ray14
(``Data_Entry_2017.csv``, ``images_001/images/...``, 10,000 films a folder), hard links to the
shared files. Changing `--pool` rewrites the folder.

For each count, a fresh child process pinned to `--cores` runs the CLI's own
``cxrnb index nih n{N} --out ... --report ... --cache ...`` (read the CSV, scan the folders,
decode every file once, store each base image, write the index), timed end to end. It reports
wall and CPU seconds, its peak resident memory (``VmHWM``, the high-water mark of its resident set: numpy
and PIL buffers included, which tracemalloc would miss) and the bytes it read from storage
(``/proc/self/io`` read_bytes: 0 means every file came from the page cache). The cache's bytes on
disk are counted, then the cache is deleted. Then: a least-squares line seconds = fixed +
per-film x films, the ratio of seconds per film at the largest vs the smallest count, the log-log
exponent (1: linear, 2: quadratic), the same fit for peak memory, and the extrapolation to NIH
ChestX-ray14 (112,120 films) and MIMIC-CXR (377,110). MIMIC-CXR-JPG's films are ~2544 x 3056
JPEGs, whose base image is larger than a 1024-px film's: one such film is decoded to give its
cache bytes too. Prints Markdown tables; writes the JSON atomically.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # run from a checkout without installing

from files import link_or_copy  # noqa: E402  (benchmarks/files.py)

from cxrnb.index import atomic_write, check_output  # noqa: E402

GENERATOR = "growth-v1: render_image pool, encode(nih) PNG, per-file noise stamp spliced into the deflate stream"
STAMP_ROWS, STAMP_COLS = 6, 48
PER_FOLDER = 10_000  # NIH ships images_001 ... images_012, up to 10,000 films each
COLLECTIONS = {"NIH ChestX-ray14": 112_120, "MIMIC-CXR": 377_110}
MIMIC_SHAPE = (3056, 2544)  # (height, width) of a typical MIMIC-CXR-JPG film (benchmarks/mimic_index.py)
MEMORY_LIMIT_MB = 1536.0
FLAT_RATIO = 1.25  # seconds per film at the largest count within 25 % of the smallest: flat
CSV = "Data_Entry_2017.csv"


# --------------------------------------------------------------------------- data

def nih_rel(j: int) -> str:
    """Path of film j as NIH lays it out: patient j // 4 + 1, follow-up j % 4, 10,000 a folder."""
    return f"images_{j // PER_FOLDER + 1:03d}/images/{j // 4 + 1:08d}_{j % 4:03d}.png"


def pool_label(i: int) -> str:
    """About one film in ten is an effusion, as in NIH (the rest 'No Finding')."""
    return "effusion" if i % 10 == 9 else "normal"


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk of a PNG file."""
    out, pos = [], 8
    while pos < len(png):
        (n,) = struct.unpack(">I", png[pos:pos + 4])
        out.append((png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class PoolFilm:
    """One pool film: its pixels and its PNG (`encode`, nih) split where the stamped rows begin."""

    def __init__(self, img: np.ndarray, png: bytes):
        chunks = _chunks(png)
        ihdr = dict(chunks)[b"IHDR"]
        if ihdr[8:13] != bytes([8, 0, 0, 0, 0]):  # 8-bit gray, not interlaced: one filter byte + w bytes a row
            raise ValueError("pool films must be 8-bit grayscale PNGs")
        raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
        h, w = img.shape
        self.img, self.head = img, png[:8] + _chunk(b"IHDR", ihdr)
        self.deflate = zlib.compressobj(1)
        # PIL's filtered rows, unchanged, up to the stamp (nothing refers to rows below them)
        self.prefix = self.deflate.compress(raw[:(h - STAMP_ROWS) * (w + 1)])


def film_png(pool: PoolFilm, j: int) -> tuple[bytes, np.ndarray]:
    """PNG bytes of film j (pool film + a noise stamp seeded by j) and the pixels they decode to."""
    img = pool.img[-STAMP_ROWS:].copy()
    img[:, :STAMP_COLS] = np.random.default_rng(j).integers(0, 256, (STAMP_ROWS, min(STAMP_COLS, img.shape[1])))
    rows = np.hstack([np.zeros((STAMP_ROWS, 1), np.uint8), img])  # filter type 0 (none) per row
    z = pool.deflate.copy()
    data = pool.prefix + z.compress(rows.tobytes()) + z.flush()
    return pool.head + _chunk(b"IDAT", data) + _chunk(b"IEND", b""), img


def make_pool(size: int, pool: int) -> list[PoolFilm]:
    """`pool` films rendered at `size` px and encoded as the nih layout stores them."""
    from cxrnb.synthetic import encode, render_image

    films = []
    for i in range(pool):
        img = render_image(0, i + 1, 0, pool_label(i), size=size)[0]
        films.append(PoolFilm(img, encode({"layout": "nih", "image_format": "png"}, img)))
    return films


def make_films(data: Path, n: int, size: int, pool: int) -> dict:
    """Films 0 .. n-1 under `data`/films (only the missing ones are written); timings and bytes."""
    marker = data / "growth.json"
    key = {"generator": GENERATOR, "size": size, "pool": pool}
    info = json.loads(marker.read_text()) if marker.is_file() else {}
    if {k: info.get(k) for k in key} != key:
        shutil.rmtree(data, ignore_errors=True)
        info = {**key, "films": 0, "write_s": 0.0, "render_s": 0.0}
    if info["films"] >= n:
        return {**info, "reused": True}
    data.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    films = make_pool(size, pool)
    info["render_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for j in range(info["films"], n):
        path = data / "films" / nih_rel(j)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(film_png(films[j % pool], j)[0])
    info["write_s"] += time.perf_counter() - t
    info["films"] = n
    marker.write_text(json.dumps(info))
    return {**info, "reused": False}


def count_folder(data: Path, n: int) -> Path:
    """``n{N}/``: the NIH layout over films 0 .. n-1 (hard links); the CSV, written last, marks it complete."""
    from cxrnb.synthetic import NIH_COLUMNS

    out = data / f"n{n}"
    if (out / CSV).is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    info = json.loads((data / "growth.json").read_text())
    rows = []
    for j in range(n):
        rel = nih_rel(j)
        link_or_copy(data / "films" / rel, out / rel)
        rows.append({"Image Index": rel.rsplit("/", 1)[1], "Patient ID": j // 4 + 1, "Follow-up #": j % 4,
                     "Finding Labels": "Effusion" if pool_label(j % info["pool"]) == "effusion" else "No Finding",
                     "Patient Age": f"{20 + j % 70:03d}Y", "Patient Gender": "MF"[j % 2],
                     "View Position": "PA" if j % 3 else "AP", "OriginalImage[Width": info["size"],
                     "Height]": info["size"], "OriginalImagePixelSpacing[x": 0.143, "y]": 0.143})
    atomic_write(out / CSV, lambda tmp: pd.DataFrame(rows, columns=NIH_COLUMNS).to_csv(tmp, index=False))
    return out


# --------------------------------------------------------------------------- measuring

def _peak_rss_mb() -> float:
    """High-water resident memory of this process, MB: ``VmHWM`` of /proc/self/status (this address
    space only). ``getrusage(RUSAGE_SELF).ru_maxrss`` would do off Linux, but on Linux it keeps the
    parent's peak across fork + exec, so a child would report at least its parent's memory."""
    try:
        return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM"))) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def _read_bytes() -> int | None:
    """Bytes this process has fetched from storage (page-cache hits excluded); None off Linux."""
    try:
        return int(next(ln.split()[1] for ln in open("/proc/self/io") if ln.startswith("read_bytes")))
    except (OSError, StopIteration):
        return None


def child(root: Path, work: Path) -> dict:
    """In a fresh process: the CLI's ``cxrnb index nih ROOT --cache`` timed end to end, peak RSS, reads."""
    from cxrnb import cli
    from cxrnb.sources import read_source

    rss0, io0 = _peak_rss_mb(), _read_bytes()
    cpu, t = time.process_time(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its summary; stdout carries the JSON
        rc = cli.main(["-q", "index", "nih", str(root), "--out", str(work / "index.csv"),
                       "--report", str(work / "dropped.csv"), "--cache", str(work / "cache")])
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak, io1 = _peak_rss_mb(), _read_bytes()
    if rc:
        raise SystemExit(f"cxrnb index exited with {rc}")
    t = time.perf_counter()
    read_source("nih", root)  # the metadata part alone (CSV, folder scan, labels), files now cached
    return {"seconds": wall, "cpu_seconds": cpu, "rss_before_mb": rss0, "peak_rss_mb": peak,
            "read_mb": None if io0 is None else (io1 - io0) / 2**20, "reader_seconds": time.perf_counter() - t}


def measure_count(data: Path, n: int, cores: list[int]) -> dict:
    """One count: the child's numbers, checks of its index, the cache's bytes (then deleted)."""
    t = time.perf_counter()
    folder = count_folder(data, n)
    layout_s = time.perf_counter() - t  # links + CSV; ~0 when the folder is reused
    files_bytes = sum((folder / nih_rel(j)).stat().st_size for j in range(n))
    work = Path(tempfile.mkdtemp(prefix="run-", dir=data))
    try:
        out = subprocess.run([sys.executable, __file__, "--child", str(folder), "--work", str(work)], check=True,
                             stdout=subprocess.PIPE, text=True,
                             preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None).stdout
        res = json.loads(out.strip().splitlines()[-1])
        index = pd.read_csv(work / "index.csv", dtype=str)
        if len(index) != n or index["pixel_hash"].nunique() != n:
            raise SystemExit(f"{folder}: kept {len(index)} of {n} films, {index['pixel_hash'].nunique()} distinct")
        cache = list((work / "cache").iterdir())
        pack = sum(f.stat().st_size for f in cache if f.suffix == ".pack")
        idx = sum(f.stat().st_size for f in cache if f.suffix == ".idx")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"films": n, **res, "ms_per_film": 1000 * res["seconds"] / n,
            "cpu_ms_per_film": 1000 * res["cpu_seconds"] / n,
            "cache_bytes": pack + idx, "cache_bytes_per_film": (pack + idx) / n, "pack_bytes_per_film": pack / n,
            "idx_bytes_per_film": idx / n, "file_bytes_per_film": files_bytes / n, "layout_seconds": layout_s}


def mimic_base_bytes(size: int, data: Path) -> dict:
    """Base-image bytes and decode ms of a MIMIC-CXR-JPG-sized JPEG vs a `size`-px nih PNG (pool film 0)."""
    from PIL import Image

    from cxrnb.images import read_base

    pool = make_pool(size, 1)[0]
    with tempfile.TemporaryDirectory(dir=data) as d:
        png, jpg = Path(d) / "film.png", Path(d) / "film.jpg"
        png.write_bytes(film_png(pool, 0)[0])
        Image.fromarray(pool.img).resize(MIMIC_SHAPE[::-1], Image.Resampling.BILINEAR).save(jpg, quality=95)
        out = {}
        for name, f in (("nih_png", png), ("mimic_jpeg", jpg)):
            times = []
            for _ in range(5):
                t = time.perf_counter()
                base, _ = read_base(f)
                times.append(time.perf_counter() - t)
            out[name] = {"base_shape": list(base.shape), "base_bytes": int(base.nbytes),
                         "decode_ms": 1000 * statistics.median(times)}
    return out


# --------------------------------------------------------------------------- analysis

def fit(films: Sequence[float], values: Sequence[float]) -> dict[str, float]:
    """Least-squares line values = fixed + per_film x films, and how the per-film value grows.

    ``ratio``: value per film at the largest count / at the smallest (1: flat); ``exponent``:
    slope of log value vs log films (1: linear, 2: quadratic; below 1 when a fixed cost shows).
    """
    x, y = np.asarray(films, float), np.asarray(values, float)
    if len(set(x.tolist())) < 2:
        raise ValueError("a fit needs at least two different counts")
    per_film, fixed = np.polyfit(x, y, 1)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - fixed - per_film * x) ** 2).sum()) / ss if ss > 0 else 1.0
    lo, hi = int(x.argmin()), int(x.argmax())
    return {"per_film": float(per_film), "fixed": float(fixed), "r2": r2,
            "ratio": float((y[hi] / x[hi]) / (y[lo] / x[lo])),
            "exponent": float(np.polyfit(np.log(x), np.log(y), 1)[0])}


def extrapolate(time_fit: dict, rss_fit: dict, cache_per_film: float, films: int) -> dict[str, float]:
    """Seconds, peak RSS (MB) and cache bytes at `films`, from the fitted lines and the measured
    cache bytes per film."""
    return {"films": films, "seconds": time_fit["fixed"] + time_fit["per_film"] * films,
            "peak_rss_mb": rss_fit["fixed"] + rss_fit["per_film"] * films, "cache_bytes": cache_per_film * films}


def analyse(rows: list[dict], mimic: dict | None = None) -> dict:
    """Fits of wall seconds, CPU seconds and peak RSS against films, verdicts, extrapolations."""
    films = [r["films"] for r in rows]
    t, cpu, rss = (fit(films, [r[k] for r in rows]) for k in ("seconds", "cpu_seconds", "peak_rss_mb"))
    big = max(rows, key=lambda r: r["films"])
    out = {"time": t, "cpu": cpu, "memory": rss,
           "time_flat": t["ratio"] <= FLAT_RATIO, "cpu_flat": cpu["ratio"] <= FLAT_RATIO,
           "memory_within_limit": max(r["peak_rss_mb"] for r in rows) <= MEMORY_LIMIT_MB,
           "extrapolation": {name: extrapolate(t, rss, big["cache_bytes_per_film"], n)
                             for name, n in COLLECTIONS.items()}}
    if mimic:  # the same cache at MIMIC-CXR-JPG's own film size: its base image instead of this one's
        own = mimic["mimic_jpeg"]["base_bytes"] + big["idx_bytes_per_film"]
        out["extrapolation"]["MIMIC-CXR at 2544 x 3056 JPEG"] = extrapolate(t, rss, own, COLLECTIONS["MIMIC-CXR"])
    for e in out["extrapolation"].values():
        e["memory_within_limit"] = e["peak_rss_mb"] <= MEMORY_LIMIT_MB
    return out


# --------------------------------------------------------------------------- report

def machine() -> dict:
    """CPU model, cores this process may use, memory, load average: the context of every number."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    mem = None
    with contextlib.suppress(OSError, StopIteration):
        mem = int(next(ln.split()[1] for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))) / 2**20
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "memory_gb": mem, "python": platform.python_version(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def tables(report: dict) -> list[str]:
    """Markdown: one row per count, the fits and verdicts, the extrapolation."""
    m, a, cfg = report["machine"], report["analysis"], report["config"]
    la = lambda v: "n/a" if v is None else " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    mb = lambda v: "n/a" if v is None else f"{v:,.0f}"  # noqa: E731
    lines = [f"{m['cpu']}, {report['cores_used']} core(s) used of {m['cores']}, {m['memory_gb'] or 0:.0f} GB RAM; "
             f"load average (1/5/15 min) {la(m['load_average'])} at start, {la(report['load_average_end'])} at end; "
             f"`cxrnb index nih --cache` on {cfg['size']} px PNG films", "",
             "| films | wall s | ms/film | CPU ms/film | peak RSS MB | RSS after imports MB | read from disk MB "
             "| cache KB/film | cache MB | files KB/film | reader s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["results"]:
        lines.append(f"| {r['films']:,} | {r['seconds']:,.1f} | {r['ms_per_film']:.2f} | {r['cpu_ms_per_film']:.2f} | "
                     f"{r['peak_rss_mb']:,.0f} | {r['rss_before_mb']:,.0f} | {mb(r['read_mb'])} | "
                     f"{r['cache_bytes_per_film'] / 1024:,.1f} | {r['cache_bytes'] / 2**20:,.0f} | "
                     f"{r['file_bytes_per_film'] / 1024:,.0f} | {r['reader_seconds']:.2f} |")
    t, c, r = a["time"], a["cpu"], a["memory"]
    yes = lambda b: "yes" if b else "**no**"  # noqa: E731
    lines += ["", "| growth | per film (least squares) | fixed | r² | per film, largest / smallest count "
              "| log-log exponent | flat |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
              f"| wall time | {1000 * t['per_film']:.2f} ms | {t['fixed']:.1f} s | {t['r2']:.3f} | {t['ratio']:.2f} | "
              f"{t['exponent']:.2f} | {yes(a['time_flat'])} (ratio <= {FLAT_RATIO}) |",
              f"| CPU time | {1000 * c['per_film']:.2f} ms | {c['fixed']:.1f} s | {c['r2']:.3f} | {c['ratio']:.2f} | "
              f"{c['exponent']:.2f} | {yes(a['cpu_flat'])} |",
              f"| peak RSS | {1000 * r['per_film']:.2f} MB per 1,000 films | {r['fixed']:,.0f} MB | {r['r2']:.3f} | "
              f"{r['ratio']:.2f} | {r['exponent']:.2f} | {yes(a['memory_within_limit'])} (<= {MEMORY_LIMIT_MB:,.0f} MB "
              "at every count) |",
              "", "| extrapolated to | films | time | peak RSS (linear fit) | cache on disk |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, e in a["extrapolation"].items():
        lines.append(f"| {name} | {e['films']:,} | {e['seconds'] / 3600:.2f} h | {e['peak_rss_mb']:,.0f} MB"
                     f"{'' if e['memory_within_limit'] else ' (over the limit)'} | {e['cache_bytes'] / 1e9:,.1f} GB |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 5000, 20000], help="films per run")
    ap.add_argument("--size", type=int, default=1024, help="film side, px (NIH: 1024)")
    ap.add_argument("--pool", type=int, default=48, help="distinct rendered films the set is made from")
    ap.add_argument("--cores", type=int, default=None, help="cores to pin each run to (default: all allowed)")
    ap.add_argument("--data", type=Path, default=None, help="data folder (default benchmarks/data/growth-nih-SIZEpx)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "growth.json")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # child process: run one count, print JSON
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.work)))
        return {}
    # every option and output checked before the long work
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if min(a.counts) < 1 or len(set(a.counts)) < 2:
        raise SystemExit("--counts: at least two different counts, each >= 1")
    if a.size < 32 or a.pool < 1:
        raise SystemExit("--size must be >= 32 and --pool >= 1")
    if a.cores is not None and not 1 <= a.cores <= max(len(allowed), 1):
        raise SystemExit(f"--cores must be 1 .. {len(allowed)}")
    data = a.data or HERE / "data" / f"growth-nih-{a.size}px"
    try:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        check_output(a.out, "--out", example="growth.json")
        check_output(data, "--data", folder=True)
    except (ValueError, OSError) as e:
        raise SystemExit(str(e)) from None
    k = max(1, a.size // 320)  # cxrnb.images: a PNG's base image is the film reduced k-fold, k = side // 320
    need = max(a.counts) * (a.size ** 2 + (-(-a.size // k)) ** 2)  # files (at most raw size) + the largest cache
    free = shutil.disk_usage(next(p for p in (data, *data.parents) if p.exists())).free
    if need > free:
        raise SystemExit(f"--data {data}: needs up to {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free")

    m = machine()
    cores = allowed[:a.cores] if a.cores else allowed
    gen = make_films(data, max(a.counts), a.size, a.pool)
    print(f"films: {gen['films']:,} under {data / 'films'} (pool of {a.pool} rendered in {gen['render_s']:.1f} s, "
          f"written in {gen['write_s']:.1f} s{', reused' if gen['reused'] else ''})", file=sys.stderr)
    rows = []
    for n in sorted(set(a.counts)):
        rows.append(measure_count(data, n, cores))
        print(f"  {n:,} films: {rows[-1]['seconds']:.1f} s, peak RSS {rows[-1]['peak_rss_mb']:.0f} MB", file=sys.stderr)
    mimic = mimic_base_bytes(a.size, data)
    report = {"config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()
                            if k not in ("child", "work")}, "data": str(data), "generator": GENERATOR},
              "machine": m, "cores_used": len(cores) or m["cores"], "generation": gen, "results": rows,
              "decode": mimic, "analysis": analyse(rows, mimic),
              "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
              "memory_measure": "VmHWM of the child process (peak resident set, /proc/self/status)"}
    report["markdown"] = tables(report)
    print("\n".join(report["markdown"]))
    d = mimic
    print(f"\nbase image: {d['nih_png']['base_shape']} ({d['nih_png']['base_bytes']:,} B, decode "
          f"{d['nih_png']['decode_ms']:.1f} ms) for a {a.size} px PNG; {d['mimic_jpeg']['base_shape']} "
          f"({d['mimic_jpeg']['base_bytes']:,} B, decode {d['mimic_jpeg']['decode_ms']:.1f} ms) for a "
          f"{MIMIC_SHAPE[1]} x {MIMIC_SHAPE[0]} JPEG")
    atomic_write(a.out, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    print(f"wrote {a.out}")
    return report


if __name__ == "__main__":
    main()
