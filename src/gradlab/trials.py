"""The one trial engine: ``run_trials(run_trial, specs, ...)`` runs the trials of every study and of a sweep or tuner.

- **Order**: with ``cost``, the most expensive trials start first (the cores stay busy to the end); else as given.
- **Where**: in this process when one worker is enough, else on a :class:`gradlab.pool.Pool` of spawned
  processes (one torch thread each, the parent's settings), the pool a sweep and a tuner use too (or a
  :class:`~gradlab.pool.RayPool`).
- **Child runs**: with ``child``, each trial's MLflow run ``<variant>__seed<k>`` is opened under ``runs.parent_id``
  where and when the trial starts, so it shows while the trial trains: a trial that streams its curves gets it
  from :func:`current_run` (its points go in batches, :class:`gradlab.tracking.Run`); ``log(run, spec, result)``
  adds what the trial returned; the run ends FINISHED, FAILED or KILLED with the trial's real start and end.
  The child carries the stage's params and provenance (:meth:`gradlab.tracking.Tracker.start_run`).
- **Stray runs**: a run under ``runs.parent_id`` still RUNNING when the trials are over (a worker killed, an
  interrupt between creating a run and ending it) is ended here, KILLED after an interrupt, else FAILED.
- **Results**: plain data, in the order of ``specs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gradlab.pool import Pool, RayPool, default_workers
from gradlab.settings import Settings, activate, current
from gradlab.tracking import FAILED, KILLED, Run, Tracker

S = TypeVar("S")
R = TypeVar("R")

__all__ = ["Child", "Runs", "current_run", "default_workers", "open_child", "run_trials"]


@dataclass(frozen=True)
class Child:
    """A trial's child run: named ``<variant>__seed<seed>``, with its own ``params`` and ``tags`` beside the
    variant and seed; ``resume_id`` continues that run (``--resume``) when the store has it."""

    variant: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)
    resume_id: str | None = None


@dataclass(frozen=True)
class Runs:
    """Where the trials' runs go: the store, the stage's experiment, the run they hang under, tags they all carry."""

    uri: str
    experiment: str
    parent_id: str
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Task(Generic[S, R]):
    """What a worker receives for one trial (plain data and top-level functions: it is pickled)."""

    index: int
    spec: S
    fn: Callable[[S], R]
    runs: Runs | None = None
    child: Child | None = None
    log: Callable[[Run, S, R], None] | None = None


_TRACKERS: dict[str, Tracker] = {}  # one per store and process
_CURRENT: list[Run] = []  # the run of the trial running in this process


def current_run() -> Run | None:
    """The child run of the trial running in this process (None when it has none): for live curves."""
    return _CURRENT[-1] if _CURRENT else None


def _tracker(uri: str) -> Tracker:
    if uri not in _TRACKERS:
        _TRACKERS[uri] = Tracker(uri)
    return _TRACKERS[uri]


@contextmanager
def open_child(tracker: Tracker, runs: Runs, child: Child) -> Iterator[Run]:
    """A child run ``<variant>__seed<k>`` under ``runs.parent_id``, open while what it describes runs, ended
    FINISHED, FAILED (an exception) or KILLED (an interrupt)."""
    tags = {**runs.tags, "gradlab.variant": child.variant, "gradlab.seed": child.seed, **child.tags}
    with tracker.run(
        runs.experiment,
        f"{child.variant}__seed{child.seed}",
        parent=runs.parent_id,
        tags=tags,
        params={"variant": child.variant, "seed": child.seed, **child.params},
        resume_id=child.resume_id,
    ) as run:
        yield run


def _run(task: _Task[S, R], tracker: Tracker | None = None) -> R:
    """One trial, in a worker or in this process: its child run open while it runs."""
    if task.runs is None or task.child is None:
        return task.fn(task.spec)
    with open_child(tracker or _tracker(task.runs.uri), task.runs, task.child) as run:
        _CURRENT.append(run)
        try:
            result = task.fn(task.spec)
            if task.log is not None:
                task.log(run, task.spec, result)
        finally:
            _CURRENT.pop()
    return result


def _setup(settings: Settings) -> None:
    """A study's worker: Ctrl-C is the parent's to handle; the parent's settings; pinned numerics."""
    import signal

    from gradlab.numerics import pin_runtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    activate(settings)  # the parent's settings, not this process's environment
    pin_runtime()  # one torch thread, oneDNN off; the pinned environment came from the parent (gradlab.numerics)


def run_trials(
    run_trial: Callable[[S], R],
    specs: Iterable[S],
    *,
    workers: int | None = None,
    pool: Pool | RayPool | None = None,
    cost: Callable[[S], float] | None = None,
    runs: Runs | None = None,
    child: Callable[[S], Child] | None = None,
    log: Callable[[Run, S, R], None] | None = None,
    tracker: Tracker | None = None,
    mine: Callable[[Any], bool] | None = None,
    progress: Callable[[], None] | None = None,
    on_result: Callable[[S, R], None] | None = None,
    on_error: Callable[[S, BaseException], None] | None = None,
    tick: Callable[[], None] | None = None,
    tick_every: float | None = None,
) -> list[R]:
    """``[run_trial(s) for s in specs]``, the longest first (``cost``), in this process or on ``pool`` (default:
    ``workers`` processes, all cores when None, in this process when one is enough).

    ``run_trial`` and ``log`` must be top-level functions and ``specs`` plain data (a pool pickles them). With
    ``child(spec)`` every trial gets its child run under ``runs``; ``tracker`` is the one to use in this process.
    ``mine(run)``: which runs directly under ``runs.parent_id`` are this call's, to end when stray (default: all).
    ``progress()`` after each trial; ``on_result(spec, result)`` as each arrives; a trial's exception goes to
    ``on_error(spec, exc)``, or is raised (the other trials stopped). ``specs`` may be an iterator that yields
    a new spec only when a worker is free (a tuner's sampler); ``tick()`` then runs every ``tick_every`` s.
    """
    indexed: Iterable[tuple[int, S]] = enumerate(specs)
    if cost is not None:
        indexed = sorted(indexed, key=lambda item: -cost(item[1]))  # stable: ties keep their order
    if pool is None:
        indexed = list(indexed)
        n = min(workers or default_workers(), len(indexed)) or 1
        pool = Pool(n, _setup, (current(),)) if n > 1 else None
    results: dict[int, R] = {}
    tasks = (_Task(i, s, run_trial, runs, child(s) if child is not None else None, log) for i, s in indexed)

    def done(task: _Task[S, R], result: R) -> None:
        results[task.index] = result
        if on_result is not None:
            on_result(task.spec, result)
        if progress is not None:
            progress()

    def failed(task: _Task[S, R], exc: BaseException) -> None:
        if on_error is None:
            raise exc
        on_error(task.spec, exc)
        if progress is not None:
            progress()

    status = FAILED
    try:
        if pool is None:
            for task in tasks:
                try:
                    result = _run(task, tracker)
                except Exception as exc:  # noqa: BLE001 - to on_error, or raised
                    failed(task, exc)
                    continue
                done(task, result)
        else:
            pool.run(_run, tasks, done, failed if on_error is not None else None, tick=tick, tick_every=tick_every)
    except KeyboardInterrupt:
        status = KILLED
        raise
    finally:
        if runs is not None:
            (tracker or _tracker(runs.uri)).end_stray_runs(runs.experiment, runs.parent_id, status, mine)
    return [results[i] for i in sorted(results)]
