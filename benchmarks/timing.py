"""Timing shared by the benchmarks: the median of repeated runs, never a single measurement."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, *, warmup: bool = False) -> float:
    """Median wall time of `repeats` calls of `fn`; with `warmup`, one untimed call first
    (tracing, first-call set-up)."""
    if warmup:
        fn()
    return interleaved_medians({"fn": fn}, repeats)["fn"]


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each function, called in turn (a, b, a, b, ...) `repeats` times: on a
    shared machine a burst of load then hits every function, so their ratio is steadier than
    that of medians taken one after the other (already warmed up: no untimed call)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}
