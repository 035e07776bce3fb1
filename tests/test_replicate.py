"""`gradlab replicate`: the comparison it writes, and the command end to end on a tiny stage."""

from __future__ import annotations

import json

import pytest
from conftest import gradlab, tiny_params

from gradlab.replicate import compare, interval, is_verdict


def test_verdicts_and_numbers_side_by_side():
    original = {
        "flags": {"learns": 1, "tied": 0},
        "fit": {"checked": True},
        "loss_mean": 0.5,
        "loss_ci_low": 0.4,
        "loss_ci_high": 0.6,
        "steps": 10,
    }
    again = {
        "flags": {"learns": 0, "tied": 0},
        "fit": {"checked": True},
        "loss_mean": 0.55,
        "loss_ci_low": 0.52,
        "loss_ci_high": 0.7,
        "steps": 10,
    }
    keys = ["flags.learns", "flags.tied", "fit.checked", "loss_mean", "loss_ci_low", "loss_ci_high", "steps"]
    c = compare(original, again, keys)
    assert c["verdicts_total"] == 3 and c["verdicts_agree"] == 2
    assert c["verdicts_not_replicated"] == ["flags.learns"]  # +1 that came back 0 is not a replication
    loss = c["numbers"]["loss_mean"]
    assert loss["original_interval"] == [0.4, 0.6] and loss["replication_interval"] == [0.52, 0.7]
    assert loss["replication_in_original_interval"] is True and loss["original_in_replication_interval"] is False
    assert c["numbers"]["steps"]["replication_in_original_interval"] is None  # no interval: not judged
    assert "loss_ci_low" not in c["numbers"]
    assert is_verdict("a.flags.x", 0) and is_verdict("a.b", False) and not is_verdict("a.count", 3)
    assert interval({"x_ci_low": 1.0, "x_ci_high": 2.0}, "x_mean") == (1.0, 2.0)


def test_bad_stage_and_missing_results_exit_2(store, tmp_path):
    done = gradlab("replicate", "nope")
    assert done.returncode == 2 and "nope" in done.stderr
    params = tiny_params(tmp_path, "input_grad")
    done = gradlab("replicate", "input_grad", "--params", str(params))
    assert done.returncode == 2 and "run `gradlab run input_grad` first" in done.stderr
    assert not (tmp_path / "results" / "replications").exists()


@pytest.mark.slow
def test_replicate_a_tiny_stage(store, tmp_path):
    from gradlab.runner import run_stage

    params = tiny_params(tmp_path, "input_grad")
    assert run_stage("input_grad", params_file=params) == 0  # in this process: `gradlab replicate` is under test
    results = tmp_path / "results"
    before = (results / "input_grad" / "stats.json").read_bytes()
    done = gradlab("replicate", "input_grad", "--params", str(params))
    assert done.returncode == 0, done.stderr[-2000:]
    rep = json.loads((results / "input_grad" / "replication.json").read_text())
    again = json.loads((results / "replications" / "input_grad" / "stats.json").read_text())
    assert rep["replication"]["seed"] == rep["original"]["seed"] + 1000
    assert again != json.loads(before)  # other seeds, other numbers: the replication really ran
    assert rep["verdicts_total"] == len(rep["verdicts"]) > 0
    assert (results / "input_grad" / "stats.json").read_bytes() == before  # the original is left alone
    # a rerun of the stage keeps the replication file (it names the stats.json it compared)
    assert run_stage("input_grad", params_file=params) == 0
    assert (results / "input_grad" / "replication.json").exists()
