"""gradlab sweep: grid x seeds -> trials on a process pool and on Ray, through MLflow servers, and the DVC queue."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, gradlab, tiny_params

from gradlab.config import ConfigError
from gradlab.sweep import expand, parse_grid, plot, split_values, summary_table, sweep
from gradlab.tracking import Tracker

# tests/tiny/gd.yaml made smaller still: one trial is ~1-3 s of CPU once the worker has imported torch
TINY = [
    "gd.threshold.steps=50",
    "gd.rules.names=[gradient]",
    "gd.rules.steps=20",
    "gd.mlp.steps=5",
    "gd.lr_grid.num=2",
    "gd.seeds=1",
    "gd.sharpness.lrs=[0.2]",
    "gd.sharpness.steps=5",
    "gd.sharpness.every=5",
    "gd.sharpness.power_iters=2",
]
SETS = [a for s in TINY for a in ("--set", s)]
METRIC = "rules.gradient.final_loss"
LR_KEY = "gd.rules.lr_times_lambda_max"


# --------------------------------------------------------------------------- fast: grid, validation, tables
def test_grid_values_split_and_expand():
    assert split_values("0.1, 1,[a,b],'x,y'") == ["0.1", "1", "[a,b]", "'x,y'"]
    grid = parse_grid("gd", [f"{LR_KEY}=0.5,1", "gd.rules.names=[gradient],[gradient,sign]"])
    assert grid == [(LR_KEY, [0.5, 1]), ("gd.rules.names", [["gradient"], ["gradient", "sign"]])]
    trials = expand("gd", grid, ["gd.seeds=1"], [3, 4])
    assert len(trials) == 2 * 2 * 2
    assert [t.index for t in trials] == list(range(8))
    assert [t.seed for t in trials[:4]] == [3, 4, 3, 4]  # seeds vary fastest
    t = trials[3]
    assert t.name == 'rules.lr_times_lambda_max=0.5,rules.names=["gradient","sign"]__seed4'
    assert t.sets == ("gd.seeds=1", f"{LR_KEY}=0.5", 'gd.rules.names=["gradient", "sign"]', "gd.seed=4")


@pytest.mark.parametrize(
    "items, key, words",
    [
        (["gd.lr"], "gd.lr", "key.path=v1,v2"),
        (["mdn.lr=1,2"], "mdn.lr", "must start with the stage name"),
        (["gd.seed=1,2"], "gd.seed", "--seeds"),
        ([f"{LR_KEY}=1", f"{LR_KEY}=2"], LR_KEY, "two --grid"),
        ([f"{LR_KEY}=1,1"], LR_KEY, "repeated value"),
        ([f"{LR_KEY}=1,,2"], LR_KEY, "empty value"),
    ],
)
def test_malformed_grids_are_refused(items, key, words):
    with pytest.raises(ConfigError) as err:
        parse_grid("gd", items)
    assert err.value.key == key and words in err.value.message


def test_bad_grid_value_exits_2_naming_the_key_and_creates_nothing(store, tmp_path):
    params = tiny_params(tmp_path, "gd")
    out = gradlab("sweep", "gd", "--params", str(params), "--grid", f"{LR_KEY}=0.5,-1", "--seeds", "2")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {LR_KEY}: Input should be greater than 0"), lines
    assert not (tmp_path / "results").exists()
    assert Tracker(store).client.get_experiment_by_name("gradlab/gd") is None


def test_bad_input_anywhere_exits_2_before_any_run(store, tmp_path, capsys, monkeypatch):
    params = tiny_params(tmp_path, "gd")
    cases = [
        ({"grid": [f"{LR_KEY}=1"], "sets": ["gd.bogus=1"]}, "gd.bogus: unknown key"),
        ({"grid": ["gd.lr_grid.min=0.1,20"]}, "gd.lr_grid: min (20.0) must be smaller than max"),
        ({"grid": [f"{LR_KEY}=1"], "workers": 0}, "--workers: must be at least 1"),
        ({"grid": [f"{LR_KEY}=1"], "backend": "slurm"}, "--backend: must be one of local, ray"),
        ({"grid": [f"{LR_KEY}=1"], "address": "auto"}, "--address: only with --backend ray"),
        ({"grid": [f"{LR_KEY}=1"], "seeds": 0}, "--seeds: must be at least 1"),
        ({"resume": "gd-nope"}, "--resume: no sweep 'gd-nope'"),
    ]
    for kwargs, message in cases:
        stage = None if "resume" in kwargs else "gd"
        assert sweep(stage, params_file=params, **kwargs) == 2, kwargs
        assert message in capsys.readouterr().err, kwargs
    with monkeypatch.context() as env:
        env.setenv("GRADLAB_CURVE_POINTS", "1")
        assert sweep("gd", [f"{LR_KEY}=1"], params_file=params) == 2
        assert "GRADLAB_CURVE_POINTS: must be 0 (every point) or an integer >= 2" in capsys.readouterr().err
    # a Ray cluster cannot write into a local sqlite file: refused, with how to start a server
    assert sweep("gd", [f"{LR_KEY}=1"], params_file=params, backend="ray", address="auto") == 2
    err = capsys.readouterr().err
    assert "must be an MLflow server" in err and "mlflow server --backend-store-uri postgresql" in err
    assert not (tmp_path / "results").exists()
    assert Tracker(store).client.get_experiment_by_name("gradlab/gd") is None


def test_table_and_figures_from_outcomes(tmp_path):
    from gradlab.sweep import SweepSpec, markdown_table

    grid = [(LR_KEY, [0.01, 1.0, 100.0]), ("gd.mlp.hidden", [4, 8])]
    trials = expand("gd", grid, [], [0, 1, 2])
    outcomes = {}
    for t in trials:
        lr, hidden = t.point[0][1], t.point[1][1]
        value = lr * hidden + t.seed  # seeds 0, 1, 2 -> mean lr*hidden + 1, sample sd 1
        outcomes[t.index] = {"status": "FINISHED", "value": value}
    outcomes[0] = {"status": "FAILED", "value": None}  # lr 0.01, hidden 4, seed 0
    spec = SweepSpec("gd", "gd-x", grid, [], 3, "m", "", "params.yaml")
    table = summary_table(spec, trials, outcomes)
    assert len(table) == 6
    first, last = table[0], table[-1]
    assert (first["finished"], first["failed"], first["n"]) == (2, 1, 2)
    assert first["mean"] == pytest.approx(0.04 + 1.5)
    assert last["mean"] == pytest.approx(800 + 1) and last["n"] == 3
    assert last["ci95_high"] is None and last["ci95_low"] is None  # 3 seeds: no "95 % CI"
    assert "| gd.rules.lr_times_lambda_max | gd.mlp.hidden |" in markdown_table(table, "# t")
    assert plot(spec, grid, table, trials, outcomes, tmp_path / "two.png").stat().st_size > 0
    one = [grid[0]]
    trials1 = expand("gd", one, [], [0, 1])
    out1 = {t.index: {"status": "FINISHED", "value": t.point[0][1] + t.seed} for t in trials1}
    spec1 = SweepSpec("gd", "gd-y", one, [], 2, "m", "", "params.yaml")
    assert plot(spec1, one, summary_table(spec1, trials1, out1), trials1, out1, tmp_path / "one.png")
    three = [*grid, ("gd.seeds", [1])]
    assert plot(spec, three, table, trials, outcomes, tmp_path / "three.png") is None


# --------------------------------------------------------------------------- helpers for end-to-end tests
def _sweep_dir(results: Path) -> Path:
    dirs = sorted((results / "sweeps").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def _check_sweep(tracker: Tracker, results: Path, n_trials: int, n_points: int) -> tuple[dict, list]:
    """One FINISHED parent, every trial a FINISHED child with all its metric points, the table."""
    sweep_dir = _sweep_dir(results)
    runs = tracker.runs("gradlab/gd")
    parents = [r for r in runs if r.data.tags.get("gradlab.sweep.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["gradlab.sweep_id"] == sweep_dir.name
    assert parent.data.metrics["sweep/finished"] == n_trials
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n_trials
    assert sorted(int(c.data.tags["gradlab.sweep.trial"]) for c in children) == list(range(n_trials))
    for child in children:
        assert child.info.status == "FINISHED", child.info.run_name
        assert child.data.tags["gradlab.sweep_id"] == sweep_dir.name
        assert child.data.params["rules.steps"] == "20"  # the full resolved config
        assert child.data.params["seed"] == child.data.tags["gradlab.seed"]
        assert child.info.run_name.endswith(f"__seed{child.data.tags['gradlab.seed']}")
        trial_metrics = json.loads(
            (sweep_dir / "trials" / child.data.tags["gradlab.sweep.trial"] / "metrics.json").read_text()
        )
        assert child.data.metrics[METRIC] == pytest.approx(trial_metrics["rules"]["gradient"]["final_loss"])
        grand = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == child.info.run_id]
        assert grand and all(g.info.status == "FINISHED" for g in grand)
        (rule,) = [g for g in grand if g.info.run_name.startswith("gradient__")]
        history = tracker.client.get_metric_history(rule.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(21))  # every point of the 20-step curve
    assert not [r for r in runs if r.info.status == "RUNNING"]
    table = pd.read_csv(sweep_dir / "table.csv")
    assert len(table) == n_points and (table["finished"] * n_points == n_trials).all()
    assert table["mean"].notna().all()
    assert "95 %" in (sweep_dir / "table.md").read_text()
    artifacts = {f.path for f in tracker.client.list_artifacts(parent.info.run_id)}
    assert {"table.csv", "table.md", "trials.csv", "figure.png"} <= artifacts
    return parent, children


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, workdir: Path):
    """`mlflow server` on a free loopback port; yields its URL; stopped (its whole process group) after."""
    port = _free_port()
    log = open(workdir / "mlflow-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
         "--artifacts-destination", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(workdir / 'mlflow-server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_local_pool_eight_concurrent_trials_all_finished_with_every_point(store, tmp_path):
    """8 workers writing to one sqlite store at once: every run FINISHED, every metric point there."""
    params = tiny_params(tmp_path, "gd")
    grid = f"{LR_KEY}=0.25,0.5,0.75,1.0"
    out = gradlab("sweep", "gd", "--params", str(params), *SETS, "--grid", grid, "--seeds", "2",
                  "--workers", "8", "--metric", METRIC)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "8 trial(s) of gd" in out.stderr and "8/8 trials FINISHED" in out.stderr
    _check_sweep(Tracker(store), tmp_path / "results", n_trials=8, n_points=4)
    table = pd.read_csv(_sweep_dir(tmp_path / "results") / "table.csv")
    assert list(table[LR_KEY]) == [0.25, 0.5, 0.75, 1.0]
    # a larger step (still below 2/lambda_max) ends lower on the quadratic after the same 20 steps
    assert table["mean"].is_monotonic_decreasing
    assert (_sweep_dir(tmp_path / "results") / "figure.png").stat().st_size > 0


def _trial_with_a_broken_study(job: dict) -> dict:
    """Trial 1's study raises (as a bug in a study would); the others run the real code. Runs in a worker."""
    import gradlab.studies.gd.study as study
    from gradlab.sweep import run_trial

    if job["index"] != 1:
        return run_trial(job)
    real = study.run

    def broken(params, ctx):
        raise RuntimeError("injected failure in the study")

    study.run = broken
    try:
        return run_trial(job)
    finally:
        study.run = real


