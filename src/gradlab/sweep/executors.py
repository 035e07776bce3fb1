"""Where a sweep's (or a tuner's) trials run: the trial engine (:func:`gradlab.trials.run_trials`) on the local
process pool or on Ray tasks (a local instance or a cluster).

A trial is a whole stage run (:mod:`gradlab.sweep.worker`) that opens its own run under the sweep's parent; the
engine feeds the pool, delivers each outcome (a worker that died or did not stop: a FAILED or KILLED result), and
ends the runs under the parent that are still RUNNING once no trial runs. Ctrl-C: no new trial; the running ones
are interrupted (their runs end KILLED) and their results delivered for up to 60 s; then KeyboardInterrupt again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gradlab.pool import Pool, RayPool, default_workers
from gradlab.process import ExitCode
from gradlab.sweep.worker import init_local_worker, run_trial
from gradlab.tracking import FAILED, FINISHED, KILLED, Tracker
from gradlab.trials import Runs, run_trials

BACKENDS = ("local", "ray")
GRACE = 60.0  # seconds the running trials have to end their runs after Ctrl-C


def check_pool(backend: str, workers: int | None, address: str | None) -> None:
    """ConfigError (exit 2, nothing created) for a backend, a number of workers or an address no pool takes."""
    from gradlab.config import ConfigError

    if backend not in BACKENDS:
        raise ConfigError("--backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if workers is not None and workers < 1:
        raise ConfigError("--workers", f"must be at least 1 (got {workers})")
    if address and backend != "ray":
        raise ConfigError("--address", "only with --backend ray")


def make_pool(backend: str, workers: int | None, address: str | None) -> Pool | RayPool:
    """``workers`` spawned processes (one share of the cores each), or Ray tasks (``backend`` "ray")."""
    if backend == "local":
        n = workers or default_workers()
        return Pool(n, init_local_worker, (max(1, default_workers() // n),), grace=GRACE)
    return RayPool(workers, address, grace=GRACE)


def parent_status(code: int) -> str:
    """How a sweep's or tuner's parent run ends: KILLED after an interrupt, FAILED when the executor broke, else
    FINISHED (failed trials are the trials' own status)."""
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        return KILLED
    return FAILED if code else FINISHED


def broken(job: dict, exc: BaseException) -> dict:
    """The result of a trial whose worker died or was stopped (KILLED after an interrupt, else FAILED)."""
    status = KILLED if isinstance(exc, KeyboardInterrupt) else FAILED
    first = str(exc).splitlines()[0] if str(exc) else ""
    return {
        "index": job["index"],
        "code": ExitCode.INTERRUPTED if status == KILLED else ExitCode.FAILED,
        "status": status,
        "metrics": None,
        "seconds": 0.0,
        "error": f"{type(exc).__name__}: {first}",
    }


def run_jobs(
    pool: Pool | RayPool,
    jobs: Iterable[dict],
    on_result: Callable[[dict], None],
    runs: Runs,
    tracker: Tracker,
    trial: Callable[[dict], dict] | None = None,
    mine: Callable[[Any], bool] | None = None,
    tick: Callable[[], None] | None = None,
    tick_every: float | None = None,
) -> None:
    """Every job through ``trial`` (default: a sweep's, :func:`gradlab.sweep.worker.run_trial`) on ``pool``."""
    run_trials(
        trial or run_trial,
        jobs,
        pool=pool,
        runs=runs,
        tracker=tracker,
        mine=mine,
        on_result=lambda _job, res: on_result(res),
        on_error=lambda job, exc: on_result(broken(job, exc)),
        tick=tick,
        tick_every=tick_every,
    )
