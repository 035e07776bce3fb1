"""End to end: the gd stage on tiny parameters, outputs and MLflow runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import gradlab, tiny_params

from gradlab.tracking import Tracker


@pytest.mark.slow
def test_gd_stage_end_to_end(tiny_runs):
    out = tiny_runs.stage("gd")  # studies/gd/tiny.yaml, run once for every test that reads it (conftest.TinyRuns)
    m = json.loads((out / "stats.json").read_text())
    q = m["quadratic"]
    assert abs(q["lr_crit_empirical"] - q["lr_crit_theory"]) / q["lr_crit_theory"] < 0.05
    data = np.load(out / "problem.npz")
    X = data["X"]
    lam = np.linalg.eigvalsh(2 / X.shape[0] * X.T @ X).max()
    assert np.isclose(q["lr_crit_theory"], 2 / lam, rtol=1e-10)
    assert m["rules"]["gradient"]["final_loss"] < 1e-3 * m["rules"]["gradient"]["initial_loss"]
    assert m["rules"]["scalar"]["final_loss"] >= m["rules"]["scalar"]["initial_loss"]
    assert m["rules"]["scalar"]["diverged"] and not m["rules"]["gradient"]["diverged"]

    # the first-order / fixed-point answer
    fo = m["first_order"]
    assert fo["gradient"]["descent_fraction"] == 1.0 and fo["gradient"]["always_descends"]
    assert fo["scalar"]["descent_fraction"] < 0.9 and not fo["scalar"]["always_descends"]
    assert 0 <= fo["scalar"]["descent_fraction_ci_low"] <= fo["scalar"]["descent_fraction_ci_high"] <= 1
    assert m["fixed_point"]["gradient"]["stays"] and not m["fixed_point"]["scalar"]["stays"]
    line = m["scalar_line"]
    assert line["line_search_loss"] == pytest.approx(line["best_loss"], rel=1e-8)
    assert line["optimum_loss"] < line["best_loss"] < line["initial_loss"]
    assert m["sign_stall"]["lr_1"]["stall_excess"] > 0

    # divergence per lr of the network grid (final above initial, or non-finite); sharpness flags per lr
    for row in m["mlp"]["grid"].values():
        assert isinstance(row["diverged"], bool) and 0 <= row["diverged_seeds"] <= row["seeds"] == 2
    sharp = m["sharpness"]["lr_0p2"]
    assert sharp["seeds"] == 2 and len(sharp["per_seed"]) == 2 and sharp["eos"] in (-1, 0, 1)
    assert sharp["eos_seeds"] == sum(s["eos"] for s in sharp["per_seed"])
    assert sharp["settled_ratio_ci_low"] is None and sharp["eos"] == 0  # 2 seeds: no interval, inconclusive

    head = json.loads((out / "metrics.json").read_text())["gd"]
    assert head["first_order"]["scalar"]["descent_fraction"] == pytest.approx(
        fo["scalar"]["descent_fraction"], rel=1e-3
    )
    assert set(head["scalar_line"]) >= {"best_loss", "optimum_loss"} and "eos" in head["sharpness"]["lr_0p2"]
    assert "by_lr" not in head["first_order"]["scalar"] and "seeds" not in head["mlp"]
    text = (out / "summary.md").read_text()
    for bad in ("nan", "None", "inf"):
        assert bad not in text, bad
    for name in [
        "figures/rules_loss.png",
        "figures/lr_sweep.png",
        "figures/sharpness.png",
        "figures/one_step.png",
        "figures/scalar_line_sign_stall.png",
        "plots/delta_loss_vs_lr.csv",
        "plots/delta_loss_along_run.csv",
        "plots/sign_stall.csv",
        "summary.md",
        "plots/loss_per_step.csv",
        "plots/final_loss_vs_lr.csv",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert not list((tiny_runs.results / ".staging").iterdir())

    tracker = Tracker(tiny_runs.uri)
    parent, runs = tiny_runs.stage_run("gd")  # the one top-level run of the stage
    assert parent.info.status == "FINISHED"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert {"gradient__seed0", "scalar__seed0", "sign__seed0", "random__seed0"} <= set(children)
    assert all(r.info.status == "FINISHED" for r in children.values())
    history = tracker.client.get_metric_history(children["gradient__seed0"].info.run_id, "train/loss")
    assert len(history) == 301  # the loss before each of 300 steps and after the last
    assert parent.data.tags["gradlab.params_hash"]

    # a trial's trained model reloads from its run and gives the final loss it logged, to the bit
    from gradlab.studies.gd.trial import load_logged, reevaluate

    net, meta = load_logged(children["gradient__seed0"].info.run_id, tiny_runs.uri)
    assert isinstance(net, torch.nn.Linear) and meta["spec"]["rule"] == "gradient" and meta["spec"]["seed"] == 0
    for name in ["gradient__seed0", next(n for n in children if n.startswith("mlp_lr"))]:  # the quadratic, the MLP
        again, logged = reevaluate(children[name].info.run_id, tiny_runs.uri)
        assert again == logged and set(logged) == {"final_loss"}, name
    inputs = tracker.client.get_run(children["gradient__seed0"].info.run_id).inputs.dataset_inputs
    assert [(d.dataset.name, d.tags[0].value) for d in inputs] == [("gd_quadratic", "training")]
    assert '"features_shape": [' in inputs[0].dataset.profile and "make_quadratic(" in inputs[0].dataset.source


@pytest.mark.slow
def test_gd_absolute_step_size_from_the_command_line(store, tmp_path):
    params = tiny_params(tmp_path, "gd")
    both = gradlab(
        "run", "gd", "--params", str(params), "--set", "gd.rules.lr=0.01", "--set", "gd.rules.lr_times_lambda_max=1"
    )
    assert both.returncode == 2
    assert (
        both.stderr.strip()
        .splitlines()[-1]
        .startswith("error: gd.rules: lr (0.01) and lr_times_lambda_max (1) are exclusive")
    )
    assert not (tmp_path / "results" / "gd").exists()
    smaller = ["gd.threshold.steps=50", "gd.rules.steps=20", "gd.mlp.steps=5", "gd.lr_grid.num=2", "gd.seeds=1"]
    ok = gradlab(
        "run", "gd", "--params", str(params), "--set", "gd.rules.lr=0.01", *(a for s in smaller for a in ("--set", s)),
        env={"GRADLAB_WORKERS": "1"},  # trials in the stage's process: no pool to start
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    m = json.loads((tmp_path / "results" / "gd" / "stats.json").read_text())
    assert all(r["lr"] == 0.01 for r in m["rules"].values())
    assert m["first_order"]["rules_lr"] == 0.01
