"""Split a study's metrics into the headline (``metrics.json``, DVC metrics) and the rest (``stats.json``).

DVC tables and the MLflow chart view are read by people: they get the few numbers that answer the
question, rounded to 4 significant figures, with no strings, lists or configuration counts. Every
number, unrounded, stays in ``stats.json``, which the report quotes from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
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


def metrics_file(stage: str, top: dict) -> dict[str, dict]:
    """What ``results/<stage>/metrics.json`` holds: the headline under the stage's name. DVC names a table column
    by the metric's key alone, so every key is made unique across stages this way (pg_cartpole and pg_pong share
    their analysis, and 42 keys); ``dvc exp show --keep '^pg_pong\\.'`` keeps one stage's columns."""
    return {stage: top}


def unwrap(data: dict, stage: str) -> dict:
    """The headline inside a metrics.json of ``stage`` (:func:`metrics_file`); a file written before the stage's
    name was its one top-level key (older git revisions) is the headline itself."""
    return data[stage] if set(data) == {stage} and isinstance(data[stage], dict) else data


def read_metrics(path: Path) -> dict:
    """The headline of ``results/<stage>/metrics.json`` (the folder's name is the stage's)."""
    return unwrap(json.loads(path.read_text()), path.parent.name)


ANSWER_LIMIT = 14  # the parent run's metrics beside stage/seconds: 15 charts at most


def is_verdict(key: str, value: Any) -> bool:
    """A verdict: a key with a ``flags`` part (+1 / 0 / -1) or a yes/no value."""
    return "flags" in key.split(".") or isinstance(value, bool)


def answer(top: dict, patterns: Sequence[str], limit: int = ANSWER_LIMIT) -> dict[str, float]:
    """The parent run's metrics: the headline numbers matching ``patterns`` (all numbers when empty), verdicts
    left out, the first ``limit`` of them in the headline's order (a run whose patterns match more, e.g. a cause
    seen only with other parameters, keeps them in metrics.json; tests/test_headline_answer.py checks that the
    committed results fit)."""
    numbers = {k: v for k, v in flatten(top).items() if _numeric(v) and not is_verdict(k, v)}
    if patterns:
        numbers = {k: v for k, v in numbers.items() if any(fnmatchcase(k, p) for p in patterns)}
    return dict(list(numbers.items())[:limit])


def verdict_tags(top: dict) -> dict[str, str]:
    """Every verdict of the headline as a tag ``verdict.<key>``: "+1" / "0" / "-1", or "yes" / "no"."""
    tags = {}
    for key, value in flatten(top).items():
        if not _numeric(value) or not is_verdict(key, value):
            continue
        if isinstance(value, bool):
            tags[f"verdict.{key}"] = "yes" if value else "no"
        else:
            tags[f"verdict.{key}"] = f"{int(value):+d}" if value else "0"
    return tags
