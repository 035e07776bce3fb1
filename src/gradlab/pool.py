"""The one process pool: trials (a study's, a sweep's, a tuner's) on spawned worker processes.

Each worker is a ``spawn``-ed process (no forked OpenMP state) that runs a ``setup`` once and then one job at a
time, sent over its own pipe; it says when a job starts and sends back its result (or its exception). The parent
feeds at most one job per worker, pulling the next from ``jobs`` only when a worker is free (a tuner asks its
sampler for the next point only then), and hands every outcome to ``on_done`` as it arrives.

On an exception in the parent (Ctrl-C, a failing ``on_done``) no job is started any more. After Ctrl-C with a
``grace`` period the running jobs are sent SIGINT and their outcomes delivered for up to ``grace`` seconds (a
sweep's trial ends its own run KILLED); then every worker still alive is terminated, and the jobs it held reach
``on_error`` as :class:`Stopped` (a worker that died: :class:`WorkerDied`). Without grace the workers are
terminated at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from gradlab.process import ignoring_sigint
from gradlab.settings import current

J = TypeVar("J")


def default_workers() -> int:
    """The current settings' ``workers`` (``GRADLAB_WORKERS``; a sweep sets it for its trials), else the cores."""
    return current().cores()


class RemoteTraceback(Exception):
    """The traceback of a job's exception in its worker (the exception's ``__cause__`` in the parent)."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


class Stopped(KeyboardInterrupt):
    """The job's worker was stopped after an interrupt (it did not stop within the grace period)."""


class WorkerDied(RuntimeError):
    """The job's worker process exited while it ran the job."""


