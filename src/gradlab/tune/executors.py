"""Where tuning trials run: the sweep's local process pool or Ray tasks, fed one trial at a time.

A grid sweep knows its trials up front; a tuner asks the sampler for the next point only when a worker is
free, so that every new point learns from the results before it. Both executors therefore take
``next_job()`` (a job, or None when the budget is spent) and ``on_result(result)``, keep at most
``workers`` trials in flight, and call ``tick()`` at least every ``tick_every`` seconds (heartbeats).
Ctrl-C: no new trial; running ones are interrupted (their runs end KILLED) and their results delivered
with :attr:`stopping` set; then KeyboardInterrupt is raised again. Worker set-up, signal handling and
the trial itself are the sweep's (:mod:`gradlab.sweep.worker`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from gradlab.process import ExitCode, ignoring_sigint
from gradlab.sweep.worker import init_local_worker
from gradlab.tracking import FAILED, KILLED
from gradlab.tune.worker import run_tune_trial

NextJob = Callable[[], dict | None]
OnResult = Callable[[dict], None]


def _broken(job: dict, exc: BaseException, status: str = FAILED) -> dict:
    code = ExitCode.INTERRUPTED if status == KILLED else ExitCode.FAILED
    first = str(exc).splitlines()[0] if str(exc) else ""
    return {
        "index": job["index"],
        "code": code,
        "status": status,
        "metrics": None,
        "seconds": 0.0,
        "error": f"{type(exc).__name__}: {first}",
    }


class LocalPool:
    """``workers`` spawned processes (the sweep's worker set-up: one share of the cores each)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.stopping = False

    def run(self, next_job: NextJob, on_result: OnResult, tick: Callable[[], None], tick_every: float) -> None:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        from gradlab.parallel import default_workers

        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        threads = max(1, default_workers() // self.workers)
        pool = ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=init_local_worker, initargs=(stop, threads)
        )
        futures: dict[Any, dict] = {}

        def fill() -> None:
            while len(futures) < self.workers:
                job = next_job()
                if job is None:
                    return
                futures[pool.submit(run_tune_trial, job)] = job

        def deliver(fut) -> None:
            job = futures.pop(fut)
            if fut.cancelled():
                on_result(_broken(job, KeyboardInterrupt("cancelled before it started"), KILLED))
                return
            try:
                res = fut.result()
            except BaseException as exc:  # the worker process died, or pickling failed
                res = _broken(job, exc)
            on_result(res)

        interrupted = False
        try:
            fill()
            last_tick = time.monotonic()
            while futures:
                done, _ = wait(list(futures), timeout=tick_every, return_when=FIRST_COMPLETED)
                if time.monotonic() - last_tick >= tick_every:
                    tick()
                    last_tick = time.monotonic()
                for fut in done:
                    deliver(fut)
                fill()
        except KeyboardInterrupt:
            interrupted = True
            self.stopping = True
            with ignoring_sigint():
                stop.set()
                for fut in futures:
                    fut.cancel()
                for proc in list(getattr(pool, "_processes", {}).values()):
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGINT)
                done, _ = wait([f for f in futures if not f.cancelled()], timeout=60)
                for fut in list(futures):
                    if fut.cancelled() or fut in done:
                        deliver(fut)
                for proc in list(getattr(pool, "_processes", {}).values()):
                    if proc.is_alive():
                        proc.terminate()
                        proc.join(10)
                    if proc.is_alive():
                        proc.kill()
                for job in list(futures.values()):  # still running after the wait: gone now
                    on_result(_broken(job, KeyboardInterrupt("did not stop in 60 s; terminated"), KILLED))
                futures.clear()
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)


class RayPool:
    """The same trials as Ray tasks (1 CPU each), at most ``workers`` in flight; no address: a local Ray instance."""

    def __init__(self, workers: int | None, address: str | None):
        self.workers = workers
        self.address = address
        self.stopping = False

    def run(self, next_job: NextJob, on_result: OnResult, tick: Callable[[], None], tick_every: float) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
        remote = ray.remote(num_cpus=1, max_retries=0)(run_tune_trial)
        window = self.workers or int(ray.cluster_resources().get("CPU", 1))
        in_flight: dict = {}

        def fill() -> None:
            while len(in_flight) < window:
                job = next_job()
                if job is None:
                    return
                in_flight[remote.remote(job)] = job

        def collect(ref) -> None:
            job = in_flight.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as exc:  # task error, worker crash, cancellation
                res = _broken(job, exc, KILLED if "cancel" in type(exc).__name__.lower() else FAILED)
            on_result(res)

        try:
            fill()
            last_tick = time.monotonic()
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=tick_every)
                if time.monotonic() - last_tick >= tick_every:
                    tick()
                    last_tick = time.monotonic()
                for ref in done:
                    collect(ref)
                fill()
        except KeyboardInterrupt:
            self.stopping = True
            with ignoring_sigint():
                for ref in list(in_flight):
                    ray.cancel(ref)  # KeyboardInterrupt inside a running task: its run ends KILLED
                deadline = time.monotonic() + 60
                while in_flight and time.monotonic() < deadline:
                    done, _ = ray.wait(list(in_flight), num_returns=1, timeout=max(0.1, deadline - time.monotonic()))
                    for ref in done:
                        collect(ref)
                for ref, job in list(in_flight.items()):
                    in_flight.pop(ref)
                    on_result(_broken(job, KeyboardInterrupt("did not stop in 60 s"), KILLED))
            raise
        finally:
            if started_here:
                ray.shutdown()
