"""End to end: the input_grad stage on tiny parameters, outputs, MLflow runs, determinism."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gradlab.tracking import Tracker


@pytest.mark.slow
def test_input_grad_stage_end_to_end(tiny_runs):
    out = tiny_runs.stage("input_grad")  # studies/input_grad/tiny.yaml, run once per session (conftest.TinyRuns)
    text = (out / "stats.json").read_text()
    m = json.loads(text)
    for method in ["sum", "grad_outputs", "vmap", "jacrev", "loop"]:
        assert m["agreement"][method]["max_rel_diff"] <= 1e-10, method
    assert m["fd"]["max_abs_diff"] <= 1e-6
    bn = m["batchnorm"]
    assert bn["train_sum_trick_max_abs_diff"] > 1e-3
    assert bn["eval_sum_trick_max_abs_diff"] <= 1e-10
    assert bn["train_vmap_max_abs_diff"] <= 1e-10 and bn["train_jacrev_max_abs_diff"] <= 1e-10
    assert bn["train_auto_method"] == "vmap" and bn["train_auto_max_abs_diff"] <= 1e-10 and bn["train_sum_refused"]
    im = m["image"]
    assert im["shape"] == [20, 1, 8, 8] and im["passed"]
    assert im["cnn"]["auto_max_abs_diff"] <= 1e-10 and im["cnn_batchnorm"]["auto_max_abs_diff"] <= 1e-10
    assert im["cnn_batchnorm"]["sum_trick_max_abs_diff"] > 1e-3
    ratio = m["sobolev"]["grad_rmse_ratio"]
    assert ratio["sign_flip_p_min"] == 0.5 and ratio["sign_flip_p"] >= 0.5  # 2 paired seeds: p is 0.5 or 1
    # a verdict is +1 / 0 / -1 from the exact test: 2 seeds can never decide, whatever the gap
    assert m["flags"] == {"sobolev_lowers_grad_rmse": 0, "sobolev_lowers_value_rmse": 0}
    headline = json.loads((out / "metrics.json").read_text())["input_grad"]
    assert headline["batchnorm"]["train_sum_refused"] is True and "timing" not in headline
    assert headline["flags"] == m["flags"]
    s = m["sobolev"]
    for variant in ["value_only", "with_grad"]:
        assert len(s[variant]["grad_rmse_per_seed"]) == 2
        assert s[variant]["grad_rmse_ci_low"] is None and s[variant]["grad_rmse_ci_high"] is None  # < 10 seeds
    assert "95 % CI" not in (out / "summary.md").read_text()  # 2 seeds: per-seed values, no interval
    assert m["timing"]["capped"] == {"loop": [100], "jacrev": []}

    timings = pd.read_csv(out / "timings.csv")
    assert {"method", "n", "seconds", "peak_bytes"} <= set(timings.columns)
    capped = timings[timings.status == "capped"]
    assert list(zip(capped.method, capped.n, strict=True)) == [("loop", 100)]
    assert (timings[timings.status == "ok"].seconds > 0).all()
    for name in [
        "figures/agreement.png",
        "figures/batchnorm.png",
        "figures/timing.png",
        "figures/sobolev.png",
        "summary.md",
        "plots/time_vs_n.csv",
        "plots/sobolev_grad_rmse.csv",
        "sobolev_trials.csv",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert "seconds" not in text  # wall-clock numbers stay out of metrics.json

    tracker = Tracker(tiny_runs.uri)
    parent, runs = tiny_runs.stage_run("input_grad")  # the one top-level run of the stage
    assert parent.info.status == "FINISHED"
    names = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert {"agreement__seed0", "batchnorm__seed0", "timing__seed0", "value_only__seed1", "with_grad__seed1"} <= names
    history = tracker.client.get_metric_history(
        next(r.info.run_id for r in runs if r.info.run_name == "with_grad__seed0"), "eval/grad_rmse"
    )
    assert [h.step for h in history] == [0, 10, 20, 30]

    # each Sobolev trial's network reloads from its run and gives the held-out RMSEs it logged, to the bit
    from gradlab.studies.input_grad.trial import load_logged, reevaluate

    child = next(r for r in runs if r.info.run_name == "with_grad__seed1")
    net, meta = load_logged(child.info.run_id, tiny_runs.uri)
    assert meta["spec"]["variant"] == "with_grad" and sum(p.numel() for p in net.parameters()) > 0
    again, logged = reevaluate(child.info.run_id, tiny_runs.uri)
    assert again == logged and set(logged) == {"value_rmse", "grad_rmse"}
    inputs = tracker.client.get_run(child.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["input_grad_points"]  # its training points, logged as a data set
    # same parameters, same metrics: tests/test_quick.py
