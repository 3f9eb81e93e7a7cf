"""Images/s of the cxrnb tf.data pipeline vs Keras' legacy ImageDataGenerator, same files.

    python benchmarks/pipeline.py [--n 600 --src-size 1000 --size 224 --batch 32 --epochs 3 --later-epochs 8]

Writes (once, then reuses) a Kaggle-layout folder of `--n` ~1000x1000 JPEGs under
benchmarks/data/, then times, in one process:

* ImageDataGenerator.flow_from_directory (grayscale, rotation/zoom/brightness), one full pass
  per epoch: the reference articles' loader, which decodes every file every epoch;
* cxrnb.pipeline.make_dataset(training=True, augment=...): epoch 1 decodes (cold), later epochs
  read the uint8 images already in memory; the same policy run by the Keras executor (TF ops in
  the graph) and by the OpenCV executor (cv2 through tf.numpy_function, the pipeline's default);
* the same after a validation pass filled an on-disk ImageCache (that pass's own cost beside it);
* the alternatives behind the design: streaming from the ImageCache (`in_memory=False`) and a
  tf.data `map(numpy_function(read_gray))` + `.cache()`;
* single-image decode costs (full vs draft decoding), and the cxrnb figures on 1 core vs all.

Prints a table and writes benchmarks/results/pipeline.json. No model is trained: these are the
rates at which each loader can feed one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from cxrnb import pipeline  # noqa: E402
from cxrnb.images import ImageCache, read_gray  # noqa: E402

CLASS_DIRS = ("NORMAL", "PNEUMONIA")


# --------------------------------------------------------------------------- data

def _fallback_image(i: int, size: int) -> np.ndarray:
    """A noisy X-ray-ish picture: bright body, two dark lungs, ribs, sensor noise (JPEG q=90 ~ real sizes)."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = 170 - 120 * ((x - 0.5) / 0.48) ** 4
    lungs = sum(np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.48) / 0.28) ** 2) ** 2) for cx in (0.32, 0.68))
    ribs = 12 * np.sin(40 * y + 6 * np.abs(x - 0.5)) * (lungs > 0.2)
    img = body - 90 * lungs + ribs + rng.normal(0, 6, (size, size)) + 15 * rng.random()
    return np.clip(img, 0, 255).astype(np.uint8)


def make_data(root: Path, n: int, src_size: int) -> tuple[Path, str]:
    """The Kaggle layout with `n` train JPEGs at about `src_size` px; reused when already there."""
    from cxrnb import synthetic

    marker = root / "bench.json"
    if marker.exists():
        made_by = json.loads(marker.read_text())["generator"]
        if not (made_by.startswith("own") and hasattr(synthetic, "generate")):
            return root / "chest_xray" / "train", made_by
    if root.exists():
        shutil.rmtree(root)
    generator = "own fallback (noisy grayscale JPEGs, quality 90)"
    try:
        if hasattr(synthetic, "generate"):
            synthetic.generate(root, layout="kaggle", n_patients=-(-3 * n // 4), classes=("normal", "pneumonia"),
                               size=src_size, image_format="jpeg", seed=0, progress=True)
            generator = "cxrnb.synthetic.generate(layout='kaggle', image_format='jpeg')"
    except TypeError as e:  # an argument this version does not take: say so, use the fallback
        print(f"cxrnb.synthetic.generate refused the arguments ({e}); using the fallback images")
        shutil.rmtree(root, ignore_errors=True)
    train = root / "chest_xray" / "train"
    if generator.startswith("own"):
        for i in range(n):
            d = train / CLASS_DIRS[i % 2]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_fallback_image(i, src_size)).save(d / f"person{i}_{i:05d}.jpeg", quality=90)
    marker.write_text(json.dumps({"generator": generator, "n": n, "src_size": src_size}))
    return train, generator


