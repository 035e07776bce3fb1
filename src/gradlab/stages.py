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


@cache
def all_stages() -> dict[str, Stage]:
    import gradlab.studies as studies

    found: dict[str, Stage] = {}
    for info in sorted(pkgutil.iter_modules(studies.__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        config = importlib.import_module(f"gradlab.studies.{info.name}.config")
        for stage in getattr(config, "STAGES", []):
            found[stage.name] = stage
    return found


def get_stage(name: str) -> Stage:
    stages = all_stages()
    if name not in stages:
        raise ConfigError("stage", f"unknown stage {name!r}; allowed: {', '.join(sorted(stages))}")
    return stages[name]
