"""End to end: the spearman stage on tiny parameters; outputs, saved matrices, MLflow runs, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_params
from scipy.stats import spearmanr

from gradlab.runner import run_stage
from gradlab.tracking import Tracker


@pytest.mark.slow
def test_spearman_stage_end_to_end(store, tmp_path):
    params = tiny_params(tmp_path, "spearman")
    assert run_stage("spearman", params_file=params) == 0
    out = tmp_path / "results" / "spearman"
    runs = pd.read_csv(out / "runs.csv")
    expected = ["method", "n", "seed", "final_spearman", "evaluations", "seconds", "evals_to_099", "seconds_to_099"]
    assert list(runs.columns[: len(expected)]) == expected
    # 5 methods x n=20 x 2 seeds, plus pearson and soft_rank at n=300 (the others are skipped there)
    assert len(runs) == 14
    assert set(pd.read_csv(out / "skipped.csv")["method"]) == {"hill_climb", "hill_climb_tuned", "scipy"}

    # every saved matrix pair reproduces its reported spearmanr, recomputed here the question's way
    for row in runs.itertuples():
        data = np.load(out / "final" / f"{row.method}_n{row.n}_seed{row.seed}.npz")
        v, freq_m = data["v"], data["freq_m"]
        list1, list2 = (v @ v.T).sum(axis=1), freq_m.mean(axis=0)
        assert np.allclose(list1, data["list1"], rtol=1e-10) and np.allclose(list2, data["list2"], rtol=1e-12)
        assert spearmanr(list1, list2).statistic == pytest.approx(
            row.final_spearman, abs=1e-9
        )  # runs.csv keeps 10 digits
        if not np.isnan(row.evals_to_099):
            assert row.evals_to_099 <= row.evaluations

    m = json.loads((out / "stats.json").read_text())
    soft = m["methods"]["soft_rank"]
    assert soft["n300"]["reached"] == 2 and soft["n300"]["median_final_spearman"] >= 0.99
    assert m["methods"]["hill_climb"]["n20"]["max_evaluations"] == 300
    assert m["npz_reproduced"] == "14/14"
    assert "seconds" not in json.dumps(m)  # wall times live in runs.csv only
    for name in [
        "figures/spearman_vs_evals.png",
        "figures/cost_vs_n.png",
        "figures/soft_rank_vs_strength.png",
        "summary.md",
        "plots/spearman_vs_evals_n20.csv",
        "plots/spearman_vs_evals_n300.csv",
    ]:
        assert (out / name).stat().st_size > 0, name

    tracker = Tracker(store)
    all_runs = tracker.runs("gradlab/spearman")
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.info.run_name: r for r in all_runs if r.data.tags.get("mlflow.parentRunId")}
    assert {"soft_rank_n20__seed0", "hill_climb_n20__seed1", "pearson_n300__seed1"} <= set(children)
    history = tracker.client.get_metric_history(children["soft_rank_n20__seed0"].info.run_id, "eval/spearman")
    assert len(history) == runs.query("method == 'soft_rank' and n == 20 and seed == 0")["evaluations"].item()


@pytest.mark.slow
def test_spearman_is_deterministic(store, tmp_path):
    params = tiny_params(tmp_path, "spearman")
    sets = ["spearman.methods=[hill_climb_tuned, soft_rank]", "spearman.sizes=[20]", "spearman.workers=2"]
    assert run_stage("spearman", sets, params_file=params) == 0
    first = (tmp_path / "results" / "spearman" / "metrics.json").read_text()
    assert run_stage("spearman", sets, params_file=params) == 0
    assert (tmp_path / "results" / "spearman" / "metrics.json").read_text() == first
