"""Training images/s by input: ImageDataGenerator vs the cxrnb pipeline vs in-memory tensors.

    python benchmarks/train.py [--quick] [--patients 112 --src-size 512 --repeats 3]
                               [--models cnn4,compact] [--out benchmarks/results/train.json]

Writes (once, then reuses) a synthetic Kaggle-layout set of ~512 px JPEGs under benchmarks/data/
(`cxrnb.synthetic.ensure`, every patient in the train split) and trains, per model, the same
architecture (built by `cxrnb.train.build` from the training preset, same seed) on the same
images, augmentation and batch, fed by

* (a) `ImageDataGenerator(rescale=1/255, rotation/zoom/brightness).flow_from_directory`
  (grayscale, target size and batch of the preset), as the reference articles do. With Keras'
  default workers=1, `fit` pulls it through `tf.data.Dataset.from_generator` + prefetch: one
  Python thread, overlapping the training step only where neither needs the GIL or the CPU;
* (b) `cxrnb.pipeline.make_dataset(training=True, augment=<the preset's policy>)`: decodes up
  front when built (timed apart, "decode"), then each epoch is gather + augment in tf.data;
* (c) in-memory float tensors, already batched, no augmentation: input costs nothing, so this is
  the model's own training rate, the ceiling for (a) and (b);
* (b0) as (b) without augmentation: what of (c) - (b) is the pipeline's plumbing (shuffle,
  gather, tf.data threads beside the model's) rather than the augmentation.

Models: "article002" (article 002's CNN, `cnn4` at 150 px, rotation 20 / zoom 0.3 /
brightness 0.7-1.3) and "default" (`compact` at 128 px, the default policy; ImageDataGenerator
has no gamma contrast or random crop, so (a) gets the policy's rotation, zoom and brightness).
Also timed: each loader alone, without a model (images/s it can deliver). The default preset's
class weights are left out (they would cost all three loaders the same).

Each figure is the median of `--repeats` epochs after one warm-up epoch; the loaders take turns
epoch by epoch, so load from other processes hits them alike. Everything runs twice, in a fresh
process pinned to one CPU (before TensorFlow is imported, so its thread pools size themselves to
it) and in one pinned to two (`--cpus`). Prints a table and writes
benchmarks/results/train.json.

Reading it: (b)/(c) near 1 means the input pipeline is not the bottleneck; 1 - (b)/(c) is the
share of step time spent waiting for input. If `fit` alternates generator and model (no
overlap), (a) is 1 / (1/IDG alone + 1/(c)) ("(a) if serial"); overlap only raises (a), and (b)
cannot beat (c), so (b)/(a) is at most 1 + (c)/(IDG alone) (the "bound" row): on a CPU, where
the model is slow, that is near 2x whatever the pipeline's own speed.
The "per CPU-second" rows divide by this process's CPU time instead of wall time: on a shared,
loaded machine they move much less than wall rates, and with one CPU they are the rates that
CPU would give undisturbed; 1 - (b)/(c) per CPU-second is the share of the training work that
is input (decoding nothing, augmenting). With several CPUs, idle waiting shows only in wall time.
"""
from __future__ import annotations

import os

# A worker pins itself before numpy/TensorFlow start their thread pools (new threads inherit it).
if os.environ.get("CXRNB_BENCH_CPUS") and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {int(c) for c in os.environ["CXRNB_BENCH_CPUS"].split(",")})
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

CLASSES = ("normal", "pneumonia")
#: model key -> (cxrnb.train preset, ImageDataGenerator settings nearest to its augment policy)
MODELS = {
    "cnn4": ("article002", dict(rotation_range=20, zoom_range=0.3, brightness_range=(0.7, 1.3))),
    "compact": ("default", dict(rotation_range=10, zoom_range=0.1, brightness_range=(0.9, 1.1))),
}
LOADERS = ("a_idg", "b_cxrnb", "b0_cxrnb_noaug", "c_tensors")


