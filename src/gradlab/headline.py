"""Split a study's metrics into the headline (``metrics.json``, DVC metrics) and the rest (``stats.json``).

DVC tables and the MLflow chart view are read by people: they get the few numbers that answer the
question, rounded to 4 significant figures, with no strings, lists or configuration counts. Every
number, unrounded, stays in ``stats.json``, which the report quotes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from gradlab.config import flatten

SIGNIFICANT = 4


def round_sig(value: float, digits: int = SIGNIFICANT) -> float:
    """``value`` rounded to ``digits`` significant figures (non-finite values unchanged)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def _numeric(value: Any) -> bool:
    return isinstance(value, bool | int | float) and value is not None


def headline(metrics: dict, patterns: Sequence[str]) -> dict[str, Any]:
    """The numeric leaves of ``metrics`` whose dotted key matches one of ``patterns`` (all when empty),
    floats rounded, as a nested dict in the original order."""
    out: dict[str, Any] = {}
    for key, value in flatten(metrics).items():
        if not _numeric(value) or (patterns and not any(fnmatchcase(key, p) for p in patterns)):
            continue
        if isinstance(value, float):
            value = round_sig(value)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
