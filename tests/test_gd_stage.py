"""End to end: the gd stage on tiny parameters, outputs and MLflow runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_params

from gradlab.runner import run_stage
from gradlab.tracking import Tracker


@pytest.mark.slow
def test_gd_stage_end_to_end(store, tmp_path):
    params = tiny_params(tmp_path, "gd")
    assert run_stage("gd", params_file=params) == 0
    out = tmp_path / "results" / "gd"
    m = json.loads((out / "stats.json").read_text())
    q = m["quadratic"]
    assert abs(q["lr_crit_empirical"] - q["lr_crit_theory"]) / q["lr_crit_theory"] < 0.05
    data = np.load(out / "problem.npz")
    X = data["X"]
    lam = np.linalg.eigvalsh(2 / X.shape[0] * X.T @ X).max()
    assert np.isclose(q["lr_crit_theory"], 2 / lam, rtol=1e-10)
    assert m["rules"]["gradient"]["final_loss"] < 1e-3 * m["rules"]["gradient"]["initial_loss"]
    assert m["rules"]["scalar"]["final_loss"] >= m["rules"]["scalar"]["initial_loss"]
    for name in [
        "figures/rules_loss.png",
        "figures/lr_sweep.png",
        "figures/sharpness.png",
        "summary.md",
        "plots/loss_per_step.csv",
        "plots/final_loss_vs_lr.csv",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert not list((tmp_path / "results" / ".staging").iterdir())

    tracker = Tracker(store)
    runs = tracker.runs("gradlab/gd")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert {"gradient__seed0", "scalar__seed0", "sign__seed0", "random__seed0"} <= set(children)
    assert all(r.info.status == "FINISHED" for r in children.values())
    history = tracker.client.get_metric_history(children["gradient__seed0"].info.run_id, "train/loss")
    assert len(history) == 301  # the loss before each of 300 steps and after the last
    assert parents[0].data.tags["gradlab.params_hash"]
