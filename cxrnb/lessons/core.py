"""What every measured lesson of the notebooks is made of: effects judged by a rule, and a verdict.

A lesson (`Lesson`) holds its table, its effects (`Effect`: estimate, 95 % interval, the rule
that judges it, made by `effect`) and a one-line verdict: its claim with "yes" when every effect
holds. A verdict depends on the effect *and* its interval, so it is the same on every CPU where
the effect is real (docs/lessons.md, from `benchmarks/lessons.py`, which re-judges logged effects
with `judge`); the numbers beside it are not. `format_table` turns tables into the rounded text a
notebook shows. The lessons themselves live in the notebooks' modules of `cxrnb.lessons`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from ..evaluate import Evaluation, format_interval

if TYPE_CHECKING:
    from ..train import Run

#: Environment variable naming a JSON-lines file that `Lesson.verdict` appends to (benchmarks).
LESSONS_LOG = "LESSONS_LOG"


@dataclass(frozen=True)
class Effect:
    """One measured effect of a lesson, with its 95 % interval and the rule that judges it.

    `holds` is decided from the estimate *and* the interval (e.g. "gap >= 0.10 and interval above
    0"), never from the estimate alone, so a verdict printed from it survives the run-to-run noise
    of seeds, CPUs and thread counts that `benchmarks/lessons.py` measures.
    """

    name: str
    estimate: float
    low: float
    high: float
    rule: str
    holds: bool

    def __str__(self) -> str:
        judged = f"needs {self.rule}: {'met' if self.holds else 'not met'}" if self.rule else "shown, not judged"
        return f"{self.name} {format_interval(self.estimate, self.low, self.high, signed=True)} ({judged})"


def effect(name: str, estimate: float, low: float = float("nan"), high: float = float("nan"), *,
           at_least: float | None = None, at_most: float | None = None, below: float | None = None,
           ci_above: float | None = None) -> Effect:
    """An `Effect` judged by thresholds: ``estimate >= at_least``, ``estimate <= at_most``,
    ``|estimate| < below`` and the interval's lower end ``> ci_above`` (each only when given).
    With none given, the effect is shown beside the verdict and not judged (it always holds)."""
    rules = [f"{op} {v:g}" for op, v in ((">=", at_least), ("<=", at_most), ("|x| <", below),
                                           ("interval above", ci_above)) if v is not None]
    rule = " and ".join(rules)
    return Effect(name, float(estimate), float(low), float(high), rule, judge(rule, estimate, low))


def _margins(rule: str, estimate: float, low: float) -> list[tuple[float, bool]]:
    """(margin, strict) of each part of a rule that `effect` wrote (e.g. ">= 0.1 and interval
    above 0"): how far the estimate, or the interval's lower end, is inside that part's bar, and
    whether the bar itself fails (``|x| <`` and ``interval above``) or passes (``>=``, ``<=``)."""
    parts = (part.rsplit(" ", 1) for part in filter(None, rule.split(" and ")))
    return [({">=": estimate - v, "<=": v - estimate, "|x| <": v - abs(estimate), "interval above": low - v}[op],
             op in ("|x| <", "interval above")) for op, v in ((op, float(v)) for op, v in parts)]


def judge(rule: str, estimate: float, low: float = float("nan")) -> bool:
    """Whether an estimate (and its interval's lower end) meets `rule`, the text `effect` writes
    (e.g. ">= 0.1 and interval above 0"): so a logged effect can be judged again later."""
    return all(m > 0 if strict else m >= 0 for m, strict in _margins(rule, estimate, low))


def slack(rule: str, estimate: float, low: float = float("nan")) -> float:
    """How far an estimate (and its interval's lower end) is inside `rule`'s bars, the least over
    its parts: negative when a part is not met, NaN when a part cannot be judged (no interval),
    +inf for a rule with no parts. A verdict that is compared across machines needs slack larger
    than what another CPU's arithmetic moves."""
    margins = [m for m, _ in _margins(rule, estimate, low)]
    return float("nan") if any(m != m for m in margins) else min(margins, default=float("inf"))


@dataclass
class Lesson:
    """A lesson's table, its judged effects, and the evaluations and training results behind it.

    `claim` is the sentence the lesson teaches; `verdict` prints it with "yes" when every effect
    holds and "no" otherwise: the line a notebook compares strictly across machines.
    """

    table: pd.DataFrame
    evaluations: dict[str, Evaluation]
    results: dict[str, Run]
    claim: str = ""
    effects: list[Effect] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return bool(self.effects) and all(e.holds for e in self.effects)

    def verdict(self) -> str:
        """The claim with "yes" or "no". When the environment variable `LESSONS_LOG` names a file,
        the lesson's effects are appended there as one JSON line (how `benchmarks/lessons.py`
        collects every verdict of a notebook run without touching the notebooks)."""
        line = f"{self.claim}: {'yes' if self.holds else 'no'}"
        log = os.environ.get(LESSONS_LOG)
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"claim": self.claim, "holds": self.holds,
                                    "effects": [dataclasses.asdict(e) for e in self.effects]}) + "\n")
        return line

    def report(self) -> str:
        """The effects behind the verdict, one per line (numbers: not for strict comparison)."""
        return "\n".join(str(e) for e in self.effects)

    def _repr_html_(self) -> str:  # notebooks show the rounded table
        return format_table(self.table)._repr_html_()

    def __repr__(self) -> str:
        return format_table(self.table).to_string()


def format_table(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Estimates with their intervals as text ("0.83 [0.75, 0.90]"), rounded to `digits`."""
    out = {}
    for col in table.columns:
        if col.endswith((" low", " high")):
            continue
        lo, hi = f"{col} low", f"{col} high"
        if col == "difference":
            lo, hi = "diff low", "diff high"
        if lo in table and hi in table:
            out[col] = [format_interval(v, a, b, digits) for v, a, b in zip(table[col], table[lo], table[hi])]
        elif col not in ("diff low", "diff high"):
            out[col] = [("" if pd.isna(v) else f"{v:.{digits}f}") for v in table[col]]
    return pd.DataFrame(out, index=table.index)
