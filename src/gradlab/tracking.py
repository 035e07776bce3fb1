"""The one place that talks to MLflow.

Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else the embedded
``sqlite:///<repo root>/mlflow.db`` where the root is ``DVC_ROOT`` (set by DVC,
so queued experiments log to the main store), else the git root, else the
current directory. Experiments are ``gradlab/<stage>``; one parent run per
invocation, one child run per trial. Runs always end FINISHED, FAILED or KILLED.

Per-step curves are thinned to at most ``GRADLAB_CURVE_POINTS`` points each
(default 320, the number of points the MLflow UI samples per run and metric for
its charts; 0 sends every point): a regular stride that keeps the first and the
last step. MLflow's SQL store spends ~0.1 ms on every point it stores, more than
many of these studies' steps take to compute. The curves behind each figure are
kept in full in ``results/<stage>/plots/``.

Provenance: every run says where it came from (``mlflow.source.name``: the command, e.g.
``gradlab run gd --quick``; ``mlflow.source.git.commit``). A child run copies these tags from its
parent and carries its full resolved parameters: the parent's, with the trial's own (seed, variant,
learning rate...) in place of the stage's. A stage's run also records the machine's CPU and
memory (MLflow's system metrics, ``system/*``) every ``GRADLAB_SYSTEM_METRICS`` seconds.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import shlex
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradlab.process import interrupts_held
from gradlab.settings import DEFAULT_CURVE_POINTS  # noqa: F401  (what the MLflow UI samples per chart; tests use it)

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
NOTE = "mlflow.note.content"  # the description MLflow's UI shows for an experiment or a run
QUICK_TAG = "gradlab.quick"  # "true" on a `gradlab run --quick` run and its children: never a stage's result
# what a child run copies from its parent (unless it sets them itself): where the run came from
PROVENANCE_TAGS = (
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "gradlab.git_sha",
    "gradlab.modified",
    "dvc.exp_name",
    QUICK_TAG,
)
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


class TrackingError(RuntimeError):
    """The tracking store cannot be used (exit code 1, before any training)."""


def repo_root() -> Path:
    """DVC_ROOT when DVC runs us, else the git root, else the current directory."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10, check=True
        )
        return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.SubprocessError):
        return Path.cwd().resolve()


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` (read once into the settings), else the embedded store beside the repo root."""
    from gradlab.settings import current

    return current().tracking_uri or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_sha(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or repo_root(), capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_WATCHED = ("params.yaml", "src", "pipelines", "dvc.yaml")


def workspace_changes(root: Path | None = None) -> list[str]:
    """What differs from the commit ``git_sha`` names: ``params.yaml``, ``code`` (src/, pipelines/, dvc.yaml)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_WATCHED],
            cwd=root or repo_root(),
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    paths = [line[3:] for line in out.splitlines() if len(line) > 3]
    changed = ["params.yaml"] if "params.yaml" in paths else []
    return changed + (["code"] if any(p != "params.yaml" for p in paths) else [])


def stage_run_name(stage: str) -> str:
    """``<stage> · <DVC experiment name or short git sha>``, with ``+modified`` when the workspace differs."""
    label = os.environ.get("DVC_EXP_NAME") or git_sha()[:7]
    return f"{stage} · {label}{' +modified' if workspace_changes() else ''}"


def source_name(argv: Sequence[str] | None = None) -> str:
    """``mlflow.source.name`` of a run: the command that started this process, with ``gradlab`` for the CLI
    (``gradlab run gd --quick``) and scripts relative to the repo root (``pipelines/gd.py``)."""
    argv = list(sys.argv if argv is None else argv) or [""]
    entry = Path(argv[0])
    if entry.name == "gradlab" or (entry.name in ("__main__.py", "cli.py") and entry.parent.name == "gradlab"):
        head = ["gradlab"]
    elif argv[0] in ("", "-c", "-m"):
        head = ["python", argv[0]] if argv[0] else ["python"]
    else:
        try:
            head = [entry.resolve().relative_to(repo_root()).as_posix()]
        except ValueError:
            head = [entry.name]
    text = shlex.join([*head, *argv[1:]])
    return text if len(text) <= 500 else text[:499] + "\u2026"


def params_hash(params: Any) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


def store_file(uri: str) -> Path | None:
    """The SQLite file of an embedded store (``sqlite:///...``), None for any other store."""
    return _sqlite_path(uri)


def artifact_locations(db: Path) -> list[tuple[str, str]]:
    """``(experiment name, artifact location)`` of every experiment of the embedded store ``db``."""
    with sqlite3.connect(db) as con:
        return [
            (name, location or "") for name, location in con.execute("SELECT name, artifact_location FROM experiments")
        ]


def move_artifact_root(db: Path, old: str, new: str) -> None:
    """Point every artifact location of the embedded store ``db`` under ``old`` (a ``file://`` URI) under ``new``
    (experiments and runs: MLflow records them as absolute paths, so a copied project would read the original's)."""
    with sqlite3.connect(db) as con:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} LIKE ? || '%'",
                (new, len(old) + 1, old),
            )


def _use_wal(con: sqlite3.Connection) -> None:
    """Put the store in write-ahead-log mode (a property of the file, kept from then on), if SQLite can.

    With WAL, readers (``mlflow ui``, other trials) do not block the writer, and a commit appends
    to the log instead of rewriting a journal; with ``synchronous=NORMAL`` (set on every
    connection MLflow opens, :func:`_sqlite_synchronous_normal`) it is not flushed to disk on
    every commit. A crash of gradlab or MLflow loses nothing committed; a power cut may lose
    the last commits, never the store. A file system without shared memory (some network
    mounts) refuses WAL: the store then stays in its default mode.
    """
    try:
        con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass


@functools.cache
def _sqlite_synchronous_normal() -> None:
    """``PRAGMA synchronous=NORMAL`` on every SQLite connection SQLAlchemy opens in this process (MLflow's)
    to a store in WAL mode (in the default rollback mode, NORMAL would risk the store on a power cut)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            (mode,) = dbapi_connection.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() == "wal":
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (TrackingError) if the store cannot be reached or written."""
    path = _sqlite_path(uri)
    if path is not None:
        if not path.parent.is_dir():
            raise TrackingError(f"tracking store {uri}: folder {path.parent} does not exist")
        try:
            con = sqlite3.connect(path, timeout=timeout)
            try:
                con.execute("BEGIN IMMEDIATE")
                con.execute("ROLLBACK")
                _use_wal(con)
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise TrackingError(f"tracking store {uri} is not writable: {exc}") from None
        return
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"tracking server {uri} cannot be reached ({reason}); start it or unset MLFLOW_TRACKING_URI"
            ) from None


def curve_point_limit() -> int:
    """The most points of one curve sent to MLflow (``GRADLAB_CURVE_POINTS``, read once into the settings; 0: all).

    Raises :class:`gradlab.config.ConfigError` (exit 2) for anything but 0 or an integer >= 2.
    """
    from gradlab.settings import current

    return current().curve_points


def thinned(n: int, limit: int) -> range | list[int]:
    """Indices of at most ``limit`` points of an ``n``-point curve: a regular stride from the first, plus the last.

    ``limit`` 0 (or ``n <= limit``) keeps every point. With stride ``k = ceil((n-1)/(limit-1))`` the grid
    ``0, k, 2k, ...`` has at most ``limit`` points, and when it has exactly ``limit`` it ends on ``n - 1``.
    """
    if limit == 0 or n <= limit:
        return range(n)
    k = -(-(n - 1) // (limit - 1))
    idx = list(range(0, n, k))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return idx


def open_tracker(experiment: str, uri: str | None = None) -> Tracker:
    """A :class:`Tracker` on a store checked to work, with ``experiment`` created.

    Raises :class:`TrackingError` (exit 1, one line) when the store cannot be used, MLflow's own
    errors on a broken store included, and ConfigError (exit 2) for a bad ``GRADLAB_CURVE_POINTS``,
    before the store is touched.
    """
    from gradlab.config import ConfigError

    curve_point_limit()
    uri = uri or tracking_uri()
    try:
        check_store(uri)
        tracker = Tracker(uri)
        tracker.experiment_id(experiment)
        return tracker
    except (TrackingError, ConfigError):
        raise
    except Exception as err:
        raise TrackingError(f"tracking store {uri} cannot be used: {str(err).splitlines()[0]}") from None


def _retrying(*transient: str):
    """A decorator that retries an MLflow call while its error says one of ``transient`` (case-insensitive; tenacity):
    up to 40 tries, waiting 0.05 s after the first and 1.5 times longer after each next one, at most 1 s; any other
    error, and the 40th, is raised as it is. tenacity is imported at the first call, like MLflow (importing it costs
    about as much as asyncio)."""
    needles = tuple(t.lower() for t in transient)

    def decorate(fn):
        retrying = None

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            nonlocal retrying
            if retrying is None:
                import tenacity

                retrying = tenacity.retry(
                    retry=tenacity.retry_if_exception(
                        lambda e: isinstance(e, Exception) and any(n in str(e).lower() for n in needles)
                    ),
                    stop=tenacity.stop_after_attempt(40),
                    wait=tenacity.wait_exponential(multiplier=0.05, exp_base=1.5, max=1.0),
                    reraise=True,  # the error itself, not tenacity's RetryError
                )(fn)
            return retrying(*args, **kwargs)

        return wrapper

    return decorate


# SQLite says "database is locked" while another process writes: every MLflow call waits its turn this way.
_retry_locked = _retrying("locked")
# MLflow's SQL store looks a data set up by (experiment, name, digest) and inserts it when missing, with nothing
# between the two: trials on two workers that log the same data set at once both insert, and one gets the unique
# constraint's error (seen in the gd stage, whose network trials share their data). Tried again, it finds the row.
_DATASET_RACE = ("UNIQUE constraint failed: datasets", "duplicate key value violates unique constraint")


class Run:
    """A handle on one MLflow run.

    Runs opened with :meth:`Tracker.run` buffer params and metrics and send them in as few
    ``log_batch`` calls as MLflow allows: when the buffer is large, when ``LIVE_EVERY`` seconds
    have passed since the last send (so a long run shows its curves while it trains) and when
    the run ends. On SQLite each call is a transaction. The buffer holds plain tuples, which the
    garbage collector does not track; MLflow's entities exist only while a batch is sent (see
    :func:`gc_paused`).
    """

    FLUSH_AT = 20_000
    LIVE_EVERY = 5.0  # seconds

    def __init__(self, tracker: Tracker, run_id: str, buffered: bool = False):
        self.tracker = tracker
        self.id = run_id
        self.buffered = buffered
        self._params: list = []
        self._metrics: list = []
        self._sent = time.monotonic()
        self._inherited: dict[str, str] | None = None  # the parent's params, not sent yet
        self._inherited_sent: dict[str, str] = {}
        # the status a :meth:`Tracker.run` block that ends without an exception ends the run with (default
        # FINISHED): a command that catches an interrupt to finish its bookkeeping (a sweep) says KILLED here
        self.outcome: str | None = None

    def inherit(self, params: dict[str, str]) -> None:
        """Send the parent's ``params`` with this run's first batch, except those the run sets itself by then
        (a trial's seed or learning rate in place of the stage's): a child carries its full resolved params."""
        self._inherited = dict(params)

    def log_params(self, params: dict[str, Any]) -> None:
        pairs = _param_pairs(params)
        self._params += [(k, v) for k, v in pairs if self._inherited_sent.get(k) != v]  # sent already
        self._maybe_flush()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self._metrics += [(k, float(v), now, int(step or 0)) for k, v in metrics.items() if v is not None]
        self._maybe_flush()

    def log_curve(self, key: str, values: Sequence[float], steps: Sequence[int] | None = None) -> None:
        """A per-step curve, thinned to ``tracker.curve_points`` points, sent in batches (never one call per point)."""
        now = int(time.time() * 1000)
        steps = range(len(values)) if steps is None else steps
        if len(steps) != len(values):
            raise ValueError(f"curve {key}: {len(values)} values but {len(steps)} steps")
        keep = thinned(len(values), self.tracker.curve_points)
        self._metrics += [(key, float(values[i]), now, int(steps[i])) for i in keep]
        self._maybe_flush()

    def log_points(self, points: Iterable[tuple[str, float, int, int]]) -> None:
        """Metric points ``(key, value, timestamp in ms, step)``, each with its own real timestamp."""
        self._metrics += [(str(k), float(v), int(t), int(s)) for k, v, t, s in points]
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if (
            not self.buffered
            or len(self._metrics) + len(self._params) >= self.FLUSH_AT
            or time.monotonic() - self._sent >= self.LIVE_EVERY
        ):
            self.flush()

    def flush(self) -> None:
        from mlflow.entities import Metric, Param

        params, metrics = self._params, self._metrics
        self._params, self._metrics = [], []
        if self._inherited is not None:
            own = {k for k, _ in params}
            self._inherited_sent = {k: v for k, v in self._inherited.items() if k not in own}
            params = [*self._inherited_sent.items(), *params]
            self._inherited = None
        self._sent = time.monotonic()
        while params or metrics:  # MLflow: <= 100 params and <= 1000 entities per call
            p, params = params[:100], params[100:]
            m, metrics = metrics[: _BATCH - len(p)], metrics[_BATCH - len(p) :]
            with gc_paused():
                self.tracker._log_batch(self.id, metrics=[Metric(*t) for t in m], params=[Param(*t) for t in p])

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tracker.set_tags(self.id, tags)

    def describe(self, text: str) -> None:
        """The run's description in the MLflow UI (Markdown)."""
        self.tracker.set_tags(self.id, {NOTE: text})

    def log_dataset(self, name: str, source: str, features: Any, targets: Any = None) -> None:
        """The data set the run trained on, in its "Datasets" column and tab (``mlflow.log_input``)."""
        self.tracker.log_dataset(self.id, name, source, features, targets)

    def log_artifacts(self, local_dir: Path, artifact_path: str | None = None) -> None:
        self.tracker.log_artifacts(self.id, local_dir, artifact_path)

    def log_artifact(self, local_file: Path, artifact_path: str | None = None) -> None:
        self.tracker.log_artifact(self.id, local_file, artifact_path)


def _param_pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in params.items()]


class Tracker:
    """Thin wrapper over ``MlflowClient`` with batching, retries and run lifecycles."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        if _sqlite_path(self.uri) is not None:
            _sqlite_synchronous_normal()
        self.client = MlflowClient(tracking_uri=self.uri)
        self.curve_points = curve_point_limit()
        self._experiments: dict[str, str] = {}
        self._parents: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    # experiments and runs -------------------------------------------------
    @_retry_locked
    def experiment_id(self, name: str) -> str:
        if name in self._experiments:
            return self._experiments[name]
        self._experiments[name] = self._experiment_id(name)
        return self._experiments[name]

    def _experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        path = _sqlite_path(self.uri)
        if path is not None:  # keep artifacts beside the store, whatever the cwd
            location = (path.parent / "mlartifacts" / name.replace("/", "_")).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another process
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    @_retry_locked
    def start_run(
        self,
        experiment: str,
        name: str,
        parent: str | None = None,
        tags: dict[str, Any] | None = None,
        start_ms: int | None = None,
    ) -> Run:
        """A new run; a child (``parent`` given) gets the parent's provenance tags (its own win, except the
        source: the parent's) and, once it sends its first batch, the parent's params (:meth:`Run.inherit`),
        unless the parent is a sweep's."""
        all_tags = {k: str(v) for k, v in (tags or {}).items() if v is not None}
        inherited: dict[str, str] = {}
        if parent:
            parent_tags, inherited = self._from_parent(parent)
            # the command that started the invocation, not a worker's own (a Ray worker's argv says nothing)
            source = {k: v for k, v in parent_tags.items() if k.startswith("mlflow.source.") and "git" not in k}
            all_tags = {**parent_tags, **all_tags, **source, "mlflow.parentRunId": parent}
        run = self.client.create_run(self.experiment_id(experiment), run_name=name, tags=all_tags, start_time=start_ms)
        handle = Run(self, run.info.run_id)
        if inherited:
            handle.inherit(inherited)
        return handle

    def _from_parent(self, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """The provenance tags and the params a child of ``run_id`` copies (read once per parent)."""
        if run_id not in self._parents:
            data = self.client.get_run(run_id).data
            tags = {k: data.tags[k] for k in PROVENANCE_TAGS if k in data.tags}
            sweep = data.tags.get("gradlab.sweep.role") == "parent"  # its trials are stage runs with their own
            self._parents[run_id] = (tags, {} if sweep else dict(data.params))
        return self._parents[run_id]

    @_retry_locked
    def end(self, run_id: str, status: str, end_ms: int | None = None) -> None:
        self.client.set_terminated(run_id, status=status, end_time=end_ms)

    def describe_experiment(self, name: str, text: str) -> None:
        """The experiment's description in the MLflow UI (set once; unchanged text costs one read).

        A description is a courtesy: when concurrent stages set it at once (a store may then refuse
        the second insert of the tag), whoever wrote first wins and nothing fails."""
        exp_id = self.experiment_id(name)
        try:
            if self.client.get_experiment(exp_id).tags.get(NOTE) != text:
                self.client.set_experiment_tag(exp_id, NOTE, text)
        except Exception as exc:  # noqa: BLE001 - an MlflowException, a store's integrity error, a lock
            if self.client.get_experiment(exp_id).tags.get(NOTE) is None:
                raise TrackingError(f"cannot describe experiment {name}: {exc}") from exc

    @_retry_locked
    def reopen(self, run_id: str) -> Run:
        """Mark an ended run RUNNING again (``--resume`` continues the same run)."""
        self.client.update_run(run_id, status="RUNNING")
        return Run(self, run_id)

    def has_run(self, run_id: str) -> bool:
        """Whether this store holds ``run_id`` (a checkpoint carried to another clone names a run it lacks)."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    @contextmanager
    def run(
        self,
        experiment: str,
        name: str,
        parent: str | None = None,
        tags=None,
        params=None,
        resume_id=None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> Iterator[Run]:
        """A run that ends FINISHED, FAILED on an exception, KILLED on an interrupt.

        With ``resume_id`` the existing run is continued instead of a new one created. A top-level
        run's params are sent at once (visible while it runs). ``start_ms``/``end_ms`` (epoch milliseconds) record
        when the work it describes really ran, for a run logged after the fact.
        """
        with interrupts_held():  # an interrupt now would leave a created run that nothing ends
            if resume_id and self.has_run(resume_id):
                run = self.reopen(resume_id)
                params = None  # already logged, and MLflow params are immutable
            else:  # a new run; resuming from checkpoints whose run is not in this store: say which run it continues
                if resume_id:
                    tags = {**(tags or {}), "gradlab.resumed_from": resume_id}
                run = self.start_run(experiment, name, parent=parent, tags=tags, start_ms=start_ms)
        run.buffered = True
        status = FINISHED
        monitor = None
        try:
            if parent is None:  # a stage's run: the machine's CPU and memory while it runs
                monitor = self.system_metrics(run.id, resumed=bool(resume_id))
            if params:
                run.log_params(params)
                if parent is None:  # a stage's run: its params are visible while it runs
                    run.flush()
            yield run
        except KeyboardInterrupt:
            status = KILLED
            raise
        except BaseException:
            status = FAILED
            raise
        finally:
            try:
                if monitor is not None:
                    monitor.finish()
                run.flush()
            finally:
                if status == FINISHED and run.outcome is not None:
                    status = run.outcome
                self.end(run.id, status, end_ms if status == FINISHED else None)

    def system_metrics(self, run_id: str, resumed: bool = False):
        """MLflow's system-metrics monitor on ``run_id``, started (None when ``GRADLAB_SYSTEM_METRICS`` is 0).

        A thread samples the machine's CPU use and memory (``system/cpu_utilization_percentage``,
        ``system/system_memory_usage_megabytes`` and ``_percentage``: MLflow's CPU monitor; not its disk
        and network ones) every ``GRADLAB_SYSTEM_METRICS`` seconds and logs each sample at the next
        step; the MLflow UI draws them in the run's "System metrics" tab. A run shorter than one
        interval gets none. ``finish()`` stops it.
        """
        from gradlab.settings import current

        every = current().system_metrics
        if not every:
            return None
        from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines per run
        monitor = SystemMetricsMonitor(run_id, sampling_interval=every, resume_logging=resumed, tracking_uri=self.uri)
        monitor.monitors = [CPUMonitor()]
        monitor.start()
        return monitor

    # logging ----------------------------------------------------------------
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        Run(self, run_id).log_params(params)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self._log_batch(run_id, tags=[RunTag(str(k), str(v)) for k, v in tags.items() if v is not None])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        Run(self, run_id).log_metrics(metrics, step)

    @_retry_locked
    def _log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self.client.log_batch(run_id, metrics=list(metrics), params=list(params), tags=list(tags))

    @_retrying("locked", *_DATASET_RACE)
    def log_dataset(self, run_id: str, name: str, source: str, features: Any, targets: Any = None) -> None:
        """``mlflow.log_input`` for a run this process need not hold active: the data set's name, digest, schema
        and shapes (``mlflow.data.from_numpy``; the arrays themselves are not stored), its ``source`` the call
        that makes it (a code source: the studies generate their data from seeds), context "training"."""
        import mlflow.data
        import numpy as np
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        code = CodeDatasetSource(tags={"mlflow.source.name": source})
        arrays = np.asarray(features), None if targets is None else np.asarray(targets)
        dataset = mlflow.data.from_numpy(arrays[0], source=code, targets=arrays[1], name=name)
        tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value="training")]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags)])

    @_retry_locked
    def log_artifacts(self, run_id: str, local_dir: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(run_id, str(local_dir), artifact_path)

    @_retry_locked
    def log_artifact(self, run_id: str, local_file: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(local_file), artifact_path)

    def end_stray_runs(
        self, experiment: str, under: str, status: str, mine: Callable[[Any], bool] | None = None
    ) -> int:
        """End the runs below run ``under`` (its children, theirs...) still RUNNING: what a killed worker, or an
        interrupt between creating a run and ending it, left behind. ``mine(run)`` picks which of ``under``'s
        direct children (with everything below them) are the caller's. Returns how many were ended."""
        running = [r for r in self.runs(experiment, "attributes.status = 'RUNNING'") if r.info.run_id != under]
        known = {r.info.run_id: r for r in running}
        ended = 0
        for run in running:
            node, seen = run, {run.info.run_id}
            while node is not None and node.data.tags.get("mlflow.parentRunId") not in (None, under):
                up = node.data.tags["mlflow.parentRunId"]
                if up in seen:
                    node = None
                    break
                seen.add(up)
                if up not in known:
                    known[up] = self.client.get_run(up)
                node = known[up]
            if node is None or node.data.tags.get("mlflow.parentRunId") != under:
                continue
            if mine is None or mine(node):
                self.end(run.info.run_id, status)
                ended += 1
        return ended

    # reading ----------------------------------------------------------------
    def experiments(self, prefix: str = "") -> list[tuple[str, str]]:
        """``(name, id)`` of the store's experiments whose name starts with ``prefix``, by name."""
        found = [(e.name, e.experiment_id) for e in self.client.search_experiments() if e.name.startswith(prefix)]
        return sorted(found)

    def experiment_name(self, experiment_id: str) -> str:
        return self.client.get_experiment(experiment_id).name

    def runs(self, experiment: str, filter_string: str = "") -> list:
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        return self.client.search_runs([exp.experiment_id], filter_string=filter_string, max_results=10000)


def download_artifacts(run_id: str, artifact_path: str, uri: str | None = None) -> Path:
    """A local copy of the artifacts ``artifact_path`` of run ``run_id`` (store ``uri``; None: MLflow's default)."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path, tracking_uri=uri))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a burst of short-lived allocations.

    MLflow's SQL store builds several ORM objects per metric point. With the collector on,
    a batch of a few thousand points sets off collections, now and then a full one that walks
    the whole heap (torch, MLflow, SQLAlchemy: ~0.4 s here, more than the batch itself). The
    batch's objects are freed by reference counting when its session closes, so pausing the
    collector for the call changes nothing but the time.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def standard_tags(stage: str, params: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    sha = git_sha()
    tags = {
        "gradlab.stage": stage,
        "gradlab.git_sha": sha,
        "gradlab.params_hash": params_hash(params),
        "mlflow.source.git.commit": sha,
        "mlflow.source.name": source_name(),
        "mlflow.source.type": "LOCAL",
        "dvc.exp_name": os.environ.get("DVC_EXP_NAME"),
        "gradlab.modified": ",".join(workspace_changes()) or None,  # differs from the commit: params.yaml, code
        "gradlab.curve_points": curve_point_limit(),
    }
    tags.update(extra or {})
    return tags