def _serve(conn: Connection, fn: Callable[[Any], Any], setup: Callable[..., None] | None, args: tuple) -> None:
    """A worker: ``setup(*args)``, then ``fn(job)`` for every job received until None."""
    if setup is not None:
        setup(*args)
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(("start", time.time()))
        try:
            out: tuple = ("done", fn(job))
        except BaseException as exc:  # noqa: BLE001 - the parent decides; a KeyboardInterrupt too
            out = ("error", (exc, "".join(traceback.format_exception(exc))))
        try:
            conn.send(out)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
            conn.send(("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), "")))


class _Worker(Generic[J]):
    def __init__(self, ctx, fn, setup, args):
        self.conn, child = ctx.Pipe()
        # not daemonic: a sweep's trial is a stage that may start its own trial pool in this worker (a daemonic
        # process may not have children); a worker ends on None, or on EOF when the parent is gone, and the
        # pool joins, then kills, every worker it started (Pool._run's finally)
        self.proc = ctx.Process(target=_serve, args=(child, fn, setup, args), daemon=False)
        self.proc.start()
        child.close()
        self.job: J | None = None
        self.busy = False


@dataclass(frozen=True)
class _Calls(Generic[J]):
    """What a pool calls for a batch of jobs (:meth:`_Jobs.run`)."""

    fn: Callable[[J], Any]
    on_done: Callable[[J, Any], None]
    error: Callable[[J, BaseException], None]
    on_start: Callable[[J, float], None] | None
    tick: Callable[[], None] | None
    every: float | None


class _Jobs(Generic[J]):
    """What both pools share: :meth:`run`."""

    stopping = False  # set once an interrupt stops the pool: the outcomes delivered since come from it

    def run(
        self,
        fn: Callable[[J], Any],
        jobs: Iterable[J],
        on_done: Callable[[J, Any], None],
        on_error: Callable[[J, BaseException], None] | None = None,
        on_start: Callable[[J, float], None] | None = None,
        tick: Callable[[], None] | None = None,
        tick_every: float | None = None,
    ) -> None:
        """Every job of ``jobs`` through ``fn``, at most one per worker at a time: the next is taken from ``jobs``
        only when a worker is free. ``on_done(job, result)``; a job's exception to ``on_error`` (raised when there
        is none); ``on_start(job, time)`` when a worker takes it; ``tick()`` at least every ``tick_every`` s."""

        def error(job: J, exc: BaseException) -> None:
            if on_error is not None:
                on_error(job, exc)
            elif not isinstance(exc, Stopped):  # stopped after an interrupt: the caller is being interrupted
                raise exc

        self._run(iter(jobs), _Calls(fn, on_done, error, on_start, tick, tick_every))

    def _run(self, feed: Iterator[J], c: _Calls[J]) -> None:
        raise NotImplementedError


class Pool(_Jobs[J]):
    """``workers`` processes running ``fn``; ``setup(*setup_args)`` once in each (signals, threads, settings)."""

    def __init__(
        self,
        workers: int,
        setup: Callable[..., None] | None = None,
        setup_args: tuple = (),
        grace: float = 0.0,
    ):
        self.workers = max(1, workers)
        self.setup, self.setup_args, self.grace = setup, setup_args, grace

    def _run(self, feed: Iterator[J], c: _Calls[J]) -> None:
        fn, on_done, error, on_start, tick, every = c.fn, c.on_done, c.error, c.on_start, c.tick, c.every
        ctx = mp.get_context("spawn")
        workers: list[_Worker[J]] = []
        more = True

        def fill() -> None:
            """A job to every idle worker, a new worker (up to ``workers``) for each job beyond."""
            nonlocal more
            given = []
            while more:
                idle = next((w for w in workers if not w.busy), None)
                if idle is None and len(workers) >= self.workers:
                    break
                job = next(feed, None)
                if job is None:
                    more = False
                    break
                if idle is None:
                    idle = _Worker(ctx, fn, self.setup, self.setup_args)
                    workers.append(idle)
                idle.job, idle.busy = job, True
                given.append(idle)
            for w in given:  # after every new worker started: a send may wait for a worker to read
                w.conn.send(w.job)

        def receive(w: _Worker[J]) -> None:
            try:
                kind, value = w.conn.recv()
            except (EOFError, OSError):  # the worker died
                w.proc.join(1)
                job, w.busy, w.job = w.job, False, None
                workers.remove(w)
                error(job, WorkerDied(f"worker {w.proc.pid} exited with {w.proc.exitcode}"))  # type: ignore[arg-type]
                return
            if kind == "start":
                if on_start is not None:
                    on_start(w.job, value)  # type: ignore[arg-type]
                return
            job, w.busy, w.job = w.job, False, None
            if kind == "done":
                on_done(job, value)  # type: ignore[arg-type]
                return
            exc, remote = value
            if remote:
                exc.__cause__ = RemoteTraceback(remote)
            error(job, exc)  # type: ignore[arg-type]

        def pump(timeout: float | None) -> None:
            ready = wait([w.conn for w in workers if w.busy], timeout)
            for w in [w for w in workers if w.conn in ready]:
                receive(w)

        try:
            fill()
            last_tick = time.monotonic()
            while any(w.busy for w in workers):
                pump(every)
                if tick is not None and every is not None and time.monotonic() - last_tick >= every:
                    tick()
                    last_tick = time.monotonic()
                fill()
        except KeyboardInterrupt:
            self.stopping = True
            with ignoring_sigint():
                if self.grace > 0:
                    self._drain(workers, pump)
                self._terminate(workers, error)
            raise
        except BaseException:
            self.stopping = True
            self._terminate(workers, None)
            raise
        finally:
            for w in workers:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
                w.proc.join(10)
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(5)
                w.conn.close()

    def _drain(self, workers: list[_Worker[J]], pump: Callable[[float | None], None]) -> None:
        """SIGINT to the running jobs, then their outcomes for up to ``grace`` seconds."""
        for w in workers:
            if w.busy:
                with contextlib.suppress(OSError):
                    os.kill(w.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + self.grace
        while any(w.busy for w in workers) and time.monotonic() < deadline:
            pump(max(0.1, deadline - time.monotonic()))

    def _terminate(self, workers: list[_Worker[J]], error: Callable[[J, BaseException], None] | None) -> None:
        """Terminate every worker still holding a job; its job to ``error`` (when given)."""
        for w in workers:
            if w.busy:
                w.proc.terminate()
        for w in workers:
            if w.busy:
                w.proc.join(10)
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(5)
                job, w.busy, w.job = w.job, False, None
                if error is not None:
                    error(job, Stopped("did not stop in time; terminated"))  # type: ignore[arg-type]


class RayPool(_Jobs[J]):
    """The same jobs as Ray tasks (1 CPU each), at most ``workers`` in flight (None: the cluster's CPUs); no
    ``address``: a local Ray instance. Ctrl-C cancels the running tasks (KeyboardInterrupt inside each) and
    delivers their outcomes for up to ``grace`` seconds; the others reach ``on_error`` as :class:`Stopped`."""

    def __init__(self, workers: int | None, address: str | None, grace: float = 60.0):
        self.workers, self.address, self.grace = workers, address, grace
        self.stopping = False

    def _run(self, feed: Iterator[J], c: _Calls[J]) -> None:
        fn, on_done, error, on_start, tick, every = c.fn, c.on_done, c.error, c.on_start, c.tick, c.every
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        window = self.workers or int(ray.cluster_resources().get("CPU", 1))
        in_flight: dict = {}

        def fill() -> None:
            while len(in_flight) < window:
                job = next(feed, None)
                if job is None:
                    return
                in_flight[remote.remote(job)] = job
                if on_start is not None:
                    on_start(job, time.time())

        def collect(ref) -> None:
            job = in_flight.pop(ref)
            try:
                res = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - task error, worker crash, cancellation
                if "cancel" in type(exc).__name__.lower():
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    error(job, Stopped(f"{type(exc).__name__}: {first}"))
                else:
                    error(job, exc)
                return
            on_done(job, res)

        try:
            fill()
            last_tick = time.monotonic()
            while in_flight:
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=every)
                if tick is not None and every is not None and time.monotonic() - last_tick >= every:
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
                deadline = time.monotonic() + self.grace
                while in_flight and time.monotonic() < deadline:
                    done, _ = ray.wait(list(in_flight), num_returns=1, timeout=max(0.1, deadline - time.monotonic()))
                    for ref in done:
                        collect(ref)
                for ref, job in list(in_flight.items()):
                    in_flight.pop(ref)
                    error(job, Stopped(f"did not stop in {self.grace:g} s"))
            raise
        finally:
            if started_here:
                ray.shutdown()
