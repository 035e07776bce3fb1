"""Numbers in the report are quoted from results/<stage>/stats.json (all of them; metrics.json holds the
headline), never typed in.

Every quote is recorded (stage, key, value, format, text) in ``reports/quotes.json``
so that a test can check each quoted text against the metrics it came from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gradlab.config import dotted
from gradlab.headline import read_metrics


class MissingResults(KeyError):
    pass


_MISSING = object()


def lookup(data: Any, key: str) -> Any:
    """The value at the dotted ``key`` of ``data``; :class:`MissingResults` if there is none."""
    value = dotted(data, key, _MISSING)
    if value is _MISSING:
        raise MissingResults(key)
    return value


def format_value(value: Any, fmt: str, scale: float = 1.0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        v = value * scale if scale != 1.0 else value
        if isinstance(v, float) and not math.isfinite(v):
            return "n/a"
        return format(v, fmt)
    return str(value)


class Quotes:
    def __init__(self, results: Path):
        self.results = Path(results)
        self.entries: list[dict] = []
        self._cache: dict[str, dict] = {}

    def has(self, stage: str) -> bool:
        """Results for ``stage`` (a folder under ``results``: a stage's, or a tool's like ``pong_confirm/STAGE``)."""
        folder = self.results / stage
        return (folder / "metrics.json").exists() or (folder / "stats.json").exists()

    def metrics(self, stage: str) -> dict:
        """Every number of the stage: ``stats.json`` (unrounded, a superset of the headline ``metrics.json``)."""
        if stage not in self._cache:
            folder = self.results / stage
            if (folder / "stats.json").exists():
                self._cache[stage] = json.loads((folder / "stats.json").read_text())
            elif (folder / "metrics.json").exists():
                self._cache[stage] = read_metrics(folder / "metrics.json")
            else:
                raise MissingResults(stage)
        return self._cache[stage]

    def raw(self, stage: str, key: str) -> Any:
        return lookup(self.metrics(stage), key)

    def __call__(self, stage: str, key: str, fmt: str = ".3g", scale: float = 1.0) -> str:
        value = self.raw(stage, key)
        text = format_value(value, fmt, scale)
        self.entries.append({"stage": stage, "key": key, "value": value, "fmt": fmt, "scale": scale, "text": text})
        return text

    def ci(self, stage: str, key: str, fmt: str = ".3g", prefix: str | None = None) -> str:
        """``value (95 % CI low to high)`` from ``key`` and ``<prefix>_ci_low``/``_ci_high`` (prefix: ``key``)."""
        prefix = prefix or key
        low, high = self(stage, prefix + "_ci_low", fmt), self(stage, prefix + "_ci_high", fmt)
        return f"{self(stage, key, fmt)} (95 % CI {low} to {high})"

    def spread(self, stage: str, prefix: str, per_seed: str | None = None, fmt: str = ".3g") -> str:
        """ "95 % CI low to high" from ``<prefix>_ci_low``/``_high``, or, where the stage had too few seeds for
        an interval (None), the per-seed values of the list at ``per_seed`` ("per seed: a, b, c"), else "n/a"."""
        low, high = self.raw(stage, f"{prefix}_ci_low"), self.raw(stage, f"{prefix}_ci_high")
        if low is not None and high is not None:
            return f"95 % CI {self(stage, f'{prefix}_ci_low', fmt)} to {self(stage, f'{prefix}_ci_high', fmt)}"
        if per_seed is not None:
            values = self.raw(stage, per_seed)
            quoted = [self(stage, f"{per_seed}.{i}", fmt) for i in range(len(values))]
            return "per seed: " + ", ".join(quoted)
        return "n/a"
