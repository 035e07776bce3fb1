"""Table of malformed inputs: each exits 2 with one line naming the key and what is allowed;
no results written, no MLflow run created, previous results untouched."""

from __future__ import annotations

import pytest
from conftest import ROOT, gradlab, tiny_params

from gradlab.runner import run_stage
from gradlab.tracking import Tracker

# (stage, overrides, expected start of the error line after "error: ")
CASES = [
    ("gd", ["gd.bogus=1"], "gd.bogus: unknown key; allowed keys: lr_grid, mlp"),
    ("gd", ["gd.mlp.bogus=1"], "gd.mlp.bogus: unknown key; allowed keys: hidden, n, steps, target_loss"),
    ("gd", ["gd.seeds=two"], "gd.seeds: Input should be a valid integer"),
    ("gd", ["gd.seeds=1.5"], "gd.seeds: Input should be a valid integer"),
    ("gd", ["gd.seeds=true"], "gd.seeds: Input should be a valid integer"),
    ("gd", ["gd.seeds=0"], "gd.seeds: Input should be greater than or equal to 1"),
    ("gd", ["gd.seeds=-3"], "gd.seeds: Input should be greater than or equal to 1"),
    ("gd", ["gd.seed=-1"], "gd.seed: Input should be greater than or equal to 0"),
    ("gd", ["gd.lr_grid.min=-0.1"], "gd.lr_grid.min: Input should be greater than 0"),
    ("gd", ["gd.lr_grid.min=0"], "gd.lr_grid.min: Input should be greater than 0"),
    ("gd", ["gd.lr_grid.min=100"], "gd.lr_grid: min (100.0) must be smaller than max"),
    ("gd", ["gd.lr_grid.num=1"], "gd.lr_grid.num: Input should be greater than or equal to 2"),
    ("gd", ["gd.lr_grid.max=nan"], "gd.lr_grid.max: must be a finite number"),
    ("gd", ["gd.lr_grid.max=inf"], "gd.lr_grid.max: must be a finite number"),
    ("gd", ["gd.lr_grid.max=-.inf"], "gd.lr_grid.max: must be a finite number"),
    ("gd", ["gd.lr_grid.max='NaN'"], "gd.lr_grid.max: must be a finite number"),
    ("gd", ["gd.rules.names=[gradient, adam]"], "gd.rules.names.1: must be one of 'gradient', 'scalar'"),
    ("gd", ["gd.rules.names=[]"], "gd.rules.names: List should have at least 1 item"),
    ("gd", ["gd.rules.lr_times_lambda_max=0"], "gd.rules.lr_times_lambda_max: Input should be greater than 0"),
    ("gd", ["gd.sharpness.lrs=[0.1, -1]"], "gd.sharpness: lrs.1 must be > 0"),
    ("gd", ["gd.sharpness.lrs=0.1"], "gd.sharpness.lrs: Input should be a valid list"),
    ("gd", ["gd.threshold.rel_tol=0"], "gd.threshold.rel_tol: Input should be greater than 0"),
    ("gd", ["gd.quadratic={n: 10000000, d: 90000}"], "gd.quadratic: n*d = 10000000*90000 needs about"),
    ("gd", ["gd.quadratic=7"], "gd.quadratic: Input should be a valid dictionary"),
    ("gd", ["gd.seeds.x=1"], "gd.seeds: is a value, not a section"),
    ("gd", ["gd.seed"], "gd.seed: override must look like key.path=value"),
    ("gd", ["mdn.seed=1"], "mdn.seed: overrides must start with the stage name 'gd.'"),
    ("nope", [], "stage: unknown stage 'nope'; allowed:"),
]


@pytest.fixture
def workspace(store, tmp_path):
    """A params file, and previous results that must survive every bad invocation."""
    params = tiny_params(tmp_path, "gd")
    previous = tmp_path / "results" / "gd" / "metrics.json"
    previous.parent.mkdir(parents=True)
    previous.write_text('{"previous": true}\n')
    return params, previous


def _assert_nothing_happened(store, tmp_path, previous):
    assert previous.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["gd"]
    client = Tracker(store).client
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


@pytest.mark.parametrize("stage, overrides, expected", CASES, ids=[f"{c[0]}:{','.join(c[1])}" for c in CASES])
def test_bad_override(workspace, store, tmp_path, capsys, stage, overrides, expected):
    params, previous = workspace
    assert run_stage(stage, overrides, params_file=params) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + expected), err
    _assert_nothing_happened(store, tmp_path, previous)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("gd:\n  seed: 0\n  seeds: [1, 2\n", ":4:1: malformed YAML"),
        ("gd: {seed: 0\n", ":2:1: malformed YAML"),
        ("other: {}\n", "gd: section is missing from params.yaml"),
        ("gd: 3\n", "gd: must be a mapping of parameters"),
        ("- a\n- b\n", ": must be a mapping of stage sections"),
    ],
)
def test_bad_params_file(workspace, store, tmp_path, capsys, text, expected):
    _, previous = workspace
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    assert run_stage("gd", params_file=path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
    _assert_nothing_happened(store, tmp_path, previous)


def test_missing_params_file(workspace, store, tmp_path, capsys):
    _, previous = workspace
    assert run_stage("gd", params_file=tmp_path / "absent.yaml") == 2
    assert capsys.readouterr().err.strip().endswith("absent.yaml: parameter file not found")
    _assert_nothing_happened(store, tmp_path, previous)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run"], "error: Missing argument 'stage'"),
        (["run", "gd", "--bogus"], "error: No such option: --bogus"),
        (["frobnicate"], "error: No such command 'frobnicate'"),
        (["run", "gd", "--set", "gd.seeds=0"], "error: gd.seeds: Input should be greater than or equal to 1"),
    ],
)
def test_cli_usage_errors(workspace, store, tmp_path, args, expected):
    _, previous = workspace
    params = ["--params", str(tmp_path / "params.yaml")] if args[:2] == ["run", "gd"] else []
    out = gradlab(*args, *params, cwd=ROOT)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    _assert_nothing_happened(store, tmp_path, previous)


@pytest.mark.parametrize("value", ["1", "-5", "many", "2.5"])
def test_bad_curve_points_env(workspace, store, tmp_path, value):
    _, previous = workspace
    out = gradlab("run", "gd", "--params", str(tmp_path / "params.yaml"), env={"GRADLAB_CURVE_POINTS": value})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == [f"error: GRADLAB_CURVE_POINTS: must be 0 (every point) or an integer >= 2 (got {value!r})"]
    _assert_nothing_happened(store, tmp_path, previous)
