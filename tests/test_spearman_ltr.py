"""Learning to rank: data, the other ranking objectives, training, and the paired statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr

from gradlab.studies.spearman import analysis, ltr
from gradlab.studies.spearman.ranking import neuralsort_rank, ranknet_loss


def test_data_is_seeded_monotone_and_heavy_tailed():
    a = ltr.make_data("nonlinear", 3, 50, 80, 6)
    b = ltr.make_data("nonlinear", 3, 50, 80, 6)
    assert torch.equal(a.x_train, b.x_train) and a.x_test.shape == (80, 6) and a.y_train.shape == (50,)
    assert spearmanr(a.z_test, a.y_test).statistic > 0.8  # monotone in the latent score, plus noise
    h = ltr.make_data("heavy_tail", 3, 50, 2000, 6)
    resid = (h.y_test - h.z_test).abs()
    assert resid.max() > 20 * resid.median()  # Cauchy noise: outliers
    with pytest.raises(ValueError, match="allowed"):
        ltr.make_data("nope", 0, 5, 5, 2)


def test_neuralsort_ranks_become_hard_as_tau_goes_to_zero():
    x = torch.tensor([0.3, -1.0, 2.0, 0.5, 1.1], dtype=torch.float64)
    assert torch.allclose(neuralsort_rank(x, 1e-3), torch.from_numpy(rankdata(x.numpy())), atol=1e-6)
    r = neuralsort_rank(x.clone().requires_grad_(True), 1.0)
    assert r.sum().item() == pytest.approx(15.0)  # each row of P sums to 1
    with pytest.raises(ValueError):
        neuralsort_rank(x, 0.0)


def test_ranknet_loss_prefers_the_right_order():
    y = torch.tensor([1.0, 2.0, 3.0])
    assert ranknet_loss(torch.tensor([0.0, 1.0, 2.0]), y) < ranknet_loss(torch.tensor([2.0, 1.0, 0.0]), y)


@pytest.mark.parametrize("method", ["mse", "pearson", "soft_rank", "neuralsort", "ranknet"])
def test_gradient_training_improves_training_spearman(method):
    data = ltr.make_data("nonlinear", 0, 80, 50, 4)
    theta0 = ltr.init_params(4, 4, 0)
    before = spearmanr(ltr.forward(theta0, data.x_train, 4).detach(), data.y_train).statistic
    knob = {"soft_rank": 3.0, "neuralsort": 1.0}.get(method, 0.0)
    theta, fwd, bwd, curve = ltr.train_gradient(method, data, theta0, 4, 60, 0.03, knob, record=[0, 30, 60])
    after = spearmanr(ltr.forward(theta, data.x_train, 4), data.y_train).statistic
    assert fwd == bwd == 60 and after > before
    assert curve[0] == pytest.approx(before) and curve[60] == pytest.approx(after) and set(curve) == {0, 30, 60}
    same, *_ = ltr.train_gradient(method, data, theta0, 4, 60, 0.03, knob)  # recording changes nothing
    assert torch.equal(same, theta)


@pytest.mark.parametrize("method", ["cma", "random_search", "nelder_mead"])
def test_derivative_free_training_spends_exactly_its_evaluations(method):
    pytest.importorskip("cma")
    data = ltr.make_data("heavy_tail", 0, 40, 20, 3)
    theta0 = ltr.init_params(3, 2, 0)
    theta, evals, bwd, history = ltr.train_derivative_free(method, data, theta0, 2, 50, 0, 0.1)
    assert evals == len(history) == 50 and bwd == 0 and theta.shape == (ltr.n_params(3, 2),)
    start = spearmanr(ltr.forward(theta0, data.x_train, 2), data.y_train).statistic
    assert history[0] == pytest.approx(start) and history == sorted(history)  # evaluation 1: the start
    best = spearmanr(ltr.forward(theta, data.x_train, 2), data.y_train).statistic
    assert best == pytest.approx(history[-1])


def test_correlation_cis_stay_in_range_and_fewer_than_ten_seeds_have_none():
    c = analysis.corr_ci([0.999, 1.0, 1.0, 0.998, 1.0] * 2)
    assert -1.0 <= c["ci_low"] <= c["mean"] <= c["ci_high"] <= 1.0
    assert analysis.corr_ci([0.5]) == {"mean": 0.5, "ci_low": None, "ci_high": None}
    assert analysis.corr_ci([0.5] * 9)["ci_low"] is None  # 9 seeds: per-seed values, not a "95 % CI"


def test_paired_verdicts_need_a_significant_exact_test():
    a = list(np.linspace(0.6, 0.7, 10))
    b = [x - 0.05 for x in a]
    pr = analysis.paired("soft_rank", a, "pearson", b)
    assert pr["flags"] == {"soft_rank_better": 1} and pr["wins"] == 10
    assert pr["p_exact"] == pytest.approx(2 / 1024) and pr["diffs"] == pytest.approx([0.05] * 10)
    assert analysis.paired("soft_rank", b, "pearson", a)["flags"]["soft_rank_better"] == -1
    few = analysis.paired("soft_rank", a[:3], "pearson", b[:3])  # 3 pairs: p >= 0.25, never significant
    assert few["flags"]["soft_rank_better"] == 0 and few["p_min"] == pytest.approx(0.25) and few["diff_ci_low"] is None
    mixed = analysis.paired("soft_rank", a, "pearson", [x + (0.05 if i % 2 else -0.05) for i, x in enumerate(a)])
    assert mixed["flags"]["soft_rank_better"] == 0  # half the seeds each way: inconclusive


def test_the_winner_is_a_verdict_only_when_the_exact_test_separates_it():
    base = list(np.linspace(0.5, 0.6, 10))
    clear = {"a": [x + 0.1 for x in base], "b": base, "c": [x - 0.1 for x in base]}
    w = analysis.winner(["a", "b", "c"], clear)
    assert w["flags"] == {"winner_is_a": 1, "winner_is_b": -1, "winner_is_c": -1}
    assert w["highest_mean_is_a"] is True and w["runner_up_is_b"] is True
    assert w["winner_vs_runner_up"]["verdict"] == 1 and w["winner_vs_runner_up"]["p_exact"] == pytest.approx(2 / 1024)
    # a is ahead of b on average, but not on every seed: not separated; c is still excluded
    close = {"a": [x + (0.02 if i % 3 else -0.01) for i, x in enumerate(base)], "b": base, "c": clear["c"]}
    w = analysis.winner(["a", "b", "c"], close)
    assert w["highest_mean_is_a"] is True and w["flags"] == {"winner_is_a": 0, "winner_is_b": 0, "winner_is_c": -1}
    # fewer than 5 seeds can never separate anything
    w = analysis.winner(["a", "b"], {"a": [0.9, 0.9, 0.9], "b": [0.1, 0.1, 0.1]})
    assert w["flags"] == {"winner_is_a": 0, "winner_is_b": 0}
