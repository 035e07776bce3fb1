"""gradlab tune: the space file, the pruning hook, the results, and end to end on a tiny pg_cartpole.

End to end (slow): trials are MLflow child runs of one parent ``tune__<name>``; an aggressive median
pruner prunes some; Ctrl-C ends the running trial KILLED and rerunning the command continues the same
study (the killed point is run again); two processes sharing a PostgreSQL study, one of them on Ray.
"""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import gradlab, tiny_params

from gradlab.config import ConfigError
from gradlab.tune import TrialPruned, report
from gradlab.tune import space as sp
from gradlab.tune import study as st
from gradlab.tune.report import ENV, PRUNED_AT

# studies/pg/tiny.yaml (pg_cartpole) with one inner trial of 20 games (10 updates of 2): ~1-3 s once a worker has torch
SPACE = {
    "stage": "pg_cartpole",
    "objective": {"key": "variants.correct.final_return_mean", "direction": "maximize"},
    "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 3},
    "pruner": {"name": "median", "n_startup_trials": 1},  # prunes from the second trial on
    "trials": 4,
    "fixed": {"variants": ["correct"], "seeds": 1, "updates": 10, "episodes_per_update": 2, "workers": 1},
    "params": {"optimizer.lr": {"low": 1.0e-3, "high": 5.0, "log": True}, "hidden": {"choices": [4, 16]}},
}


def write_space(tmp_path: Path, changes: dict | None = None, drop: tuple = (), name: str = "space.yaml") -> Path:
    data = json.loads(json.dumps(SPACE))
    for key in drop:
        data.pop(key)
    for key, value in (changes or {}).items():
        node = data
        *parents, last = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- fast: the space file
def test_a_good_space_reads_and_validates(tmp_path):
    params = tiny_params(tmp_path, "pg_cartpole")
    space = sp.read(write_space(tmp_path, {"fixed/optimizer": {"name": "adam"}}))
    assert space.name == "pg_cartpole" and space.trials == 4
    assert space.fixed["optimizer.name"] == "adam"  # nested fixed values become dotted keys
    assert space.params["optimizer.lr"] == {"low": 0.001, "high": 5.0, "log": True, "step": None, "type": "float"}
    sp.validate_against_stage(space, params.read_text())
    assert space.sets({"optimizer.lr": 0.01, "hidden": 16})[-2:] == [
        "pg_cartpole.optimizer.lr=0.01",
        "pg_cartpole.hidden=16",
    ]
    dists = space.distributions()
    assert dists["optimizer.lr"].log and list(dists["hidden"].choices) == [4, 16]
    # the command line wins over the file
    again = sp.read(write_space(tmp_path), trials=9, objective="seeds", direction="minimize", name="other")
    assert (again.trials, again.objective["key"], again.objective["direction"], again.name) == (
        9,
        "seeds",
        "minimize",
        "other",
    )


@pytest.mark.parametrize(
    "changes, drop, key, words",
    [
        ({"sampel": {"name": "tpe"}}, (), "sampel", "unknown key"),
        ({"stage": "nope"}, (), "stage", "unknown stage 'nope'"),
        ({"objective/direction": "up"}, (), "objective.direction", "minimize"),
        ({}, ("trials",), "trials", "required"),
        ({"trials": 0}, (), "trials", "greater than or equal to 1"),
        ({"sampler/name": "cmaes"}, (), "sampler.name", "tpe"),
        ({"sampler": {"name": "random", "n_startup_trials": 3}}, (), "sampler.n_startup_trials", "tpe sampler only"),
        ({"pruner/reduction_factor": 3}, (), "pruner.reduction_factor", "not an option of the median pruner"),
        ({"params/hidden": {"low": 64, "high": 8}}, (), "params.hidden.high", "must be above low"),
        ({"params/hidden": {"low": 8, "high": 64.5, "type": "int"}}, (), "params.hidden.high", "integer bounds"),
        ({"params/hidden": {"choices": [4, 16], "low": 4}}, (), "params.hidden.low", "not both"),
        ({"params/hidden": {"choices": [4, 4]}}, (), "params.hidden.choices", "repeated value"),
        ({"params/hidden": {"low": 4}}, (), "params.hidden.high", "required"),
        ({"params/optimizer.lr": {"low": 0.0, "high": 1.0, "log": True}}, (), "params.optimizer.lr.low", "log: true"),
        ({"params/seeds": {"low": 1, "high": 3}}, (), "params.seeds", "also in fixed"),
        ({"enqueue": [{"hiddn": 4}]}, (), "enqueue.0.hiddn", "not a searched parameter"),
    ],
)
def test_malformed_space_is_refused_naming_the_key(tmp_path, changes, drop, key, words):
    with pytest.raises(ConfigError) as err:
        sp.read(write_space(tmp_path, changes, drop))
    assert err.value.key == key and words in err.value.message, str(err.value)


