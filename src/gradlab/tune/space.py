"""The search-space file: load, validate (its own keys, then every value against the stage's parameters).

```yaml
stage: pg_cartpole
name: pg_cartpole_lr            # results/tune/<name>/, the Optuna study, MLflow parent tune__<name>; default: stage
objective: {key: variants.correct.final_return_mean, direction: maximize, missing: fail}
sampler: {name: tpe, seed: 0, n_startup_trials: 10}          # or {name: random, seed: 0}
pruner: {name: median, n_startup_trials: 5, n_warmup_steps: 0} # or successive_halving, or none
trials: 30
fixed: {variants: [correct], seeds: 1}                     # every trial
params:
  optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
  episodes_per_update: {choices: [4, 8, 16]}
  hidden: {low: 32, high: 256, step: 32, type: int}
enqueue:                                                   # optional: trials to run first, as given
  - {optimizer.lr: 1.0e-3, episodes_per_update: 8, hidden: 64}
```

Keys of ``fixed``, ``params`` and ``enqueue`` are paths inside the stage's section of params.yaml
(``optimizer.lr``; a leading ``<stage>.`` is accepted too). Every problem is a
:class:`~gradlab.config.ConfigError` naming the key in the space file and what is allowed; the
command prints it as one line and exits 2 before it creates anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from gradlab.config import ConfigError, Params, flatten, load_yaml
from gradlab.tune.report import PRUNERS

Choice = None | bool | int | float | str
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Objective(Params):
    key: str = Field(min_length=1)  # dotted path into the stage's stats.json (metrics.json's keys are there too)
    direction: Literal["minimize", "maximize"]
    missing: Literal["fail"] | float | int = "fail"  # a trial whose value is missing/None/NaN: FAIL, or this value


class Sampler(Params):
    name: Literal["tpe", "random"] = "tpe"
    seed: int | None = Field(0, ge=0, le=2**31 - 1)
    n_startup_trials: int = Field(10, ge=0, le=100_000)  # tpe: random trials before the model


class Pruner(Params):
    name: Literal["median", "successive_halving", "none"] = "median"
    n_startup_trials: int | None = Field(None, ge=0, le=100_000)
    n_warmup_steps: int | None = Field(None, ge=0)
    interval_steps: int | None = Field(None, ge=1)
    n_min_trials: int | None = Field(None, ge=1)
    min_resource: int | Literal["auto"] | None = None
    reduction_factor: int | None = Field(None, ge=2, le=100)
    min_early_stopping_rate: int | None = Field(None, ge=0)
    bootstrap_count: int | None = Field(None, ge=0)


class ParamSpec(Params):
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    type: Literal["float", "int"] | None = None
    choices: list[Choice] | None = Field(None, min_length=1)


class SpaceFile(Params):
    stage: str = Field(min_length=1)
    name: str | None = None
    objective: Objective
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    trials: int = Field(ge=1, le=100_000)
    fixed: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, ParamSpec] = Field(min_length=1)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)


@dataclass
class Space:
    """A validated search space (``params`` keys relative to the stage's section)."""

    stage: str
    name: str
    objective: dict
    sampler: dict
    pruner: dict
    trials: int
    fixed: dict[str, Any]
    params: dict[str, dict]
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # the space file's path (messages only)

    def distributions(self) -> dict:
        """Optuna distributions, one per parameter, in the file's order."""
        import optuna.distributions as d

        out = {}
        for key, p in self.params.items():
            if p.get("choices") is not None:
                out[key] = d.CategoricalDistribution(p["choices"])
            elif p["type"] == "int":
                out[key] = d.IntDistribution(int(p["low"]), int(p["high"]), log=p["log"], step=int(p["step"] or 1))
            else:
                out[key] = d.FloatDistribution(float(p["low"]), float(p["high"]), log=p["log"], step=p["step"])
        return out

    def sets(self, values: dict[str, Any]) -> list[str]:
        """``--set`` overrides of one trial: the fixed values, then the sampled ones."""
        merged = {**self.fixed, **values}
        return [f"{self.stage}.{k}={json.dumps(v)}" for k, v in merged.items()]

    def identity(self) -> dict:
        """What makes two runs the same study (the trial budget may grow between them)."""
        data = {k: v for k, v in self.plain().items() if k not in ("trials", "source")}
        return data

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def plain(self) -> dict:
        return {
            "stage": self.stage,
            "name": self.name,
            "objective": self.objective,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "trials": self.trials,
            "fixed": self.fixed,
            "params": self.params,
            "enqueue": self.enqueue,
        }


def read(
    path: str | Path,
    *,
    trials: int | None = None,
    objective: str | None = None,
    direction: str | None = None,
    name: str | None = None,
) -> Space:
    """Load and check the file's own structure (no stage parameters yet); command-line values win."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), "search-space file not found")
    raw = load_yaml(path)
    if trials is not None:
        raw["trials"] = trials
    if name is not None:
        raw["name"] = name
    if objective is not None or direction is not None:
        given = raw.get("objective")
        obj = dict(given) if isinstance(given, dict) else {}
        if objective is not None:
            obj["key"] = objective
        if direction is not None:
            obj["direction"] = direction
        raw["objective"] = obj
    try:
        model = SpaceFile.model_validate(raw)
    except ValidationError as exc:
        from gradlab.config import _describe

        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"]) or str(path)
        raise ConfigError(key, _describe(error, SpaceFile)) from None
    from gradlab.stages import get_stage

    try:
        get_stage(model.stage)
    except ConfigError as err:
        raise ConfigError("stage", err.message) from None
    stage = model.stage
    space_name = model.name or stage
    if not NAME.match(space_name):
        raise ConfigError("name", f"letters, digits, '_', '-', '.' only, up to 100 (got {space_name!r})")
    pruner = model.pruner.model_dump(exclude_none=True)
    for key in model.pruner.model_fields_set - {"name"}:
        if key not in PRUNERS[model.pruner.name]:
            allowed = ", ".join(PRUNERS[model.pruner.name]) or "none"
            raise ConfigError(
                f"pruner.{key}", f"not an option of the {model.pruner.name} pruner; its options: {allowed}"
            )
    if model.pruner.min_resource is not None and model.pruner.min_resource != "auto" and model.pruner.min_resource < 1:
        raise ConfigError("pruner.min_resource", f"must be 'auto' or an integer >= 1 (got {model.pruner.min_resource})")
    sampler = model.sampler.model_dump()
    if model.sampler.name == "random" and "n_startup_trials" in model.sampler.model_fields_set:
        raise ConfigError("sampler.n_startup_trials", "an option of the tpe sampler only")
    if model.sampler.name == "random":
        sampler.pop("n_startup_trials")
    objective_spec = model.objective.model_dump()
    if isinstance(objective_spec["missing"], float | int) and not math.isfinite(objective_spec["missing"]):
        raise ConfigError("objective.missing", "must be 'fail' or a finite number")

    fixed = {_relative(stage, k, "fixed"): v for k, v in flatten(model.fixed).items()}
    params = {}
    for key, spec in model.params.items():
        rel = _relative(stage, key, "params")
        if rel in fixed:
            raise ConfigError(f"params.{key}", "is also in fixed; a key is either searched or fixed")
        if rel in params:
            raise ConfigError(f"params.{key}", "appears twice")
        params[rel] = _check_param(f"params.{key}", spec)
    enqueue = []
    for i, entry in enumerate(model.enqueue):
        point = {_relative(stage, k, f"enqueue.{i}"): v for k, v in flatten(entry).items()}
        for k in point:
            if k not in params:
                raise ConfigError(f"enqueue.{i}.{k}", f"not a searched parameter; searched: {', '.join(params)}")
        enqueue.append(point)
    return Space(
        stage=stage,
        name=space_name,
        objective=objective_spec,
        sampler=sampler,
        pruner=pruner,
        trials=model.trials,
        fixed=fixed,
        params=params,
        enqueue=enqueue,
        source=str(path),
    )


def _relative(stage: str, key: str, where: str) -> str:
    rel = key[len(stage) + 1 :] if key.startswith(f"{stage}.") else key
    if not rel or any(not part for part in rel.split(".")):
        raise ConfigError(f"{where}.{key}", "must be a dotted path inside the stage's parameters, e.g. optimizer.lr")
    return rel


def _check_param(where: str, p: ParamSpec) -> dict:
    """One parameter's range or choices, checked on its own; a plain dict with the type made explicit."""
    if p.choices is not None:
        extra = [k for k in ("low", "high", "step", "type") if getattr(p, k) is not None] + (["log"] if p.log else [])
        if extra:
            raise ConfigError(f"{where}.{extra[0]}", "give either choices (a list) or low/high (a range), not both")
        seen = [json.dumps(c) for c in p.choices]
        if len(set(seen)) != len(seen):
            raise ConfigError(f"{where}.choices", f"repeated value in {p.choices}")
        for i, c in enumerate(p.choices):
            if isinstance(c, float) and not math.isfinite(c):
                raise ConfigError(f"{where}.choices.{i}", f"must be a finite number (got {c})")
        return {"choices": list(p.choices)}
    if p.low is None or p.high is None:
        missing = "low" if p.low is None else "high"
        raise ConfigError(f"{where}.{missing}", "required: give low and high (a range) or choices (a list)")
    for key in ("low", "high", "step"):
        v = getattr(p, key)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}.{key}", f"must be a finite number (got {v})")
    ints = all(isinstance(v, int) for v in (p.low, p.high, p.step) if v is not None)
    kind = p.type or ("int" if ints else "float")
    if kind == "int" and not ints:
        bad = next(
            k for k in ("low", "high", "step") if getattr(p, k) is not None and not isinstance(getattr(p, k), int)
        )
        raise ConfigError(f"{where}.{bad}", f"type int needs integer bounds and step (got {getattr(p, bad)!r})")
    if not p.low < p.high:
        raise ConfigError(f"{where}.high", f"must be above low ({p.low}); for a single value use fixed")
    if p.log and p.low <= 0:
        raise ConfigError(f"{where}.low", f"log: true needs low > 0 (got {p.low})")
    if p.step is not None:
        if p.log:
            raise ConfigError(f"{where}.step", "cannot be combined with log: true")
        if p.step <= 0:
            raise ConfigError(f"{where}.step", f"must be > 0 (got {p.step})")
        if p.step > p.high - p.low:
            raise ConfigError(f"{where}.step", f"larger than high - low ({p.high - p.low})")
    low, high = (int(p.low), int(p.high)) if kind == "int" else (float(p.low), float(p.high))
    return {"low": low, "high": high, "log": p.log, "step": p.step, "type": kind}


