"""The Optuna study behind ``gradlab tune``: its storage, sampler and pruner, what it remembers, its trials' states.

Storage: ``--storage URL`` (any SQLAlchemy URL Optuna accepts, e.g. ``postgresql+psycopg2://...`` for workers on
several machines), else ``sqlite:///results/tune/<name>/study.db``. The study is named ``<name>`` and created
with ``load_if_exists``: running the same space again continues it. The study keeps, as user attributes, the
space it was started with and the parameter file's text (``gradlab_spec``: a resumed study runs on those, and a
different space is refused) and the MLflow parent run (``gradlab_parent_run``).

Trials that were running when their process died: with the default SQLite file, the first ``gradlab tune`` to
take the folder's lock marks every RUNNING trial failed; with any storage, trials whose heartbeat (recorded by
the tuning process every :data:`HEARTBEAT` seconds) is older than :data:`GRACE` seconds are failed too. Both
re-enqueue the trial's parameters (user attribute ``gradlab_retry_of``), so an interrupted point is run again
rather than lost; the failed copy is shown as KILLED.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradlab.tune.report import PRUNED_AT, SIGN, make_pruner, open_storage
from gradlab.tune.space import Space

HEARTBEAT = 20  # seconds between two heartbeats of a running trial
GRACE = 120  # seconds without a heartbeat after which a RUNNING trial is taken as dead
SPEC = "gradlab_spec"
PARENT = "gradlab_parent_run"
RETRY_OF = "gradlab_retry_of"
STATE = "gradlab_state"  # "killed": interrupted, its parameters re-enqueued
REASON = "gradlab_reason"
RUN_ID = "mlflow_run_id"
MISSING = "gradlab_objective_missing"
STORAGE_FILE = "study.db"


def default_storage(folder: Path) -> str:
    return f"sqlite:///{(folder / STORAGE_FILE).resolve()}"


def sqlite_file(url: str) -> Path | None:
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def make_sampler(spec: dict, offset: int = 0):
    """The space's sampler; the seed is offset by the trials already in the study, so that a resumed study does
    not draw the same random points again."""
    import optuna

    seed = None if spec.get("seed") is None else spec["seed"] + offset
    if spec["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec["n_startup_trials"])


def _stale_callback(study, trial) -> None:
    """A trial whose process died: run its point again."""
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})


def storage_for(url: str):
    """The RDB storage with heartbeats on."""
    return open_storage(
        url, heartbeat_interval=HEARTBEAT, grace_period=GRACE, heartbeat_stale_trial_callback=_stale_callback
    )


def existing_spec(url: str, name: str) -> dict | None:
    """The spec saved in study ``name`` at ``url``, or None when there is no such study (nothing is created for a
    SQLite file that does not exist)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    raw = study.user_attrs.get(SPEC)
    return json.loads(raw) if raw else {}


def open_study(space: Space, url: str, params_text: str):
    """Create or load the study; save the spec on creation. Returns the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_for(url)
    study = optuna.create_study(
        storage=storage,
        study_name=space.name,
        direction=space.objective["direction"],
        pruner=make_pruner(space.pruner),
        load_if_exists=True,
    )
    if SPEC not in study.user_attrs:
        spec = {"space": space.plain(), "identity": space.identity(), "params_text": params_text}
        study.set_user_attr(SPEC, json.dumps(spec, default=str))
        for point in space.enqueue:
            study.enqueue_trial(point)
    study.sampler = make_sampler(space.sampler, offset=len(study.get_trials(deepcopy=False)))
    return study


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[bool]:
    """An exclusive lock on ``folder/.lock`` for the block; yields whether this process got it (without waiting)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            got = True
        except OSError:
            got = False
        yield got
    finally:
        os.close(fd)


def recover_running(study) -> list[int]:
    """Mark every RUNNING trial FAIL (KILLED) and enqueue its point again; the numbers of those trials.

    Only when no other process can be running trials of this study (the default SQLite file, its lock held).
    """
    from optuna.trial import TrialState

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        mark_killed(study, t)
        numbers.append(t.number)
    return numbers


def mark_killed(study, frozen, reason: str = "interrupted") -> None:
    """Trial ``frozen`` (RUNNING) was stopped before it ended: FAIL, noted as killed, its point enqueued again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage
    try:
        storage.set_trial_user_attr(frozen._trial_id, STATE, "killed")
        storage.set_trial_user_attr(frozen._trial_id, REASON, reason)
        if not storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL):
            return
    except UpdateFinishedTrialError:
        return
    if frozen.params:
        study.enqueue_trial(frozen.params, user_attrs={RETRY_OF: frozen.number})


def fail_stale(study) -> None:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def ask(study, distributions: dict):
    """``study.ask``: the heartbeat gradlab records itself (Optuna warns that it expects ``optimize``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used with Study.optimize")
        trial = study.ask(distributions)
    study._storage.record_heartbeat(trial._trial_id)
    return trial


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    killed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def done(self) -> int:
        """Trials that count against the budget: COMPLETE, PRUNED and FAIL (killed ones are run again)."""
        return self.complete + self.pruned + self.failed


def label(t, retried: set[int]) -> str:
    """A trial's state as gradlab shows it: COMPLETE, PRUNED, FAIL, KILLED (FAIL, run again), RUNNING, WAITING."""
    name = t.state.name
    if name == "FAIL" and (t.user_attrs.get(STATE) == "killed" or t.number in retried):
        return "KILLED"
    return name


def retried_numbers(trials) -> set[int]:
    return {int(t.user_attrs[RETRY_OF]) for t in trials if t.user_attrs.get(RETRY_OF) is not None}


def counts(study) -> Counts:
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    c = Counts()
    for t in trials:
        state = label(t, retried)
        if state == "COMPLETE":
            c.complete += 1
        elif state == "PRUNED":
            c.pruned += 1
        elif state == "FAIL":
            c.failed += 1
        elif state == "KILLED":
            c.killed += 1
        elif state == "RUNNING":
            c.running += 1
        elif state == "WAITING":
            c.waiting += 1
    return c


def intermediate(t) -> tuple[int | None, float | None]:
    """The last reported step and its value in the stage's own units (the hook's sign undone)."""
    if not t.intermediate_values:
        return None, None
    step = max(t.intermediate_values)
    sign = float(t.user_attrs.get(SIGN, 1.0))
    return step, t.intermediate_values[step] * sign


def pruned_at(t) -> Any:
    return t.user_attrs.get(PRUNED_AT)
