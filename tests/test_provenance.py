"""Which run stands for a stage (never a quick one), and what every run says about where it came from:
source, commit, a child's full resolved params, the parent's system metrics."""

from __future__ import annotations

import time

import pytest
from conftest import gradlab, tiny_params

from gradlab.browse import latest_stage_run, stage_children
from gradlab.config import ConfigError
from gradlab.settings import Settings, active
from gradlab.tracking import QUICK_TAG, Tracker, source_name, standard_tags


def test_latest_stage_run_skips_quick_runs(store):
    tracker = Tracker()
    with tracker.run("gradlab/s", "s · abc") as full:
        pass
    with tracker.run("gradlab/s", "s · abc · quick", tags={QUICK_TAG: "true"}):
        pass
    assert latest_stage_run("s", store).info.run_id == full.id


def test_a_child_carries_the_parents_params_source_and_commit_with_its_own_in_place(store):
    tracker = Tracker()
    tags = standard_tags("s", {}, {QUICK_TAG: "true"})
    parent_params = {"seed": 0, "mlp.lr": 0.1, "mlp.hidden": 8, "grid": [1, 2]}
    with tracker.run("gradlab/s", "s", tags=tags, params=parent_params) as parent:
        with tracker.run("gradlab/s", "a__seed3", parent=parent.id, params={"seed": 3, "variant": "a"}) as child:
            child.log_metrics({"train/loss": 1.0})
        # the way a trial in a worker process opens its child run (pg): start_run, then its own params
        late = tracker.start_run("gradlab/s", "b__seed4", parent=parent.id, tags={"gradlab.variant": "b"})
        late.log_params({"variant": "b", "seed": 4})
        late.log_params({"mlp.hidden": 8})  # the same value as inherited: nothing to change
        tracker.end(late.id, "FINISHED")
    runs = {r.info.run_name: r for r in tracker.runs("gradlab/s")}
    expected = {"seed": "0", "mlp.lr": "0.1", "mlp.hidden": "8", "grid": "[1, 2]"}
    assert runs["s"].data.params == expected
    assert runs["a__seed3"].data.params == {**expected, "seed": "3", "variant": "a"}
    assert runs["b__seed4"].data.params == {**expected, "seed": "4", "variant": "b"}
    for name in ("s", "a__seed3", "b__seed4"):
        got = runs[name].data.tags
        assert got["mlflow.source.git.commit"] == got["gradlab.git_sha"] == tags["gradlab.git_sha"], name
        assert got["mlflow.source.name"] == tags["mlflow.source.name"] and got["mlflow.source.type"] == "LOCAL"
        assert got[QUICK_TAG] == "true", name  # quick runs' children are obviously quick too
    assert runs["b__seed4"].data.tags["gradlab.variant"] == "b"


def test_a_sweeps_parent_passes_on_its_source_but_not_its_params(store):
    tracker = Tracker()
    tags = standard_tags("s", {}, {"gradlab.sweep.role": "parent", "mlflow.source.name": "gradlab sweep s --seeds 2"})
    parent = tracker.start_run("gradlab/s", "sweep__1", tags=tags)
    tracker.log_params(parent.id, {"sweep.seeds": 2})
    # a trial on a Ray node: its own argv and checkout
    own = {"mlflow.source.name": "default_worker.py --node-ip-address=10.0.0.2", "mlflow.source.git.commit": "abc"}
    with tracker.run("gradlab/s", "trial", parent=parent.id, params={"seed": 1}, tags=own):
        pass
    tracker.end(parent.id, "FINISHED")
    (trial,) = [r for r in tracker.runs("gradlab/s") if r.info.run_name == "trial"]
    assert trial.data.params == {"seed": "1"}
    assert trial.data.tags["mlflow.source.name"] == "gradlab sweep s --seeds 2"  # the command that started it all
    assert trial.data.tags["mlflow.source.git.commit"] == "abc"  # the code the trial ran


@pytest.mark.parametrize(
    "argv, name",
    [
        (["/x/.venv/bin/gradlab", "run", "gd", "--quick"], "gradlab run gd --quick"),
        (["/x/src/gradlab/__main__.py", "run", "gd", "--set", "gd.seed=1 2"], "gradlab run gd --set 'gd.seed=1 2'"),
        (["/elsewhere/pytest", "-q"], "pytest -q"),
        (["-c"], "python -c"),
    ],
)
def test_source_name_is_the_command(argv, name):
    assert source_name(argv) == name


