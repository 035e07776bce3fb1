"""Tracking into a temporary sqlite store: runs, statuses, metric histories."""

from __future__ import annotations

import pytest

from gradlab.tracking import Tracker, TrackingError, check_store, tracking_uri


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
    assert len(history) == 2500
    assert sorted(m.step for m in history) == list(range(2500))
    assert runs["parent"].data.params["a.b"] == "1"


def test_unwritable_sqlite_and_refused_server(tmp_path):
    with pytest.raises(TrackingError, match="does not exist"):
        check_store(f"sqlite:///{tmp_path}/missing/mlflow.db")
    with pytest.raises(TrackingError, match="cannot be reached"):
        check_store("http://127.0.0.1:9", timeout=2)
