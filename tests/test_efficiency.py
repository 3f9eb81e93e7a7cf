"""benchmarks/efficiency.py: FLOPs are counted right, and a run writes the table's numbers."""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import keras
import pytest

spec = importlib.util.spec_from_file_location("efficiency", Path(__file__).resolve().parents[1] / "benchmarks" / "efficiency.py")
eff = importlib.util.module_from_spec(spec)
spec.loader.exec_module(eff)


def test_forward_flops_count_a_multiply_add_as_two():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                              keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)])
    conv = 2 * 8 * 8 * 3 * 3 * 1 * 4          # every output pixel: 9 multiply-adds per channel pair
    dense = 2 * (8 * 8 * 4) * 3
    assert eff.forward_flops(model, (8, 8, 1)) == conv + dense


def test_a_quick_run_reports_rates_that_agree_with_each_other(tmp_path):
    out = tmp_path / "eff.json"
    result = eff.main(["--presets", "default", "--films", "64", "--repeats", "1", "--seeds", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    r = result["rows"][0]
    assert r["preset"] == "default" and r["forward_gflop_per_film"] > 0 and r["films_per_s"] > 0
    assert r["achieved_gflops"] == pytest.approx(3 * r["forward_gflop_per_film"] * r["films_per_s"])
    assert r["pct_conv_peak"] == pytest.approx(100 * r["achieved_gflops"] / result["peaks"]["conv3x3_gflops"])
    assert result["peaks"]["matmul_gflops"] > 1                       # any CPU does a GFLOP/s
    tries = {t["try"]: t for t in result["tries"]}
    assert set(tries) == set(eff.TRIES) and result["recipes"] == []   # no seeds: no recipe runs
    assert tries["batch 64"]["batch_size"] == 64 and tries["mixed_bfloat16"]["batch_size"] == r["batch_size"]
    assert all(t["forward_gflop_per_film"] == pytest.approx(r["forward_gflop_per_film"]) for t in tries.values())
    assert keras.config.dtype_policy().name == "float32"             # the bfloat16 try leaves no trace
    layers = {x["layer"]: x for x in result["layers"]}                # every layer of the model, once
    assert len(layers) == len(result["layers"]) and {"block1_conv", "block1_bn", "block4_relu", "logits"} <= set(layers)
    assert layers["block2_conv"]["kind"] == "convolution" and layers["block2_bn"]["kind"] == "batch norm"
    # block 2: 16 x 16 outputs, 3 x 3 x 16 inputs x 32 filters, batch 32, forward + 2 x backward
    assert layers["block2_conv"]["gflop"] == pytest.approx(3 * 32 * 2 * 16 * 16 * 9 * 16 * 32 / 1e9)
    assert layers["block2_relu"]["gflop"] == 0 and all(x["ms"] >= 0 for x in layers.values())
    assert "| convolution |" in eff.layer_table(result["layers"], result["peaks"]["conv3x3_gflops"])
    with pytest.raises(SystemExit, match="must be >= 1"):
        eff.main(["--films", "0", "--out", str(out)])


def test_the_recipe_table_compares_median_time_at_the_same_auc():
    rows = [{"seed": s, "image_size": size, "seconds": sec, "epochs": 20, "test_auc": auc}
            for s, size, sec, auc in ((0, 64, 10.0, 0.99), (1, 64, 14.0, 0.98), (2, 64, 12.0, 1.0),
                                      (0, 128, 40.0, 0.99), (1, 128, 48.0, 0.97), (2, 128, 44.0, 1.0))]
    text = eff.recipe_table(rows)
    assert "| 64 px | 3 | 12.0 | 20 | 0.980 / 0.990 |" in text
    assert "| 128 px | 3 | 44.0 | 20 | 0.970 / 0.990 |" in text
    assert "64 px fits in 0.27 of the time of 128 px" in text


def test_interleaved_medians_alternate_the_calls_and_take_each_ones_median():
    calls: list[str] = []
    medians = eff.interleaved_medians({"a": lambda: calls.append("a"),
                                       "b": lambda: (calls.append("b"), time.sleep(0.02))}, 3)
    assert calls == ["a", "b"] * 3                                     # in turn, never a run of one
    assert set(medians) == {"a", "b"} and medians["b"] >= 0.02 > medians["a"]
