"""Typed parameters: params.yaml loading, --set overrides and one-line errors.

Every stage's section of ``params.yaml`` is validated by a pydantic model that
derives from :class:`Params` (unknown keys, wrong types, NaN/inf and
out-of-range values are refused). Errors are raised as :class:`ConfigError`,
whose ``str`` is one line naming the full key path and what is allowed.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails


class _Loader(yaml.SafeLoader):
    """Safe loader that also reads ``1e-3`` as a float (PyYAML's YAML 1.1 reads a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader


class ConfigError(Exception):
    """Bad input: the CLI prints ``str(err)`` as one line and exits 2."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class Params(BaseModel):
    """Base of every parameter model: strict, closed, finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


P = TypeVar("P", bound=Params)
T = TypeVar("T")


def default_list(*values: T) -> Callable[[], list[T]]:
    """``Field(default_factory=default_list("a", "b"))``: a fresh ``["a", "b"]`` for each model. Same as
    ``lambda: ["a", "b"]``, which mypy types ``list[str]`` against Field's overloads, not ``list[Literal[...]]``."""
    return lambda: list(values)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names allowed at ``loc`` inside ``model`` (for unknown-key messages)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    if current is None or not hasattr(current, "model_fields"):
        return None
    return sorted(current.model_fields)


def _describe(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    got = error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"])
        return "unknown key" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "required key is missing"
    message = error["msg"]
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "literal_error":
        message = message.replace("Input should be", "must be one of")
    elif kind in {"finite_number"}:
        message = "must be a finite number"
    if got is not None and not isinstance(got, dict):
        text = repr(got)
        message += f" (got {text[:60]})"
    return message


def validate_section(stage: str, model: type[P], raw: Any) -> P:
    """Validate ``raw`` (the stage's params section) against ``model``."""
    if raw is None:
        raise ConfigError(stage, "section is missing from params.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(stage, f"must be a mapping of parameters, got {type(raw).__name__}")
    _reject_nonfinite_strings(stage, raw)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join([stage, *(str(p) for p in error["loc"])])
        raise ConfigError(key, _describe(error, model)) from None


def _reject_nonfinite_strings(prefix: str, node: Any) -> None:
    """'nan'/'inf' typed as strings (or parsed as floats by YAML) are never valid."""
    if isinstance(node, dict):
        for k, v in node.items():
            _reject_nonfinite_strings(f"{prefix}.{k}", v)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _reject_nonfinite_strings(f"{prefix}.{i}", v)
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(prefix, f"must be a finite number (got {node})")
    elif isinstance(node, str) and node.strip().lower().lstrip("+-") in {"nan", "inf", "infinity", ".nan", ".inf"}:
        raise ConfigError(prefix, f"must be a finite number (got {node!r})")


def load_yaml(path: Path) -> dict:
    """Load a YAML mapping safely; malformed YAML is a ConfigError with file and line."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), "parameter file not found")
    try:
        data = yaml_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(where, f"malformed YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"malformed YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must be a mapping of stage sections")
    return data


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed value). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(text, "override must look like key.path=value")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(text, "override must look like key.path=value")
    try:
        parsed = yaml_load(value) if value.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(key, f"cannot parse value {value!r}") from None
    return key.split("."), parsed


def apply_overrides(raw: dict, assignments: list[str]) -> dict:
    """Return a copy of ``raw`` with each ``key.path=value`` applied."""
    data = copy.deepcopy(raw)
    for text in assignments:
        path, value = parse_assignment(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), "is a value, not a section; cannot set a key inside it")
            node = child
        node[path[-1]] = value
    return data


def to_plain(params: BaseModel) -> dict:
    """The resolved parameters as plain JSON-able data."""
    return params.model_dump(mode="json")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b.c": value}; lists stay values."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flatten(v, key))
            else:
                out[key] = v
    else:
        out[prefix] = data
    return out


def dotted(data: Any, key: str, default: Any = None) -> Any:
    """``data["a"]["b"][0]`` for ``key`` ``a.b.0`` (digits index lists); ``default`` where the path is missing."""
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node
