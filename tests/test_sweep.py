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

# the fast tests' grid key (gd's step size, in units of 1/lambda_max)
LR_KEY = "gd.rules.lr_times_lambda_max"

# the end-to-end sweeps, whose trials only have to run and log (any stage will do): pg_cartpole's quick
# parameters (studies/pg/tiny.yaml) with one variant, one seed and 20 updates of one game, ~3 s of CPU a trial
# (gd's, even made smaller: ~13 s, mostly its six figures)
CP_TINY = ["pg_cartpole.variants=[correct]", "pg_cartpole.seeds=1", "pg_cartpole.updates=20"]
CP_SETS = [a for s in CP_TINY for a in ("--set", s)]
CP_METRIC = "variants.correct.final_return_mean"
CP_LR_KEY = "pg_cartpole.optimizer.lr"


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
    """A pg_cartpole sweep (CP_TINY): one FINISHED parent, every trial a FINISHED child with its full resolved
    config and all its metric points (every game of the 20 updates), the table and its artifacts."""
    sweep_dir = _sweep_dir(results)
    runs = tracker.runs("gradlab/pg_cartpole")
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
        assert child.data.params["updates"] == "20" and child.data.params["hidden"] == "8"  # the full resolved config
        assert child.data.params["seed"] == child.data.tags["gradlab.seed"]
        assert child.info.run_name.endswith(f"__seed{child.data.tags['gradlab.seed']}")
        trial_metrics = json.loads(
            (sweep_dir / "trials" / child.data.tags["gradlab.sweep.trial"] / "metrics.json").read_text()
        )["pg_cartpole"]
        assert child.data.metrics[CP_METRIC] == pytest.approx(trial_metrics["variants"]["correct"]["final_return_mean"])
        grand = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == child.info.run_id]
        assert grand and all(g.info.status == "FINISHED" for g in grand)
        (variant,) = [g for g in grand if g.info.run_name.startswith("correct__")]
        history = tracker.client.get_metric_history(variant.info.run_id, "episode/return")
        assert sorted(m.step for m in history) == list(range(20))  # every point: the return of each of 20 games
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
def test_local_pool_four_concurrent_trials_all_finished_with_every_point(store, tmp_path):
    """4 workers (more than CI's 2 cores) writing to one sqlite store at once: every run FINISHED, every metric
    point there; 2 grid points x 2 seeds aggregated in the table."""
    params = tiny_params(tmp_path, "pg_cartpole")
    out = gradlab("sweep", "pg_cartpole", "--params", str(params), *CP_SETS, "--grid", f"{CP_LR_KEY}=0.01,0.02",
                  "--seeds", "2", "--workers", "4", "--metric", CP_METRIC)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "4 trial(s) of pg_cartpole" in out.stderr and "4/4 trials FINISHED" in out.stderr
    _, children = _check_sweep(Tracker(store), tmp_path / "results", n_trials=4, n_points=2)
    table = pd.read_csv(_sweep_dir(tmp_path / "results") / "table.csv")
    assert list(table[CP_LR_KEY]) == [0.01, 0.02] and list(table["n"]) == [2, 2]
    for lr, row in zip([0.01, 0.02], table.itertuples(), strict=True):  # the mean over the point's two seeds
        values = [c.data.metrics[CP_METRIC] for c in children if float(c.data.params["optimizer.lr"]) == lr]
        assert len(values) == 2 and row.mean == pytest.approx(sum(values) / 2, rel=1e-3)  # runs: 4 digits
    assert (_sweep_dir(tmp_path / "results") / "figure.png").stat().st_size > 0


def _trial_with_a_broken_study(job: dict) -> dict:
    """Trial 0's study raises (as a bug in a study would); the others run the real code. Runs in a worker."""
    import gradlab.studies.pg.study as study
    from gradlab.sweep import run_trial

    if job["index"] != 0:
        return run_trial(job)
    real = study.run_cartpole

    def broken(params, ctx):
        raise RuntimeError("injected failure in the study")

    study.run_cartpole = broken
    try:
        return run_trial(job)
    finally:
        study.run_cartpole = real


