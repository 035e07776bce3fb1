"""The sweep's definition: grid parsing and validation, the trials (grid x seeds), the spec saved for ``--resume``."""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlab.config import ConfigError, parse_assignment, to_plain


def split_values(text: str) -> list[str]:
    """``a,[b,c],'d,e'`` -> ['a', '[b,c]', "'d,e'"]: commas inside brackets or quotes do not split."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def parse_grid(stage: str, items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["gd.lr=0.1,1"]`` -> ``[("gd.lr", [0.1, 1])]`` (values parsed as YAML, like --set)."""
    grid: list[tuple[str, list[Any]]] = []
    for item in items:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not key or not rest.strip():
            raise ConfigError(item, "a grid must look like key.path=v1,v2,...")
        if key.split(".")[0] != stage:
            raise ConfigError(key, f"grid keys must start with the stage name '{stage}.'")
        if key == f"{stage}.seed":
            raise ConfigError(key, "do not grid over the seed; use --seeds N")
        if any(k == key for k, _ in grid):
            raise ConfigError(key, "appears in two --grid options; give all its values in one")
        values = []
        for text in split_values(rest):
            if not text:
                raise ConfigError(key, f"empty value in grid {rest!r}")
            values.append(parse_assignment(f"{key}={text}")[1])
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise ConfigError(key, f"repeated value in grid {rest!r}")
        grid.append((key, values))
    return grid


def clip(text: str, n: int = 240) -> str:
    """MLflow limits run names, tags and params; long grid values are cut (the full config is in the params)."""
    if len(text) <= n:
        return text
    return text[: n - 12] + "…" + hashlib.sha256(text.encode()).hexdigest()[:10]


def short(key: str) -> str:
    return key.split(".", 1)[1] if "." in key else key


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class Trial:
    index: int
    point: tuple[tuple[str, Any], ...]  # ((full key, value), ...) in grid order
    seed: int | None
    sets: tuple[str, ...]  # every override of this trial: base --set, grid point, seed

    @property
    def variant(self) -> str:
        return clip(",".join(f"{short(k)}={fmt(v)}" for k, v in self.point) or "base", 120)

    @property
    def name(self) -> str:
        return f"{self.variant}__seed{self.seed if self.seed is not None else 0}"


def _assign(key: str, value: Any) -> str:
    """A --set text that parses back (as YAML) to exactly ``value``."""
    return f"{key}={json.dumps(value)}"


def expand(stage: str, grid: list[tuple[str, list[Any]]], sets: Sequence[str], seeds: list[int] | None) -> list[Trial]:
    """The grid's product times the seeds; seeds vary fastest."""
    keys = [k for k, _ in grid]
    trials = []
    for values in itertools.product(*[v for _, v in grid]):
        point = tuple(zip(keys, values, strict=True))
        for seed in seeds if seeds is not None else [None]:
            extra = [_assign(k, v) for k, v in point]
            if seed is not None:
                extra.append(f"{stage}.seed={seed}")
            trials.append(Trial(len(trials), point, seed, (*sets, *extra)))
    return trials


def trial_seeds(stage: str, sets: Sequence[str], params_file: Path, n: int) -> list[int] | None:
    """Seeds base..base+n-1 where base is the stage's resolved ``seed`` (None if it has no seed)."""
    from gradlab.runner import resolve_params

    base = resolve_params(stage, sets, params_file)
    if "seed" not in type(base).model_fields:
        if n > 1:
            raise ConfigError(f"{stage}.seed", f"stage {stage} has no seed parameter; --seeds must be 1")
        return None
    start = int(base.seed)
    return list(range(start, start + n))


def validate(stage: str, trials: Sequence[Trial], params_file: Path) -> dict[int, dict]:
    """Resolve every trial's parameters (ConfigError on the first bad one); returns plain params per trial."""
    from gradlab.runner import resolve_params

    return {t.index: to_plain(resolve_params(stage, t.sets, params_file)) for t in trials}


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class SweepSpec:
    stage: str
    sweep_id: str
    grid: list[tuple[str, list[Any]]]
    sets: list[str]
    seeds: int
    metric: str | None
    params_text: str
    params_file: str
    backend: str = "local"
    workers: int | None = None
    address: str | None = None
    parent_run: str | None = None
    tracking_uri: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now().isoformat(timespec="seconds"))

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["grid"] = [[k, v] for k, v in self.grid]
        return data

    @classmethod
    def from_json(cls, data: dict) -> SweepSpec:
        data = dict(data)
        data["grid"] = [(k, v) for k, v in data["grid"]]
        return cls(**data)


def new_sweep_id(stage: str) -> str:
    return f"{stage}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
