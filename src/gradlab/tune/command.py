"""``gradlab tune SPACE.yaml``: validate, open the study and the MLflow parent run, ask-run-tell, write the results."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradlab.config import ConfigError, dotted, flatten
from gradlab.process import ExitCode, ignoring_sigint, interrupt_exit_code, interrupts_held, sigterm_raises
from gradlab.sweep.executors import check_pool, make_pool, parent_status, run_jobs
from gradlab.sweep.grid import clip, fmt
from gradlab.sweep.worker import CANCELLED
from gradlab.tracking import FINISHED, KILLED
from gradlab.tune import space as sp
from gradlab.tune import study as st
from gradlab.tune.tables import finite, write_all

if TYPE_CHECKING:
    from gradlab.tracking import Run


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _redacted(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url


def _storage_error(url: str, exc: BaseException) -> ConfigError | None:
    """A malformed ``--storage`` is bad input (exit 2); an unreachable one is a failure (exit 1, None here)."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if isinstance(exc, ArgumentError | NoSuchModuleError | ValueError):
        return ConfigError("--storage", f"not a database URL Optuna can use ({_redacted(url)}): {exc}")
    return None


def tune(
    space_file: str | Path,
    trials: int | None = None,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    storage: str | None = None,
    params_file: str | Path = "params.yaml",
    objective: str | None = None,
    direction: str | None = None,
    name: str | None = None,
) -> int:
    """The ``gradlab tune`` command; returns the exit code."""
    from gradlab.settings import Settings
    from gradlab.tracking import TrackingError, is_server_uri, open_tracker, tracking_uri

    # 1. everything checked before anything is created
    try:
        check_pool(backend, workers, address)
        settings = Settings.from_env()
        space = sp.read(space_file, trials=trials, objective=objective, direction=direction, name=name)
        folder = settings.results / "tune" / space.name
        url = storage or st.default_storage(folder)
        try:
            saved = st.existing_spec(url, space.name)
        except Exception as exc:  # noqa: BLE001
            bad = _storage_error(url, exc)
            if bad is None:
                _err(f"study storage {_redacted(url)} cannot be used: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                return ExitCode.FAILED
            raise bad from None
        if saved:
            changed = sp.differences(saved.get("identity", {}), space.identity())
            if changed:
                raise ConfigError(
                    str(space_file),
                    f"differs from the study {space.name!r} in {_redacted(url)} ({', '.join(changed)}); run it with "
                    f"the space it was started with, or give this one another name (name: in the file, or --name)",
                )
            params_text = saved["params_text"]
            if Path(params_file).exists() and Path(params_file).read_text() != params_text:
                print(
                    f"tune {space.name}: continuing on the parameter file saved with the study, not {params_file}",
                    file=sys.stderr,
                )
        else:
            from gradlab.config import load_yaml

            load_yaml(Path(params_file))
            params_text = Path(params_file).read_text()
        sp.validate_against_stage(space, params_text)
        uri = settings.tracking_uri or tracking_uri()
        if address and not is_server_uri(uri):
            raise ConfigError(
                "--address",
                f"trials on a Ray cluster cannot log to {uri}; MLFLOW_TRACKING_URI must be "
                "an MLflow server reachable from every node (README: Scaling out)",
            )
        if address and (storage is None or url.startswith("sqlite")):
            raise ConfigError(
                "--storage",
                "trials on a Ray cluster need a study storage every node reaches, "
                "e.g. --storage postgresql+psycopg2://USER@HOST/DB",
            )
        if backend == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "--backend", "ray: the ray package is not installed (pip install 'ray[default]')"
                ) from None
    except ConfigError as err:
        _err(str(err))
        return ExitCode.BAD_INPUT
    try:
        tracker = open_tracker(f"gradlab/{space.stage}", uri)
    except TrackingError as err:
        _err(str(err))
        return ExitCode.FAILED

    # 2. the folder, the study, the parent run
    with tempfile.TemporaryDirectory(prefix="gradlab-tune-") as tmp:
        frozen = Path(tmp) / "params.yaml"
        frozen.write_text(params_text)
        with st.folder_lock(folder) as alone:
            try:
                study = st.open_study(space, url, params_text)
            except Exception as exc:  # noqa: BLE001 - the storage broke between the check and now
                _err(f"study storage {_redacted(url)} cannot be used: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                return ExitCode.FAILED
            run = _Tuning(space, study, tracker, url, folder, frozen, params_text, settings, uri, backend, address)
            if alone and url == st.default_storage(folder):
                recovered = st.recover_running(study)
                if recovered:
                    print(
                        f"tune {space.name}: trial(s) {', '.join(map(str, recovered))} were RUNNING when their "
                        "process died: marked KILLED, their points queued again",
                        file=sys.stderr,
                    )
            return run.run(workers, space_file, storage, name, objective, direction)


class _Tuning:
    """One invocation's loop: ask a trial when a worker is free, run it as a stage run, tell the result."""

    def __init__(self, space, study, tracker, url, folder, frozen, params_text, settings, uri, backend, address):
        self.space, self.study, self.tracker, self.url, self.folder = space, study, tracker, url, folder
        self.frozen, self.params_text, self.settings, self.uri = frozen, params_text, settings, uri
        self.backend, self.address = backend, address
        self.dists = space.distributions()
        self.in_flight: dict[int, Any] = {}
        self.mine: set[int] = set()  # trials this invocation started
        self.outcomes: dict[int, str] = {}
        self.executor: Any = None
        self.experiment = f"gradlab/{space.stage}"
        self.tune_id = f"tune__{space.name}"

    # ------------------------------------------------------------------ the parent run
    @contextlib.contextmanager
    def parent_run(self) -> Iterator[Run]:
        """The tuner's parent run, open while this invocation runs: the study's own on a rerun (when this store has
        it), else a new one, remembered by the study."""
        known = self.study.user_attrs.get(st.PARENT)
        if known and self.tracker.has_run(known):
            with self.tracker.run(self.experiment, self.tune_id, resume_id=known) as run:
                yield run
            return
        from gradlab.tracking import standard_tags

        space = self.space
        tags = standard_tags(
            space.stage,
            space.identity(),
            {
                "gradlab.sweep_id": self.tune_id,  # a sweep-like parent: not the stage's result, trials keep own params
                "gradlab.sweep.role": "parent",
                "gradlab.tune.id": space.name,
                "gradlab.tune.role": "parent",
                "gradlab.tune.storage": _redacted(self.url),
                "gradlab.tune.objective": space.objective["key"],
                "mlflow.note.content": f"gradlab tune {space.name}: {space.objective['direction']} "
                f"{space.objective['key']} over {', '.join(space.params)}",
            },
        )
        from gradlab.stages import get_stage

        self.tracker.describe_experiment(self.experiment, get_stage(space.stage).question)
        params = {
            "tune.objective": space.objective["key"],
            "tune.direction": space.objective["direction"],
            "tune.sampler": json.dumps(space.sampler),
            "tune.pruner": json.dumps(space.pruner),
            "tune.fixed": clip(json.dumps(space.fixed), 4000),
        }
        params.update({f"tune.params.{k}": clip(json.dumps(v), 1000) for k, v in space.params.items()})
        with self.tracker.run(self.experiment, self.tune_id, tags=tags, params=params) as run:
            self.study.set_user_attr(st.PARENT, run.id)
            yield run

    # ------------------------------------------------------------------ ask
    def next_job(self) -> dict | None:
        from gradlab.runner import resolve_params

        with interrupts_held():
            while True:
                if self.executor is not None and self.executor.stopping:
                    return None
                st.fail_stale(self.study)
                c = st.counts(self.study)
                if c.done + c.running >= self.space.trials:
                    return None
                trial = st.ask(self.study, self.dists)
                values = sp.trial_values(self.space, trial.params)
                try:
                    resolve_params(self.space.stage, self.space.sets(values), self.frozen)
                except ConfigError as err:  # a combination only the stage's model refuses: FAIL, next point
                    trial.set_user_attr(st.REASON, f"parameters refused: {err}")
                    self.study.tell(trial, state=_state("FAIL"))
                    self.outcomes[trial.number] = "FAIL"
                    print(
                        f"tune {self.space.name}: trial {trial.number} FAIL: parameters refused: {err}", file=sys.stderr
                    )
                    continue
                self.in_flight[trial.number] = trial
                self.mine.add(trial.number)
                return self.job(trial, values)

    def job(self, trial, values: dict) -> dict:
        remote = bool(self.address)
        variant = clip(",".join(f"{k}={fmt(v)}" for k, v in values.items()), 120)
        tags = {
            "gradlab.sweep_id": self.tune_id,
            "gradlab.tune.id": self.space.name,
            "gradlab.tune.trial": trial.number,
            "gradlab.variant": variant,
            "gradlab.tune.point": clip(json.dumps(values, default=str)),
        }
        tags.update({f"tune.{k}": clip(fmt(v)) for k, v in values.items()})
        return {
            "index": trial.number,
            "stage": self.space.stage,
            "sets": self.space.sets(values),
            "params_text": self.params_text,
            "tracking_uri": self.uri,
            "parent_run": self.parent_id,
            "run_name": f"trial{trial.number:03d}__{variant}",
            "tags": tags,
            "out_dir": None,  # the stage's outputs are its run's artifacts; metrics/<n>.json keeps its numbers
            "log_path": None if remote else str(self.folder / "logs" / f"{trial.number}.log"),
            "results_root": None,
            "settings": self.settings,
            "cwd": None if remote else str(Path.cwd()),
            "tune": {
                "storage": self.url,
                "study": self.space.name,
                "trial_id": trial._trial_id,
                "number": trial.number,
                "pruner": self.space.pruner,
            },
        }

    # ------------------------------------------------------------------ tell
    def on_result(self, res: dict) -> None:
        with interrupts_held():
            self._tell(res)

    def _tell(self, res: dict) -> None:
        number = res["index"]
        trial = self.in_flight.get(number)
        if trial is None:
            return
        storage = self.study._storage
        frozen = storage.get_trial(trial._trial_id)
        run_id = self._run_id(number)
        status = res.get("status")
        obj = self.space.objective
        reason, value, state = "", None, "FAIL"
        if status == FINISHED:
            metrics = res.get("metrics") or {}
            (self.folder / "metrics").mkdir(exist_ok=True)
            (self.folder / "metrics" / f"{number}.json").write_text(json.dumps(metrics, indent=1, default=str) + "\n")
            value = finite(dotted(metrics, obj["key"]))
            if value is not None:
                state = "COMPLETE"
            elif obj["missing"] != "fail":
                value, state = float(obj["missing"]), "COMPLETE"
                trial.set_user_attr(st.MISSING, True)
            else:
                reason = _missing_reason(metrics, obj["key"])
        elif status == KILLED and frozen.user_attrs.get(st.PRUNED_AT) is not None:
            state = "PRUNED"
        elif status in (KILLED, CANCELLED) and self.executor is not None and self.executor.stopping:
            state = "KILLED"
        else:
            reason = res.get("error") or f"the stage exited {res.get('code')}"
        if run_id:
            trial.set_user_attr(st.RUN_ID, run_id)
        if state == "KILLED":
            st.mark_killed(self.study, frozen)
        else:
            if reason:
                trial.set_user_attr(st.REASON, clip(reason, 500))
            self.study.tell(trial, value if state == "COMPLETE" else None, state=_state(state))
        self.in_flight.pop(number, None)
        self.outcomes[number] = state
        if run_id:
            try:
                self.tracker.set_tags(run_id, {"gradlab.tune.state": state.lower()})
                if value is not None:
                    self.tracker.log_metrics(run_id, {"tune/objective": value})
            except Exception as exc:  # noqa: BLE001 - bookkeeping; the study has the result
                print(f"warning: tune: cannot tag run {run_id}: {exc}", file=sys.stderr)
        self._progress(number, state, value, res, frozen, reason)

    def _run_id(self, number: int) -> str:
        runs = self.tracker.runs(
            self.experiment,
            f"tags.`gradlab.tune.id` = '{self.space.name}' and tags.`gradlab.tune.trial` = '{number}'",
        )
        runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == self.parent_id]
        return max(runs, key=lambda r: r.info.start_time or 0).info.run_id if runs else ""

    def _progress(self, number, state, value, res, frozen, reason) -> None:
        c = st.counts(self.study)
        extra = ""
        if state == "COMPLETE":
            extra = f", {self.space.objective['key']} = {value:.6g}"
        elif state == "PRUNED":
            extra = f" at step {self.study._storage.get_trial(frozen._trial_id).user_attrs.get(st.PRUNED_AT)}"
        elif reason:
            extra = f" ({reason[:200]})"
        best = ""
        try:
            if c.complete:
                b = self.study.best_trial
                best = f"; best {b.value:.6g} (trial {b.number})"
        except ValueError:
            pass
        point = ", ".join(f"{k}={fmt(v)}" for k, v in sp.trial_values(self.space, frozen.params).items())
        print(
            f"[{c.done}/{self.space.trials}] trial {number} {state}{extra} in {res.get('seconds') or 0:.1f}s ({point})"
            f" · complete {c.complete}, pruned {c.pruned}, failed {c.failed}{best}",
            file=sys.stderr,
            flush=True,
        )

    def tick(self) -> None:
        for trial in list(self.in_flight.values()):
            try:
                self.study._storage.record_heartbeat(trial._trial_id)
            except Exception:  # noqa: BLE001 - a missed heartbeat only makes the trial look stale later
                pass

    # ------------------------------------------------------------------ the loop
    def run(self, workers, space_file, storage, name, objective, direction) -> int:
        from gradlab.pool import default_workers
        from gradlab.trials import Runs
        from gradlab.tune.worker import run_tune_trial

        with self.parent_run() as parent:  # ends KILLED on a second interrupt during the bookkeeping
            self.parent_id = parent.id
            n_workers = workers or (None if (self.backend == "ray" and self.address) else default_workers())
            self.executor = make_pool(self.backend, n_workers, self.address)
            c = st.counts(self.study)
            where = self.backend + (f" at {self.address}" if self.address else f", {n_workers} workers")
            print(
                f"tune {self.space.name}: {self.space.stage}, {c.done}/{self.space.trials} trials done"
                f"{f', {c.killed} killed earlier' if c.killed else ''} ({where}); study {self.space.name} in "
                f"{_redacted(self.url)}; MLflow {self.uri}, parent run {self.parent_id}; results in {self.folder}",
                file=sys.stderr,
                flush=True,
            )
            started = time.perf_counter()
            code = ExitCode.OK
            try:
                with sigterm_raises():
                    run_jobs(
                        self.executor,
                        iter(self.next_job, None),  # a new point only when a worker is free
                        self.on_result,
                        Runs(self.uri, self.experiment, self.parent_id),
                        self.tracker,
                        trial=run_tune_trial,
                        mine=self.is_mine,
                        tick=self.tick,
                        tick_every=st.HEARTBEAT / 2,
                    )
            except KeyboardInterrupt as exc:
                code = interrupt_exit_code(exc)
            except Exception as exc:  # the executor itself broke (Ray could not start, the pool died)
                _err(f"tune {self.space.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                code = ExitCode.FAILED
            with ignoring_sigint():
                self.close(code, time.perf_counter() - started)
                parent.outcome = parent_status(code)
        resume = _resume_command(space_file, storage, name, objective, direction)
        if code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            c = st.counts(self.study)
            print(
                f"tune {self.space.name}: interrupted; {c.done}/{self.space.trials} trials done, running ones "
                f"marked KILLED (their points are queued again). Continue with: {resume}",
                file=sys.stderr,
            )
            return code
        if code:
            return code
        failed = sorted(n for n, s in self.outcomes.items() if s == "FAIL")
        c = st.counts(self.study)
        print(
            f"tune {self.space.name}: {c.complete} COMPLETE, {c.pruned} PRUNED, {c.failed} FAIL of {self.space.trials};"
            f" results in {self.folder}",
            file=sys.stderr,
        )
        if c.running:
            print(
                f"tune {self.space.name}: {c.running} trial(s) still RUNNING elsewhere (another process, or one that "
                f"died: failed and queued again once its heartbeat is {st.GRACE} s old)",
                file=sys.stderr,
            )
        if failed:
            _err(
                f"tune {self.space.name}: trial(s) {', '.join(map(str, failed))} FAILED; see trials.csv and "
                f"{self.folder / 'logs'}"
            )
            return ExitCode.FAILED
        return ExitCode.OK

    def close(self, code: int, seconds: float) -> None:
        """Trials still in flight are KILLED (points queued again), results written and logged (the trial engine
        ended the stray runs)."""
        interrupted = code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED)
        storage = self.study._storage
        for number, trial in list(self.in_flight.items()):
            frozen = storage.get_trial(trial._trial_id)
            if not frozen.state.is_finished():
                st.mark_killed(self.study, frozen, "interrupted" if interrupted else "the tuner stopped")
            self.outcomes[number] = "KILLED"
            self.in_flight.pop(number)
        info = {"storage": _redacted(self.url), "parent_run": self.parent_id}
        written = write_all(self.study, self.space, self.folder, self.params_text, info)
        (self.folder / "space.json").write_text(json.dumps(self.space.plain(), indent=2, default=str) + "\n")
        for path in written:
            self.tracker.log_artifact(self.parent_id, path)
        c = st.counts(self.study)
        metrics = {
            "tune/budget": self.space.trials,
            "tune/complete": c.complete,
            "tune/pruned": c.pruned,
            "tune/failed": c.failed,
            "tune/killed": c.killed,
            "tune/seconds": seconds,
        }
        if c.complete:
            best = self.study.best_trial
            metrics["tune/best"] = best.value
            self.tracker.set_tags(
                self.parent_id,
                {"gradlab.tune.best_trial": best.number, "gradlab.tune.best_run": best.user_attrs.get(st.RUN_ID, "")},
            )
        self.tracker.log_metrics(self.parent_id, metrics)

    def is_mine(self, run) -> bool:
        """Whether a trial run under the parent is one this process ran (another tuner may share the parent)."""
        return (
            run.data.tags.get("gradlab.sweep_id") == self.tune_id
            and int(run.data.tags.get("gradlab.tune.trial", -1)) in self.mine
        )


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]


def _missing_reason(metrics: dict, key: str) -> str:
    import difflib

    flat = flatten(metrics)
    if key in flat or dotted(metrics, key) is not None:
        return f"objective {key} is {dotted(metrics, key)!r}, not a finite number"
    near = difflib.get_close_matches(key, list(flat), n=3)
    return f"objective {key} not in the trial's metrics" + (f"; close: {', '.join(near)}" if near else "")


def _resume_command(space_file, storage, name, objective, direction) -> str:
    parts = ["gradlab", "tune", str(space_file)]
    for flag, value in (
        ("--storage", storage and _redacted(storage)),
        ("--name", name),
        ("--objective", objective),
        ("--direction", direction),
    ):
        if value:
            parts += [flag, str(value)]
    return " ".join(parts)