@pytest.mark.slow
def test_failing_trial_is_recorded_failed_and_the_sweep_goes_on(store, tmp_path, monkeypatch, capsys):
    import gradlab.sweep.executors

    monkeypatch.setattr(gradlab.sweep.executors, "run_trial", _trial_with_a_broken_study)
    params = tiny_params(tmp_path, "gd")
    code = sweep("gd", [f"{LR_KEY}=0.5,0.75,1.0"], TINY, workers=1, metric=METRIC, params_file=params)
    err = capsys.readouterr().err
    assert code == 1, err[-3000:]
    assert "1 trial(s) FAILED: rules.lr_times_lambda_max=0.75__seed0" in err
    runs = Tracker(store).runs("gradlab/gd")
    statuses = {r.data.tags["gradlab.sweep.trial"]: r.info.status for r in runs if "gradlab.sweep.trial" in r.data.tags}
    assert statuses == {"0": "FINISHED", "1": "FAILED", "2": "FINISHED"}  # trial 2 ran after the failure
    parent = [r for r in runs if r.data.tags.get("gradlab.sweep.role") == "parent"][0]
    assert parent.data.metrics["sweep/failed"] == 1 and parent.data.metrics["sweep/finished"] == 2
    trials = pd.read_csv(_sweep_dir(tmp_path / "results") / "trials.csv")
    assert list(trials["status"]) == ["FINISHED", "FAILED", "FINISHED"]
    assert "RuntimeError: injected failure in the study" in trials.loc[1, "error"]
    table = pd.read_csv(_sweep_dir(tmp_path / "results") / "table.csv")
    assert list(table["failed"]) == [0, 1, 0] and table.loc[1, "mean"] != table.loc[1, "mean"]  # NaN


