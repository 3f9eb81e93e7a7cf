"""CAM images per second: a per-image loop (keras.io Grad-CAM example style), tf-keras-vis batched,
and the compiled batched path of `cxrnb.explain`; then the time of every method for N images.

    python benchmarks/cam.py [--n 64] [--size 128] [--repeats 3] [--out benchmarks/results/cam.json]

Same model (a small untrained CNN: four 3x3 conv blocks to a 16x16x64 last layer, global average
pooling, a 3-class logits layer and a softmax; weights do not change the cost) and the same N
synthetic films. Each variant is warmed up once (tracing), then timed; the median of `repeats`
runs is reported, because the machine may be shared.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)


def build_model(size: int):
    """The benchmark CNN (Functional; the softmax is a separate layer, as in `cxrnb` models)."""
    import keras
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((size, size, 1))
    for i, f in enumerate((16, 32, 64, 64)):
        x = keras.layers.Conv2D(f, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D()(x)
    z = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, keras.layers.Activation("softmax", name="probabilities")(z))


def keras_io_loop(model, images, class_index: int, layer: str = "conv3") -> np.ndarray:
    """Grad-CAM one image at a time, eagerly, as the keras.io example does (then upsampled)."""
    import keras
    import tensorflow as tf
    from scipy.ndimage import zoom
    grad_model = keras.Model(model.inputs[0], [model.get_layer(layer).output, model.output])
    out = []
    for img in images:
        with tf.GradientTape() as tape:
            conv, preds = grad_model(img[None])
            score = preds[:, class_index]
        grads = tape.gradient(score, conv)
        pooled = tf.reduce_mean(grads, axis=(0, 1, 2))
        heat = tf.squeeze(conv[0] @ pooled[..., None])
        heat = tf.maximum(heat, 0) / (tf.reduce_max(heat) + 1e-7)
        h = heat.numpy()
        out.append(zoom(h, (img.shape[0] / h.shape[0], img.shape[1] / h.shape[1]), order=1))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cam.json"))
    a = ap.parse_args()

    import tensorflow as tf
    from cxrnb import explain as E
    from cxrnb.explain.oracle import toolkit_cam
    from cxrnb.synthetic.render import render_image

    labels = ("normal", "pneumonia", "covid", "effusion")
    x = np.stack([render_image(0, i, 0, labels[i % 4], size=a.size)[0] for i in range(a.n)])
    x = (x.astype(np.float32) / 255.0)[..., None]
    model = build_model(a.size)
    ex = E.explainer(model)

    rows = []
    variants = {
        "(a) per-image loop (keras.io style)": lambda: keras_io_loop(model, x, 1),
        "(b) tf-keras-vis, batched": lambda: toolkit_cam(ex, x, 1, "gradcam"),
        "(c) compiled batched path": lambda: E.cam(ex, x, 1, "gradcam"),
    }
    for name, fn in variants.items():
        s = median_seconds(fn, a.repeats, warmup=True)
        rows.append({"what": "Grad-CAM", "variant": name, "seconds": s, "images_per_s": a.n / s})
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup_vs_a"] = base / r["seconds"]

    for method in E.METHODS:
        for compiled in ((True, False) if method in E.COMPILED else (False,)):
            reps = 1 if method == "scorecam" else a.repeats
            run = (lambda: E.cam(ex, x, 1, method)) if compiled or method not in E.COMPILED else \
                (lambda: toolkit_cam(ex, x, 1, method))
            s = median_seconds(run, reps, warmup=True)
            rows.append({"what": method, "variant": "compiled" if compiled else "tf-keras-vis",
                         "seconds": s, "images_per_s": a.n / s, "speedup_vs_a": base / s})
    s = median_seconds(lambda: E.compiled_maps(ex, x, 1, E.COMPILED), a.repeats, warmup=True)
    rows.append({"what": "gradcam+gradcam+++layercam", "variant": "compiled, one pass", "seconds": s,
                 "images_per_s": a.n / s, "speedup_vs_a": base / s})

    print(f"{a.n} images {a.size}x{a.size}, median of {a.repeats} (Score-CAM: 1 run, "
          f"{model.get_layer('conv3').filters} channels = {a.n * model.get_layer('conv3').filters} "
          f"forward passes); TF {tf.__version__}, {os.cpu_count()} CPU(s)")
    print(f"{'method':28s} {'variant':38s} {'seconds':>8s} {'img/s':>8s} {'vs (a)':>7s}")
    for r in rows:
        print(f"{r['what']:28s} {r['variant']:38s} {r['seconds']:8.3f} {r['images_per_s']:8.1f} "
              f"{r['speedup_vs_a']:6.1f}x")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": a.n, "size": a.size, "repeats": a.repeats, "tensorflow": tf.__version__,
                               "cpus": os.cpu_count(), "machine": platform.machine(), "rows": rows},
                              indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
