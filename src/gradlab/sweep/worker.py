"""One trial of a sweep, run in a worker process (local pool) or as a Ray task: plain dict in, plain dict out."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from gradlab.process import ExitCode, interrupt_once, redeliver_dropped_interrupts
from gradlab.tracking import FAILED, FINISHED, KILLED

CANCELLED = "CANCELLED"  # a trial the sweep never started (interrupted before its turn)

_IN_POOL = False  # a worker of the local pool (idle between trials: Ctrl-C is ignored there)
_THREADS: int | None = None  # cores of one local worker: a stage's own trial pool shares them


def init_local_worker(threads: int) -> None:
    global _IN_POOL, _THREADS
    _IN_POOL, _THREADS = True, max(1, threads)
    signal.signal(signal.SIGINT, _remember)  # an idle worker is not interrupted; a trial takes Ctrl-C once
    redeliver_dropped_interrupts()  # a Ctrl-C raised in a finaliser is not lost
    _die_with_parent()
    import torch

    torch.set_num_threads(max(1, threads))


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker if the sweep process dies (even by SIGKILL); its run then ends KILLED."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_PENDING = False  # a Ctrl-C that reached this worker after its trial was handed over, before the trial began


def _remember(signum, frame):
    global _PENDING
    _PENDING = True


@contextlib.contextmanager
def _redirect_output(log_path: Path):
    """Send the trial's stdout/stderr (file descriptors too) to its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _last_error(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or [""])[-1][:300]


_STATUS_OF_CODE = {ExitCode.OK: FINISHED, ExitCode.INTERRUPTED: KILLED, ExitCode.TERMINATED: KILLED}


def run_trial(job: dict) -> dict:
    """Run one trial with :func:`gradlab.runner.run_stage`; return its exit code and metrics.

    ``job`` is plain data so that it crosses process and machine boundaries:
    stage, sets, params_text, tracking_uri, parent_run, run_name, tags, index, settings (the
    sweep's :class:`~gradlab.settings.Settings`), and (None on a remote cluster) out_dir,
    log_path, results_root, cwd.
    """
    global _PENDING
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGINT, interrupt_once)
    start = time.perf_counter()
    result = {"index": job["index"], "code": None, "metrics": None, "seconds": 0.0, "error": "", "pid": os.getpid()}
    try:
        if _PENDING:  # Ctrl-C arrived between the hand-over and here: the trial is interrupted before it starts
            raise KeyboardInterrupt
        if job.get("cwd") and Path(job["cwd"]).is_dir():
            os.chdir(job["cwd"])
        with tempfile.TemporaryDirectory(prefix="gradlab-trial-") as tmp:
            tmp = Path(tmp)
            settings = job["settings"].replace(
                results=Path(job.get("results_root") or tmp / "results"),
                tracking_uri=job["tracking_uri"],
                workers=_THREADS,
            )
            out_dir = Path(job["out_dir"]) if job.get("out_dir") else tmp / "out"
            log_path = Path(job["log_path"]) if job.get("log_path") else tmp / "trial.log"
            params_file = tmp / "params.yaml"
            params_file.write_text(job["params_text"])
            from gradlab.runner import run_stage

            try:
                with _redirect_output(log_path):
                    code = run_stage(
                        job["stage"],
                        job["sets"],
                        params_file,
                        out_dir=out_dir,
                        parent_run=job["parent_run"],
                        run_name=job["run_name"],
                        tags=job["tags"],
                        settings=settings,
                    )
            except KeyboardInterrupt:  # before run_stage had a run to mark
                code = ExitCode.INTERRUPTED
            result["code"] = code
            if code == 0:
                result["metrics"] = json.loads((out_dir / "stats.json").read_text())  # every number, unrounded
            else:
                result["error"] = _last_error(log_path)
    except KeyboardInterrupt:
        result["code"] = ExitCode.INTERRUPTED
    finally:
        if in_main:
            signal.signal(signal.SIGINT, _remember if _IN_POOL else previous)
            _PENDING = False
        result["seconds"] = time.perf_counter() - start
    result["status"] = _STATUS_OF_CODE.get(result["code"], FAILED)
    return result
