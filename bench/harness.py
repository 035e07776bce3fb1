"""Ratios, not timings: both sides run alternately in one process, median of >= 5 rounds each."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(subject: Callable[[], object], reference: Callable[[], object], rounds: int = 5, warmup: int = 1) -> dict:
    """Median seconds of ``subject`` and ``reference`` (alternating) and their ratio subject/reference."""
    for _ in range(warmup):
        subject()
        reference()
    a, b = [], []
    for _ in range(max(5, rounds)):
        a.append(time_once(subject))
        b.append(time_once(reference))
    sa, sb = statistics.median(a), statistics.median(b)
    return {"subject_s": sa, "reference_s": sb, "ratio": sa / sb, "rounds": len(a)}