@pytest.mark.parametrize(
    "changes, key, words",
    [
        ({"params/optimizer.lrr": {"low": 0.1, "high": 1.0}}, "params.optimizer.lrr", "not a parameter of pg_cartpole"),
        ({"params/optimizer.lr": {"low": 0.1, "high": 20.0}}, "params.optimizer.lr.high", "less than or equal to 10"),
        ({"params/hidden": {"choices": [0, 8]}}, "params.hidden.choices.0", "0 is refused"),
        ({"params/hidden": {"low": 4.0, "high": 16.0}}, "params.hidden.low", "valid integer"),
        ({"fixed/seeds": 0}, "fixed.seeds", "greater than or equal to 1"),
        ({"fixed/variants": ["correct", "nope"]}, "fixed", "must be one of"),
        ({"enqueue": [{"hidden": 8}]}, "enqueue.0.hidden", "outside params.hidden"),
        # with final_episodes 4 and the others at 4, each bound alone passes; both lowest give 1 * 1 = 1 episode
        (
            {
                "fixed": {"variants": ["correct"], "final_episodes": 4, "updates": 4, "episodes_per_update": 4},
                "params": {"seeds": {"low": 1, "high": 2}},
            },
            "",
            "",
        ),
        (
            {
                # no grad J checkpoints (the tiny ones, after 0 and 3 updates, refuse updates=1 on its own)
                "fixed": {"variants": ["correct"], "final_episodes": 4, "gradient_at": []},
                "params": {"updates": {"low": 1, "high": 4}, "episodes_per_update": {"low": 1, "high": 4}},
            },
            "params",
            "the lowest values together (updates=1, episodes_per_update=1) are refused",
        ),
    ],
)
def test_space_values_the_stage_refuses_are_named(tmp_path, changes, key, words):
    params = tiny_params(tmp_path, "pg_cartpole")
    text = (
        params.read_text()
        .replace("updates: 3", "updates: 4")
        .replace("episodes_per_update: 1", "episodes_per_update: 4")
    )
    space = sp.read(write_space(tmp_path, changes))
    if not key:  # the control: a space the stage accepts
        sp.validate_against_stage(space, text)
        return
    with pytest.raises(ConfigError) as err:
        sp.validate_against_stage(space, text)
    assert err.value.key == key and words in err.value.message, str(err.value)