def candidates(spec: dict) -> list[tuple[str, Any]]:
    """The values of a parameter that are checked up front: its bounds, or each choice."""
    if spec.get("choices") is not None:
        return [(f"choices.{i}", c) for i, c in enumerate(spec["choices"])]
    return [("low", spec["low"]), ("high", spec["high"])]


def validate_against_stage(space: Space, params_text: str) -> None:
    """Every value the search can produce, checked by the stage's parameter model (ConfigError naming the key):
    the fixed values; each bound or choice of each parameter with the others at their base values; the
    all-lowest and all-highest corners; each enqueued trial."""
    from gradlab.runner import resolve_params

    with tempfile.TemporaryDirectory(prefix="gradlab-tune-") as tmp:
        frozen = Path(tmp) / "params.yaml"
        frozen.write_text(params_text)

        def check(values: dict, where: str, what: str, param: str = "") -> None:
            try:
                resolve_params(space.stage, space.sets(values), frozen)
            except ConfigError as err:
                rel = err.key[len(space.stage) + 1 :] if err.key.startswith(f"{space.stage}.") else err.key
                if err.message.startswith("unknown key"):
                    named = param or where
                    raise ConfigError(named, f"not a parameter of {space.stage} ({err.key}: {err.message})") from None
                if rel in space.fixed and rel not in values:
                    where = f"fixed.{rel}"
                raise ConfigError(where, f"{what} refused by {space.stage}'s parameters: {err}") from None

        check({}, "fixed", "the fixed values are")
        for key, spec in space.params.items():
            for label, value in candidates(spec):
                check({key: value}, f"params.{key}.{label}", f"{value!r} is", f"params.{key}")
        for corner, pick in (("lowest", 0), ("highest", -1)):
            values = {k: candidates(s)[pick][1] for k, s in space.params.items()}
            if len(values) > 1:
                check(values, "params", f"the {corner} values together ({_short(values)}) are")
        dists = space.distributions()
        for i, point in enumerate(space.enqueue):
            for k, v in point.items():
                dist = dists[k]
                try:
                    ok = dist._contains(dist.to_internal_repr(v))
                except (ValueError, TypeError):
                    ok = False
                if not ok:
                    raise ConfigError(
                        f"enqueue.{i}.{k}", f"{v!r} is outside params.{k} ({_describe_spec(space.params[k])})"
                    )
            check(point, f"enqueue.{i}", "this trial is")


def _short(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _describe_spec(spec: dict) -> str:
    if spec.get("choices") is not None:
        return f"choices {spec['choices']}"
    return (
        f"{spec['low']}..{spec['high']}"
        + (", log" if spec["log"] else "")
        + (f", step {spec['step']}" if spec["step"] else "")
    )


def differences(saved: dict, current: dict) -> list[str]:
    """The keys (``objective``, ``params.hidden``...) whose values differ between two :meth:`Space.identity`."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if key == "params" and isinstance(a, dict) and isinstance(b, dict):
            out += [f"params.{k}" for k in sorted(set(a) | set(b)) if _canon(a.get(k)) != _canon(b.get(k))]
        elif _canon(a) != _canon(b):
            out.append(key)
    return out


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def trial_values(space: Space, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's sampled values in the file's order, ints as ints."""
    out = {}
    for key, spec in space.params.items():
        v = params[key]
        if spec.get("type") == "int":
            v = int(v)
        out[key] = v
    return out
