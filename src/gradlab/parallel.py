"""Trials of one stage in parallel across cores (results come back in order).

Workers are started with ``spawn`` (no forked OpenMP state) and run torch on one
thread each, so W workers use W cores. Trials must be picklable top-level
functions of plain arguments; they return plain data and the parent process
logs to MLflow, so no worker ever writes to the tracking store.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from gradlab.settings import Settings, activate, current


def default_workers() -> int:
    """The current settings' ``workers`` (``GRADLAB_WORKERS``; a sweep sets it for its trials), else the cores."""
    return current().cores()


def _init_worker(settings: Settings) -> None:
    import signal

    from gradlab.numerics import pin_runtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what an interrupt means
    activate(settings)  # the parent's settings, not this process's environment
    pin_runtime()  # one torch thread, oneDNN off; the pinned environment came from the parent (gradlab.numerics)


def map_trials(
    fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None, progress: Callable | None = None
) -> list[Any]:
    """``[fn(x) for x in items]`` on ``workers`` processes (in-process when 1)."""
    workers = min(workers or default_workers(), len(items)) or 1
    wrap: Callable[[Iterable], Iterable] = progress or (lambda it: it)
    if workers == 1:
        return [fn(x) for x in wrap(items)]
    pool = ProcessPoolExecutor(
        workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(current(),)
    )
    try:
        futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in wrap(futures)]
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def timed(fn: Callable[[Any], Any], x: Any) -> tuple[Any, float, float]:
    """``(fn(x), started, ended)`` in epoch seconds: when a trial really ran, for its MLflow run."""
    started = time.time()
    result = fn(x)
    return result, started, time.time()


def map_trials_timed(
    fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None, progress: Callable | None = None
) -> list[tuple[Any, float, float]]:
    """:func:`map_trials`, each result with the epoch seconds at which its trial started and ended."""
    return map_trials(functools.partial(timed, fn), items, workers, progress)
