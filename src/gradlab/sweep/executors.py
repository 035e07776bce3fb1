"""Where the trials run: a local pool of spawned processes, or Ray tasks (a local instance or a cluster)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from gradlab.process import ExitCode, ignoring_sigint
from gradlab.sweep.worker import init_local_worker, run_trial
from gradlab.tracking import FAILED, KILLED


class LocalExecutor:
    """A pool of ``workers`` spawned processes; Ctrl-C cancels pending trials, interrupts running ones."""

    def __init__(self, workers: int):
        self.workers = workers

    def run(self, jobs: list[dict], on_result: Callable[[dict], None]) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed, wait

        from gradlab.parallel import default_workers

        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        threads = max(1, default_workers() // self.workers)
        pool = ProcessPoolExecutor(
            min(self.workers, len(jobs)), mp_context=ctx, initializer=init_local_worker, initargs=(stop, threads)
        )
        futures = {pool.submit(run_trial, job): job for job in jobs}
        seen: set = set()

        def deliver(fut) -> None:
            if fut in seen or fut.cancelled():
                return
            seen.add(fut)
            job = futures[fut]
            try:
                res = fut.result()
            except BaseException as exc:  # the worker process died, or pickling failed
                res = {"index": job["index"], "code": 1, "status": FAILED, "metrics": None, "seconds": 0.0}
                res["error"] = f"{type(exc).__name__}: {exc}"
            on_result(res)

        interrupted = False
        try:
            for fut in as_completed(futures):
                deliver(fut)
        except KeyboardInterrupt:
            interrupted = True
            with ignoring_sigint():
                stop.set()
                for fut in futures:
                    fut.cancel()
                for proc in list(getattr(pool, "_processes", {}).values()):
                    with contextlib.suppress(OSError):
                        os.kill(proc.pid, signal.SIGINT)
                running = [f for f in futures if not f.cancelled() and f not in seen]
                done, _ = wait(running, timeout=60)
                for fut in done:
                    deliver(fut)
                for proc in list(getattr(pool, "_processes", {}).values()):
                    if proc.is_alive():
                        proc.terminate()
                        proc.join(10)
                    if proc.is_alive():
                        proc.kill()
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            # after an interrupt the workers are gone: waiting on the pool's manager thread could hang
            pool.shutdown(wait=not interrupted, cancel_futures=True)


class RayExecutor:
    """The same trials as Ray tasks (1 CPU each), at most ``workers`` in flight."""

    def __init__(self, workers: int | None, address: str | None):
        self.workers = workers
        self.address = address

    def run(self, jobs: list[dict], on_result: Callable[[dict], None]) -> None:
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
        remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        window = self.workers or len(jobs)
        queue = list(jobs)
        in_flight: dict = {}

        def submit() -> None:
            while queue and len(in_flight) < window:
                job = queue.pop(0)
                in_flight[remote.remote(job)] = job

        def collect(ref) -> None:
            job = in_flight.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as exc:  # task error, worker crash, cancellation
                status = KILLED if "cancel" in type(exc).__name__.lower() else FAILED
                code = ExitCode.INTERRUPTED if status == KILLED else ExitCode.FAILED
                res = {"index": job["index"], "code": code, "status": status}
                res.update(metrics=None, seconds=0.0, error=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            on_result(res)

        try:
            submit()
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    collect(ref)
                submit()
        except KeyboardInterrupt:
            with ignoring_sigint():
                queue.clear()
                for ref in list(in_flight):
                    ray.cancel(ref)  # raises KeyboardInterrupt inside a running task: its run ends KILLED
                deadline = time.monotonic() + 60
                while in_flight and time.monotonic() < deadline:
                    done, _ = ray.wait(list(in_flight), num_returns=1, timeout=max(0.1, deadline - time.monotonic()))
                    for ref in done:
                        collect(ref)
            raise
        finally:
            if started_here:
                ray.shutdown()