@pytest.mark.slow
def test_failing_trial_is_recorded_failed_and_the_sweep_goes_on(store, tmp_path, monkeypatch, capsys):
    import gradlab.sweep.executors

    monkeypatch.setattr(gradlab.sweep.executors, "run_trial", _trial_with_a_broken_study)
    params = tiny_params(tmp_path, "pg_cartpole")
    code = sweep("pg_cartpole", [f"{CP_LR_KEY}=0.01,0.02"], CP_TINY, workers=1, metric=CP_METRIC, params_file=params)
    err = capsys.readouterr().err
    assert code == 1, err[-3000:]
    assert "1 trial(s) FAILED: optimizer.lr=0.01__seed0" in err
    runs = Tracker(store).runs("gradlab/pg_cartpole")
    statuses = {r.data.tags["gradlab.sweep.trial"]: r.info.status for r in runs if "gradlab.sweep.trial" in r.data.tags}
    assert statuses == {"0": "FAILED", "1": "FINISHED"}  # trial 1 ran after the failure, in the same worker
    parent = [r for r in runs if r.data.tags.get("gradlab.sweep.role") == "parent"][0]
    assert parent.data.metrics["sweep/failed"] == 1 and parent.data.metrics["sweep/finished"] == 1
    trials = pd.read_csv(_sweep_dir(tmp_path / "results") / "trials.csv")
    assert list(trials["status"]) == ["FAILED", "FINISHED"]
    assert "RuntimeError: injected failure in the study" in trials.loc[0, "error"]
    table = pd.read_csv(_sweep_dir(tmp_path / "results") / "table.csv")
    assert list(table["failed"]) == [1, 0] and table.loc[0, "mean"] != table.loc[0, "mean"]  # NaN


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
    """Trial 1 (600 updates at a learning rate too small to learn: short games, ~15 s of CPU, so that it is still
    running when the interrupt arrives on a loaded machine) is interrupted while it runs; trials 0 and 2 have 20
    updates."""
    params = tiny_params(tmp_path, "pg_cartpole")
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradlab.cli", "sweep", "pg_cartpole", "--params", str(params),
         "--set", "pg_cartpole.variants=[correct]", "--set", "pg_cartpole.seeds=1",
         "--set", "pg_cartpole.optimizer.lr=0.00001", "--grid", "pg_cartpole.updates=20,600,21", "--workers", "1",
         "--metric", CP_METRIC],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    tracker = Tracker(store)
    try:
        _wait_for(lambda: glob.glob(str(results / "sweeps/*/trials/0/metrics.json")), 240, "trial 0", proc)

        def trial_1_running():
            runs = tracker.runs("gradlab/pg_cartpole", "tags.`gradlab.sweep.trial` = '1'")
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
    runs = tracker.runs("gradlab/pg_cartpole")
    by_trial = {r.data.tags["gradlab.sweep.trial"]: r.info.status for r in runs if "gradlab.sweep.trial" in r.data.tags}
    assert by_trial == {"0": "FINISHED", "1": "KILLED"}  # trial 2 was never started
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parent = [r for r in runs if r.data.tags.get("gradlab.sweep.role") == "parent"][0]
    assert parent.info.status == "KILLED"

    out = gradlab("sweep", "--resume", sweep_id, "--workers", "1")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 trial(s) already FINISHED, skipped" in out.stderr and "2 trial(s) of pg_cartpole" in out.stderr
    runs = tracker.runs("gradlab/pg_cartpole")
    trials = [r for r in runs if "gradlab.sweep.trial" in r.data.tags]
    assert sorted((r.data.tags["gradlab.sweep.trial"], r.info.status) for r in trials) == [
        ("0", "FINISHED"), ("1", "FINISHED"), ("1", "KILLED"), ("2", "FINISHED")
    ]  # fmt: skip
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert tracker.client.get_run(parent.info.run_id).info.status == "FINISHED"
    table = pd.read_csv(results / "sweeps" / sweep_id / "trials.csv")
    assert list(table["status"]) == ["FINISHED"] * 3 and table[CP_METRIC].notna().all()


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
def test_ray_backend_through_an_mlflow_server_on_postgresql(store, tmp_path, _template_store, monkeypatch):
    """A local Ray instance (2 CPUs, no dashboard) runs the trials; they log through `mlflow server`, whose store
    is a throwaway PostgreSQL cluster: the runs are in PostgreSQL itself, the artifacts went through the server.
    (Where PostgreSQL is not installed, the server runs on sqlite: the Ray and server half is still checked. CI
    installs it: .ci/run.)"""
    pytest.importorskip("ray")
    params = tiny_params(tmp_path, "pg_cartpole")
    with contextlib.ExitStack() as stack:
        if _pg_bin("initdb") and _pg_bin("pg_ctl"):
            backend = stack.enter_context(postgres_cluster())
        else:
            db = tmp_path / "server.db"
            shutil.copy(_template_store, db)  # already migrated: the server starts faster
            backend = f"sqlite:///{db}"
        url = stack.enter_context(mlflow_server(backend, tmp_path))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        out = gradlab("sweep", "pg_cartpole", "--params", str(params), *CP_SETS, "--grid", f"{CP_LR_KEY}=0.01,0.02",
                      "--backend", "ray", "--workers", "2", "--metric", CP_METRIC)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert "ray, 2 workers" in out.stderr and f"MLflow {url}" in out.stderr
        _, children = _check_sweep(Tracker(url), tmp_path / "results", n_trials=2, n_points=2)
        assert len({c.data.tags["gradlab.sweep.trial"] for c in children}) == 2
        # the runs are in the server's own store, not in a file beside us
        direct = Tracker(backend).runs("gradlab/pg_cartpole", "tags.`gradlab.sweep.role` = 'parent'")
        assert len(direct) == 1 and direct[0].info.status == "FINISHED"
    assert list((tmp_path / "artifacts").rglob("table.md"))  # artifacts went through the server


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
    import yaml

    from gradlab.config import to_plain
    from gradlab.runner import resolve_params
    from gradlab.stages import quick_params_file

    # the whole section, resolved (DVC wants every parameter dvc.yaml lists for the stage in params.yaml)
    tiny = resolve_params("pg_cartpole", CP_TINY, quick_params_file("pg_cartpole"))
    (repo / "params.yaml").write_text(yaml.safe_dump({"pg_cartpole": to_plain(tiny)}, sort_keys=False))
    sh("git", "commit", "--quiet", "-am", "tiny params")
    shutil.copy(_template_store, repo / "mlflow.db")  # the project's store exists before the queue runs
    # the pg_cartpole stage only (any stage will do: its trials are the cheapest)
    sh(dvc, "exp", "run", "--queue", "pg_cartpole", "-S", "pg_cartpole.updates=20", "-n", "tiny-a")
    sh(dvc, "exp", "run", "--queue", "pg_cartpole", "-S", "pg_cartpole.updates=21", "-n", "tiny-b")
    # not through a pipe: the forked processes that watch the queue's workers keep its stdout and stderr open,
    # so reading them to their end would wait for the whole queue (and time out on a loaded machine)
    with open(tmp_path / "queue-start.log", "w") as log:
        started = subprocess.run([dvc, "queue", "start", "-j", "2"], cwd=repo, env=env, stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip
    assert started.returncode == 0, (tmp_path / "queue-start.log").read_text()[-3000:]
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
        _wait_for(lambda: "Running" not in sh(dvc, "queue", "status"), 300, "DVC to collect the experiments")
    finally:
        subprocess.run([dvc, "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True, timeout=60)
    status = sh(dvc, "queue", "status")
    assert status.count("Success") == 2, status
    with contextlib.closing(sqlite3.connect(repo / "mlflow.db")) as con:
        rows = con.execute(
            "select t.value, r.status, r.name from tags t join runs r on r.run_uuid = t.run_uuid "
            "where t.key = 'dvc.exp_name' and r.name like 'pg_cartpole · %'"
        ).fetchall()
    assert [(exp, status) for exp, status, _ in sorted(rows)] == [
        ("tiny-a", "FINISHED"),
        ("tiny-b", "FINISHED"),
    ]
    for exp, _, name in rows:  # the stage run is named after its DVC experiment (+modified: -S changed params.yaml)
        assert name.startswith(f"pg_cartpole · {exp}"), name
    shown = sh(dvc, "exp", "show", "--csv")
    assert "tiny-a" in shown and "tiny-b" in shown
