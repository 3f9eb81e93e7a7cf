"""Compute efficiency: how close training comes to what this CPU can do.

    python benchmarks/efficiency.py [--presets default article002] [--films 512] [--repeats 3]
                                    [--out benchmarks/results/efficiency.json]

In one run, on every CPU this process may use:

* the machine's peak, measured: float32 matmul (2048 x 2048) and a 3x3 convolution with 64
  channels (batch 32, 64 x 64), GFLOP/s as the median of `--repeats` timings after a warm-up;
* per training preset: forward FLOPs per film, counted by TensorFlow's profiler on the traced,
  frozen inference graph of the preset's model (a multiply-add counts 2); training films/s on
  in-memory tensors (no decoding, no augmentation: the model's own rate), the median of
  `--repeats` epochs of `--films` films after one warm-up epoch; achieved GFLOP/s taken as
  3 x forward FLOPs x films/s (backward ~ 2 x forward), and that as a share of each peak.

Prints a table and writes the JSON (with the load average, so a busy machine shows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # run from a checkout without installing

from timing import median_seconds  # noqa: E402  (benchmarks/timing.py)


def forward_flops(model, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of `model` on one input of `input_shape` (without the batch
    axis): TensorFlow's profiler on the frozen graph of ``model(x, training=False)``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = tf.TensorSpec([1, *input_shape], tf.float32)
    frozen = convert_variables_to_constants_v2(tf.function(lambda x: model(x, training=False)).get_concrete_function(spec))
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
        opts = (option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
                .with_empty_output().build())
        return int(model_analyzer.profile(graph, options=opts).total_float_ops)


def peaks(repeats: int = 5) -> dict[str, float]:
    """Measured GFLOP/s of a float32 matmul (2048^2) and a 3x3, 64-channel convolution."""
    import tensorflow as tf

    n = 2048
    a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
    mm = tf.function(lambda: tf.matmul(a, b))
    x, k = tf.random.uniform((32, 64, 64, 64)), tf.random.uniform((3, 3, 64, 64))
    conv = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
    mm_s = median_seconds(lambda: mm().numpy(), repeats, warmup=True)
    conv_s = median_seconds(lambda: conv().numpy(), repeats, warmup=True)
    return {"matmul_gflops": 2 * n ** 3 / mm_s / 1e9, "conv3x3_gflops": 2 * 32 * 64 * 64 * 9 * 64 * 64 / conv_s / 1e9}


def preset_row(preset: str, films: int, repeats: int) -> dict:
    """Forward FLOPs per film and in-memory training films/s of one preset's model."""
    import keras
    import numpy as np

    from cxrnb.train import TrainConfig, build

    cfg = TrainConfig.preset(preset)
    keras.utils.set_random_seed(0)
    model = build(cfg, ["normal", "pneumonia"])
    shape = (cfg.image_size, cfg.image_size, cfg.channels)
    rng = np.random.default_rng(0)
    x = rng.random((films, *shape), dtype=np.float32)
    y = (np.arange(films) % 2).astype(np.int32)
    secs = median_seconds(lambda: model.fit(x, y, batch_size=cfg.batch_size, epochs=1, verbose=0, shuffle=False),
                          repeats, warmup=True)
    fwd = forward_flops(model, shape)
    rate = films / secs
    return {"preset": preset, "model": cfg.model, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "forward_gflop_per_film": fwd / 1e9, "films_per_s": rate, "achieved_gflops": 3 * fwd * rate / 1e9}


def table(result: dict) -> str:
    p = result["peaks"]
    lines = [f"peak, measured: matmul {p['matmul_gflops']:.0f} GFLOP/s, conv 3x3 {p['conv3x3_gflops']:.0f} GFLOP/s "
             f"({result['cpus']} CPUs, load average {result['load_average'][0]:.2f})", "",
             "| preset | model | input | forward GFLOP/film | films/s | GFLOP/s | % conv peak | % matmul peak |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['preset']} | {r['model']} | {r['image_size']} px | {r['forward_gflop_per_film']:.4f} | "
                     f"{r['films_per_s']:.0f} | {r['achieved_gflops']:.0f} | {r['pct_conv_peak']:.0f} % | "
                     f"{r['pct_matmul_peak']:.0f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["default", "article002"])
    ap.add_argument("--films", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "efficiency.json")
    a = ap.parse_args(argv)
    if a.films < 1 or a.repeats < 1:
        raise SystemExit("--films and --repeats must be >= 1")
    a.out.parent.mkdir(parents=True, exist_ok=True)  # checked before the long work
    import tensorflow as tf

    pk = peaks(max(a.repeats, 3))
    rows = []
    for preset in a.presets:
        r = preset_row(preset, a.films, a.repeats)
        r["pct_conv_peak"] = 100 * r["achieved_gflops"] / pk["conv3x3_gflops"]
        r["pct_matmul_peak"] = 100 * r["achieved_gflops"] / pk["matmul_gflops"]
        rows.append(r)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result = {"peaks": pk, "rows": rows, "cpus": cpus, "load_average": list(os.getloadavg()),
              "tensorflow": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
              "machine": platform.processor() or platform.machine(), "films": a.films, "repeats": a.repeats}
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(a.out)
    print(table(result))
    return result


if __name__ == "__main__":
    main()
