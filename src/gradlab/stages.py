"""The stage registry: every study package declares its stages in its ``config.py``.

Adding a study means adding ``gradlab/studies/<study>/`` whose ``config.py``
defines ``STAGES = [Stage(...)]``; it is found here without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import Any

from gradlab.config import ConfigError, Params


@dataclass(frozen=True)
class Stage:
    name: str
    question: str
    params: type[Params]
    run: str  # "package.module:function" taking (params, ctx) and returning metrics

    def load(self) -> Any:
        module, _, func = self.run.partition(":")
        return getattr(importlib.import_module(module), func)


_BROKEN: dict[str, BaseException] = {}


@cache
def all_stages() -> dict[str, Stage]:
    """Every stage of every study package that imports (a broken study does not hide the others)."""
    import gradlab.studies as studies

    found: dict[str, Stage] = {}
    for info in sorted(pkgutil.iter_modules(studies.__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        try:
            config = importlib.import_module(f"gradlab.studies.{info.name}.config")
        except Exception as exc:
            _BROKEN[info.name] = exc
            continue
        for stage in getattr(config, "STAGES", []):
            found[stage.name] = stage
    return found


def get_stage(name: str) -> Stage:
    stages = all_stages()
    if name not in stages:
        broken = "".join(f"; study {k} failed to import: {type(e).__name__}: {e}" for k, e in _BROKEN.items())
        raise ConfigError("stage", f"unknown stage {name!r}; allowed: {', '.join(sorted(stages))}{broken}")
    return stages[name]
