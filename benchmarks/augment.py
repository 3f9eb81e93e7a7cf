"""Augmented images per second: Keras layers in tf.data, OpenCV and imgaug via tf.numpy_function, ImageDataGenerator.

    python benchmarks/augment.py [--n 512] [--size 224] [--batch 32] [--policy default]
                                 [--out benchmarks/results/augment.json]

Same in-memory uint8 images (synthetic chest X-rays from `cxrnb.synthetic.render_image`), same
policy, one run. Each method is warmed up (graph tracing, first batches)
outside the timing, then timed over full passes of the N images (best of PASSES, because the
machine may be shared). The legacy
ImageDataGenerator (the reference articles' tool; only `tf.keras.preprocessing.image` still has it
under Keras 3) gets the closest settings: rotation_range, zoom_range, brightness_range,
width/height_shift_range, horizontal_flip, fill_mode="constant", cval=0. It has no gamma
contrast and no random crop, so rows marked "IDG-matched" run our executors on the same policy
minus gamma and crop, for a like-for-like comparison. The OpenCV executor runs the Keras
executor's draws and arithmetic (`cxrnb.augment.transforms`: lookup table, one warp matrix) with
cv2.LUT + cv2.warpAffine per image.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cxrnb.synthetic import render_image  # noqa: E402


def make_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """`n` uint8 synthetic films: 64 distinct renders, tiled (rendering is not what we time)."""
    labels = ("normal", "pneumonia", "covid", "effusion")
    k = min(n, 64)
    base = np.stack([render_image(seed, i // 4, i % 4, labels[i % 4], size=size)[0] for i in range(k)])
    return np.resize(base, (n, size, size)).astype(np.uint8), "cxrnb.synthetic.render_image"


PASSES = 3  # each method: best of this many timed passes (the machine may be shared)


def time_tfdata(ds, n: int, warmup_batches: int = 2) -> float:
    for _ in ds.take(warmup_batches):
        pass
    best = 0.0
    for _ in range(PASSES):
        t = time.perf_counter()
        count = 0
        for b in ds:
            count += int(b.shape[0])
        dt = time.perf_counter() - t
        assert count == n, (count, n)
        best = max(best, n / dt)
    return best


def tfdata_rate(x: np.ndarray, aug, batch: int, parallel: int | str | None = "auto",
                seeded: bool = False) -> float:
    """`parallel`: "auto" (tf.data.AUTOTUNE), an int (fixed num_parallel_calls) or None (sequential).

    `seeded`: as `cxrnb.pipeline.make_dataset` runs the Keras and OpenCV executors - the uint8 batch and a
    per-batch seed from ``Dataset.random`` (stateless draws: parallel and reproducible)."""
    import tensorflow as tf

    calls = tf.data.AUTOTUNE if parallel == "auto" else parallel
    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch)
    if seeded:
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=0, rerandomize_each_iteration=True))
        ds = ds.map(lambda b, r: aug(b[..., None], seed=tf.stack([tf.constant(0, tf.int64), r])),
                    num_parallel_calls=calls, deterministic=True)
    else:
        ds = ds.map(lambda b: aug(tf.cast(b, tf.float32)[..., None]), num_parallel_calls=calls)
    return time_tfdata(ds.prefetch(tf.data.AUTOTUNE), len(x))


def idg_rate(x: np.ndarray, policy, batch: int) -> float:
    from tensorflow.keras.preprocessing.image import ImageDataGenerator  # legacy, Keras 3: tf.keras only

    b = policy.brightness
    gen = ImageDataGenerator(
        rotation_range=policy.rotation, zoom_range=policy.zoom,
        width_shift_range=policy.shift, height_shift_range=policy.shift,
        brightness_range=None if b == (1.0, 1.0) else list(b),
        horizontal_flip=policy.horizontal_flip, vertical_flip=False,
        fill_mode="constant", cval=0.0)
    xf = x[..., None].astype(np.float32)
    it = gen.flow(xf, batch_size=batch, shuffle=False, seed=0)
    steps = int(np.ceil(len(x) / batch))
    next(it)  # warm-up
    best = 0.0
    for _ in range(PASSES):
        it.reset()
        t = time.perf_counter()
        count = 0
        for _ in range(steps):
            count += len(next(it))
        dt = time.perf_counter() - t
        assert count == len(x), (count, len(x))
        best = max(best, len(x) / dt)
    return best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--policy", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/augment.json")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from cxrnb.augment import AugmentPolicy, imgaug_augmenter, keras_augmenter, opencv_augmenter

    policy = AugmentPolicy.preset(args.policy)
    matched = policy.replace(gamma=[1.0, 1.0], crop=0.0)  # what ImageDataGenerator can express
    t0 = time.perf_counter()
    x, source = make_images(args.n, args.size, args.seed)
    print(f"{args.n} images {args.size}x{args.size} ({source}, {time.perf_counter() - t0:.1f}s), "
          f"batch {args.batch}, policy {args.policy!r}: {policy.to_json()}")

    rows = []

    def add(method, rate, note=""):
        rows.append({"method": method, "images_per_s": rate, "note": note})
        print(f"  {method:<52s} {rate:9.0f} img/s  {note}", flush=True)

    cores = os.cpu_count() or 1
    add("ImageDataGenerator.flow (legacy)", idg_rate(x, policy, args.batch),
        "no gamma, no crop: not expressible")
    add("keras fused, per-batch seed, map AUTOTUNE",
        tfdata_rate(x, keras_augmenter(policy, seed=args.seed), args.batch, seeded=True),
        "full policy, uint8 in, reproducible (as make_dataset runs it)")
    add("keras fused, float in, tf.data map AUTOTUNE",
        tfdata_rate(x, keras_augmenter(policy, seed=args.seed), args.batch), "full policy, seed state")
    add(f"keras fused, float in, tf.data map parallel={cores}",
        tfdata_rate(x, keras_augmenter(policy, seed=args.seed), args.batch, cores), "full policy, seed state")
    add("keras fused, float in, tf.data map sequential",
        tfdata_rate(x, keras_augmenter(policy, seed=args.seed), args.batch, None),
        "full policy, seed state: reproducible only one batch at a time")
    add("keras fused, per-batch seed, IDG-matched",
        tfdata_rate(x, keras_augmenter(matched, seed=args.seed), args.batch, seeded=True), "no gamma/crop")
    add("opencv, per-batch seed, map AUTOTUNE",
        tfdata_rate(x, opencv_augmenter(policy, seed=args.seed), args.batch, seeded=True),
        "full policy, uint8 in, reproducible (make_dataset's default)")
    add(f"opencv, float in, tf.data map parallel={cores}",
        tfdata_rate(x, opencv_augmenter(policy, seed=args.seed), args.batch, cores), "full policy, own Generator")
    add("opencv, per-batch seed, map sequential",
        tfdata_rate(x, opencv_augmenter(policy, seed=args.seed), args.batch, None, seeded=True),
        "full policy: one core's worth")
    add("opencv, per-batch seed, IDG-matched",
        tfdata_rate(x, opencv_augmenter(matched, seed=args.seed), args.batch, seeded=True), "no gamma/crop")
    add("imgaug numpy_function, tf.data map AUTOTUNE",
        tfdata_rate(x, imgaug_augmenter(policy, seed=args.seed), args.batch), "full policy")
    add(f"imgaug numpy_function, tf.data map parallel={cores}",
        tfdata_rate(x, imgaug_augmenter(policy, seed=args.seed), args.batch, cores), "full policy")
    add(f"imgaug numpy_function, parallel={cores}, IDG-matched",
        tfdata_rate(x, imgaug_augmenter(matched, seed=args.seed), args.batch, cores), "no gamma/crop")

    base = rows[0]["images_per_s"]
    for r in rows:
        r["ratio_vs_idg"] = r["images_per_s"] / base
    print()
    print(f"| {'method':<46} | {'images/s':>9} | {'vs IDG':>6} | note |")
    print(f"|{'-' * 48}|{'-' * 11}|{'-' * 8}|------|")
    for r in rows:
        print(f"| {r['method']:<46} | {r['images_per_s']:9.0f} | {r['ratio_vs_idg']:5.1f}x | {r['note']} |")

    result = {
        "n": args.n, "size": args.size, "batch": args.batch, "policy_name": args.policy,
        "policy": policy.to_dict(), "idg_matched_policy": matched.to_dict(), "images": source,
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
        "numpy": np.__version__, "total_s": time.perf_counter() - t0, "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out} ({result['total_s']:.0f}s in all)")
    return result


if __name__ == "__main__":
    main()
