"""The lessons' verdicts: judged from estimate and interval, logged for benchmarks/lessons.py."""
from __future__ import annotations

import json

import pandas as pd

from cxrnb.experiments import LESSONS_LOG, Lesson, effect


def test_effect_needs_every_rule():
    assert effect("gap", 0.3, 0.05, 0.5, at_least=0.1, ci_above=0.0).holds
    assert not effect("gap", 0.3, -0.01, 0.5, at_least=0.1, ci_above=0.0).holds  # interval reaches 0
    assert not effect("gap", 0.08, 0.02, 0.2, at_least=0.1, ci_above=0.0).holds  # too small
    assert effect("other", 0.15, at_most=0.2).holds and not effect("other", 0.25, at_most=0.2).holds
    assert effect("control", -0.04, below=0.05).holds and not effect("control", -0.06, below=0.05).holds
    assert "interval above 0" in effect("gap", 0.3, 0.1, 0.5, ci_above=0.0).rule


def test_verdict_is_yes_only_when_every_effect_holds_and_is_logged(tmp_path, monkeypatch):
    log = tmp_path / "lessons.jsonl"
    monkeypatch.setenv(LESSONS_LOG, str(log))
    ok, bad = effect("a", 1.0, at_least=0.5), effect("b", 0.1, at_least=0.5)
    assert Lesson(pd.DataFrame(), {}, {}, "claim", [ok]).verdict() == "claim: yes"
    assert Lesson(pd.DataFrame(), {}, {}, "claim", [ok, bad]).verdict() == "claim: no"
    assert Lesson(pd.DataFrame(), {}, {}, "claim", []).verdict() == "claim: no"  # nothing measured
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["holds"] for r in rows] == [True, False, False]
    assert rows[1]["effects"][1] == {"name": "b", "estimate": 0.1, "low": rows[1]["effects"][1]["low"],
                                     "high": rows[1]["effects"][1]["high"], "rule": ">= 0.5", "holds": False}