def test_source_name_of_a_script_is_relative_to_the_repo(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    script = str(tmp_path / "pipelines" / "gd.py")
    assert source_name([script, "--params", "p.yaml"]) == "pipelines/gd.py --params p.yaml"


def test_a_stage_run_records_cpu_and_memory_and_its_children_do_not(store):
    tracker = Tracker()
    with active(Settings.from_env().replace(system_metrics=1.0)):
        with tracker.run("gradlab/s", "s") as parent:
            with tracker.run("gradlab/s", "a__seed0", parent=parent.id):
                time.sleep(2.5)
    runs = {r.info.run_name: r for r in tracker.runs("gradlab/s")}
    system = sorted(k for k in runs["s"].data.metrics if k.startswith("system/"))
    assert system == [
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/system_memory_usage_percentage",
    ]
    assert len(tracker.client.get_metric_history(parent.id, "system/cpu_utilization_percentage")) >= 2
    assert not any(k.startswith("system/") for k in runs["a__seed0"].data.metrics)
    with active(Settings.from_env().replace(system_metrics=0.0)):
        with tracker.run("gradlab/s", "off") as off:
            time.sleep(0.1)
    assert tracker.client.get_run(off.id).data.metrics == {}


@pytest.mark.parametrize("raw", ["-1", "0.5", "often", "nan", "inf"])
def test_a_bad_system_metrics_interval_names_the_variable(raw):
    with pytest.raises(ConfigError, match="^GRADLAB_SYSTEM_METRICS: "):
        Settings.from_env({"GRADLAB_SYSTEM_METRICS": raw})


# studies/gd/tiny.yaml made smaller still (the same for both runs; --quick takes --set too): provenance, not science
SMALLER = [
    a
    for s in ["gd.threshold.steps=50", "gd.rules.steps=20", "gd.mlp.steps=5", "gd.lr_grid.num=2", "gd.seeds=1"]
    for a in ("--set", s)
]


@pytest.mark.slow
def test_after_a_full_run_and_a_quick_run_the_full_run_stands_for_the_stage(store, tmp_path):
    """The real command twice: `gradlab run gd` (tiny parameters), then `--quick`. The notebooks'
    and the report's run is the full one; the quick one is named and tagged as such, children included;
    every child carries the stage's params, the source and the commit; the parent has system metrics."""
    from gradlab.report import built_from

    env = {"GRADLAB_SYSTEM_METRICS": "1", "GRADLAB_WORKERS": "1"}  # trials in the stage's process: no pool to start
    full = gradlab("run", "gd", "--params", str(tiny_params(tmp_path, "gd")), *SMALLER, env=env)
    assert full.returncode == 0, full.stderr
    quick = gradlab("run", "gd", "--quick", *SMALLER, env=env)
    assert quick.returncode == 0, quick.stderr

    tracker = Tracker(store)
    parents = [r for r in tracker.runs("gradlab/gd") if "mlflow.parentRunId" not in r.data.tags]
    (full_run,) = [r for r in parents if QUICK_TAG not in r.data.tags]
    (quick_run,) = [r for r in parents if r.data.tags.get(QUICK_TAG) == "true"]
    assert quick_run.info.start_time > full_run.info.start_time and quick_run.info.run_name.endswith(" · quick")
    assert latest_stage_run("gd", store).info.run_id == full_run.info.run_id
    assert built_from(store)["gradlab.report.gd_run"] == full_run.info.run_id

    assert full_run.data.tags["mlflow.source.name"].startswith("gradlab run gd --params ")
    assert quick_run.data.tags["mlflow.source.name"] == "gradlab run gd --quick " + " ".join(SMALLER)
    assert any(k.startswith("system/cpu") for k in full_run.data.metrics)
    for parent in (full_run, quick_run):
        children = stage_children(parent, store)
        assert children
        for child in children:
            tags, params = child.data.tags, child.data.params
            assert tags["mlflow.source.git.commit"] == parent.data.tags["mlflow.source.git.commit"]
            assert tags["mlflow.source.name"] == parent.data.tags["mlflow.source.name"]
            assert (tags.get(QUICK_TAG) == "true") == (parent is quick_run)
            shared = set(parent.data.params) - {"seed"}
            assert {k: params[k] for k in shared} == {k: parent.data.params[k] for k in shared}
            assert params["seed"] == tags["gradlab.seed"] and params["variant"] == tags["gradlab.variant"]
