"""benchmarks/reproduce.py: the verdict text, the document, and its bad-input errors (no training)."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
_spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
rp = sys.modules["reproduce"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(rp)
ARTICLE = {a.id: a for a in rp.ARTICLES}


def iv(estimate: float, low: float, high: float) -> dict:
    return {"estimate": estimate, "low": low, "high": high}


def row(article: str = "002", acc=(0.80, 0.70, 0.90), base: float = 0.5, epochs: int = 80,
        preset_epochs: int = 80) -> dict:
    """A results.json row as `run_article` writes it, with made-up numbers."""
    return {"id": article, "preset": f"article{article}", "changes": dict(ARTICLE[article].changes),
            "classes": ["normal", "pneumonia"], "counts": {"normal": 200, "pneumonia": 200},
            "test_counts": {"normal": 30, "pneumonia": 6}, "epochs": epochs, "preset_epochs": preset_epochs,
            "epochs_run": epochs, "best_epoch": 3, "fit_seconds": 90.0, "total_seconds": 120.0,
            "test": {"n_images": 36, "n_patients": 33, "accuracy": acc[0], "auc": 0.9, "majority_baseline": base,
                     "majority_class": "normal", "macro_f1": 0.75, "classes": ["normal", "pneumonia"],
                     "confusion": [[28, 2], [5, 1]],
                     "ci": {"accuracy": iv(*acc), "auc": iv(0.9, 0.8, 0.97)}}}


META = {"command": "python benchmarks/reproduce.py DATA", "date": "2026-01-01", "n_boot": 2000,
        "load_start": 2.0, "load_end": 3.5, "cap_reason": "",
        "environment": {"python": "3.11", "tensorflow": "2.21", "keras": "3.15", "numpy": "2.3", "pandas": "3.1",
                        "scikit-learn": "1.9", "scipy": "1.17", "platform": "Linux", "processor": "x86_64",
                        "cpus": 2, "gpus": 0}}


def test_claim_interval_is_wilson():
    lo, hi = rp.claim_interval(0.95, 624)
    k, n, z = round(0.95 * 624), 624, 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert lo == pytest.approx(centre - half, abs=1e-4) and hi == pytest.approx(centre + half, abs=1e-4)
    lo_small, hi_small = rp.claim_interval(0.95, 60)
    assert hi_small - lo_small > hi - lo  # fewer test images, wider interval


def test_verdict_places_the_claim_against_our_interval():
    above = rp.verdict(ARTICLE["002"], row(acc=(0.80, 0.70, 0.90)))
    assert "lies above our whole interval" in above and "624 test images" in above
    inside = rp.verdict(ARTICLE["002"], row(acc=(0.90, 0.80, 0.97)))
    assert "neither confirm nor refute" in inside and "above our whole interval" not in inside
    assert "recall by 0.17" in inside  # 6 images in the smallest class
    assert "Per class it finds normal 28 of 30, pneumonia 1 of 6 (macro F1 0.75)." in inside


def test_verdict_names_a_class_never_predicted():
    r = row("004")
    r["test"]["confusion"] = [[30, 0], [6, 0]]
    assert "pneumonia 0 of 6 (macro F1 0.75); it never predicts pneumonia, which accuracy hides" \
        in rp.verdict(ARTICLE["004"], r)


def test_verdict_explains_a_perfect_score_and_a_claim_below_it():
    text = rp.verdict(ARTICLE["001"], row("001", acc=(1.0, 1.0, 1.0), base=0.88))
    assert "lies below our whole interval" in text and "collection gives the label away" in text
    assert "every bootstrap resample scored the same (36 of 36 right)" in text
    assert "Wilson interval for 36 of 36 is [0.90, 1.00]" in text


def test_verdict_says_when_accuracy_cannot_beat_the_baseline():
    text = rp.verdict(ARTICLE["001"], row("001", acc=(0.85, 0.70, 0.95), base=0.88))
    assert 'not distinguishable from always answering "normal"' in text
    assert "not distinguishable" not in rp.verdict(ARTICLE["001"], row("001", acc=(0.95, 0.90, 1.0), base=0.88))
    assert "better than chance" in text  # the made-up AUC interval is [0.8, 0.97]
    chance = row("003")
    chance["test"]["ci"]["auc"] = iv(0.57, 0.33, 0.80)
    assert "includes 0.5: on this test set the model has shown no skill" in rp.verdict(ARTICLE["003"], chance)


def test_verdict_without_a_claim_compares_nothing():
    text = rp.verdict(ARTICLE["003"], row("003"))
    assert "Without a claim" in text and "interval, " not in text and "Wilson" not in text


def test_render_lists_every_row_and_records_caps():
    rows = [row("001", epochs=16, preset_epochs=16), row("002", epochs=5, preset_epochs=80), row("004", epochs=30,
                                                                                                    preset_epochs=30)]
    doc = rp.render(rows, {**META, "cap_reason": "a test"})
    table = [line for line in doc.splitlines() if line.startswith("| 00")]
    assert [line.split("|")[1].strip() for line in table] == ["001", "002", "004"]
    assert "5 / 5 (capped from 80)" in table[1] and "capped" not in table[0]
    assert "capped with `--epochs`: article 002 5 of 80. Why: a test." in doc
    assert "**(different experiment: VGG16 from random weights" in table[2]
    assert "0.80 [0.70, 0.90]" in table[0] and "2 CPU cores" in doc and "load average 2.0" in doc
    uncapped = rp.render([row("002")], META)
    assert "every preset's own epoch count" in uncapped


def test_missing_subset_is_named_before_training(tmp_path):
    (tmp_path / "kaggle-pneumonia").mkdir()
    with pytest.raises(SystemExit, match=r"has no actualmed-covid, nih-chestxray14 folder\(s\)"):
        rp.main([str(tmp_path), "--out", str(tmp_path / "r.md"), "--runs", str(tmp_path / "runs")])
    assert not (tmp_path / "r.md").exists()


def test_bad_options_are_errors(tmp_path, capsys):
    for args, message in [(["--articles", "001,009"], "unknown id(s) ['009']"),
                          (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
                          (["--render-only"], "results.json does not exist")]:
        with pytest.raises(SystemExit):
            rp.main([str(tmp_path), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"), *args])
        assert message in capsys.readouterr().err


def test_render_only_rewrites_the_document_from_results(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "results.json").write_text(json.dumps({"rows": [row("001"), row("002")], "meta": META}))
    out = tmp_path / "docs" / "reproduction.md"
    rp.main([str(tmp_path / "absent"), "--runs", str(runs), "--out", str(out), "--render-only", "--articles", "002"])
    doc = out.read_text()
    assert "| 002 |" in doc and "| 001 |" not in doc
    assert [p.name for p in out.parent.iterdir()] == ["reproduction.md"]  # no temporary file left
