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
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
