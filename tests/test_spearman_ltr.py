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
    theta, fwd, bwd = ltr.train_gradient(method, data, theta0, 4, 60, 0.03, knob)
    after = spearmanr(ltr.forward(theta, data.x_train, 4), data.y_train).statistic
    assert fwd == bwd == 60 and after > before


@pytest.mark.parametrize("method", ["cma", "random_search", "nelder_mead"])
def test_derivative_free_training_respects_the_cap(method):
    pytest.importorskip("cma")
    data = ltr.make_data("heavy_tail", 0, 40, 20, 3)
    theta, evals, bwd = ltr.train_derivative_free(method, data, ltr.init_params(3, 2, 0), 2, 60.0, 50, 0, 0.1)
    assert evals == 50 and bwd == 0 and theta.shape == (ltr.n_params(3, 2),)


def test_sign_flip_test_is_exact():
    t = analysis.sign_flip_test([0.1] * 10)
    assert t["p"] == pytest.approx(2 / 1024) and t["p_min"] == pytest.approx(2 / 1024) and t["exact"]
    assert analysis.sign_flip_test([0.1, -0.1])["p"] == 1.0
    assert analysis.sign_flip_test([])["p"] is None


def test_correlation_cis_stay_in_range_and_one_seed_has_none():
    c = analysis.corr_ci([0.999, 1.0, 1.0, 0.998, 1.0])
    assert -1.0 <= c["ci_low"] <= c["mean"] <= c["ci_high"] <= 1.0
    assert analysis.corr_ci([0.5]) == {"mean": 0.5, "ci_low": None, "ci_high": None}


def test_paired_flags_need_a_significant_exact_test():
    a = list(np.linspace(0.6, 0.7, 10))
    b = [x - 0.05 for x in a]
    pr = analysis.paired("soft_rank", a, "pearson", b)
    assert pr["soft_rank_better"] and not pr["pearson_better"] and pr["wins"] == 10
    assert pr["p_exact"] == pytest.approx(2 / 1024)
    few = analysis.paired("soft_rank", a[:3], "pearson", b[:3])  # 3 pairs: p >= 0.25, never significant
    assert not few["soft_rank_better"] and few["p_min"] == pytest.approx(0.25)
