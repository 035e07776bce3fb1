"""End to end: the spearman stage on tiny parameters; outputs, saved predictions, CIs, MLflow runs, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, gradlab
from scipy.stats import spearmanr

from gradlab import replicate
from gradlab.config import flatten
from gradlab.tracking import Tracker


@pytest.mark.slow
def test_spearman_stage_end_to_end(tiny_runs):
    pytest.importorskip("cma")
    out = tiny_runs.stage("spearman")  # studies/spearman/tiny.yaml, run once per session (conftest.TinyRuns)
    stats = json.loads((out / "stats.json").read_text())
    head = json.loads((out / "metrics.json").read_text())["spearman"]

    # the acceptance keys
    for m in ("mse", "pearson", "soft_rank", "neuralsort", "ranknet"):
        assert "heldout_spearman_mean" in head["ltr"][m], m
        # 2 seeds: no CI (None, so not in the headline), the per-seed values instead
        assert (
            stats["ltr"][m]["heldout_spearman_ci_low"] is None and len(stats["ltr"][m]["heldout_spearman_values"]) == 2
        )
    assert {"p_exact", "diff_mean", "flags"} <= set(head["ltr"]["paired"]["soft_rank_vs_pearson"])
    assert "final_spearman_mean" in head["matrix"]["linear"]["cma"]
    assert head["asker"]["literal_loop_raised"] is True
    assert stats["asker"]["error"] == "TypeError: unsupported operand type(s) for *: 'float' and 'NoneType'"
    # verdicts are +1 / 0 / -1 (2 seeds: p >= 0.5, every verdict inconclusive); the leader is a fact
    verdicts = {k: v for k, v in flatten(head).items() if ".flags." in k and k.startswith("ltr")}
    assert len(verdicts) == 2 * (8 + 1), verdicts  # per task: winner_is_<m> for 8 methods, soft_rank vs pearson
    assert all(type(v) is int and v == 0 for v in verdicts.values()), verdicts
    # the climb's flags (deterministic per seed, no test): 2 derivations x 2 climbed matrices x 2, and the overall one
    climb_flags = {k: v for k, v in flatten(head).items() if k.startswith("climb") and ".flags." in k}
    assert len(climb_flags) == 2 * 2 * 2 + 1 and all(v in (-1, 0, 1) for v in climb_flags.values()), climb_flags
    assert replicate.is_verdict("ltr.flags.winner_is_cma", 0)
    assert sum(v is True for k, v in flatten(stats["ltr"]).items() if k.startswith("highest_mean_is_")) == 1
    # budgets are counts: no seconds in metrics.json or stats.json; every trial spent its count
    assert not [k for k in flatten(stats) if "seconds" in k]
    matrix = pd.read_csv(out / "matrix_runs.csv")
    dfo = matrix[matrix.method.isin(["hill_climb", "random_search", "cma", "nelder_mead"])]
    assert (dfo.evaluations == stats["budgets"]["matrix_units"]).all()
    grad = matrix[matrix.method.isin(["pearson", "soft_rank"])]
    assert (grad.units == grad.evaluations + grad.backward).all() and (grad.units <= 150).all()
    ltr_runs = pd.read_csv(out / "ltr_runs.csv")
    assert (ltr_runs[ltr_runs.method == "cma"].forward == stats["budgets"]["ltr_dfo_evaluations"]).all()
    # anytime curves: saved per seed, medians as DVC plot tables
    saved = np.load(out / "final" / "matrix_linear_cma.npz")
    assert saved["anytime_best_spearman"].shape == (2, len(saved["anytime_units"]))
    assert saved["anytime_best_spearman"][:, -1] == pytest.approx(saved["final_spearman"])
    curves = pd.read_csv(out / "plots" / "anytime_matrix.csv")
    assert set(curves.derivation) == {"linear", "threshold_count"} and curves.units.max() == 150

    # the question's own climb on sm and freq_m: every derivation x climbed matrices, whether and why it stalls
    climb = pd.read_csv(out / "climb.csv")
    assert len(climb) == 2 * 2 * 2 and set(climb.matrices) == {"sm", "both"}  # derivations x matrices x seeds
    assert (climb.proposals <= climb.passes * climb.last_pass_moves).all() and (climb.last_pass_raising == 0).all()
    still = climb[climb.kept == 0]  # nothing kept: one pass, every move proposed (a kept + skips its -)
    assert (still.passes == 1).all() and (still.proposals == still.last_pass_moves).all()
    for d in ("linear", "threshold_count"):
        for mat in ("sm", "both"):
            c = head["climb"][d][mat]
            assert set(c["flags"]) == {"stalled", "plateau"} and "final_spearman_mean" in c
            assert (
                stats["climb"][d][mat]["seeds_stalled"]
                == climb[(climb.derivation == d) & (climb.matrices == mat)].stalled.sum()
            )
    assert head["climb_overall"]["flags"]["stalled_everywhere"] in (-1, 0, 1)
    # the tie ceiling beside the scores where the lists tie (the count): a gradient method ends at its own ceiling
    assert "tie_ceiling_mean" not in head["matrix"]["linear"]["pearson"]
    tc = stats["matrix"]["threshold_count"]["pearson"]
    assert tc["seeds_tied"] == 2 and all(
        f <= c + 1e-12 for f, c in zip(tc["final_spearman_values"], tc["tie_ceiling_values"], strict=True)
    )
    assert head["ties"]["threshold_count"]["best_ceiling"] == pytest.approx(0.9974, abs=1e-4)

    # every correlation CI inside [-1, 1]
    for key, value in flatten(stats).items():
        if value is not None and ("spearman_ci" in key or "heldout_ci" in key):
            assert -1.0 <= value <= 1.0, key

    # the saved held-out predictions and targets reproduce the reported spearmanr (recomputed here)
    runs = pd.read_csv(out / "ltr_runs.csv")
    for task, label in runs[["task", "label"]].drop_duplicates().itertuples(index=False):
        saved = np.load(out / "heldout" / f"{task}_{label}.npz")
        mine = runs[(runs.task == task) & (runs.label == label)].sort_values("seed")
        assert list(saved["seeds"]) == list(mine.seed)
        for k, row in enumerate(mine.itertuples()):
            rho = spearmanr(saved["pred"][k], saved["target"][k]).statistic
            assert rho == saved["heldout_spearman"][k]
            assert rho == pytest.approx(row.heldout_spearman, abs=1e-9)  # the CSV keeps 10 digits
    assert stats["heldout_reproduced"] == stats["heldout_predictions"] == len(runs)
    if "soft_rank" in stats["ltr"]:
        mean = runs[(runs.task == "nonlinear") & (runs.label == "soft_rank")].heldout_spearman.mean()
        assert stats["ltr"]["soft_rank"]["heldout_spearman_mean"] == pytest.approx(mean, abs=1e-9)

    text = (out / "summary.md").read_text()
    assert not re.search(r"\b(nan|None|inf)\b", text), text  # the quoted TypeError names NoneType: a word
    assert "95 % CI" not in text and "per seed" in text and "inconclusive" in text  # 2 seeds: no CI
    for name in (
        "figures/ltr_heldout.png",
        "figures/matrix_equal_budget.png",
        "figures/anytime_matrix.png",
        "figures/anytime_ltr.png",
        "plots/ltr_heldout.csv",
        "plots/anytime_ltr.csv",
        "stall.csv",
    ):
        assert (out / name).stat().st_size > 0, name

    runs = {r.info.run_name: r for r in tiny_runs.stage_run("spearman")[1] if r.data.tags.get("mlflow.parentRunId")}
    assert {
        "matrix_linear_cma__seed0",
        "ltr_nonlinear_soft_rank__seed1",
        "ltr_heavy_tail_soft_rank_s1__seed0",
    } <= set(runs)

    # what a trial trained (matrices, or the ranking network) reloads from its run and scores what it logged, to the bit
    from gradlab.studies.spearman.trial import load_logged, reevaluate

    state, meta = load_logged(runs["matrix_linear_cma__seed0"].info.run_id, tiny_runs.uri)
    assert set(state) == {"v", "freq_m"} and meta["spec"]["kind"] == "matrix"
    for name, key in [
        ("matrix_linear_cma__seed0", "final_spearman"),
        ("ltr_nonlinear_soft_rank__seed1", "heldout_spearman"),
    ]:
        again, logged = reevaluate(runs[name].info.run_id, tiny_runs.uri)
        assert again == logged and set(logged) == {key}, name
    client = Tracker(tiny_runs.uri).client
    inputs = client.get_run(runs["ltr_nonlinear_soft_rank__seed1"].info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["spearman_ltr_nonlinear"]  # the task's training rows
    assert not client.get_run(runs["matrix_linear_cma__seed0"].info.run_id).inputs.dataset_inputs


# Deterministic whatever the number of trial workers (spearman.workers 1 here, 2 there: the same bytes), in another
# process on other CPU kernels: tests/test_quick.py.


def test_bad_user_function_exits_2_with_one_line(tmp_path):
    params = str(ROOT / "params.yaml")
    res = gradlab(
        "run", "spearman", "--params", params, "--set", "spearman.matrix.custom=os.path:nothing_here", cwd=tmp_path
    )
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "spearman.matrix.custom" in lines[0], res.stderr
