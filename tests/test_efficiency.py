"""benchmarks/efficiency.py: FLOPs are counted right, and a run writes the table's numbers."""
from __future__ import annotations

import importlib.util
import json
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
    result = eff.main(["--presets", "default", "--films", "64", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    r = result["rows"][0]
    assert r["preset"] == "default" and r["forward_gflop_per_film"] > 0 and r["films_per_s"] > 0
    assert r["achieved_gflops"] == pytest.approx(3 * r["forward_gflop_per_film"] * r["films_per_s"])
    assert r["pct_conv_peak"] == pytest.approx(100 * r["achieved_gflops"] / result["peaks"]["conv3x3_gflops"])
    assert result["peaks"]["matmul_gflops"] > 1                       # any CPU does a GFLOP/s
    with pytest.raises(SystemExit, match="must be >= 1"):
        eff.main(["--films", "0", "--out", str(out)])
