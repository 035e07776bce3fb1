"""Parameter sweeps: grid x seeds -> trials, run on a local process pool or on Ray.

``gradlab sweep STAGE --grid key=v1,v2 [--grid ...] --seeds N`` expands the
product of the grid values times N seeds into trials, validates every trial's
parameters up front (a bad value anywhere: exit 2, nothing created), creates one
MLflow parent run ``sweep__<id>`` in experiment ``gradlab/<stage>`` and runs each
trial as :func:`gradlab.runner.run_stage` with ``parent_run`` set, so each trial
is a child run (tagged ``gradlab.sweep_id``) carrying its full resolved config.

Backends: ``local`` (a pool of spawned worker processes, one torch thread each
when workers >= cores) and ``ray`` (the same trial function as Ray tasks; no
address starts a local Ray instance, ``--address auto|ray://...`` joins a
cluster, whose trials must log to an MLflow *server*).

Outputs under ``results/sweeps/<id>/``: ``sweep.json`` (the spec, for
``--resume``), ``trials/<k>/`` (each trial's stage outputs), ``logs/<k>.log``,
``trials.csv`` (one row per trial), ``table.csv`` / ``table.md`` (the metric per
grid point: mean and 95 % CI over seeds) and ``figure.png`` for 1-D and 2-D grids.
Exit codes: 0 every trial finished, 1 some trial failed (the sweep still ran the
others), 2 bad input, 130 interrupted (pending trials cancelled, running ones
KILLED; ``--resume <id>`` continues), 143 terminated (:class:`gradlab.process.ExitCode`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradlab.config import ConfigError, flatten, parse_assignment, to_plain
from gradlab.process import ExitCode, ignoring_sigint, interrupt_exit_code, sigterm_raises
from gradlab.tracking import FAILED, FINISHED, KILLED

CANCELLED = "CANCELLED"  # a trial the sweep never started (interrupted before its turn)
BACKENDS = ("local", "ray")
SERVER_HINT = (
    "start a tracking server and point MLFLOW_TRACKING_URI at it, e.g. "
    "`mlflow server --backend-store-uri postgresql+psycopg2://USER@HOST/DB "
    "--artifacts-destination s3://BUCKET/mlartifacts "
    "--host 0.0.0.0 --port 5000` then `export MLFLOW_TRACKING_URI=http://HOST:5000` (README: Scaling out)"
)


# --------------------------------------------------------------------------- grid and trials
def split_values(text: str) -> list[str]:
    """``a,[b,c],'d,e'`` -> ['a', '[b,c]', "'d,e'"]: commas inside brackets or quotes do not split."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return parts


