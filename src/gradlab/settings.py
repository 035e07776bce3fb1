"""The environment, read once into a frozen :class:`Settings` (README: Settings).

| variable | default | what |
|---|---|---|
| ``GRADLAB_RESULTS`` | ``<cwd>/results`` | where stages write ``<stage>/`` and sweeps ``sweeps/<id>/`` |
| ``GRADLAB_REPORTS`` | ``<cwd>/reports`` | where the report is written |
| ``GRADLAB_CURVE_POINTS`` | 320 | most points of one curve sent to MLflow; 0 = every point |
| ``GRADLAB_WORKERS`` | the cores this process may use | processes for a stage's trials when its ``workers`` is 0 |
| ``GRADLAB_ACCELERATOR`` | ``cpu`` | the Lightning accelerator (``cpu``, ``gpu``, ``auto``...) |
| ``GRADLAB_SYSTEM_METRICS`` | 5 | seconds between samples of CPU and memory on a stage's run; 0 = none |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///<repo root>/mlflow.db`` | the tracking store (:mod:`gradlab.tracking`) |

An entry point (a stage run, the report, a sweep) reads them once with :meth:`Settings.from_env`
(a bad value: :class:`~gradlab.config.ConfigError`, exit 2) and makes them :func:`current` for its
run with :func:`active`; the code below it (the trainer's accelerator, the default number of
workers) asks :func:`current` instead of the environment. Worker processes receive the object as
an argument (:func:`gradlab.trials.run_trials`, the sweep's trial jobs).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gradlab.config import ConfigError

DEFAULT_CURVE_POINTS = 320  # what the MLflow UI samples per run and metric for a chart
DEFAULT_SYSTEM_METRICS = 5.0  # seconds between two samples of a stage run's CPU and memory (MLflow's own is 10)


@dataclass(frozen=True)
class Settings:
    results: Path
    reports: Path
    curve_points: int
    workers: int | None  # None: the cores this process may use
    accelerator: str
    tracking_uri: str | None  # None: gradlab.tracking.tracking_uri() (DVC_ROOT or the git root)
    system_metrics: float = DEFAULT_SYSTEM_METRICS  # seconds between samples of CPU and memory; 0: none

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            results=Path(env.get("GRADLAB_RESULTS") or Path.cwd() / "results"),
            reports=Path(env.get("GRADLAB_REPORTS") or Path.cwd() / "reports"),
            curve_points=_curve_points(env.get("GRADLAB_CURVE_POINTS", "")),
            workers=_workers(env.get("GRADLAB_WORKERS", "")),
            accelerator=env.get("GRADLAB_ACCELERATOR", "").strip() or "cpu",
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            system_metrics=_system_metrics(env.get("GRADLAB_SYSTEM_METRICS", "")),
        )

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def cores(self) -> int:
        """``workers`` if set, else the cores this process may use."""
        if self.workers:
            return self.workers
        return machine_cores()


def machine_cores() -> int:
    """The cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _curve_points(raw: str) -> int:
    raw = raw.strip()
    if not raw:
        return DEFAULT_CURVE_POINTS
    if raw.isdigit() and int(raw) != 1:
        return int(raw)
    raise ConfigError("GRADLAB_CURVE_POINTS", f"must be 0 (every point) or an integer >= 2 (got {raw!r})")


def _workers(raw: str) -> int | None:
    raw = raw.strip()
    if raw in ("", "0"):
        return None
    if raw.isdigit():
        return int(raw)
    raise ConfigError("GRADLAB_WORKERS", f"must be a number of processes, 0 for every core (got {raw!r})")


def _system_metrics(raw: str) -> float:
    raw = raw.strip()
    if not raw:
        return DEFAULT_SYSTEM_METRICS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds == 0 or 1 <= seconds < float("inf"):
        return seconds
    raise ConfigError("GRADLAB_SYSTEM_METRICS", f"must be 0 (none) or a number of seconds >= 1 (got {raw!r})")


_ACTIVE: list[Settings] = []


def current() -> Settings:
    """The settings of the running entry point (or, outside one, those of the environment now)."""
    return _ACTIVE[-1] if _ACTIVE else Settings.from_env()


@contextmanager
def active(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` :func:`current` for the block."""
    _ACTIVE.append(settings)
    try:
        yield settings
    finally:
        _ACTIVE.pop()


def activate(settings: Settings) -> None:
    """Make ``settings`` current for the rest of this process (a worker process's initializer)."""
    _ACTIVE[:] = [settings]