# --------------------------------------------------------------------------- data

def make_data(root: Path, n_patients: int, src_size: int) -> Path:
    """A Kaggle-layout synthetic set (JPEG, all patients in train) under `root`; reused when there."""
    from cxrnb import synthetic

    synthetic.ensure(root, layout="kaggle-pneumonia", classes=CLASSES, n_patients=n_patients, size=src_size,
                     image_format="jpeg", split_fractions=(1.0, 0.0, 0.0), seed=0, progress=False)
    return root


# --------------------------------------------------------------------------- worker (one process)

def _cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS cannot pin, e.g. macOS)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds; CPU time is this process's, all its threads."""
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    now = _clock()
    return now[0] - t[0], now[1] - t[1]


def measure(root: Path, model_key: str, repeats: int) -> dict:
    """Per-epoch (wall, CPU) seconds of each loader for one model, loaders taking turns; epoch 0
    is warm-up. Images per CPU-second barely move with load from other processes: in a process
    pinned to one CPU they are the rate that CPU would give undisturbed."""
    import warnings

    import keras
    import numpy as np
    import tensorflow as tf

    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")  # fit's default, harmless

    from cxrnb.pipeline import labels_to_ids, load_images, make_dataset
    from cxrnb.train import TrainConfig, build
    from cxrnb.validate import load_index

    cfg = TrainConfig.preset(MODELS[model_key][0])
    size, batch = cfg.image_size, cfg.batch_size
    index = load_index("synthetic", root, check_images=False, progress=False).index
    n = len(index)
    kw = dict(image_size=size, batch_size=batch, training=True, augment=cfg.augment, seed=0, progress=False)

    # untimed: one-time TensorFlow set-up (kernels, tf.data and augmenter tracing), so that the
    # decode figure below is the decoding
    for _ in make_dataset(index.head(8), CLASSES, **{**kw, "batch_size": 4}):
        pass
    t = time.perf_counter()
    ds_b = make_dataset(index, CLASSES, **kw)
    decode_s = time.perf_counter() - t

    x = load_images(index, size, progress=False)[..., None].astype(np.float32) / 255.0
    y = labels_to_ids(index["label"], CLASSES)
    ds_c = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().prefetch(tf.data.AUTOTUNE)

    idg = tf.keras.preprocessing.image.ImageDataGenerator(rescale=1 / 255, fill_mode="constant", cval=0.0,
                                                          **MODELS[model_key][1])
    flow = idg.flow_from_directory(str(root / "chest_xray" / "train"), target_size=(size, size),
                                   color_mode="grayscale", classes=[c.upper() for c in CLASSES],
                                   class_mode="sparse", batch_size=batch, shuffle=True, seed=0)
    if flow.samples != n:
        raise SystemExit(f"flow_from_directory found {flow.samples} images, the index {n}: "
                         f"delete {root} and run again")

    models = {}
    for name in LOADERS:
        keras.utils.set_random_seed(0)
        models[name] = build(cfg, list(CLASSES))  # the training preset's model, optimiser and loss
    ds_b0 = make_dataset(index, CLASSES, **{**kw, "augment": None})
    feeds = {"a_idg": flow, "b_cxrnb": ds_b, "b0_cxrnb_noaug": ds_b0, "c_tensors": ds_c}

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = _clock()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = _since(self.t)

    def input_epoch(feed) -> tuple[float, float]:
        t = _clock()
        if feed is flow:
            for i in range(len(flow)):
                flow[i]
        else:
            for _ in feed:
                pass
        return _since(t)

    keys = ("input_a_idg", "input_b_cxrnb", *(f"fit_{k}" for k in LOADERS))
    secs: dict[str, list[tuple[float, float]]] = {k: [] for k in keys}
    for r in range(1 + repeats):
        secs["input_a_idg"].append(input_epoch(flow))
        secs["input_b_cxrnb"].append(input_epoch(ds_b))
        for name in LOADERS:
            timer = EpochTimer()
            models[name].fit(feeds[name], epochs=1, verbose=0, callbacks=[timer])
            secs[f"fit_{name}"].append(timer.seconds)
    rates = {k: n / statistics.median(w for w, _ in v[1:]) for k, v in secs.items()}
    cpu_rates = {k: n / statistics.median(c for _, c in v[1:]) for k, v in secs.items()}
    return {"model": model_key, "preset": cfg.name, "image_size": size, "batch_size": batch,
            "augment": cfg.augment, "images": n, "decode_seconds": decode_s,
            "decode_images_per_s": n / decode_s, "epoch_seconds_wall_cpu": secs,
            "images_per_s": rates, "images_per_cpu_s": cpu_rates}


