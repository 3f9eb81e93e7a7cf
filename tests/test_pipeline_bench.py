"""benchmarks/pipeline.py: bits per pixel are measured right, the JPEG quality picker lands near
its target, and the real-subset row is skipped, with a message, when that folder is absent."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

spec = importlib.util.spec_from_file_location(
    "pipeline_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "pipeline.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_bits_per_pixel_is_file_bits_over_pixels(tmp_path):
    rng = np.random.default_rng(0)
    expected = []
    for i, (w, h, q) in enumerate([(64, 48, 50), (80, 80, 75), (120, 40, 95)]):
        p = tmp_path / "NORMAL" / f"im{i}.jpeg"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(p, format="JPEG", quality=q)
        expected.append(p.stat().st_size * 8 / (w * h))
    (tmp_path / "NORMAL" / "notes.txt").write_text("not an image")
    s = bench.bits_per_pixel(tmp_path)
    assert s["n"] == 3 and s["modes"] == {"L": 3} and s["longer_side_px"] == [64, 120]
    assert s["median"] == pytest.approx(np.median(expected))
    assert s["q1"] <= s["median"] <= s["q3"]
    with pytest.raises(ValueError, match="no JPEG"):
        bench.bits_per_pixel(tmp_path / "NORMAL" / "empty")


def test_quality_picker_lands_near_the_target_bpp():
    films = bench.sample_films(192, k=2)
    for target in (0.6, 1.1):
        q, bpp = bench.pick_quality(films, target)
        assert 1 <= q <= 100 and bpp == pytest.approx(bench.jpeg_bpp(films, q))
        neighbours = [bench.jpeg_bpp(films, v) for v in (max(1, q - 1), min(100, q + 1))]
        assert all(abs(bpp - target) <= abs(b - target) + 1e-12 for b in neighbours)  # the closest quality
        assert bpp == pytest.approx(target, rel=0.25)


def test_real_subset_row_is_skipped_with_a_message_when_absent(tmp_path, capsys):
    assert bench.real_folder(tmp_path / "no-such-folder") is None
    assert "real Kaggle subset: skipped" in capsys.readouterr().out
    chest = tmp_path / "kaggle" / "chest_xray"
    for split in ("train", "test"):
        (chest / split / "NORMAL").mkdir(parents=True)
        Image.new("L", (40, 40)).save(chest / split / "NORMAL" / "a.jpeg")
    assert bench.real_folder(tmp_path / "kaggle") == chest and capsys.readouterr().out == ""
    tree = bench.real_class_tree(chest, tmp_path / "tree")
    assert sorted(p.name for p in tree.rglob("*.jpeg")) == ["test-a.jpeg", "train-a.jpeg"]