def _wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"sweep exited ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.mark.slow
def test_ctrl_c_kills_running_cancels_pending_and_resume_finishes(store, tmp_path):
    params = tiny_params(tmp_path, "gd")
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlab.cli", "sweep", "gd", "--params", str(params), *SETS,
         "--grid", f"{LR_KEY}=0.5,0.75,1.0", "--workers", "1", "--metric", METRIC],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    tracker = Tracker(store)
    try:
        _wait_for(lambda: glob.glob(str(results / "sweeps/*/trials/0/metrics.json")), 240, "trial 0", proc)

        def trial_1_running():
            runs = tracker.runs("gradlab/gd", "tags.`gradlab.sweep.trial` = '1'")
            return any(r.info.status == "RUNNING" for r in runs)

        _wait_for(trial_1_running, 120, "trial 1 to start", proc)
        proc.send_signal(signal.SIGINT)  # to the sweep's main process only: it interrupts its workers
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"the sweep did not stop after Ctrl-C:\n{err[-3000:]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    sweep_id = _sweep_dir(results).name
    assert f"gradlab sweep --resume {sweep_id}" in err
    runs = tracker.runs("gradlab/gd")
    by_trial = {r.data.tags["gradlab.sweep.trial"]: r.info.status for r in runs if "gradlab.sweep.trial" in r.data.tags}
    assert by_trial == {"0": "FINISHED", "1": "KILLED"}  # trial 2 was never started
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = [r for r in runs if r.data.tags.get("gradlab.sweep.role") == "parent"][0]
    assert parent.info.status == "KILLED"

    out = gradlab("sweep", "--resume", sweep_id, "--workers", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 trial(s) already FINISHED, skipped" in out.stderr and "2 trial(s) of gd" in out.stderr
    runs = tracker.runs("gradlab/gd")
    trials = [r for r in runs if "gradlab.sweep.trial" in r.data.tags]
    assert sorted((r.data.tags["gradlab.sweep.trial"], r.info.status) for r in trials) == [
        ("0", "FINISHED"), ("1", "FINISHED"), ("1", "KILLED"), ("2", "FINISHED")
    ]  # fmt: skip
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert tracker.client.get_run(parent.info.run_id).info.status == "FINISHED"
    table = pd.read_csv(results / "sweeps" / sweep_id / "trials.csv")
    assert list(table["status"]) == ["FINISHED"] * 3 and table[METRIC].notna().all()


@pytest.mark.slow
def test_ray_backend_on_a_local_ray_instance_through_an_mlflow_server(store, tmp_path, _template_store, monkeypatch):
    """A local Ray instance (2 CPUs, no dashboard) runs the trials; they log through `mlflow server` (sqlite)."""
    pytest.importorskip("ray")
    db = tmp_path / "server.db"
    shutil.copy(_template_store, db)  # already migrated: the server starts faster
    params = tiny_params(tmp_path, "gd")
    with mlflow_server(f"sqlite:///{db}", tmp_path) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        out = gradlab("sweep", "gd", "--params", str(params), *SETS, "--grid", f"{LR_KEY}=0.5,1.0",
                      "--backend", "ray", "--workers", "2", "--metric", METRIC)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert "ray, 2 workers" in out.stderr and f"MLflow {url}" in out.stderr
        _, children = _check_sweep(Tracker(url), tmp_path / "results", n_trials=2, n_points=2)
        assert len({c.data.tags["gradlab.sweep.trial"] for c in children}) == 2
    assert list((tmp_path / "artifacts").rglob("table.md"))  # artifacts went through the server
    with contextlib.closing(sqlite3.connect(db)) as con:  # and the runs are in the server's store
        assert con.execute("select count(*) from runs where status = 'FINISHED'").fetchone()[0] >= 3


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@contextlib.contextmanager
def postgres_cluster():
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free loopback port; yields its URI."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not found); .ci/run installs it with apt-get")
    base = Path(tempfile.mkdtemp(prefix="gradlab-pg-", dir="/tmp"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as an unprivileged user
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None:
            pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
        pw = pwd.getpwnam(user)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    port = _free_port()
    data = base / "data"
    run = lambda *a: subprocess.run([*prefix, *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        res = run(initdb, "-D", str(data), "-U", "gradlab", "--auth=trust", "--no-sync", "-E", "UTF8")
        assert res.returncode == 0, res.stderr
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        res = run(pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "pg.log"), "-w", "-t", "60", "start")
        assert res.returncode == 0, res.stderr + res.stdout
        yield f"postgresql+psycopg2://gradlab@127.0.0.1:{port}/postgres"  # psycopg2-binary is a dependency
    finally:
        if data.exists():
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.mark.slow
def test_sweep_through_an_mlflow_server_with_postgresql_backend(store, tmp_path, monkeypatch):
    params = tiny_params(tmp_path, "gd")
    with postgres_cluster() as pg_uri, mlflow_server(pg_uri, tmp_path) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        out = gradlab("sweep", "gd", "--params", str(params), *SETS, "--grid", f"{LR_KEY}=0.5,1.0",
                      "--workers", "2", "--metric", METRIC)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        _check_sweep(Tracker(url), tmp_path / "results", n_trials=2, n_points=2)
        # the runs are in PostgreSQL itself, not in a file beside us
        direct = Tracker(pg_uri).runs("gradlab/gd", "tags.`gradlab.sweep.role` = 'parent'")
        assert len(direct) == 1 and direct[0].info.status == "FINISHED"


@pytest.mark.slow
def test_dvc_queue_two_experiments_log_to_the_main_store(tmp_path, _template_store):
    """`dvc exp run --queue` twice + `dvc queue start -j 2`: both in the main mlflow.db with DVC_EXP_NAME."""
    bin_dir = Path(sys.executable).parent
    dvc = str(bin_dir / "dvc")
    if not Path(dvc).exists():
        pytest.skip("dvc is not installed in this environment")
    repo = tmp_path / "repo"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GRADLAB_RESULTS", "DVC_ROOT")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")  # fmt: skip

    def sh(*args, timeout=120):
        res = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, f"{args}: {res.stdout[-1500:]}{res.stderr[-1500:]}"
        return res.stdout

    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True, timeout=120)
    from gradlab.config import apply_overrides, load_yaml

    tiny = apply_overrides(load_yaml(ROOT / "tests" / "tiny" / "gd.yaml"), TINY)
    import yaml

    (repo / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    sh("git", "commit", "--quiet", "-am", "tiny params")
    shutil.copy(_template_store, repo / "mlflow.db")  # the project's store exists before the queue runs
    sh(dvc, "exp", "run", "--queue", "gd", "-S", "gd.rules.steps=20", "-n", "tiny-a")  # the gd stage only
    sh(dvc, "exp", "run", "--queue", "gd", "-S", "gd.rules.steps=21", "-n", "tiny-b")
    sh(dvc, "queue", "start", "-j", "2")
    try:

        def finished() -> bool:  # read the store, not `dvc queue status` (a DVC call costs ~1 s of CPU)
            time.sleep(2)
            with contextlib.closing(sqlite3.connect(repo / "mlflow.db", timeout=30)) as con:
                (n,) = con.execute(
                    "select count(*) from tags t join runs r on r.run_uuid = t.run_uuid "
                    "where t.key = 'dvc.exp_name' and r.status != 'RUNNING'"
                ).fetchone()
            return n >= 2

        _wait_for(finished, 300, "the DVC queue")
        _wait_for(lambda: "Running" not in sh(dvc, "queue", "status"), 120, "DVC to collect the experiments")
    finally:
        subprocess.run([dvc, "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True, timeout=60)
    status = sh(dvc, "queue", "status")
    assert status.count("Success") == 2, status
    with contextlib.closing(sqlite3.connect(repo / "mlflow.db")) as con:
        rows = con.execute(
            "select t.value, r.status, r.name from tags t join runs r on r.run_uuid = t.run_uuid "
            "where t.key = 'dvc.exp_name' and r.name like 'gd · %'"
        ).fetchall()
    assert [(exp, status) for exp, status, _ in sorted(rows)] == [
        ("tiny-a", "FINISHED"),
        ("tiny-b", "FINISHED"),
    ]
    for exp, _, name in rows:  # the stage run is named after its DVC experiment (+modified: -S changed params.yaml)
        assert name.startswith(f"gd · {exp}"), name
    shown = sh(dvc, "exp", "show", "--csv")
    assert "tiny-a" in shown and "tiny-b" in shown