def worker(root: Path, models: list[str], repeats: int, out: Path) -> None:
    """Measure every model in this (possibly pinned) process; write the rows to `out`."""
    import tensorflow as tf

    rows = [measure(root, m, repeats) for m in models]
    out.write_text(json.dumps({"cpus": len(_cpus()), "tensorflow": tf.__version__,
                               "rows": rows}))


# --------------------------------------------------------------------------- driver

def run_worker(cpus: list[int], args: argparse.Namespace, root: Path) -> dict:
    """This script as a worker in a fresh process pinned to `cpus`; its rows."""
    out = args.out.parent / f".train-worker-{len(cpus)}cpu.json"
    env = {**os.environ, "CXRNB_BENCH_CPUS": ",".join(map(str, cpus))}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(out), "--data", str(root),
           "--models", ",".join(args.models), "--repeats", str(args.repeats)]
    print(f"{len(cpus)} CPU(s) {cpus}: training {', '.join(args.models)} ...", flush=True)
    subprocess.run(cmd, env=env, check=True)
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def summarise(row: dict) -> dict:
    """The figures the issue asks for, from one worker row."""
    r, p = row["images_per_s"], row["images_per_cpu_s"]
    a, b, c, i = r["fit_a_idg"], r["fit_b_cxrnb"], r["fit_c_tensors"], r["input_a_idg"]
    pa, pb, pc = p["fit_a_idg"], p["fit_b_cxrnb"], p["fit_c_tensors"]
    return {"idg_alone": i, "cxrnb_alone": r["input_b_cxrnb"], "decode": row["decode_images_per_s"],
            "a": a, "b": b, "b0": r["fit_b0_cxrnb_noaug"], "c": c, "b/c": b / c, "wait_share": 1 - b / c, "b/a": b / a,
            "bound": 1 + c / i, "a_serial": 1 / (1 / i + 1 / c),
            "a_cpu": pa, "b_cpu": pb, "b0_cpu": p["fit_b0_cxrnb_noaug"], "c_cpu": pc,
            "b/c_cpu": pb / pc, "b/a_cpu": pb / pa,
            "idg_alone_cpu": p["input_a_idg"], "cxrnb_alone_cpu": p["input_b_cxrnb"]}


