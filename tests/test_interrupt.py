"""SIGINT/SIGTERM during a real stage: runs KILLED, previous results intact, exit 130/143; --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, tiny_params

from gradlab.tracking import Tracker

# the parts of studies/gd/tiny.yaml before the network grid made smaller (the signal comes during that grid)
FAST_START = ["gd.threshold.steps=50", "gd.rules.steps=20", "gd.one_step.starts=20", "gd.one_step.sign_steps=40",
              "gd.mlp_threshold.seeds=1"]  # fmt: skip
LONG = [a for s in [*FAST_START, "gd.mlp.steps=100000", "gd.lr_grid.num=2"] for a in ("--set", s)]
# previous results to keep: any will do
PREVIOUS = [*FAST_START, "gd.mlp.steps=5", "gd.lr_grid.num=2", "gd.seeds=1", "gd.sharpness.steps=5"]


def _start(params, workers: str):
    return subprocess.Popen(
        [sys.executable, "pipelines/gd.py", "--params", str(params), *LONG],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, GRADLAB_WORKERS=workers),
    )


def _wait_for_child_run(tracker: Tracker, proc, timeout=300.0):
    """Until the new invocation has finished its rules (its long network lr grid is then running)."""
    before = {r.info.run_id for r in tracker.runs("gradlab/gd")}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        new = [r for r in tracker.runs("gradlab/gd") if r.info.run_id not in before]
        if any(r.info.run_name.startswith("random__") for r in new):
            time.sleep(1.0)
            return
        time.sleep(0.3)
    raise AssertionError("stage never started")


@pytest.mark.slow
def test_signal_marks_runs_killed_and_keeps_previous_results(store, tmp_path, monkeypatch):
    """SIGINT with the network grid on a pool of 2 trial workers (spawned processes); SIGTERM, with the trials in
    the stage's own process, is sent in test_resume_continues_the_same_run."""
    from gradlab.runner import run_stage

    params = tiny_params(tmp_path, "gd")
    with monkeypatch.context() as env:
        env.setenv("GRADLAB_WORKERS", "1")  # no pool to start for the previous results
        assert run_stage("gd", PREVIOUS, params_file=params) == 0
    previous = (tmp_path / "results" / "gd" / "metrics.json").read_text()

    tracker = Tracker(store)
    proc = _start(params, "2")
    _wait_for_child_run(tracker, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err

    assert (tmp_path / "results" / "gd" / "metrics.json").read_text() == previous
    assert not list((tmp_path / "results" / ".staging").iterdir())
    statuses = [r.info.status for r in tracker.runs("gradlab/gd")]
    assert "RUNNING" not in statuses
    assert statuses.count("KILLED") >= 1


@pytest.mark.slow
def test_resume_continues_the_same_run(store, tmp_path, monkeypatch):
    from gradlab.runner import run_stage

    monkeypatch.setenv("GRADLAB_WORKERS", "1")  # the trials in the stage's process (the SIGINT test uses a pool)
    params = tiny_params(tmp_path, "gd")
    medium = [*FAST_START, "gd.mlp.steps=1500", "gd.lr_grid.num=2"]
    tracker = Tracker(store)
    proc = subprocess.Popen(
        [sys.executable, "pipelines/gd.py", "--params", str(params), *(a for m in medium for a in ("--set", m))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_child_run(tracker, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not (tmp_path / "results" / "gd").exists()  # nothing published
    assert not list((tmp_path / "results" / ".staging").iterdir())
    statuses = [r.info.status for r in tracker.runs("gradlab/gd")]
    assert "RUNNING" not in statuses and statuses.count("KILLED") >= 1
    marker = json.loads((tmp_path / "results" / ".checkpoints" / "gd" / "run.json").read_text())

    assert run_stage("gd", [*medium, "gd.seeds=1"], params_file=params, resume=True) == 2  # params changed
    assert run_stage("gd", medium, params_file=params, resume=True) == 0
    parents = [r for r in tracker.runs("gradlab/gd") if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_id for r in parents] == [marker["run_id"]]
    assert parents[0].info.status == "FINISHED"
    assert not (tmp_path / "results" / ".checkpoints" / "gd").exists()
    assert (tmp_path / "results" / "gd" / "metrics.json").exists()


def test_resume_without_a_checkpoint_is_bad_input(store, tmp_path):
    from gradlab.runner import run_stage

    params = tiny_params(tmp_path, "gd")
    assert run_stage("gd", params_file=params, resume=True) == 2
    assert Tracker(store).runs("gradlab/gd") == []
