"""Tracking into a temporary sqlite store: runs, statuses, metric histories."""

from __future__ import annotations

import pytest

from gradlab.tracking import DEFAULT_CURVE_POINTS, Tracker, TrackingError, check_store, thinned, tracking_uri


def test_uri_prefers_env_then_dvc_root(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking_uri() == "http://127.0.0.1:1"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_statuses_and_curves(store):
    tracker = Tracker()
    with tracker.run("gradlab/test", "parent", params={"a.b": 1}) as parent:
        with tracker.run("gradlab/test", "ok__seed0", parent=parent.id) as child:
            child.log_curve("train/loss", [float(v) for v in range(2500)])
            child.log_metrics({"eval/x": 3.0})
        with pytest.raises(RuntimeError), tracker.run("gradlab/test", "bad__seed0", parent=parent.id):
            raise RuntimeError("boom")
        with pytest.raises(KeyboardInterrupt), tracker.run("gradlab/test", "int__seed0", parent=parent.id):
            raise KeyboardInterrupt
    runs = {r.info.run_name: r for r in tracker.runs("gradlab/test")}
    assert {n: r.info.status for n, r in runs.items()} == {
        "parent": "FINISHED",
        "ok__seed0": "FINISHED",
        "bad__seed0": "FAILED",
        "int__seed0": "KILLED",
    }
    assert runs["ok__seed0"].data.tags["mlflow.parentRunId"] == parent.id
    history = tracker.client.get_metric_history(runs["ok__seed0"].info.run_id, "train/loss")
    steps = sorted(m.step for m in history)  # thinned: a stride of 8 from step 0, and the last step
    assert len(steps) <= DEFAULT_CURVE_POINTS and steps == [*range(0, 2500, 8), 2499]
    assert all(m.value == m.step for m in history)
    assert runs["parent"].data.params["a.b"] == "1"


def test_unwritable_sqlite_and_refused_server(tmp_path):
    with pytest.raises(TrackingError, match="does not exist"):
        check_store(f"sqlite:///{tmp_path}/missing/mlflow.db")
    with pytest.raises(TrackingError, match="cannot be reached"):
        check_store("http://127.0.0.1:9", timeout=2)


def test_every_point_with_curve_points_0(store, monkeypatch):
    monkeypatch.setenv("GRADLAB_CURVE_POINTS", "0")
    tracker = Tracker()
    with tracker.run("gradlab/test", "all") as run:
        run.log_curve("train/loss", [float(v) for v in range(2500)], steps=range(10, 2510))
    (r,) = tracker.runs("gradlab/test")
    history = tracker.client.get_metric_history(r.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s + 10, float(s)) for s in range(2500)]


@pytest.mark.parametrize("n", [1, 2, 3, 10, 319, 320, 321, 639, 640, 641, 1000, 2500, 100_001])
@pytest.mark.parametrize("limit", [2, 3, 320, 1000])
def test_thinned_keeps_first_last_and_a_regular_stride(n, limit):
    idx = list(thinned(n, limit))
    assert list(thinned(n, 0)) == list(range(n))
    if n <= limit:
        assert idx == list(range(n))
        return
    assert idx[0] == 0 and idx[-1] == n - 1 and 2 <= len(idx) <= limit
    gaps = [b - a for a, b in zip(idx[:-1], idx[1:], strict=True)]
    stride = gaps[0]
    assert all(g == stride for g in gaps[:-1]) and 0 < gaps[-1] <= stride  # one stride; the last gap may be short
    assert len(idx) > limit // 2  # and not needlessly sparse


def test_log_curve_rejects_mismatched_steps(store):
    tracker = Tracker()
    with pytest.raises(ValueError, match="3 values but 2 steps"), tracker.run("gradlab/test", "bad") as run:
        run.log_curve("x", [1.0, 2.0, 3.0], steps=[0, 1])


def test_sqlite_store_runs_in_wal_mode(store):
    import sqlite3

    import sqlalchemy

    from gradlab.tracking import _sqlite_path

    check_store(store)
    tracker = Tracker(store)
    with tracker.run("gradlab/test", "wal") as run:
        run.log_metrics({"x": 1.0})
    con = sqlite3.connect(_sqlite_path(store))
    try:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        con.close()
    # MLflow's own connections flush at checkpoints, not on every commit
    with tracker.client._tracking_client.store.ManagedSessionMaker() as session:
        assert session.execute(sqlalchemy.text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def test_a_data_set_logged_by_two_trials_at_once_is_logged_for_both(store, monkeypatch):
    """MLflow's SQL store inserts a data set it did not find without a lock: two workers logging the same one at once
    both insert and one gets the unique constraint's error (a clean clone's gd stage failed so). It is tried again."""
    import numpy as np
    from mlflow.exceptions import MlflowException

    tracker = Tracker()
    real, calls = tracker.client.log_inputs, []

    def racing(run_id, datasets=None, models=None):
        calls.append(run_id)
        if len(calls) == 1:  # what the other worker's insert does to this one
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, ...")
        return real(run_id, datasets=datasets)

    monkeypatch.setattr(tracker.client, "log_inputs", racing)
    x, y = np.arange(6.0).reshape(3, 2), np.ones(3)
    with tracker.run("gradlab/test", "a__seed0") as a, tracker.run("gradlab/test", "b__seed0") as b:
        a.log_dataset("points", "make_points(seed=0)", x, y)
        b.log_dataset("points", "make_points(seed=0)", x, y)
    for run in (a, b):
        (logged,) = tracker.client.get_run(run.id).inputs.dataset_inputs
        assert logged.dataset.name == "points" and logged.tags[0].value == "training"
    assert calls == [a.id, a.id, b.id]  # a's first call lost the race, its second logged it

    monkeypatch.setattr(tracker.client, "log_inputs", lambda *_, **__: (_ for _ in ()).throw(ValueError("other")))
    with pytest.raises(ValueError, match="other"), tracker.run("gradlab/test", "c__seed0") as c:
        c.log_dataset("points", "make_points(seed=0)", x, y)  # any other error: raised at once