ROWS = [  # (key, label, format)
    ("idg_alone", "ImageDataGenerator alone, img/s", "{:,.0f}"),
    ("cxrnb_alone", "cxrnb pipeline alone (per epoch), img/s", "{:,.0f}"),
    ("decode", "cxrnb decode when built, img/s", "{:,.0f}"),
    ("a", "(a) fit on ImageDataGenerator, img/s", "{:,.0f}"),
    ("b", "(b) fit on cxrnb pipeline, img/s", "{:,.0f}"),
    ("b0", "(b0) fit on cxrnb, no augmentation, img/s", "{:,.0f}"),
    ("c", "(c) fit on in-memory tensors, img/s", "{:,.0f}"),
    ("b/c", "(b)/(c)  target >= 0.9", "{:.2f}"),
    ("wait_share", "input wait share of step, 1-(b)/(c)", "{:.0%}"),
    ("b/a", "(b)/(a)", "{:.2f}"),
    ("bound", "bound on (b)/(a): 1+(c)/IDG alone", "{:.2f}"),
    ("a_serial", "(a) if serial: 1/(1/IDG+1/(c)), img/s", "{:,.0f}"),
    ("idg_alone_cpu", "ImageDataGenerator alone, img/CPU-s", "{:,.0f}"),
    ("cxrnb_alone_cpu", "cxrnb pipeline alone, img/CPU-s", "{:,.0f}"),
    ("a_cpu", "(a) img per CPU-second", "{:,.0f}"),
    ("b_cpu", "(b) img per CPU-second", "{:,.0f}"),
    ("b0_cpu", "(b0) img per CPU-second", "{:,.0f}"),
    ("c_cpu", "(c) img per CPU-second", "{:,.0f}"),
    ("b/c_cpu", "(b)/(c) per CPU-second", "{:.2f}"),
    ("b/a_cpu", "(b)/(a) per CPU-second", "{:.2f}"),
]


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=112, help="synthetic patients (1-4 films each)")
    ap.add_argument("--src-size", type=int, default=512, help="side of the synthetic JPEGs, px")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per loader (after 1 warm-up)")
    ap.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS),
                    help=f"comma-separated, of {list(MODELS)}")
    ap.add_argument("--cpus", type=lambda s: [int(k) for k in s.split(",")], default=[1, 2],
                    help="CPU counts to pin a run to, comma-separated (capped at the CPUs available)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 16 patients at 256 px, 1 repeat")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default under benchmarks/data/)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train.json")
    ap.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        ap.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    if args.worker:
        worker(args.data, args.models, args.repeats, args.worker)
        return None
    if args.quick:
        args.patients, args.src_size, args.repeats = 16, 256, 1
        args.out = args.out.with_name(args.out.stem + "-quick.json")

    t0 = time.perf_counter()
    root = args.data or HERE / "data" / f"train-kaggle-{args.patients}p-{args.src_size}px"
    make_data(root, args.patients, args.src_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cpus = _cpus()
    if not hasattr(os, "sched_setaffinity"):
        print("this OS cannot pin a process to CPUs: one run, on all of them")
        args.cpus = [len(cpus)]
    load_before = os.getloadavg()
    if min(args.cpus) < 1:
        ap.error(f"--cpus: counts must be >= 1, got {args.cpus}")
    runs = [run_worker(cpus[:k], args, root) for k in sorted({min(k, len(cpus)) for k in args.cpus})]
    cols = [(f"{row['model']} {row['image_size']}px, {run['cpus']} CPU", summarise(row))
            for m in args.models for run in runs for row in run["rows"] if row["model"] == m]

    first = runs[0]["rows"][0]
    print(f"\n{first['images']} synthetic {args.src_size}px JPEGs, batch {first['batch_size']}; median of "
          f"{args.repeats} epoch(s) after 1 warm-up; load average before {load_before[0]:.1f}, "
          f"after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    w, cw = max(len(r[1]) for r in ROWS), max(18, *(len(c[0]) + 2 for c in cols))
    print(f"{'':<{w}}" + "".join(f"{name:>{cw}}" for name, _ in cols))
    for key, label, fmt in ROWS:
        print(f"{label:<{w}}" + "".join(f"{fmt.format(s[key]):>{cw}}" for _, s in cols))
    report = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
                   "data": str(root), "idg_settings": {k: v[1] for k, v in MODELS.items()}},
        "environment": {"python": platform.python_version(), "tensorflow": runs[0]["tensorflow"],
                        "cpus": len(cpus), "machine": platform.machine(),
                        "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "runs": runs,
        "table": {name: s for name, s in cols},
        "targets": {"b/c": 0.9},
        "seconds": time.perf_counter() - t0,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out} ({report['seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