def bench_folder(train: Path, n: int) -> Path:
    """Exactly `n` of the train JPEGs, classes alternating, hard-linked into one class-folder tree.

    Both loaders read this folder, so they see the same files (the generator may write more).
    """
    out = train.parent.parent / f"bench-{n}"
    if out.is_dir() and sum(1 for _ in out.rglob("*.jpeg")) == n:
        return out
    shutil.rmtree(out, ignore_errors=True)
    per_class = [sorted(p for p in (train / c).glob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
                 for c in CLASS_DIRS]
    picked = [f for pair in zip(*per_class) for f in pair][:n]
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} balanced images under {train}; lower --n or use a new --data")
    for f in picked:
        (out / f.parent.name).mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, out / f.parent.name / f.name)
        except OSError:
            shutil.copy2(f, out / f.parent.name / f.name)
    return out


def folder_index(folder: Path) -> pd.DataFrame:
    """An index of the images under `folder`/{NORMAL,PNEUMONIA}, as the kaggle reader would give."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    rows = [{"path": str(p.relative_to(folder)), "label": p.parent.name.lower(), "patient_id": p.stem,
             "view": "PA", "source": "bench", "root": str(folder)} for p in files]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- loaders

def idg_iterator(train: Path, size: int, batch: int):
    import tensorflow as tf

    gen = tf.keras.preprocessing.image.ImageDataGenerator(
        rescale=1 / 255, rotation_range=10, zoom_range=0.1, brightness_range=(0.9, 1.1))
    return gen.flow_from_directory(str(train), target_size=(size, size), color_mode="grayscale",
                                   class_mode="binary", batch_size=batch, shuffle=True, seed=0)


def fused_augmenter(degrees: float = 10.0, zoom: float = 0.1, brightness: float = 0.1, seed: int = 0):
    """PLACEHOLDER for cxrnb.augment: rotation + zoom as ONE affine warp per image, plus brightness.

    Same parameters as the ImageDataGenerator baseline; one `ImageProjectiveTransformV3` call
    per batch instead of one per Keras layer.
    """
    import tensorflow as tf

    gen = tf.random.Generator.from_seed(seed)

    def augment(x):
        b, h, w = tf.shape(x)[0], tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
        theta = gen.uniform([b], -degrees, degrees) * (np.pi / 180)
        inv = 1.0 / gen.uniform([b], 1 - zoom, 1 + zoom)
        a0, a1 = tf.cos(theta) * inv, -tf.sin(theta) * inv
        b0, b1 = tf.sin(theta) * inv, tf.cos(theta) * inv
        cx, cy = (w - 1) / 2, (h - 1) / 2
        zeros = tf.zeros_like(a0)
        t = tf.stack([a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy, zeros, zeros], axis=1)
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=t, output_shape=tf.shape(x)[1:3], interpolation="BILINEAR",
            fill_mode="CONSTANT", fill_value=0.0)
        return x + gen.uniform([b, 1, 1, 1], -brightness, brightness) * 255.0

    return augment


def make_augmenter(preset: str | None = None, executor: str = "keras"):
    """cxrnb.augment's `executor` ("keras", "opencv") when that module exists; else a clearly
    labelled stand-in.

    preset None: the policy matched to the ImageDataGenerator baseline (rotation 10, zoom 0.1,
    brightness 0.9-1.1; the default preset minus its gamma and crop); else that preset.
    """
    try:
        from cxrnb import augment as aug
    except ImportError:
        return fused_augmenter(), ("PLACEHOLDER (cxrnb.augment absent): rotation 10deg + zoom 0.1 fused in one "
                                   "affine warp + brightness 0.1, in-graph per batch")
    policy = aug.AugmentPolicy.preset("default").replace(gamma=(1.0, 1.0), crop=0.0) if preset is None \
        else aug.AugmentPolicy.preset(preset)
    return aug.make_augmenter(policy, executor, seed=0), \
        f"cxrnb.augment.make_augmenter({policy if preset is None else repr(preset)}, {executor!r})"


def numpy_function_cache_dataset(index: pd.DataFrame, size: int, batch: int, augment, seed: int = 0):
    """The design alternative: tf.data map(numpy_function(read_gray)) -> .cache() -> shuffle -> batch."""
    import tensorflow as tf
    from cxrnb.index import image_paths

    paths = [str(p) for p in image_paths(index)]
    labels = pipeline.labels_to_ids(index["label"], ["normal", "pneumonia"])

    def load(p, y):
        img = tf.numpy_function(lambda b: read_gray(b.decode(), size)[0], [p], tf.uint8, stateful=False)
        return tf.ensure_shape(img, (size, size)), y

    def finish(x, y):
        x = tf.clip_by_value(augment(tf.cast(x, tf.float32)[..., None]), 0.0, 255.0) / 255.0
        return x, y

    return (tf.data.Dataset.from_tensor_slices((paths, labels))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
            .shuffle(len(paths), seed=seed, reshuffle_each_iteration=True).batch(batch)
            .map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


# --------------------------------------------------------------------------- timing

def epoch(it, steps: int | None = None) -> int:
    """Consume one epoch (or `steps` batches of an endless Keras iterator); images seen."""
    n = 0
    if steps is None:
        for x, _ in it:
            n += int(x.shape[0])
    else:
        for _ in range(steps):
            x, _ = next(it)
            n += int(x.shape[0])
    return n


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run_epochs(build, epochs: int) -> list[dict]:
    """Epoch 1 includes building the dataset (that is where cxrnb decodes or reads its cache)."""
    rows = []
    t0 = time.perf_counter()
    ds = build()
    built = time.perf_counter() - t0
    for e in range(epochs):
        dt, n = timed(lambda: epoch(ds))
        row = {"epoch": e + 1, "images": n, "seconds": dt, "images_per_s": n / dt}
        if e == 0:
            row.update(seconds=dt + built, images_per_s=n / (dt + built), build_seconds=built)
        rows.append(row)
    return rows


def smoothed_copies(paths: list[Path], out: Path) -> list[Path]:
    """The same pictures with the pixel noise blurred away (JPEG q90): closer to real, smoother films."""
    from PIL import ImageFilter

    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for p in paths:
        with Image.open(p) as im:
            im.convert("L").filter(ImageFilter.GaussianBlur(2)).save(out / p.name, quality=90)
        copies.append(out / p.name)
    return copies


def decode_costs(paths: list[Path], size: int) -> dict:
    """Milliseconds per image, one thread: full decode vs draft (reduced-size) decode."""
    import tensorflow as tf

    def full_pil(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("L"))

    def full_pil_resize(p):
        return np.asarray(Image.fromarray(full_pil(p)).resize((size, size), Image.Resampling.BOX))

    def tf_full(p):
        return tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(str(p)), channels=1), (size, size))

    def tf_ratio(p):
        with Image.open(p) as im:
            w = min(im.size)
        r = max([r for r in (1, 2, 4, 8) if w / r >= 2 * size] or [1])
        return tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(str(p)), channels=1, ratio=r), (size, size))

    out = {}
    for name, fn in [("PIL full decode", full_pil), ("PIL full decode + resize", full_pil_resize),
                     ("read_gray (draft decode + resize)", lambda p: read_gray(p, size)),
                     ("tf.io.decode_jpeg full + resize", tf_full),
                     ("tf.io.decode_jpeg ratio + resize", tf_ratio)]:
        fn(paths[0])  # warm up
        t = time.perf_counter()
        for p in paths:
            fn(p)
        out[name] = 1000 * (time.perf_counter() - t) / len(paths)
    with Image.open(paths[0]) as im:
        out["source size"] = f"{im.size[0]}x{im.size[1]}"
    out["mean file KB"] = float(np.mean([p.stat().st_size for p in paths]) / 1024)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images (train split)")
    ap.add_argument("--src-size", type=int, default=1000, help="source JPEG side, px")
    ap.add_argument("--size", type=int, default=224, help="model input side, px")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="ImageDataGenerator epochs (~3 s each)")
    ap.add_argument("--later-epochs", type=int, default=8,
                    help="cxrnb rows: epochs after the first (~0.1 s each: several steady the rate)")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default benchmarks/data/...)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pipeline.json")
    ap.add_argument("--no-one-core", action="store_true", help="skip the 1-core repeat")
    args = ap.parse_args(argv)

    import tensorflow as tf

    root = args.data or HERE / "data" / f"pipeline-kaggle-{args.n}x{args.src_size}"
    train, generator = make_data(root, args.n, args.src_size)
    folder = bench_folder(train, args.n)
    index = folder_index(folder)
    n = len(index)
    aug, aug_name = make_augmenter()
    cv_aug, _ = make_augmenter(executor="opencv")
    classes = ["normal", "pneumonia"]
    kw = dict(image_size=args.size, batch_size=args.batch, training=True, augment=aug, seed=0, progress=False)
    kw_cv = {**kw, "augment": cv_aug}
    print(f"{n} images from {folder} ({generator}); augmentation: {aug_name}")
    from cxrnb.index import image_paths

    sample = image_paths(index)[:40]
    costs = {"as generated": decode_costs(sample, args.size)}
    with tempfile.TemporaryDirectory() as tmp:
        costs["noise blurred away (smoother, like real films)"] = decode_costs(
            smoothed_copies(sample, Path(tmp)), args.size)
    results: dict[str, list[dict]] = {}
    cx_epochs = 1 + args.later_epochs
    # Process-wide one-time costs (TF kernels, Keras op set-up) are paid here, untimed, so that
    # they are not billed to whichever loader happens to run first.
    epoch(pipeline.make_dataset(index.head(8), classes, **{**kw, "batch_size": 4}))
    epoch(pipeline.make_dataset(index.head(8), classes, **{**kw_cv, "batch_size": 4}))
    epoch(numpy_function_cache_dataset(index.head(8), args.size, 4, make_augmenter()[0]))

    # ImageDataGenerator: an endless iterator; one epoch = len(it) batches
    it = idg_iterator(folder, args.size, args.batch)
    idg = []
    for e in range(args.epochs):
        dt, m = timed(lambda: epoch(it, len(it)))
        idg.append({"epoch": e + 1, "images": m, "seconds": dt, "images_per_s": m / dt})
    results["ImageDataGenerator.flow_from_directory"] = idg

    results["cxrnb make_dataset, Keras executor (decodes in epoch 1)"] = run_epochs(
        lambda: pipeline.make_dataset(index, classes, **kw), cx_epochs)
    results["cxrnb make_dataset, OpenCV executor (decodes in epoch 1)"] = run_epochs(
        lambda: pipeline.make_dataset(index, classes, **kw_cv), cx_epochs)

    with tempfile.TemporaryDirectory() as tmp:
        # the validation cache at the pipeline's size: epoch 1 then reads pixels, no resize
        cache = ImageCache(Path(tmp) / "val", args.size)
        from cxrnb.validate import validate_images

        # what building any dataset costs besides loading pixels (tracing its tf.data functions,
        # the augmenter probe): a few cached images, after the process-wide warm-up above
        small = index.head(2 * args.batch)
        validate_images(small, cache=ImageCache(Path(tmp) / "small", args.size), progress=False)
        build_small = [timed(lambda: pipeline.make_dataset(
            small, classes, cache=ImageCache(Path(tmp) / "small", args.size), **kw))[0] for _ in range(3)]
        vdt, _ = timed(lambda: validate_images(index, cache=cache, progress=False))
        results["validation pass (decode, hash, fill ImageCache)"] = [
            {"epoch": 0, "images": n, "seconds": vdt, "images_per_s": n / vdt}]
        results["cxrnb after validation (cache=ImageCache), Keras"] = run_epochs(
            lambda: pipeline.make_dataset(index, classes, cache=cache, **kw), cx_epochs)
        results["cxrnb after validation (cache=ImageCache), OpenCV"] = run_epochs(
            lambda: pipeline.make_dataset(index, classes, cache=cache, **kw_cv), cx_epochs)
        results["alt: in_memory=False, streaming an empty ImageCache"] = run_epochs(
            lambda: pipeline.make_dataset(index, classes, cache=Path(tmp) / "stream", in_memory=False, **kw),
            cx_epochs)
    full_aug, full_name = make_augmenter("default")
    results["cxrnb, full 'default' preset (adds gamma + crop), Keras"] = run_epochs(
        lambda: pipeline.make_dataset(index, classes, **{**kw, "augment": full_aug}), cx_epochs)
    results["cxrnb, full 'default' preset (adds gamma + crop), OpenCV"] = run_epochs(
        lambda: pipeline.make_dataset(index, classes, **{**kw, "augment": make_augmenter("default", "opencv")[0]}),
        cx_epochs)
    results["cxrnb, no augmentation (val/test)"] = run_epochs(
        lambda: pipeline.make_dataset(index, classes, **{**kw, "training": False}), cx_epochs)
    results["alt: tf.data map(numpy_function(read_gray)) + .cache()"] = run_epochs(
        lambda: numpy_function_cache_dataset(index, args.size, args.batch, aug), cx_epochs)

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not args.no_one_core and len(cores) > 1:
        os.sched_setaffinity(0, {cores[0]})  # threads of this process now share one core
        try:
            results["cxrnb make_dataset, Keras executor, 1 core"] = run_epochs(
                lambda: pipeline.make_dataset(index, classes, **kw), cx_epochs)
            results["cxrnb make_dataset, OpenCV executor, 1 core"] = run_epochs(
                lambda: pipeline.make_dataset(index, classes, **kw_cv), cx_epochs)
            it1 = idg_iterator(folder, args.size, args.batch)
            dt, m = timed(lambda: epoch(it1, len(it1)))
            results["ImageDataGenerator.flow_from_directory, 1 core"] = [
                {"epoch": 1, "images": m, "seconds": dt, "images_per_s": m / dt}]
        finally:
            os.sched_setaffinity(0, set(cores))

    # ---- table
    def rate(rows, later: bool) -> float | None:
        sel = [r for r in rows if (r["epoch"] > 1) == later]
        return (sum(r["images"] for r in sel) / sum(r["seconds"] for r in sel)) if sel else None

    base1, base_later = rate(idg, False), rate(idg, True)
    table = []
    for name, rows in results.items():
        first = rate(rows, False)
        later = rate(rows, True)
        table.append({"loader": name, "epoch1_images_per_s": first, "later_images_per_s": later,
                      "epoch1_vs_idg": first / base1 if first else None,
                      "later_vs_idg": later / base_later if later and base_later else None})
    w = max(len(r["loader"]) for r in table)
    fmt = lambda v, d=0: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    print(f"\n{'loader':<{w}}  {'epoch 1 img/s':>13}  {'x IDG':>6}  {'later img/s':>11}  {'x IDG':>6}")
    for r in table:
        print(f"{r['loader']:<{w}}  {fmt(r['epoch1_images_per_s']):>13}  {fmt(r['epoch1_vs_idg'], 1):>6}  "
              f"{fmt(r['later_images_per_s']):>11}  {fmt(r['later_vs_idg'], 1):>6}")
    names = list(costs)
    print(f"\nsingle-image decode + resize to {args.size}, one thread, ms/img:")
    print(f"  {'':<36}" + "".join(f"{k[:24]:>26}" for k in names))
    for row in costs[names[0]]:
        vals = [costs[k][row] for k in names]
        print(f"  {row:<36}" + "".join(f"{v if isinstance(v, str) else f'{v:.2f}':>26}" for v in vals))

    ncores = len(cores) or os.cpu_count() or 1
    draft_ms = costs[names[0]]["read_gray (draft decode + resize)"]
    ceiling = ncores * 1000 / draft_ms
    notes = [
        f"epoch-1 ceiling with decoding as the only cost: {ncores} cores x 1000 / {draft_ms:.2f} ms = "
        f"{ceiling:,.0f} img/s = {ceiling / base1:.1f}x ImageDataGenerator (which decodes on one core)",
        "later epochs decode nothing: their rate is the augmenter's (compare the no-augmentation row)",
        f"building a dataset costs {1000 * min(build_small):.0f} ms besides loading its pixels "
        "(tracing its tf.data functions, the augmenter probe): in epoch 1 of every cxrnb row",
        "files are in the OS page cache for every loader (no disk reads are timed)",
    ]
    print("\n" + "\n".join(f"note: {t}" for t in notes))
    report = {
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "images": n, "generator": generator, "augmentation": aug_name,
                   "augmentation_opencv": make_augmenter(executor="opencv")[1],
                   "full_default_augmentation": full_name},
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "cpus": len(cores) or os.cpu_count(), "machine": platform.machine()},
        "decode_ms_per_image": costs,
        "build_overhead_seconds": build_small,
        "epochs": results,
        "table": table,
        "targets": {"epoch1_vs_idg": 5, "later_vs_idg": 20},
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
