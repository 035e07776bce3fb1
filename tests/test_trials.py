"""The one trial engine (gradlab.trials.run_trials) and its pool (gradlab.pool): order, results, child runs, errors,
stray runs."""

from __future__ import annotations

import os
import time

import pytest

from gradlab.pool import Pool, WorkerDied
from gradlab.tracking import Tracker
from gradlab.trials import Child, Runs, current_run, run_trials


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def die_on_two(x: int) -> int:
    if x == 2:
        os._exit(7)
    return x


def streamed(x: int) -> dict:
    """A trial that logs to its own run while it runs (as pg's trials stream their games)."""
    run = current_run()
    assert run is not None
    run.log_metrics({"live/x": x})
    run.flush()
    time.sleep(0.05)
    return {"x": x, "pid": os.getpid(), "run": run.id}


def log_result(run, spec: int, result: dict) -> None:
    run.log_metrics({"result/x": result["x"]})


def child(x: int) -> Child:
    return Child(f"v{x}", x, {"lr": 0.1 * x}, {"gradlab.extra": "yes"})


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_the_order_of_the_specs_whatever_ran_first(workers):
    started: list[int] = []
    assert run_trials(square, [1, 2, 3, 4], workers=workers, cost=float, on_result=lambda s, r: started.append(s)) == [
        1,
        4,
        9,
        16,
    ]
    if workers == 1:
        assert started == [4, 3, 2, 1]  # the longest first


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_trial_is_raised_or_handed_to_on_error(workers):
    with pytest.raises(ValueError, match="three"):
        run_trials(fail_on_three, [1, 2, 3, 4], workers=workers)
    errors: list = []
    out = run_trials(fail_on_three, [1, 2, 3, 4], workers=workers, on_error=lambda s, e: errors.append((s, str(e))))
    assert out == [1, 2, 4] and errors == [(3, "three")]


def test_a_worker_that_dies_is_a_failed_trial_and_the_others_go_on():
    errors: list = []
    out = run_trials(die_on_two, [1, 2, 3], pool=Pool(2), on_error=lambda s, e: errors.append((s, type(e))))
    assert out == [1, 3] and errors == [(2, WorkerDied)]


def test_a_pool_takes_a_new_job_only_when_a_worker_is_free():
    done: list[int] = []
    ahead: list[int] = []

    def jobs():
        for x in range(5):
            ahead.append(x - len(done))  # jobs taken and not done yet when this one is taken
            yield x

    Pool(2).run(square, jobs(), lambda job, r: done.append(job))
    assert sorted(done) == [0, 1, 2, 3, 4] and max(ahead) <= 1  # never more than the two workers' jobs


@pytest.mark.parametrize("workers", [1, 2])
def test_each_trial_has_its_child_run_open_while_it_runs(store, workers):
    tracker = Tracker(store)
    parent = tracker.start_run("gradlab/engine", "stage")
    runs = Runs(store, "gradlab/engine", parent.id, {"gradlab.stage": "engine"})
    before = time.time()
    out = run_trials(streamed, [1, 2, 3], workers=workers, runs=runs, child=child, log=log_result, tracker=tracker)
    assert [o["x"] for o in out] == [1, 2, 3]
    assert len({o["pid"] for o in out} - {os.getpid()}) == (0 if workers == 1 else workers)
    children = {r.info.run_name: r for r in tracker.runs("gradlab/engine", f"tags.mlflow.parentRunId = '{parent.id}'")}
    assert sorted(children) == ["v1__seed1", "v2__seed2", "v3__seed3"]
    for o in out:
        run = children[f"v{o['x']}__seed{o['x']}"]
        assert run.info.run_id == o["run"] and run.info.status == "FINISHED"
        assert run.data.metrics == {"live/x": o["x"], "result/x": o["x"]}
        assert run.data.params["lr"] == str(0.1 * o["x"]) and run.data.params["variant"] == f"v{o['x']}"
        assert run.data.tags["gradlab.extra"] == "yes" and run.data.tags["gradlab.stage"] == "engine"
        assert before * 1000 <= run.info.start_time <= run.info.end_time - 50  # the trial's real start and end


def test_runs_left_running_under_the_parent_are_ended_once_the_trials_are_over(store):
    tracker = Tracker(store)
    parent = tracker.start_run("gradlab/engine", "stage")
    other = tracker.start_run("gradlab/engine", "another stage")
    stray = tracker.start_run("gradlab/engine", "stray", parent=parent.id)
    below = tracker.start_run("gradlab/engine", "below the stray", parent=stray.id)
    theirs = tracker.start_run("gradlab/engine", "another stage's trial", parent=other.id)
    run_trials(square, [1], workers=1, runs=Runs(store, "gradlab/engine", parent.id), tracker=tracker)
    status = {r.info.run_name: r.info.status for r in tracker.runs("gradlab/engine")}
    assert status["stray"] == status["below the stray"] == "FAILED"
    assert status["stage"] == status["another stage"] == status["another stage's trial"] == "RUNNING"
    assert {stray.id, below.id} and theirs.id  # ids used


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_an_interrupt_stops_the_workers_and_ends_their_runs_killed(store):
    tracker = Tracker(store)
    parent = tracker.start_run("gradlab/engine", "stage")
    runs = Runs(store, "gradlab/engine", parent.id)

    def interrupt(spec, result):
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_trials(
            sleep_for,
            [0.01, 60.0, 60.0],
            workers=2,
            runs=runs,
            child=lambda s: Child("sleep", int(s)),
            tracker=tracker,
            on_result=interrupt,
        )
    assert time.monotonic() - started < 50  # the 60 s trial was not waited for
    status = {
        r.info.run_name: r.info.status
        for r in tracker.runs("gradlab/engine", f"tags.mlflow.parentRunId = '{parent.id}'")
    }
    assert status.get("sleep__seed0") == "FINISHED" and set(status) <= {"sleep__seed0", "sleep__seed60"}
    assert status.get("sleep__seed60", "KILLED") == "KILLED"  # opened by a worker that was stopped: ended here
