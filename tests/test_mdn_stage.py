"""End to end: the mdn stage on a tiny trial grid; outputs, metrics and one MLflow child run per trial."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import tiny_params

from gradlab.runner import run_stage
from gradlab.studies.mdn.trial import FACTORS
from gradlab.tracking import Tracker


@pytest.mark.slow
def test_mdn_stage_end_to_end(store, tmp_path):
    params = tiny_params(tmp_path, "mdn")
    assert run_stage("mdn", params_file=params) == 0
    out = tmp_path / "results" / "mdn"
    trials = pd.read_csv(out / "trials.csv")
    # 2 mixture x 2 sigma x 2 target_shape x 2 lr, x (dtype x batchnorm half fraction: 2), x 2 seeds
    assert len(trials) == 64
    for col in [
        *FACTORS,
        "seed",
        "diverged",
        "first_nonfinite_step",
        "first_nonfinite_what",
        "weights_nonfinite",
        "val_nll",
        "seconds",
    ]:
        assert col in trials.columns, col
    stable = trials[(trials.mixture == "logits") & (trials.sigma == "softplus") & (trials.target_shape == "correct")]
    assert len(stable) == 8 and stable.diverged.sum() == 0 and stable.val_nll.notna().all()
    assert trials[trials.sigma == "relu"].diverged.all()  # a zero scale: NaN from the first step
    assert (trials.diverged == trials.val_nll.isna()).all()
    lr0 = trials[(trials.lr == 0) & (trials.diverged == 1)]
    assert len(lr0) > 0 and lr0.weights_nonfinite.all()

    m = json.loads((out / "stats.json").read_text())
    assert m["trials"] == 64 and m["diverged"] == int(trials.diverged.sum())
    assert m["stable"]["failures"] == 0 and m["stable"]["trials"] == 8
    assert set(m["failure_rate"]) == set(FACTORS)
    relu = m["failure_rate"]["sigma"]["relu"]
    assert relu["rate"] == 1.0 and relu["ci_low"] < 1.0
    assert m["lr0"]["diverged"] == len(lr0)
    lr0m = m["lr0"]
    assert lr0m["weights_unmoved_before_first_nonfinite"] == lr0m["diverged"]  # lr 0: nothing moves before
    assert lr0m["nonfinite_on_every_batch"]["trials"] == len(trials[(trials.lr == 0) & (trials.sigma == "relu")])
    assert lr0m["first_in_epoch_one_at_first_probe_batch"] == lr0m["first_in_epoch_one"] > 0
    assert m["worst"]["rate"] >= m["best"]["rate"] and m["best"]["failures"] == 0
    for name in [
        "figures/failure_rates.png",
        "figures/failure_heatmap.png",
        "figures/nll_curves.png",
        "figures/first_nonfinite_step.png",
        "summary.md",
        "plots/failure_rate.csv",
        "plots/nll_curves.csv",
        "formulations.csv",
        "timing.json",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert "seconds" not in json.dumps(m)  # timings stay out of metrics.json

    tracker = Tracker(store)
    runs = tracker.runs("gradlab/mdn")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 64 and all(r.info.status == "FINISHED" for r in children)
    names = {r.info.run_name for r in children}
    assert "logits-softplus-correct-lr0.01-adam-noclip-float32-nobn__seed1" in names
    diverged = [r for r in children if r.data.tags["mdn.diverged"] == "1"]
    assert diverged and all("eval/nll" not in r.data.metrics for r in diverged)