def test_bad_space_exits_2_with_one_line_and_writes_nothing(store, tmp_path):
    params = tiny_params(tmp_path, "pg_cartpole")
    bad = write_space(tmp_path, {"params/optimizer.lr": {"low": 0.1, "high": 20.0}})
    db = Path(store.removeprefix("sqlite:///"))
    before = db.read_bytes()
    out = gradlab("tune", str(bad), "--params", str(params), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: params.optimizer.lr.high: 20.0 is refused"), out.stderr
    assert not (tmp_path / "results").exists()  # no results folder, no study storage
    assert db.read_bytes() == before  # no MLflow experiment or run


# --------------------------------------------------------------------------- fast: the hook
def test_report_is_a_noop_outside_a_trial(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    report(0, math.nan)  # nothing to talk to, nothing raised


def test_pruned_is_an_interrupt_that_crosses_processes():
    exc = pickle.loads(pickle.dumps(TrialPruned(7, 1.5)))
    assert isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Exception)
    assert (exc.step, exc.value) == (7, 1.5)


def _trial_env(study, trial, pruner: dict) -> str:
    return json.dumps(
        {
            "storage": study._storage._backend.url,
            "study": study.study_name,
            "trial_id": trial._trial_id,
            "number": trial.number,
            "pruner": pruner,
        }  # fmt: skip
    )


def test_report_records_the_value_and_prunes_a_worse_trial(tmp_path, monkeypatch):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = {"name": "median", "n_startup_trials": 1}
    study = optuna.create_study(storage=url, study_name="s", direction="minimize", pruner=st.make_pruner(pruner))
    first = study.ask()
    for step, value in enumerate([3.0, 2.0, 1.0]):  # frames until a threshold: lower is better
        first.report(value, step)
    study.tell(first, 1.0)

    second = study.ask()
    monkeypatch.setenv(ENV, _trial_env(study, second, pruner))
    report(0, -3.0, higher_is_better=True)  # a return of -3 on a minimize study: stored as +3, equal to the first
    with pytest.raises(TrialPruned) as err:
        report(1, -2.5, higher_is_better=True)  # +2.5 > the first trial's 2.0 at step 1: worse than the median
    assert err.value.step == 1
    frozen = study._storage.get_trial(second._trial_id)
    assert frozen.intermediate_values == {0: 3.0, 1: 2.5}
    assert frozen.user_attrs[PRUNED_AT] == 1 and frozen.user_attrs[st.SIGN] == -1.0
    assert st.intermediate(frozen) == (1, -2.5)  # shown in the stage's own units


# --------------------------------------------------------------------------- fast: results from a study
def test_results_table_summary_best_and_figure_from_a_study(tmp_path):
    import optuna

    from gradlab.tune.tables import write_all

    params = tiny_params(tmp_path, "pg_cartpole")
    space = sp.read(write_space(tmp_path, {"trials": 6}))
    study = st.open_study(space, f"sqlite:///{tmp_path / 'study.db'}", params.read_text())
    dists = space.distributions()
    for i, (lr, hidden, outcome) in enumerate(
        [(0.01, 4, 30.0), (0.1, 16, 45.0), (1.0, 4, "pruned"), (0.02, 16, "fail"), (0.3, 16, 20.0), (0.05, 4, "killed")]
    ):
        study.enqueue_trial({"optimizer.lr": lr, "hidden": hidden})
        trial = st.ask(study, dists)
        trial.report(10.0 + i, 2)
        if outcome == "pruned":
            trial.set_user_attr(PRUNED_AT, 2)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif outcome == "fail":
            trial.set_user_attr(st.REASON, "the stage exited 1")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif outcome == "killed":
            st.mark_killed(study, study._storage.get_trial(trial._trial_id))
        else:
            study.tell(trial, outcome)
    write_all(study, space, tmp_path, params.read_text(), {"storage": "sqlite:///x", "parent_run": "abc"})

    rows = pd.read_csv(tmp_path / "trials.csv")
    assert list(rows["state"]) == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL", "COMPLETE", "KILLED", "WAITING"]
    assert rows.loc[6, "retry_of"] == 5 and rows.loc[6, "params.optimizer.lr"] == 0.05  # the killed point, queued
    assert rows.loc[2, "pruned_at_step"] == 2 and math.isnan(rows.loc[2, "objective"])
    assert rows.loc[3, "reason"] == "the stage exited 1"
    summary = (tmp_path / "summary.md").read_text()
    assert "3 COMPLETE, 1 PRUNED, 1 FAIL, 1 KILLED" in summary and "Best: trial 1" in summary
    assert "Parameter importance (PED-ANOVA" in summary
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["pg_cartpole"]["optimizer"]["lr"] == 0.1 and best["pg_cartpole"]["hidden"] == 16
    assert best["pg_cartpole"]["variants"] == ["correct"]  # the whole resolved section: a complete parameter file
    from gradlab.runner import resolve_params

    resolve_params("pg_cartpole", [], tmp_path / "best.yaml")
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    assert st.counts(study).done == 5  # killed trials do not count against the budget


def test_a_changed_space_is_refused_before_anything_runs(store, tmp_path, monkeypatch, capsys):
    from gradlab.tune.command import tune

    params = tiny_params(tmp_path, "pg_cartpole")
    space = sp.read(write_space(tmp_path))
    folder = tmp_path / "results" / "tune" / "pg_cartpole"
    folder.mkdir(parents=True)
    st.open_study(space, st.default_storage(folder), params.read_text())
    changed = write_space(tmp_path, {"objective/key": "variants.correct.improvement_mean", "trials": 10})
    assert tune(changed, params_file=params) == 2
    err = capsys.readouterr().err.strip()
    assert "differs from the study 'pg_cartpole'" in err and "(objective)" in err and "--name" in err
    assert len(err.splitlines()) == 1


# --------------------------------------------------------------------------- end to end
def _runs(store: str):
    from gradlab.tracking import Tracker

    tracker = Tracker(store)
    runs = tracker.runs("gradlab/pg_cartpole")
    parents = [r for r in runs if r.data.tags.get("gradlab.tune.role") == "parent"]
    trials = [r for r in runs if "gradlab.tune.trial" in r.data.tags]
    return tracker, runs, parents, trials


@pytest.mark.slow
def test_trials_are_child_runs_of_one_parent_and_some_are_pruned(store, tmp_path):
    params = tiny_params(tmp_path, "pg_cartpole")
    out = gradlab("tune", str(write_space(tmp_path)), "--params", str(params), "--workers", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = tmp_path / "results" / "tune" / "pg_cartpole"
    rows = pd.read_csv(folder / "trials.csv")
    assert len(rows) == 4 and rows.loc[0, "state"] == "COMPLETE"  # the pruner needs one COMPLETE trial first
    assert (rows["state"] == "PRUNED").any(), rows.to_string()
    assert set(rows["state"]) <= {"COMPLETE", "PRUNED"}
    assert rows["pruned_at_step"].dropna().ge(2).all()  # steps are games played

    tracker, runs, parents, trials = _runs(store)
    (parent,) = parents
    assert parent.info.run_name == "tune__pg_cartpole" and parent.info.status == "FINISHED"
    assert len(trials) == 4 and all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials)
    for t in trials:
        row = rows[rows["number"] == int(t.data.tags["gradlab.tune.trial"])].iloc[0]
        assert t.info.run_id == row["run_id"]
        assert float(t.data.params["optimizer.lr"]) == pytest.approx(row["params.optimizer.lr"])  # full resolved
        assert t.data.params["hidden"] == str(row["params.hidden"]) and t.data.params["updates"] == "10"
        pruned = row["state"] == "PRUNED"
        assert t.data.tags["gradlab.tune.state"] == ("pruned" if pruned else "complete")
        assert t.info.status == ("KILLED" if pruned else "FINISHED")
        if not pruned:
            assert t.data.metrics["tune/objective"] == pytest.approx(row["objective"])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert parent.data.metrics["tune/complete"] + parent.data.metrics["tune/pruned"] == 4
    artifacts = {f.path for f in tracker.client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "summary.md", "best.yaml", "figure.png"} <= artifacts
    assert (folder / "figure.png").stat().st_size > 10_000 and (folder / "study.db").exists()


def _wait_for(predicate, timeout: float, what: str, proc):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"gradlab tune exited ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.mark.slow
def test_sigint_then_rerun_continues_the_same_study(store, tmp_path):
    import optuna

    params = tiny_params(tmp_path, "pg_cartpole")
    # no pruning and 100 updates (200 games): trial 1 is still running when it is interrupted
    space = write_space(tmp_path, {"pruner": {"name": "none"}, "trials": 2, "fixed/updates": 100})
    cmd = [sys.executable, "-m", "gradlab.cli", "tune", str(space), "--params", str(params), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    folder = tmp_path / "results" / "tune" / "pg_cartpole"
    try:
        _wait_for(lambda: (folder / "metrics" / "0.json").exists(), 300, "trial 0", proc)

        def trial_1_running() -> bool:
            return any(t.info.status == "RUNNING" and t.data.tags["gradlab.tune.trial"] == "1" for t in _runs(store)[3])

        _wait_for(trial_1_running, 120, "trial 1 to start", proc)
        proc.send_signal(signal.SIGINT)  # to the tuner only: it interrupts its worker
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"gradlab tune did not stop after Ctrl-C:\n{err[-3000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert f"Continue with: gradlab tune {space}" in err
    _, runs, (parent,), trials = _runs(store)
    assert sorted((t.data.tags["gradlab.tune.trial"], t.info.status) for t in trials) == [
        ("0", "FINISHED"), ("1", "KILLED")
    ]  # fmt: skip
    assert not [r for r in runs if r.info.status == "RUNNING"] and parent.info.status == "KILLED"
    rows = pd.read_csv(folder / "trials.csv")
    assert list(rows["state"]) == ["COMPLETE", "KILLED", "WAITING"]  # the killed point is queued again
    killed_lr = rows.loc[1, "params.optimizer.lr"]

    out = gradlab("tune", str(space), "--params", str(params), "--workers", "1", cwd=tmp_path)  # the same command
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1/2 trials done, 1 killed earlier" in out.stderr
    assert optuna.study.get_all_study_names(st.default_storage(folder)) == ["pg_cartpole"]  # one study, continued
    rows = pd.read_csv(folder / "trials.csv")
    assert list(rows["state"]) == ["COMPLETE", "KILLED", "COMPLETE"]
    assert rows.loc[2, "retry_of"] == 1 and rows.loc[2, "params.optimizer.lr"] == killed_lr  # nothing lost
    _, runs, parents, trials = _runs(store)
    assert [p.info.run_id for p in parents] == [parent.info.run_id]  # the same parent run, reopened and ended
    assert parents[0].info.status == "FINISHED"
    assert all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials) and len(trials) == 3
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_two_tuners_share_one_study_in_postgresql_one_of_them_on_ray(store, tmp_path):
    """Two `gradlab tune` processes on one PostgreSQL study: one budget, one parent run, no trial twice. The first
    runs its trials as Ray tasks (a local Ray instance), the second on the local pool.

    Where PostgreSQL is not installed (CI installs it: .ci/run), the Ray tuner runs alone on its default storage,
    so that the Ray backend is still checked."""
    from test_sweep import _pg_bin, postgres_cluster

    params = tiny_params(tmp_path, "pg_cartpole")
    space = write_space(tmp_path, {"trials": 4, "pruner": {"name": "none"}})
    cmd = [sys.executable, "-m", "gradlab.cli", "tune", str(space), "--params", str(params), "--workers", "1"]
    ray = ["--backend", "ray"] if importlib.util.find_spec("ray") else []
    if not (_pg_bin("initdb") and _pg_bin("pg_ctl")):
        if not ray:
            pytest.skip("neither PostgreSQL nor Ray is installed")
        alone = subprocess.run([*cmd, *ray], capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert alone.returncode == 0 and "(ray, 1 workers)" in alone.stderr, alone.stderr[-3000:]
        rows = pd.read_csv(tmp_path / "results" / "tune" / "pg_cartpole" / "trials.csv")
        assert list(rows["state"]) == ["COMPLETE"] * 4
        _, _, (parent,), trials = _runs(store)
        assert len(trials) == 4 and all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials)
        return
    with postgres_cluster() as pg:
        cmd += ["--storage", pg]
        first = subprocess.Popen([*cmd, *ray], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            _wait_for(lambda: _runs(store)[3], 300, "the first trial", first)  # the parent exists: join it
            second = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
            _, err = first.communicate(timeout=600)
        finally:
            if first.poll() is None:
                first.kill()
        assert first.returncode == 0, err[-3000:]
        assert second.returncode == 0, second.stderr[-3000:]
        if ray:
            assert "(ray, 1 workers)" in err, err[-3000:]
            assert "(ray," not in second.stderr
        import optuna

        study = optuna.load_study(study_name="pg_cartpole", storage=pg)
        done = [t for t in study.trials if t.state.is_finished()]
        assert 4 <= len(done) <= 5 and all(t.state.name == "COMPLETE" for t in done)  # at most one extra in flight
    _, runs, (parent,), trials = _runs(store)
    assert len(trials) == len(done) and all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials)
    assert len({t.data.tags["gradlab.tune.trial"] for t in trials}) == len(trials)
    assert not (tmp_path / "results" / "tune" / "pg_cartpole" / "study.db").exists()  # the study lives in PostgreSQL


def test_tune_is_a_command():
    out = gradlab("tune", "--help")
    assert out.returncode == 0 and "--storage" in out.stdout and "Search a stage's parameters" in out.stdout
