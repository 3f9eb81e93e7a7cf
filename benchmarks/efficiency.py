"""Compute efficiency: how close training comes to what this CPU can do.

    python benchmarks/efficiency.py [--presets default article002] [--films 1024] [--repeats 3]
                                    [--out benchmarks/results/efficiency.json]

In one run, on every CPU this process may use:

* the machine's peak, measured: float32 matmul (2048 x 2048) and a 3x3 convolution with 64
  channels (batch 32, 64 x 64), GFLOP/s as the median of `--repeats` timings after a warm-up;
* per training preset: forward FLOPs per film, counted by TensorFlow's profiler on the traced,
  frozen inference graph of the preset's model (a multiply-add counts 2); training films/s on
  in-memory tensors (no decoding, no augmentation: the model's own rate), the median of
  `--repeats` epochs of `--films` films after one warm-up epoch; achieved GFLOP/s taken as
  3 x forward FLOPs x films/s (backward ~ 2 x forward), and that as a share of each peak.

* tries on the default preset's model, each a row like a preset's with its speed against the
  preset as it is, timed in turn with it (epoch for epoch): batch 64 and 128 (fewer, larger kernel calls) and Keras' `mixed_bfloat16`
  policy (AVX-512 BF16 / AMX kernels where the CPU has them);
* where the default preset's training step goes, layer by layer (`layer_rows`): each layer's
  forward and backward pass alone, in training mode, on a batch of the shape it gets in the
  model, less the cost of calling an empty function on that batch; its FLOPs (the profiler's,
  x 3) and GFLOP/s, and the share of the layers' summed time by kind (convolution, batch norm,
  the rest): what stands between the preset and the convolution peak;
* the recipe, end to end: the default preset at its 64 px and at 128 px (its size when issue 19
  measured it) trained on notebook 03's default embedded data, for each of `--seeds`: fitting
  seconds, epochs and test ROC AUC, and the median time ratio. A smaller input is a recipe
  change, so it counts only with the same test AUC (`--seeds` with no value skips it).

Prints the tables and writes the JSON (with the load average, so a busy machine shows).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # run from a checkout without installing

from timing import interleaved_medians, median_seconds  # noqa: E402  (benchmarks/timing.py)


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


#: Tries on the default preset (name -> TrainConfig changes, Keras dtype policy).
TRIES = {"batch 64": ({"batch_size": 64}, None), "batch 128": ({"batch_size": 128}, None),
         "mixed_bfloat16": ({}, "mixed_bfloat16")}


def _built(preset: str, changes: dict | None = None, policy: str | None = None):
    """(config, compiled model) of one preset, with `changes` to its config and its layers made
    under Keras dtype `policy` (the tries); the global policy is float32 again afterwards."""
    import keras

    from cxrnb.train import TrainConfig, build

    cfg = TrainConfig.preset(preset).replace(**(changes or {}))
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(policy or "float32")
    try:
        return cfg, build(cfg, ["normal", "pneumonia"])
    finally:
        keras.config.set_dtype_policy("float32")


def _fitter(preset: str, films: int, changes: dict | None = None, policy: str | None = None):
    """(one training epoch on `films` in-memory films, warmed up; the row's fields but the rate)
    of one preset's model, with `changes` to its config and Keras dtype `policy` (the tries)."""
    import numpy as np

    cfg, model = _built(preset, changes, policy)
    shape = (cfg.image_size, cfg.image_size, cfg.channels)
    rng = np.random.default_rng(0)
    x = rng.random((films, *shape), dtype=np.float32)
    y = (np.arange(films) % 2).astype(np.int32)

    def epoch() -> None:
        model.fit(x, y, batch_size=cfg.batch_size, epochs=1, verbose=0, shuffle=False)

    epoch()  # tracing and first-call set-up, untimed
    return epoch, {"preset": preset, "model": cfg.model, "image_size": cfg.image_size,
                   "batch_size": cfg.batch_size, "forward_gflop_per_film": forward_flops(model, shape) / 1e9}


def _with_rate(row: dict, films_per_s: float) -> dict:
    return {**row, "films_per_s": films_per_s, "achieved_gflops": 3 * row["forward_gflop_per_film"] * films_per_s}


def preset_row(preset: str, films: int, repeats: int) -> dict:
    """Forward FLOPs per film and in-memory training films/s (median of `repeats` epochs) of one preset's model."""
    epoch, row = _fitter(preset, films)
    return _with_rate(row, films / median_seconds(epoch, repeats))


def try_row(base: Callable[[], None], films: int, repeats: int, changes: dict, policy: str | None) -> dict:
    """A try on the default preset: its row, and the preset's own rate (`base`, its epoch from
    `_fitter`) measured in turn with it (`interleaved_medians`): on a shared CPU, rates measured
    a minute apart drifted by 20 %."""
    trial, row = _fitter("default", films, changes, policy)
    med = interleaved_medians({"base": base, "try": trial}, repeats)
    return {**_with_rate(row, films / med["try"]), "preset_films_per_s": films / med["base"]}


def _kind(layer) -> str:
    import keras

    if isinstance(layer, keras.layers.Conv2D):
        return "convolution"
    return "batch norm" if isinstance(layer, keras.layers.BatchNormalization) else "other"


def layer_rows(preset: str, repeats: int) -> list[dict]:
    """Per layer of `preset`'s model (batch: the preset's): forward + backward in training mode,
    alone, median ms less an empty call's, and training FLOPs (3 x the profiler's forward count)."""
    import keras
    import tensorflow as tf

    cfg, model = _built(preset)
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = tuple(layer.input.shape[1:])
        x = tf.random.uniform((cfg.batch_size, *shape))

        def step(x=x, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
            return tape.gradient(y, [x, *layer.trainable_weights])[0]

        run, empty = tf.function(step), tf.function(lambda x=x: tf.identity(x))
        ms = 1e3 * (median_seconds(lambda: run().numpy(), repeats, warmup=True)
                    - median_seconds(lambda: empty().numpy(), repeats, warmup=True))
        flops = 3 * cfg.batch_size * forward_flops(keras.Model(layer.input, layer.output), shape)
        rows.append({"layer": layer.name, "kind": _kind(layer), "input": list(shape), "ms": max(ms, 0.0),
                     "gflop": flops / 1e9, "gflops": flops / 1e9 / (ms / 1e3) if ms > 0 else 0.0})
    return rows


def layer_table(rows: list[dict], conv_peak: float) -> str:
    """The per-layer rows, then each kind's share of the summed time and its GFLOP/s."""
    total = sum(r["ms"] for r in rows) or 1.0
    lines = ["| layer | input | ms (fwd + bwd) | share | GFLOP | GFLOP/s |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['layer']} | {'x'.join(map(str, r['input']))} | {r['ms']:.2f} | {100 * r['ms'] / total:.0f} % | "
              f"{r['gflop']:.3f} | {r['gflops']:.0f} |" for r in rows]
    lines += ["", "| kind | share of the layers' time | GFLOP/s | % conv peak |", "| --- | ---: | ---: | ---: |"]
    for kind in ("convolution", "batch norm", "other"):
        ks = [r for r in rows if r["kind"] == kind]
        ms, gf = sum(r["ms"] for r in ks), sum(r["gflop"] for r in ks)
        rate = gf / (ms / 1e3) if ms > 0 else 0.0
        lines.append(f"| {kind} | {100 * ms / total:.0f} % | {rate:.0f} | {100 * rate / conv_peak:.0f} % |")
    return "\n".join(lines)


def recipe_rows(seeds: list[int], sizes: tuple[int, ...], work: Path) -> list[dict]:
    """Train notebook 03's default recipe at each input size on its default embedded data, one
    run per seed (fresh data, split and run folders under `work`): fitting seconds and test AUC."""
    from cxrnb.notebook import DataSpec, parameters
    from cxrnb.train import TrainConfig, train

    p = parameters(HERE.parent / "notebooks" / "03_training.ipynb")
    rows = []
    for seed in seeds:
        split = DataSpec(p["DATASET"], work / f"data-{seed}", work, synthetic=p["SYNTHETIC"], seed=seed).split()
        for size in sizes:
            cfg = TrainConfig.preset(p["PRESET"], image_size=size, epochs=p["EPOCHS"], seed=seed)
            run = train(cfg, split, work / "runs" / f"{size}px-seed{seed}", overwrite=True, cache=work / "cache")
            rows.append({"seed": seed, "image_size": size, "seconds": run.seconds, "epochs": len(run.history),
                         "test_auc": run.evaluate("test", n_boot=200).ci["auc"].estimate})
    return rows


def recipe_table(rows: list[dict]) -> str:
    import statistics

    lines = ["| default preset | seeds | fitting seconds, median | epochs, median | test AUC, min / median |",
             "| --- | ---: | ---: | ---: | ---: |"]
    sec = {}
    for size in sorted({r["image_size"] for r in rows}):
        rs = [r for r in rows if r["image_size"] == size]
        sec[size] = statistics.median(r["seconds"] for r in rs)
        aucs = [r["test_auc"] for r in rs]
        lines.append(f"| {size} px | {len(rs)} | {sec[size]:.1f} | {statistics.median(r['epochs'] for r in rs):.0f} | "
                     f"{min(aucs):.3f} / {statistics.median(aucs):.3f} |")
    if len(sec) > 1:
        big, small = max(sec), min(sec)
        lines.append(f"\n{small} px fits in {sec[small] / sec[big]:.2f} of the time of {big} px")
    return "\n".join(lines)


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
    tries = result.get("tries", [])
    if tries:
        lines += ["", "tries on the default preset:", "",
                  "| try | films/s | GFLOP/s | % conv peak | vs preset |", "| --- | --- | --- | --- | --- |"]
        for r in tries:
            lines.append(f"| {r['try']} | {r['films_per_s']:.0f} | {r['achieved_gflops']:.0f} | "
                         f"{r['pct_conv_peak']:.0f} % | {r['films_per_s'] / r['preset_films_per_s']:.2f}x |")
    if result.get("layers"):
        lines += ["", "where a training step of the default preset goes, layer by layer:", "",
                  layer_table(result["layers"], p["conv3x3_gflops"])]
    if result.get("recipes"):
        lines += ["", recipe_table(result["recipes"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["default", "article002"])
    ap.add_argument("--films", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="recipe runs (none: skip them)")
    ap.add_argument("--work", type=Path, default=HERE / "data" / "efficiency", help="data and runs of the recipe rows")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "efficiency.json")
    a = ap.parse_args(argv)
    if a.films < 1 or a.repeats < 1:
        raise SystemExit("--films and --repeats must be >= 1")
    a.out.parent.mkdir(parents=True, exist_ok=True)  # checked before the long work
    import tensorflow as tf

    pk = peaks(max(a.repeats, 3))

    def share(r: dict) -> dict:
        return {**r, "pct_conv_peak": 100 * r["achieved_gflops"] / pk["conv3x3_gflops"],
                "pct_matmul_peak": 100 * r["achieved_gflops"] / pk["matmul_gflops"]}

    rows = [share(preset_row(preset, a.films, a.repeats)) for preset in a.presets]
    tries = []
    if "default" in a.presets:
        base, _ = _fitter("default", a.films)  # one model of the preset as it is, for every try
        tries = [share({"try": name, **try_row(base, a.films, a.repeats, changes, policy)})
                 for name, (changes, policy) in TRIES.items()]
    # ms-scale calls: more repeats than the epochs
    layers = layer_rows("default", 5 * a.repeats) if "default" in a.presets else []
    recipes = recipe_rows(a.seeds, (64, 128), a.work) if a.seeds else []
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result = {"peaks": pk, "rows": rows, "tries": tries, "layers": layers, "recipes": recipes, "cpus": cpus, "load_average": list(os.getloadavg()),
              "tensorflow": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
              "machine": platform.processor() or platform.machine(), "films": a.films, "repeats": a.repeats}
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(a.out)
    print(table(result))
    return result


if __name__ == "__main__":
    main()
