"""``gradlab sweep``: validate everything, create the parent run, run the trials, write the tables; ``--resume``."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradlab.config import ConfigError, dotted, flatten
from gradlab.headline import unwrap
from gradlab.process import ExitCode, ignoring_sigint, interrupt_exit_code, sigterm_raises
from gradlab.sweep.executors import check_pool, make_pool, parent_status, run_jobs
from gradlab.sweep.grid import (
    SweepSpec,
    Trial,
    as_number,
    clip,
    expand,
    fmt,
    new_sweep_id,
    parse_grid,
    short,
    trial_seeds,
    validate,
)
from gradlab.sweep.tables import markdown_table, plot, summary_table, trial_rows
from gradlab.sweep.worker import CANCELLED
from gradlab.tracking import FAILED, FINISHED, KILLED
from gradlab.trials import Runs

SERVER_HINT = (
    "start a tracking server and point MLFLOW_TRACKING_URI at it, e.g. "
    "`mlflow server --backend-store-uri postgresql+psycopg2://USER@HOST/DB "
    "--artifacts-destination s3://BUCKET/mlartifacts "
    "--host 0.0.0.0 --port 5000` then `export MLFLOW_TRACKING_URI=http://HOST:5000` (README: Scaling out)"
)


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
    from gradlab.settings import Settings
    from gradlab.tracking import TrackingError, is_server_uri, open_tracker, tracking_uri

    # 1. the spec, every trial validated: nothing is created before this passes
    try:
        check_pool(backend, workers, address)
        settings = Settings.from_env()
        sweeps_root = settings.results / "sweeps"
        if resume:
            spec = _load_spec(sweeps_root, resume, stage, grid, sets, seeds, metric)
            spec.backend, spec.address, spec.workers = backend, address, workers
            spec.metric = metric or spec.metric
        else:
            spec = _new_spec(stage, grid, sets, seeds, metric, params_file, backend, workers, address)
        stage = spec.stage
        trials = _trials(spec)
    except ConfigError as err:
        _err(str(err))
        return ExitCode.BAD_INPUT

    uri = settings.tracking_uri or tracking_uri()
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
    if not resume:  # a sweep describes its experiment once, not in every trial
        from gradlab.stages import get_stage

        tracker.describe_experiment(f"gradlab/{spec.stage}", get_stage(spec.stage).question)
    with tracker.run(
        f"gradlab/{spec.stage}",
        f"sweep__{spec.sweep_id}",
        tags=_parent_tags(spec, trials),
        params=_parent_params(spec, trials),
        resume_id=spec.parent_run if resume else None,
    ) as parent:  # ends KILLED on a second interrupt during the bookkeeping, else as parent_status(code) says
        parent_id = spec.parent_run = parent.id
        (sweep_dir / "sweep.json").write_text(json.dumps(spec.to_json(), indent=2, default=str) + "\n")

        todo = [t for t in trials if t.index not in done_before]
        remote = bool(address)
        jobs = [_job(spec, t, sweep_dir, settings, remote) for t in todo]

        n_workers = workers or (None if (backend == "ray" and address) else _default_workers())
        pool = make_pool(backend, n_workers, address)
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
                res["value"] = as_number(dotted(res["metrics"], spec.metric))
            outcomes[trial.index] = res
            progress.update(trial, res, spec.metric)

        started = time.perf_counter()
        code = ExitCode.OK
        try:
            with sigterm_raises():
                run_jobs(pool, jobs, on_result, Runs(uri, f"gradlab/{spec.stage}", parent_id), tracker)
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
            status = _close_sweep(tracker, spec, trials, outcomes, sweep_dir, time.perf_counter() - started)
            parent.outcome = parent_status(code)
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


def _new_spec(stage, grid, sets, seeds, metric, params_file, backend, workers, address) -> SweepSpec:
    """A new sweep's spec (ConfigError on a bad stage, seed count, parameter file or grid)."""
    if not stage:
        raise ConfigError("STAGE", "missing; give a stage name or --resume SWEEP_ID")
    from gradlab.config import load_yaml
    from gradlab.stages import get_stage

    get_stage(stage)
    if seeds < 1:
        raise ConfigError("--seeds", f"must be at least 1 (got {seeds})")
    path = Path(params_file)
    load_yaml(path)  # a missing or malformed file is named as such
    return SweepSpec(
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


def _trials(spec: SweepSpec) -> list[Trial]:
    """The sweep's trials, every one's parameters validated against the parameter file as it was saved."""
    with tempfile.TemporaryDirectory() as tmp:
        frozen = Path(tmp) / "params.yaml"
        frozen.write_text(spec.params_text)
        seed_list = trial_seeds(spec.stage, spec.sets, frozen, spec.seeds)
        trials = expand(spec.stage, spec.grid, spec.sets, seed_list)
        validate(spec.stage, trials, frozen)
    return trials


def _parent_tags(spec: SweepSpec, trials: list[Trial]) -> dict:
    """The sweep's parent run's tags (the stage's standard tags, the grid, the backend)."""
    from gradlab.tracking import standard_tags

    return standard_tags(
        spec.stage,
        {"grid": spec.grid, "sets": spec.sets, "seeds": spec.seeds},
        {
            "gradlab.sweep_id": spec.sweep_id,
            "gradlab.sweep.role": "parent",
            "gradlab.sweep.grid": clip(json.dumps(spec.grid), 4000),
            "gradlab.sweep.backend": spec.backend,
            "mlflow.note.content": f"gradlab sweep {spec.sweep_id}: {len(trials)} trials",
        },
    )


def _parent_params(spec: SweepSpec, trials: list[Trial]) -> dict:
    """The sweep's parent run's parameters: seeds, trial count, metric, each grid axis, the fixed overrides."""
    params = {"sweep.seeds": spec.seeds, "sweep.trials": len(trials), "sweep.metric": spec.metric or ""}
    params.update({f"sweep.grid.{k}": clip(json.dumps(v), 1000) for k, v in spec.grid})
    params["sweep.sets"] = clip(json.dumps(spec.sets), 4000)
    return params


def _job(spec: SweepSpec, t: Trial, sweep_dir: Path, settings, remote: bool) -> dict:
    """Trial ``t`` as plain data for :func:`gradlab.sweep.worker.run_trial` (on a remote node: no local paths)."""
    tags = {
        "gradlab.sweep_id": spec.sweep_id,
        "gradlab.sweep.trial": t.index,
        "gradlab.sweep.point": clip(json.dumps(dict(t.point), default=str)),
        "gradlab.variant": t.variant,
        "gradlab.seed": t.seed if t.seed is not None else "",
    }
    tags.update({f"sweep.{short(k)}": clip(fmt(v)) for k, v in t.point})
    return {
        "index": t.index,
        "stage": spec.stage,
        "sets": list(t.sets),
        "params_text": spec.params_text,
        "tracking_uri": spec.tracking_uri,
        "parent_run": spec.parent_run,
        "run_name": t.name,
        "tags": tags,
        "out_dir": None if remote else str(sweep_dir / "trials" / str(t.index)),
        "log_path": None if remote else str(sweep_dir / "logs" / f"{t.index}.log"),
        "results_root": None if remote else str(settings.results),
        "settings": settings,
        "cwd": None if remote else str(Path.cwd()),
    }


def _default_workers() -> int:
    from gradlab.pool import default_workers

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
            metrics = unwrap(json.loads(metrics_file.read_text()), spec.stage)  # the runner's: {stage: headline}
            value = as_number(dotted(metrics, spec.metric)) if spec.metric else None
            done[int(index)] = {"index": int(index), "status": FINISHED, "value": value, "metrics": metrics}
            done[int(index)].update(seconds=None, run_id=run.info.run_id, error="", resumed=True)
    return done


def _close_sweep(tracker, spec, trials, outcomes, sweep_dir: Path, seconds: float) -> str:
    """Write the tables and figure and log them to the parent run (ended by its ``Tracker.run`` block; the trial
    engine ended stray runs)."""
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
                out["value"] = as_number(dotted(out["metrics"], spec.metric))
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
    return f"{n_fin}/{len(trials)} trials FINISHED, {n_fail} FAILED"