def parse_grid(stage: str, items: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``["gd.lr=0.1,1"]`` -> ``[("gd.lr", [0.1, 1])]`` (values parsed as YAML, like --set)."""
    grid: list[tuple[str, list[Any]]] = []
    for item in items:
        key, eq, rest = item.partition("=")
        key = key.strip()
        if not eq or not key or not rest.strip():
            raise ConfigError(item, "a grid must look like key.path=v1,v2,...")
        if key.split(".")[0] != stage:
            raise ConfigError(key, f"grid keys must start with the stage name '{stage}.'")
        if key == f"{stage}.seed":
            raise ConfigError(key, "do not grid over the seed; use --seeds N")
        if any(k == key for k, _ in grid):
            raise ConfigError(key, "appears in two --grid options; give all its values in one")
        values = []
        for text in split_values(rest):
            if not text:
                raise ConfigError(key, f"empty value in grid {rest!r}")
            values.append(parse_assignment(f"{key}={text}")[1])
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise ConfigError(key, f"repeated value in grid {rest!r}")
        grid.append((key, values))
    return grid


def _clip(text: str, n: int = 240) -> str:
    """MLflow limits run names, tags and params; long grid values are cut (the full config is in the params)."""
    if len(text) <= n:
        return text
    return text[: n - 12] + "…" + hashlib.sha256(text.encode()).hexdigest()[:10]


def _short(key: str) -> str:
    return key.split(".", 1)[1] if "." in key else key


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@dataclass(frozen=True)
class Trial:
    index: int
    point: tuple[tuple[str, Any], ...]  # ((full key, value), ...) in grid order
    seed: int | None
    sets: tuple[str, ...]  # every override of this trial: base --set, grid point, seed

    @property
    def variant(self) -> str:
        return _clip(",".join(f"{_short(k)}={_fmt(v)}" for k, v in self.point) or "base", 120)

    @property
    def name(self) -> str:
        return f"{self.variant}__seed{self.seed if self.seed is not None else 0}"


def _assign(key: str, value: Any) -> str:
    """A --set text that parses back (as YAML) to exactly ``value``."""
    return f"{key}={json.dumps(value)}"


def expand(stage: str, grid: list[tuple[str, list[Any]]], sets: Sequence[str], seeds: list[int] | None) -> list[Trial]:
    """The grid's product times the seeds; seeds vary fastest."""
    keys = [k for k, _ in grid]
    trials = []
    for values in itertools.product(*[v for _, v in grid]):
        point = tuple(zip(keys, values, strict=True))
        for seed in seeds if seeds is not None else [None]:
            extra = [_assign(k, v) for k, v in point]
            if seed is not None:
                extra.append(f"{stage}.seed={seed}")
            trials.append(Trial(len(trials), point, seed, (*sets, *extra)))
    return trials


def trial_seeds(stage: str, sets: Sequence[str], params_file: Path, n: int) -> list[int] | None:
    """Seeds base..base+n-1 where base is the stage's resolved ``seed`` (None if it has no seed)."""
    from gradlab.runner import resolve_params

    base = resolve_params(stage, sets, params_file)
    if "seed" not in type(base).model_fields:
        if n > 1:
            raise ConfigError(f"{stage}.seed", f"stage {stage} has no seed parameter; --seeds must be 1")
        return None
    start = int(base.seed)
    return list(range(start, start + n))


def validate(stage: str, trials: Sequence[Trial], params_file: Path) -> dict[int, dict]:
    """Resolve every trial's parameters (ConfigError on the first bad one); returns plain params per trial."""
    from gradlab.runner import resolve_params

    return {t.index: to_plain(resolve_params(stage, t.sets, params_file)) for t in trials}


def get_dotted(data: Any, key: str) -> Any:
    node = data
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --------------------------------------------------------------------------- the trial (runs in a worker)
_STOP = None  # multiprocessing.Event of the local pool: set when the sweep is interrupted


def _init_local_worker(stop, threads: int) -> None:
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # idle workers ignore Ctrl-C; a trial takes it once
    _die_with_parent()
    os.environ["GRADLAB_WORKERS"] = str(max(1, threads))  # a stage's own trial pool shares this worker's cores
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


def _interrupt_once(signum, frame):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
    raise KeyboardInterrupt


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
    stage, sets, params_text, tracking_uri, parent_run, run_name, tags, index, and
    (None on a remote cluster) out_dir, log_path, results_root, cwd.
    """
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGINT, _interrupt_once)
    start = time.perf_counter()
    result = {"index": job["index"], "code": None, "metrics": None, "seconds": 0.0, "error": "", "pid": os.getpid()}
    try:
        if _STOP is not None and _STOP.is_set():
            result["status"] = CANCELLED
            return result
        os.environ["MLFLOW_TRACKING_URI"] = job["tracking_uri"]
        if job.get("cwd") and Path(job["cwd"]).is_dir():
            os.chdir(job["cwd"])
        with tempfile.TemporaryDirectory(prefix="gradlab-trial-") as tmp:
            tmp = Path(tmp)
            os.environ["GRADLAB_RESULTS"] = job.get("results_root") or str(tmp / "results")
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
                    )
            except KeyboardInterrupt:  # before run_stage had a run to mark
                code = ExitCode.INTERRUPTED
            result["code"] = code
            if code == 0:
                result["metrics"] = json.loads((out_dir / "metrics.json").read_text())
            else:
                result["error"] = _last_error(log_path)
    except KeyboardInterrupt:
        result["code"] = ExitCode.INTERRUPTED
    finally:
        if in_main:
            signal.signal(signal.SIGINT, signal.SIG_IGN if _STOP is not None else previous)
        result["seconds"] = time.perf_counter() - start
    result["status"] = _STATUS_OF_CODE.get(result["code"], FAILED)
    return result


# --------------------------------------------------------------------------- executors
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
            min(self.workers, len(jobs)), mp_context=ctx, initializer=_init_local_worker, initargs=(stop, threads)
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


# --------------------------------------------------------------------------- results
def trial_rows(spec: SweepSpec, trials: Sequence[Trial], outcomes: dict[int, dict]) -> list[dict]:
    rows = []
    for t in trials:
        out = outcomes.get(t.index, {})
        row = {"trial": t.index, "name": t.name}
        row.update({k: _fmt(v) if isinstance(v, list | dict) else v for k, v in t.point})
        row.update(
            {
                "seed": t.seed,
                "status": out.get("status", CANCELLED),
                spec.metric or "metric": out.get("value"),
                "seconds": round(out["seconds"], 3) if out.get("seconds") is not None else None,
                "run_id": out.get("run_id", ""),
                "error": out.get("error", ""),
            }
        )
        rows.append(row)
    return rows


def summary_table(spec: SweepSpec, trials: Sequence[Trial], outcomes: dict[int, dict]) -> list[dict]:
    """Per grid point: number of seeds finished, mean and 95 % CI (Student t) of the metric."""
    from gradlab.stats import mean_ci

    points: dict[tuple, list[Trial]] = {}
    for t in trials:
        points.setdefault(t.point, []).append(t)
    rows = []
    for point, members in points.items():
        finished = [outcomes[t.index] for t in members if outcomes.get(t.index, {}).get("status") in (FINISHED,)]
        values = [o.get("value") for o in finished]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        mean, lo, hi = mean_ci(finite)
        row = {k: _fmt(v) if isinstance(v, list | dict) else v for k, v in point}
        row.update(
            {
                "trials": len(members),
                "finished": len(finished),
                "failed": sum(outcomes.get(t.index, {}).get("status") == FAILED for t in members),
                "n": len(finite),
                "mean": None if math.isnan(mean) else mean,
                "ci95_low": None if math.isnan(lo) else lo,
                "ci95_high": None if math.isnan(hi) else hi,
            }
        )
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"{title}\n\n(no trials)\n"
    cols = list(rows[0])

    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = [title, "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) == len(values) and len(positive) > 1 and max(positive) / min(positive) >= 100


def plot(spec: SweepSpec, grid: list[tuple[str, list[Any]]], table: list[dict], trials, outcomes, path: Path):
    """1-D: metric vs the grid value (mean, 95 % CI, each seed); 2-D: heat map of the mean. None otherwise."""
    if len(grid) not in (1, 2) or not any(r["mean"] is not None for r in table):
        return None
    import numpy as np

    from gradlab import plotting

    metric = spec.metric
    title = f"{spec.stage} sweep {spec.sweep_id}"
    if len(grid) == 1:
        key, values = grid[0]
        numeric = all(as_number(v) is not None for v in values)
        xs = [float(v) for v in values] if numeric else list(range(len(values)))
        fig, ax = plotting.figure(title)
        means = [r["mean"] if r["mean"] is not None else np.nan for r in table]
        lo = [r["ci95_low"] if r["ci95_low"] is not None else np.nan for r in table]
        hi = [r["ci95_high"] if r["ci95_high"] is not None else np.nan for r in table]
        err = np.array([np.subtract(means, lo), np.subtract(hi, means)])
        ax.errorbar(xs, means, yerr=err, marker="o", capsize=4, label=f"mean over seeds, 95 % CI (n ≤ {spec.seeds})")
        pos = {json.dumps(v, default=str): x for v, x in zip(values, xs, strict=True)}
        sx, sy = [], []
        for t in trials:
            val = outcomes.get(t.index, {}).get("value")
            if val is not None and math.isfinite(val):
                sx.append(pos[json.dumps(t.point[0][1], default=str)])
                sy.append(val)
        ax.plot(sx, sy, "x", color=plotting.PALETTE[1], alpha=0.7, label="one seed")
        if not numeric:
            ax.set_xticks(xs, [_fmt(v) for v in values])
        finite = [v for v in sy if v is not None]
        plotting.label(
            ax,
            f"{metric} against {_short(key)}",
            f"{key} (parameter value)",
            f"{metric} (as in metrics.json)",
            logx=numeric and _spans_decades(xs),
            logy=bool(finite) and _spans_decades(finite),
        )
    else:
        (k1, v1), (k2, v2) = grid
        mat = np.full((len(v1), len(v2)), np.nan)
        for r, (i, j) in zip(table, itertools.product(range(len(v1)), range(len(v2))), strict=True):
            if r["mean"] is not None:
                mat[i, j] = r["mean"]
        finite = mat[np.isfinite(mat)]
        log = finite.size > 1 and bool((finite > 0).all()) and finite.max() / finite.min() >= 100
        fig, ax = plotting.figure(title)
        from matplotlib.colors import LogNorm

        im = ax.imshow(mat, origin="lower", aspect="auto", cmap="viridis", norm=LogNorm() if log else None)
        cbar = fig.colorbar(im, ax=ax)
        cbar.set_label(f"{metric} (mean over seeds{', log scale' if log else ''})")
        ax.set_xticks(range(len(v2)), [_fmt(v) for v in v2])
        ax.set_yticks(range(len(v1)), [_fmt(v) for v in v1])
        for i, j in itertools.product(range(len(v1)), range(len(v2))):
            text = "n/a" if not np.isfinite(mat[i, j]) else f"{mat[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", color="white", fontsize=8)
        ax.grid(False)
        plotting.label(ax, f"{metric}: mean over seeds", f"{k2} (parameter value)", f"{k1} (parameter value)")
    return plotting.save(fig, path)


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepSpec:
    stage: str
    sweep_id: str
    grid: list[tuple[str, list[Any]]]
    sets: list[str]
    seeds: int
    metric: str | None
    params_text: str
    params_file: str
    backend: str = "local"
    workers: int | None = None
    address: str | None = None
    parent_run: str | None = None
    tracking_uri: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now().isoformat(timespec="seconds"))

    def to_json(self) -> dict:
        data = dict(self.__dict__)
        data["grid"] = [[k, v] for k, v in self.grid]
        return data

    @classmethod
    def from_json(cls, data: dict) -> SweepSpec:
        data = dict(data)
        data["grid"] = [(k, v) for k, v in data["grid"]]
        return cls(**data)


def new_sweep_id(stage: str) -> str:
    return f"{stage}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


class _Progress:
    """tqdm bar with done / failed on a terminal; one line per trial otherwise."""

    def __init__(self, total: int, skipped: int, label: str):
        self.total, self.done, self.failed, self.start = total, 0, 0, time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=label, unit="trial", dynamic_ncols=True)
        if skipped:
            print(f"{label}: {skipped} trial(s) already FINISHED, skipped", file=sys.stderr)

    def update(self, trial: Trial, out: dict, metric: str | None) -> None:
        self.done += 1
        self.failed += out["status"] != FINISHED
        if self.bar is not None:
            self.bar.set_postfix(done=self.done, failed=self.failed)
            self.bar.update(1)
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        value = out.get("value")
        shown = f", {metric}={value:.4g}" if metric and value is not None else ""
        error = f" ({out.get('error')})" if out["status"] == FAILED and out.get("error") else ""
        print(
            f"[{self.done}/{self.total}] {trial.name} {out['status']} in {out.get('seconds', 0):.1f}s{shown}{error}"
            f" · done {self.done - self.failed}, failed {self.failed}, ETA {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep(
    stage: str | None,
    grid: Sequence[str] = (),
    sets: Sequence[str] = (),
    seeds: int = 1,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    metric: str | None = None,
    params_file: str | Path = "params.yaml",
    resume: str | None = None,
) -> int:
    """The ``gradlab sweep`` command; returns the exit code."""
    from gradlab.runner import results_dir
    from gradlab.tracking import (
        TrackingError,
        curve_point_limit,
        is_server_uri,
        open_tracker,
        standard_tags,
        tracking_uri,
    )

    # 1. the spec, every trial validated: nothing is created before this passes
    try:
        if backend not in BACKENDS:
            raise ConfigError("--backend", f"must be one of {', '.join(BACKENDS)} (got {backend!r})")
        if workers is not None and workers < 1:
            raise ConfigError("--workers", f"must be at least 1 (got {workers})")
        if address and backend != "ray":
            raise ConfigError("--address", "only with --backend ray")
        curve_point_limit()
        sweeps_root = results_dir() / "sweeps"
        if resume:
            spec = _load_spec(sweeps_root, resume, stage, grid, sets, seeds, metric)
            stage = spec.stage
            spec.backend, spec.address = backend, address
            spec.workers = workers
            if metric:
                spec.metric = metric
        else:
            if not stage:
                raise ConfigError("STAGE", "missing; give a stage name or --resume SWEEP_ID")
            from gradlab.stages import get_stage

            get_stage(stage)
            if seeds < 1:
                raise ConfigError("--seeds", f"must be at least 1 (got {seeds})")
            path = Path(params_file)
            from gradlab.config import load_yaml

            load_yaml(path)  # a missing or malformed file is named as such
            spec = SweepSpec(
                stage=stage,
                sweep_id=new_sweep_id(stage),
                grid=parse_grid(stage, grid),
                sets=list(sets),
                seeds=seeds,
                metric=metric,
                params_text=path.read_text(),
                params_file=str(path),
                backend=backend,
                workers=workers,
                address=address,
            )
        with tempfile.TemporaryDirectory() as tmp:
            frozen = Path(tmp) / "params.yaml"
            frozen.write_text(spec.params_text)
            seed_list = trial_seeds(stage, spec.sets, frozen, spec.seeds)
            trials = expand(stage, spec.grid, spec.sets, seed_list)
            validate(stage, trials, frozen)
    except ConfigError as err:
        _err(str(err))
        return ExitCode.BAD_INPUT

    uri = tracking_uri()
    if backend == "ray" and address and not is_server_uri(uri):
        _err(
            f"--address {address}: trials on a Ray cluster cannot log to {uri} (a local file); MLFLOW_TRACKING_URI "
            f"must be an MLflow server reachable from every node: {SERVER_HINT}"
        )
        return ExitCode.BAD_INPUT
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            _err("--backend ray: the ray package is not installed (pip install 'ray[default]')")
            return ExitCode.BAD_INPUT
    try:
        tracker = open_tracker(f"gradlab/{stage}", uri)
    except TrackingError as err:
        _err(str(err))
        return ExitCode.FAILED

    # 2. the parent run and the sweep folder exist before any worker starts
    sweep_dir = sweeps_root / spec.sweep_id
    sweep_dir.mkdir(parents=True, exist_ok=True)
    spec.tracking_uri = uri
    outcomes: dict[int, dict] = {}
    done_before = _finished_trials(tracker, spec, sweep_dir) if resume else {}
    outcomes.update(done_before)
    if spec.parent_run and resume:
        _reopen(tracker, spec.parent_run)
        parent_id = spec.parent_run
    else:
        tags = standard_tags(
            stage,
            {"grid": spec.grid, "sets": spec.sets, "seeds": spec.seeds},
            {
                "gradlab.sweep_id": spec.sweep_id,
                "gradlab.sweep.role": "parent",
                "gradlab.sweep.grid": _clip(json.dumps(spec.grid), 4000),
                "gradlab.sweep.backend": backend,
                "mlflow.note.content": f"gradlab sweep {spec.sweep_id}: {len(trials)} trials",
            },
        )
        parent = tracker.start_run(f"gradlab/{stage}", f"sweep__{spec.sweep_id}", tags=tags)
        parent_id = spec.parent_run = parent.id
        params = {"sweep.seeds": spec.seeds, "sweep.trials": len(trials), "sweep.metric": spec.metric or ""}
        params.update({f"sweep.grid.{k}": _clip(json.dumps(v), 1000) for k, v in spec.grid})
        params["sweep.sets"] = _clip(json.dumps(spec.sets), 4000)
        tracker.log_params(parent_id, params)
    (sweep_dir / "sweep.json").write_text(json.dumps(spec.to_json(), indent=2, default=str) + "\n")

    todo = [t for t in trials if t.index not in done_before]
    cwd = str(Path.cwd())
    remote = bool(address)
    jobs = []
    for t in todo:
        tags = {
            "gradlab.sweep_id": spec.sweep_id,
            "gradlab.sweep.trial": t.index,
            "gradlab.sweep.point": _clip(json.dumps(dict(t.point), default=str)),
            "gradlab.variant": t.variant,
            "gradlab.seed": t.seed if t.seed is not None else "",
        }
        tags.update({f"sweep.{_short(k)}": _clip(_fmt(v)) for k, v in t.point})
        jobs.append(
            {
                "index": t.index,
                "stage": stage,
                "sets": list(t.sets),
                "params_text": spec.params_text,
                "tracking_uri": uri,
                "parent_run": parent_id,
                "run_name": t.name,
                "tags": tags,
                "out_dir": None if remote else str(sweep_dir / "trials" / str(t.index)),
                "log_path": None if remote else str(sweep_dir / "logs" / f"{t.index}.log"),
                "results_root": None if remote else str(results_dir()),
                "cwd": None if remote else cwd,
            }
        )

    n_workers = workers or (None if (backend == "ray" and address) else _default_workers())
    executor = LocalExecutor(n_workers) if backend == "local" else RayExecutor(n_workers, address)
    by_index = {t.index: t for t in trials}
    label = f"sweep {spec.sweep_id}"
    where = f"{backend}" + (f" at {address}" if address else f", {n_workers} workers")
    print(
        f"{label}: {len(todo)} trial(s) of {stage} ({len(trials)} in the sweep; {where}); MLflow {uri}, "
        f"parent run {parent_id}; outputs in {sweep_dir}",
        file=sys.stderr,
        flush=True,
    )
    progress = _Progress(len(todo), len(done_before), label)
    metric_note: list[str] = []

    def on_result(res: dict) -> None:
        if res.get("status") == CANCELLED:
            return
        trial = by_index[res["index"]]
        if res.get("metrics") is not None:
            if remote:  # the trial's folder lives on its node: keep its metrics here
                from gradlab.context import write_json

                write_json(sweep_dir / "trials" / str(trial.index) / "metrics.json", res["metrics"])
            if spec.metric is None:
                spec.metric = _default_metric(res["metrics"])
                metric_note.append(f"{label}: no --metric given; tabulating {spec.metric}")
            res["value"] = as_number(get_dotted(res["metrics"], spec.metric))
        outcomes[trial.index] = res
        progress.update(trial, res, spec.metric)

    started = time.perf_counter()
    code = ExitCode.OK
    try:
        with sigterm_raises():
            executor.run(jobs, on_result)
    except KeyboardInterrupt as exc:
        code = interrupt_exit_code(exc)
    except Exception as exc:  # the executor itself broke (e.g. Ray could not start)
        progress.close()
        _err(f"sweep {spec.sweep_id}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        code = ExitCode.FAILED
    finally:
        progress.close()
    with ignoring_sigint():  # finish the bookkeeping whatever happens
        for note in metric_note:
            print(note, file=sys.stderr)
        status = _close_sweep(tracker, spec, trials, outcomes, sweep_dir, code, time.perf_counter() - started)
    if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        finished = sum(o.get("status") == FINISHED for o in outcomes.values())
        print(
            f"{label}: interrupted; {finished}/{len(trials)} trials FINISHED, running ones marked KILLED, pending ones "
            f"cancelled. Resume with: gradlab sweep --resume {spec.sweep_id}",
            file=sys.stderr,
        )
        return code
    if code:
        return code
    failed = [by_index[i].name for i, o in outcomes.items() if o.get("status") == FAILED]
    print(f"{label}: {status}; table in {sweep_dir / 'table.md'}", file=sys.stderr)
    if failed:
        _err(
            f"sweep {spec.sweep_id}: {len(failed)} trial(s) FAILED: {', '.join(failed[:10])}; logs in {sweep_dir}/logs"
        )
        return ExitCode.FAILED
    return 0


def _default_workers() -> int:
    from gradlab.parallel import default_workers

    return default_workers()


def _default_metric(metrics: dict) -> str | None:
    numeric = sorted(k for k, v in flatten(metrics).items() if as_number(v) is not None)
    return numeric[0] if numeric else None


def _load_spec(root: Path, sweep_id: str, stage, grid, sets, seeds, metric) -> SweepSpec:
    path = root / sweep_id / "sweep.json"
    if not path.exists():
        known = sorted(p.name for p in root.iterdir() if (p / "sweep.json").exists()) if root.is_dir() else []
        raise ConfigError("--resume", f"no sweep {sweep_id!r} under {root}; known: {', '.join(known[-5:]) or 'none'}")
    spec = SweepSpec.from_json(json.loads(path.read_text()))
    if stage and stage != spec.stage:
        raise ConfigError("STAGE", f"sweep {sweep_id} is a sweep of {spec.stage}, not {stage}")
    if grid and parse_grid(spec.stage, grid) != spec.grid:
        raise ConfigError("--grid", f"differs from sweep {sweep_id}'s grid; omit --grid with --resume")
    if sets and list(sets) != spec.sets:
        raise ConfigError("--set", f"differs from sweep {sweep_id}'s overrides; omit --set with --resume")
    if seeds not in (1, spec.seeds):
        raise ConfigError("--seeds", f"differs from sweep {sweep_id}'s {spec.seeds}; omit --seeds with --resume")
    return spec


def _child_runs(tracker, spec: SweepSpec) -> list:
    return tracker.runs(
        f"gradlab/{spec.stage}",
        f"tags.`gradlab.sweep_id` = '{spec.sweep_id}' and tags.`mlflow.parentRunId` = '{spec.parent_run}'",
    )


def _finished_trials(tracker, spec: SweepSpec, sweep_dir: Path) -> dict[int, dict]:
    """Trials of ``spec`` whose child run is FINISHED and whose metrics.json is here."""
    done = {}
    for run in _child_runs(tracker, spec):
        index = run.data.tags.get("gradlab.sweep.trial")
        metrics_file = sweep_dir / "trials" / str(index) / "metrics.json"
        if run.info.status == FINISHED and index is not None and metrics_file.exists():
            metrics = json.loads(metrics_file.read_text())
            value = as_number(get_dotted(metrics, spec.metric)) if spec.metric else None
            done[int(index)] = {"index": int(index), "status": FINISHED, "value": value, "metrics": metrics}
            done[int(index)].update(seconds=None, run_id=run.info.run_id, error="", resumed=True)
    return done


def _reopen(tracker, run_id: str) -> None:
    tracker.reopen(run_id)


def _end_stray_runs(tracker, spec: SweepSpec, status: str) -> None:
    """End runs under the sweep's parent (trials and their own children) still RUNNING once no worker runs.

    A worker killed hard, or interrupted between MLflow creating a run and the code that ends it, leaves
    such a run; nothing will end it any more.
    """
    running = tracker.runs(f"gradlab/{spec.stage}", "attributes.status = 'RUNNING'")
    parent_of = {r.info.run_id: r.data.tags.get("mlflow.parentRunId") for r in tracker.runs(f"gradlab/{spec.stage}")}
    for run in running:
        node, seen = run.data.tags.get("mlflow.parentRunId"), set()
        while node and node != spec.parent_run and node not in seen:
            seen.add(node)
            node = parent_of.get(node)
        if node == spec.parent_run:
            tracker.end(run.info.run_id, status)


def _close_sweep(tracker, spec, trials, outcomes, sweep_dir: Path, code: int, seconds: float) -> str:
    """Mark stray RUNNING trials, write the tables and figure, log them, end the parent run."""

    interrupted = code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED)
    _end_stray_runs(tracker, spec, KILLED if interrupted else FAILED)
    runs = _child_runs(tracker, spec)
    latest: dict[int, Any] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        index = run.data.tags.get("gradlab.sweep.trial")
        if index is not None:
            latest[int(index)] = run
    for index, run in latest.items():
        if index in outcomes:
            outcomes[index]["run_id"] = run.info.run_id
            if outcomes[index].get("resumed"):
                outcomes[index]["status"] = FINISHED
    if spec.metric:
        for out in outcomes.values():
            if out.get("value") is None and out.get("metrics") is not None:
                out["value"] = as_number(get_dotted(out["metrics"], spec.metric))
    import pandas as pd

    rows = trial_rows(spec, trials, outcomes)
    pd.DataFrame(rows).to_csv(sweep_dir / "trials.csv", index=False, float_format="%.10g")
    table = summary_table(spec, trials, outcomes)
    pd.DataFrame(table).to_csv(sweep_dir / "table.csv", index=False, float_format="%.10g")
    n_fin = sum(o.get("status") == FINISHED for o in outcomes.values())
    n_fail = sum(o.get("status") == FAILED for o in outcomes.values())
    n_kill = sum(o.get("status") == KILLED for o in outcomes.values())
    title = (
        f"# Sweep {spec.sweep_id} ({spec.stage})\n\n"
        f"Metric `{spec.metric}` per grid point: mean and 95 % confidence interval (Student t) over seeds "
        f"({spec.seeds} per point). {n_fin}/{len(trials)} trials FINISHED, {n_fail} FAILED, {n_kill} KILLED."
        + (f" Fixed overrides: {', '.join(f'`{s}`' for s in spec.sets)}." if spec.sets else "")
    )
    (sweep_dir / "table.md").write_text(markdown_table(table, title))
    fig = None
    try:
        fig = plot(spec, spec.grid, table, trials, outcomes, sweep_dir / "figure.png")
    except Exception as exc:  # a figure must never lose the table
        print(f"warning: sweep figure not drawn: {exc}", file=sys.stderr)
    (sweep_dir / "sweep.json").write_text(json.dumps(spec.to_json(), indent=2, default=str) + "\n")  # + metric
    parent = spec.parent_run
    for name in ("table.csv", "table.md", "trials.csv", "sweep.json"):
        tracker.log_artifact(parent, sweep_dir / name)
    if fig is not None:
        tracker.log_artifact(parent, fig)
    metrics = {
        "sweep/trials": len(trials),
        "sweep/finished": n_fin,
        "sweep/failed": n_fail,
        "sweep/killed": n_kill,
        "sweep/seconds": seconds,
    }
    tracker.log_metrics(parent, metrics)
    if spec.metric:
        tracker.set_tags(parent, {"gradlab.sweep.metric": spec.metric})
    status = KILLED if interrupted else (FAILED if code else FINISHED)
    tracker.end(parent, status)
    return f"{n_fin}/{len(trials)} trials FINISHED, {n_fail} FAILED"
