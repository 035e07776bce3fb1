"""The stage registry: every study package declares its stages in its ``config.py``.

Adding a study means adding ``gradlab/studies/<study>/`` whose ``config.py``
defines ``STAGES = [Stage(...)]``; it is found here without editing this file. So is everything
else the study owns, by its file name in that folder (README, "Adding a study"):

- ``report.py``: a function per stage, named like it, ``<stage>(q: Quotes) -> Section``: the stage's
  section of REPORT.md and the results block of ``docs/studies/<study>.md`` (:mod:`gradlab.report.sections`);
- ``tiny.yaml``: a section per stage, its small parameters: ``gradlab run STAGE --quick`` and the
  end-to-end tests (:func:`quick_params_file`);
- ``notebook.md``: the source of ``notebooks/<study>.ipynb`` (jupytext markdown; tools/make_notebooks.py).

Finding stages imports each study's ``config.py`` (pydantic only, no torch); running
a stage named like its study (``gd``, or ``pg_pong`` of study ``pg``) imports no other
study's code, so that its DVC dependencies are its own.

The seam is typed. ``Stage(params=GDParams, run="gradlab.studies.gd.study:run")`` is a ``Stage[GDParams]``;
its :meth:`Stage.load` returns ``run(p: GDParams, ctx: StageContext) -> dict``. ``run`` stays a string (finding
stages must not import torch), so tests/test_types.py checks that each stage's run takes the stage's model;
mypy checks the rest (``[tool.mypy]`` in pyproject.toml, run by the same test). A learning rate from
params.yaml to the optimiser, gd's ``rules.lr``, with its static type at each hop:

0. ``params.yaml`` ``gd.rules.lr``: YAML, ``float`` or ``null``
1. ``runner.resolve_params``: ``config.load_yaml`` + ``apply_overrides`` -> ``dict`` (untyped until validated)
2. ``config.validate_section(stage, Stage[GDParams].params, raw) -> GDParams`` (``type[P] -> P``):
   ``p.rules.lr: float | None``. The runner finds stages by name, so it holds a ``Stage[Any]`` and sees ``Params``.
3. ``Stage.load()(params, ctx)``: ``gd.study.run(p: GDParams, ctx: StageContext)`` (the test above)
4. ``gd.study.run``: ``p.rules.step_size(lam_max) -> float`` into ``gd.trial.TrialSpec.lr: float``
5. ``gd.trial.run_trial(spec)``: ``FullBatchRegression(..., lr=spec.lr)``, ``self.lr: float``
6. ``FullBatchRegression.configure_optimizers``: ``gd.rules.make_rule(rule, params, lr: float)``, a
   ``torch.optim.Optimizer``

Six hops; mypy checks every file on the way.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from gradlab.config import ConfigError, Params

if TYPE_CHECKING:
    from gradlab.context import StageContext  # at run time not imported here: finding stages stays light

P = TypeVar("P", bound=Params)


@dataclass(frozen=True)
class Stage(Generic[P]):
    name: str
    question: str
    params: type[P]
    run: str  # "package.module:function": run(p: P, ctx: StageContext) -> dict, the metrics
    # glob patterns over the dotted keys of those metrics (``fnmatch``: ``variants.*.final_mean``) that
    # make the headline: metrics.json (DVC metrics) and the parent run's metrics hold only these, rounded
    # to 4 significant figures; every number also goes to stats.json. Empty: every numeric leaf.
    headline: tuple[str, ...] = ()
    # the few numbers that answer the question (fnmatch patterns over the headline's dotted keys): the stage's
    # MLflow parent run gets these as its metrics (at most ANSWER_LIMIT, beside stage/seconds) and every verdict
    # (a key with a ``flags`` part, or a yes/no value) as a tag ``verdict.<key>``; the rest stays in the
    # metrics.json / stats.json artifacts. Empty: the first ANSWER_LIMIT numbers of the headline.
    answer: tuple[str, ...] = ()
    # a preset: a long run outside `dvc repro` (no params.yaml section, no quick parameters), run with
    # `gradlab run STAGE --params presets/STAGE.yaml` and its results committed
    preset: bool = False

    def load(self) -> Callable[[P, StageContext], dict[str, Any]]:
        module, _, func = self.run.partition(":")
        return cast("Callable[[P, StageContext], dict[str, Any]]", getattr(importlib.import_module(module), func))


_BROKEN: dict[str, BaseException] = {}


@cache
def studies() -> tuple[str, ...]:
    """The study packages under ``gradlab/studies/`` (found without importing them)."""
    import gradlab.studies as package

    return tuple(sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg))


@cache
def stages_of(study: str) -> dict[str, Stage[Any]]:
    """The stages declared by ``gradlab/studies/<study>/config.py`` (empty, and remembered, if it fails to import)."""
    try:
        config = importlib.import_module(f"gradlab.studies.{study}.config")
    except Exception as exc:
        _BROKEN[study] = exc
        return {}
    return {stage.name: stage for stage in getattr(config, "STAGES", [])}


@cache
def all_stages() -> dict[str, Stage[Any]]:
    """Every stage of every study package that imports (a broken study does not hide the others)."""
    found: dict[str, Stage[Any]] = {}
    for study in studies():
        found.update(stages_of(study))
    return found


def get_stage(name: str) -> Stage[Any]:
    """The stage ``name``. Only the config of the study named like it (``gd``; ``pg`` for ``pg_pong``) is
    imported when that study declares it, so that a stage's run imports no other study's modules."""
    for study in studies():
        if (name == study or name.startswith(f"{study}_")) and name in stages_of(study):
            return stages_of(study)[name]
    stages = all_stages()
    if name not in stages:
        broken = "".join(f"; study {k} failed to import: {type(e).__name__}: {e}" for k, e in _BROKEN.items())
        raise ConfigError("stage", f"unknown stage {name!r}; allowed: {', '.join(sorted(stages))}{broken}")
    return stages[name]


def study_of(stage: str) -> str:
    """The study whose ``config.py`` declares ``stage`` (ConfigError, naming the stages, if none does)."""
    get_stage(stage)
    return next(study for study in studies() if stage in stages_of(study))


def study_folder(study: str) -> Path:
    """``gradlab/studies/<study>/``: the study's code and the files found by name in it (above)."""
    import gradlab.studies as package

    return Path(next(iter(package.__path__))) / study


def quick_params_file(stage: str) -> Path | None:
    """The study's ``tiny.yaml`` when it has a section for ``stage`` (its quick parameters), else None."""
    from gradlab.config import load_yaml

    path = study_folder(study_of(stage)) / "tiny.yaml"
    return path if path.is_file() and stage in (load_yaml(path) or {}) else None


def quick_stages() -> list[str]:
    """The stages that have quick parameters, in discovery order."""
    return [name for name in all_stages() if quick_params_file(name) is not None]
