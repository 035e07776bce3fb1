"""SIGINT/SIGTERM during a real stage: runs KILLED, previous results intact, exit 130/143; --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, tiny_params

from gradlab.tracking import Tracker

LONG = ["--set", "gd.mlp.steps=100000", "--set", "gd.lr_grid.num=2"]


def _start(params, *extra):
    return subprocess.Popen(
        [sys.executable, "pipelines/gd.py", "--params", str(params), *LONG, *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_child_run(tracker: Tracker, proc, timeout=120.0):
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
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_marks_runs_killed_and_keeps_previous_results(store, tmp_path, sig, code):
    from gradlab.runner import run_stage

    params = tiny_params(tmp_path, "gd")
    assert run_stage("gd", params_file=params) == 0
    previous = (tmp_path / "results" / "gd" / "metrics.json").read_text()

    tracker = Tracker(store)
    proc = _start(params)
    _wait_for_child_run(tracker, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err

    assert (tmp_path / "results" / "gd" / "metrics.json").read_text() == previous
    assert not list((tmp_path / "results" / ".staging").iterdir())
    statuses = [r.info.status for r in tracker.runs("gradlab/gd")]
    assert "RUNNING" not in statuses
    assert statuses.count("KILLED") >= 1


@pytest.mark.slow
def test_resume_continues_the_same_run(store, tmp_path):
    from gradlab.runner import run_stage

    params = tiny_params(tmp_path, "gd")
    medium = ["gd.mlp.steps=1500", "gd.lr_grid.num=2"]
    tracker = Tracker(store)
    proc = subprocess.Popen(
        [sys.executable, "pipelines/gd.py", "--params", str(params), *(a for m in medium for a in ("--set", m))],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_child_run(tracker, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
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
