"""Browsing results: the stage runs to read, links that open MLflow on the runs, a store that moves with the project.

- :func:`latest_stage_run` is what notebooks and the report read: the newest FINISHED top-level run
  of a stage (not a sweep's parent, not a failed or interrupted run, not a ``--quick`` run).
- :func:`experiment_links` are the URLs ``gradlab ui`` prints: MLflow 3 opens an experiment in its
  GenAI view (traces) unless the URL asks for ``workflowType=machine_learning`` (the runs table).
- :func:`relocate` rewrites the artifact locations of an embedded SQLite store after the project
  folder was copied or moved: MLflow records them as absolute ``file://`` paths, so a copy would
  otherwise read from (and write new artifacts into) the original folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from gradlab.tracking import QUICK_TAG, artifact_locations, move_artifact_root, store_file

RUNS_VIEW = "?workflowType=machine_learning"


def latest_stage_run(stage: str, uri: str | None = None) -> Any | None:
    """The newest FINISHED top-level run of experiment ``gradlab/<stage>`` that is not a sweep's parent
    nor a ``gradlab run --quick`` run (tagged ``gradlab.quick``: small parameters, not the stage's answer),
    as an ``mlflow.entities.Run``; None if the stage never finished."""
    from gradlab.tracking import Tracker

    tracker = Tracker(uri)
    runs = tracker.runs(f"gradlab/{stage}", "attributes.status = 'FINISHED'")
    stage_runs = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags
        and "gradlab.sweep_id" not in r.data.tags
        and r.data.tags.get(QUICK_TAG) != "true"
    ]
    return max(stage_runs, key=lambda r: r.info.start_time, default=None)


def stage_children(run: Any, uri: str | None = None) -> list:
    """The child runs (one per trial) of a stage run, oldest first."""
    from gradlab.tracking import Tracker

    tracker = Tracker(uri)
    name = tracker.experiment_name(run.info.experiment_id)
    children = tracker.runs(name, f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    return sorted(children, key=lambda r: r.info.start_time)


def experiment_links(uri: str, base_url: str) -> list[tuple[str, str]]:
    """``(experiment name, URL of its runs table)`` for every ``gradlab/*`` experiment of the store
    (none when the store does not exist yet or cannot be reached)."""
    from gradlab.tracking import Tracker, TrackingError, check_store

    db = store_file(uri)
    if db is not None and not db.exists():
        return []
    try:
        check_store(uri)
    except TrackingError:
        return []
    found = Tracker(uri).experiments("gradlab/")
    return [(name, f"{base_url.rstrip('/')}/#/experiments/{exp_id}/runs{RUNS_VIEW}") for name, exp_id in found]


def _local_path(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and location.startswith("/"):
        return Path(location)
    return None


def misplaced(uri: str) -> list[tuple[str, Path]]:
    """``(name, folder)`` of each experiment of an embedded store whose artifacts live in a
    ``mlartifacts`` folder that is not the one beside the store (the project was copied or moved)."""
    db = store_file(uri)
    if db is None or not db.exists():
        return []
    here = (db.parent / "mlartifacts").resolve()
    out = []
    for name, location in artifact_locations(db):
        path = _local_path(location or "")
        if path is not None and "mlartifacts" in path.parts:
            folder = Path(*path.parts[: path.parts.index("mlartifacts") + 1])
            if folder != here:
                out.append((name, folder))
    return out


def relocate(uri: str) -> int:
    """Point every artifact location of an embedded store that names another project's ``mlartifacts``
    folder at the ``mlartifacts`` folder beside the store. Returns how many experiments moved."""
    moves = misplaced(uri)
    if not moves:
        return 0
    db = store_file(uri)
    assert db is not None  # misplaced() found moves: an embedded store
    here = (db.parent / "mlartifacts").resolve().as_uri()
    for _, folder in moves:
        move_artifact_root(db, folder.as_uri(), here)
    return len(moves)
