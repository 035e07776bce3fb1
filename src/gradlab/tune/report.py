"""The pruning hook a stage calls with an intermediate value: ``gradlab.tune.report(step, value)``.

Outside a tuning trial it does nothing (one environment lookup). ``gradlab tune`` runs each trial
with :data:`ENV` naming the study's storage URL, the study, the trial and the pruner; the variable is
inherited by every process the stage spawns (its own trial pool included). There the call

1. records ``value`` at ``step`` in the Optuna storage (``trial.report``), sign-flipped when the value's
   sense (``higher_is_better``) is not the study's direction, so that the pruner compares the right way;
2. asks the pruner (``trial.should_prune()``) and, if it says so, notes the step in the trial's user
   attributes and raises :class:`TrialPruned`.

:class:`TrialPruned` derives from ``KeyboardInterrupt`` on purpose: the stage stops exactly as it does
on Ctrl-C (its MLflow runs end KILLED, nothing is published, ``run_stage`` returns 130), and no
``except Exception`` on the way turns it into a failure. ``gradlab tune`` then sees the note and tells
Optuna PRUNED (and tags the trial's run ``gradlab.tune.state=pruned``).

Steps must be comparable across trials: the pruner compares values reported at the same step. A
stage whose configurations differ in how much work one update is should report a step in units of
work (games, samples), not updates. A stage that runs several inner trials (variants, seeds) at once
reports from each; the first value reported at a step is kept, so tune such a stage with one inner trial.

Standard library only at import time: every stage imports this module; Optuna is imported only inside a trial.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

ENV = "GRADLAB_TUNE_TRIAL"  # JSON: {"storage", "study", "trial_id", "number", "pruner"}
PRUNED_AT = "gradlab_pruned_at"  # user attribute: the step at which the pruner stopped the trial
SIGN = "gradlab_report_sign"  # user attribute: +1 or -1, what the reported values were multiplied by


class TrialPruned(KeyboardInterrupt):  # Optuna's name for the same thing
    """Raised by :func:`report` when the pruner stops the trial (a ``KeyboardInterrupt``: see the module)."""

    def __init__(self, step: int = -1, value: float = math.nan):
        super().__init__(f"pruned by gradlab tune at step {step} (value {value:g})")
        self.step, self.value = step, value

    def __reduce__(self):  # crosses process pools intact
        return (type(self), (self.step, self.value))


def active() -> bool:
    """True when this process runs (inside) a ``gradlab tune`` trial."""
    return bool(os.environ.get(ENV))


def report(step: int, value: float, *, higher_is_better: bool = True) -> None:
    """Report ``value`` at ``step`` to the tuner and raise :class:`TrialPruned` if the trial should stop.

    ``step``: a non-negative integer that means the same amount of work in every trial (e.g. games played).
    ``value``: the intermediate score (NaN is reported as such: the median pruner prunes it).
    A no-op unless the process runs as a ``gradlab tune`` trial. Storage errors are printed once and ignored.
    """
    raw = os.environ.get(ENV)
    if not raw:
        return
    handle = _handle(raw)
    if handle is None:
        return
    handle.report(int(step), float(value), higher_is_better)


class _Trial:
    """The running trial, opened once per process and trial."""

    def __init__(self, info: dict):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.info = info
        storage = open_storage(info["storage"])
        # the sampler is never asked here; the pruner must be the study's own
        self.study = optuna.load_study(
            study_name=info["study"],
            storage=storage,
            sampler=optuna.samplers.RandomSampler(),
            pruner=make_pruner(info.get("pruner") or {"name": "none"}),
        )
        self.trial = optuna.trial.Trial(self.study, info["trial_id"])
        self.maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
        self.sign_noted = False
        self.broken = False

    def report(self, step: int, value: float, higher_is_better: bool) -> None:
        if self.broken:
            return
        sign = 1.0 if higher_is_better == self.maximize else -1.0
        try:
            if not self.sign_noted:
                self.trial.set_user_attr(SIGN, sign)
                self.sign_noted = True
            self.trial.report(sign * value if math.isfinite(value) else math.nan, step)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr(PRUNED_AT, step)
        except Exception as exc:  # noqa: BLE001 - the tuner's storage must never break the training
            self.broken = True
            print(f"warning: gradlab tune: cannot report to the study ({type(exc).__name__}: {exc})", file=sys.stderr)
            return
        if prune:
            print(
                f"gradlab tune: trial {self.info.get('number')} pruned at step {step} (value {value:g})",
                file=sys.stderr,
            )
            raise TrialPruned(step, value)


_OPEN: dict[str, _Trial | None] = {}


def _handle(raw: str) -> _Trial | None:
    if raw not in _OPEN:
        try:
            _OPEN.clear()  # a pool worker runs one trial after another: only the current one stays open
            _OPEN[raw] = _Trial(json.loads(raw))
        except Exception as exc:  # noqa: BLE001
            print(f"warning: gradlab tune: cannot open the trial ({type(exc).__name__}: {exc})", file=sys.stderr)
            _OPEN[raw] = None
    return _OPEN[raw]


# --------------------------------------------------------------------------- shared with the tune command
PRUNERS: dict[str, tuple[str, ...]] = {
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count"),
    "none": (),
}


def make_pruner(spec: dict[str, Any]):
    """An Optuna pruner from ``{"name": median|successive_halving|none, <its options>}`` (validated by the space)."""
    import optuna

    options = {k: v for k, v in spec.items() if k != "name" and v is not None}
    name = spec.get("name", "median")
    if name == "median":
        return optuna.pruners.MedianPruner(**options)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    return optuna.pruners.NopPruner()


SQLITE_TIMEOUT = 60.0  # seconds a writer waits for the SQLite file's lock (the tuner, its workers, their hooks)


def open_storage(url: str, **heartbeat):
    """Optuna's RDB storage at ``url``; SQLite waits for its lock instead of failing at once."""
    import warnings

    import optuna

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, **kwargs, **heartbeat)
