"""Browsing: live runs, descriptions, the runs to read, links to the runs table, a store that moves with the project."""

from __future__ import annotations

import shutil
import sqlite3
import time

import pytest

from gradlab import cli
from gradlab.browse import experiment_links, latest_stage_run, misplaced, relocate, stage_children
from gradlab.tracking import NOTE, Run, Tracker


def test_a_stage_run_shows_params_and_curves_while_it_runs(store, monkeypatch):
    monkeypatch.setattr(Run, "LIVE_EVERY", 0.0)  # every log call sends what is buffered
    tracker = Tracker()
    with tracker.run("gradlab/live", "stage", params={"live.lr": 0.1}) as parent:
        assert tracker.client.get_run(parent.id).data.params == {"live.lr": "0.1"}  # before the run ends
        with tracker.run("gradlab/live", "a__seed0", parent=parent.id) as child:
            child.log_metrics({"train/loss": 1.0}, step=0)
            seen = tracker.client.get_metric_history(child.id, "train/loss")
            assert [m.value for m in seen] == [1.0] and tracker.client.get_run(child.id).info.status == "RUNNING"


def test_a_child_logged_after_the_fact_carries_the_trials_real_times(store):
    tracker = Tracker()
    start, end = time.time() - 30.0, time.time() - 20.0
    with tracker.run("gradlab/t", "p") as parent:
        with tracker.run("gradlab/t", "c__seed0", parent=parent.id, start_ms=int(start * 1000), end_ms=int(end * 1000)):
            pass
    (child,) = [r for r in tracker.runs("gradlab/t") if r.info.run_name == "c__seed0"]
    assert child.info.start_time == int(start * 1000) and child.info.end_time == int(end * 1000)


def test_descriptions_of_experiment_and_run(store):
    tracker = Tracker()
    tracker.describe_experiment("gradlab/d", "Why?")
    tracker.describe_experiment("gradlab/d", "Why?")  # unchanged: no second write needed, no error
    with tracker.run("gradlab/d", "p") as run:
        run.describe("# summary")
    exp = tracker.client.get_experiment_by_name("gradlab/d")
    assert exp.tags[NOTE] == "Why?"
    assert tracker.client.get_run(run.id).data.tags[NOTE] == "# summary"


def test_latest_stage_run_skips_failed_runs_sweep_parents_and_children(store):
    import pytest

    tracker = Tracker()
    with tracker.run("gradlab/s", "s · old") as old:
        with tracker.run("gradlab/s", "x__seed0", parent=old.id):
            pass
    with pytest.raises(RuntimeError), tracker.run("gradlab/s", "s · failed"):
        raise RuntimeError("boom")
    with tracker.run("gradlab/s", "sweep__1", tags={"gradlab.sweep_id": "1"}):
        pass
    latest = latest_stage_run("s", store)
    assert latest.info.run_id == old.id
    assert [c.info.run_name for c in stage_children(latest, store)] == ["x__seed0"]
    assert latest_stage_run("never", store) is None


def test_ui_prints_a_runs_table_link_per_experiment(store, monkeypatch, capsys):
    tracker = Tracker()
    with tracker.run("gradlab/gd", "gd"):
        pass
    from test_ui import fake_server_command, free_port

    from gradlab import ui

    monkeypatch.setattr(ui, "server_command", fake_server_command())  # answers /health once, then exits
    port = free_port()
    assert cli.main(["ui", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    exp_id = tracker.experiment_id("gradlab/gd")
    assert f"http://127.0.0.1:{port}/#/experiments/{exp_id}/runs?workflowType=machine_learning" in out
    assert experiment_links(store, "http://h:1") == [
        ("gradlab/gd", f"http://h:1/#/experiments/{exp_id}/runs?workflowType=machine_learning")
    ]


def test_a_copied_project_reads_and_writes_its_own_artifacts(tmp_path, monkeypatch):
    original = tmp_path / "original"
    original.mkdir()
    uri = f"sqlite:///{original / 'mlflow.db'}"
    tracker = Tracker(uri)
    with tracker.run("gradlab/gd", "gd") as run:
        (tmp_path / "fig.png").write_bytes(b"png")
        run.log_artifact(tmp_path / "fig.png", "figures")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # the copy must not need the original
    copy_uri = f"sqlite:///{copy / 'mlflow.db'}"
    assert [name for name, _ in misplaced(copy_uri)] == ["gradlab/gd"]
    assert relocate(copy_uri) == 1 and misplaced(copy_uri) == []
    with sqlite3.connect(copy / "mlflow.db") as con:
        (location,) = con.execute("SELECT artifact_uri FROM runs").fetchone()
    assert location.startswith((copy / "mlartifacts").resolve().as_uri())
    moved = Tracker(copy_uri)
    assert [f.path for f in moved.client.list_artifacts(run.id, "figures")] == ["figures/fig.png"]
    with moved.run("gradlab/gd", "gd again") as again:
        again.log_artifact(copy / "mlflow.db", "db")
    assert (copy / "mlartifacts").is_dir() and not original.exists()


@pytest.mark.slow
def test_a_running_stage_shows_its_params_and_a_trials_curve_before_it_ends(store, tmp_path):
    """`gradlab run pg_cartpole` in a subprocess, the store polled while it runs."""
    import os
    import subprocess
    import sys

    from conftest import tiny_params

    params = tiny_params(tmp_path, "pg_cartpole")
    cmd = [sys.executable, "-m", "gradlab"]
    proc = subprocess.Popen(
        [*cmd, "run", "pg_cartpole", "--params", str(params)],
        env={**os.environ, "MLFLOW_TRACKING_URI": store},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    tracker, seen = Tracker(store), None
    while proc.poll() is None and seen is None:
        runs = tracker.runs("gradlab/pg_cartpole")
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.data.params]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
        live = [r for r in children if tracker.client.get_metric_history(r.info.run_id, "episode/return")]
        if parents and live:
            seen = (parents[0].info.status, parents[0].data.params)
        time.sleep(0.2)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert seen is not None, "no parent params and child curve were visible before the stage ended"
    status, params_seen = seen
    assert status == "RUNNING" and params_seen["hidden"] == "8"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["gd", "input_grad"])
def test_trial_runs_span_the_time_their_trials_ran(store, tmp_path, monkeypatch, stage):
    """A child run covers its trial (created when it starts, or with its real start and end), inside the
    parent: every trial is made to last at least 0.3 s, and so must its run."""
    import importlib

    from conftest import tiny_params

    from gradlab.runner import run_stage

    study = importlib.import_module(f"gradlab.studies.{stage}.study")

    def slowed(real):
        def slow_trial(spec):  # one worker (tiny params, GRADLAB_WORKERS=1), so the trial runs in this process
            time.sleep(0.3)
            return real(spec)

        return slow_trial

    for name in ("run_trial", "run_any"):  # gd's network trials go through run_any (trials or threshold bisections)
        if hasattr(study, name):
            monkeypatch.setattr(study, name, slowed(getattr(study, name)))
    monkeypatch.setenv("GRADLAB_WORKERS", "1")  # gd's trials go to the pool when there are several cores
    assert run_stage(stage, params_file=tiny_params(tmp_path, stage)) == 0
    runs = Tracker(store).runs(f"gradlab/{stage}")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = [c for c in children if "train/loss" in c.data.metrics]
    assert trials
    for c in children:
        assert parent.info.start_time <= c.info.start_time <= c.info.end_time <= parent.info.end_time
    for c in trials:
        assert c.info.end_time - c.info.start_time >= 300, c.info.run_name
