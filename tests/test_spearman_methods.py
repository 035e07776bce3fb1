"""The list derivation, the evaluation accounting of each method, and the parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gradlab.config import ConfigError, validate_section
from gradlab.studies.spearman import Derivation, init_matrices
from gradlab.studies.spearman.analysis import best_so_far, step_value
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.methods import Referee, hill_climb, nelder_mead
from gradlab.studies.spearman.module import CorrelationAscent


def test_default_derivation_is_the_question():
    v, freq_m = init_matrices(20, seed=0)
    assert v.shape == (20, 1) and freq_m.shape == (12, 20)
    list1, list2 = Derivation()(v, freq_m)
    sm = v @ v.T
    assert torch.allclose(list1, sm.sum(dim=1), rtol=1e-12, atol=1e-12)
    assert torch.equal(list2, freq_m.mean(dim=0))
    dense1, _ = Derivation("outer_row_sum_dense", "col_mean")(v, freq_m)
    assert torch.allclose(list1, dense1, rtol=1e-12, atol=1e-12)
    a, b = Derivation().numpy(v.numpy(), freq_m.numpy())
    assert np.array_equal(a, list1.numpy()) and np.array_equal(b, list2.numpy())


def test_other_derivations_and_unknown_name():
    v, freq_m = init_matrices(7, seed=1)
    l1, l2 = Derivation("outer_row_norm", "col_logsumexp")(v, freq_m)
    assert torch.allclose(l1, torch.linalg.vector_norm(v @ v.T, dim=1))
    assert torch.allclose(l2, torch.logsumexp(freq_m, dim=0))
    with pytest.raises(ValueError, match="allowed"):
        Derivation("nope", "col_mean")


def test_referee_counts_and_first_hit():
    ref = Referee(Derivation(), target=0.99)
    assert ref.judge([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert ref.judge([1, 2, 3], [1, 3, 2]) == pytest.approx(spearmanr([1, 2, 3], [1, 3, 2]).statistic)
    assert ref.evals_to_target is None
    ref.judge([1, 2, 3], [10, 20, 30])
    ref.judge([1, 2, 3], [10, 20, 30])
    assert ref.evals == 4 and ref.evals_to_target == 3 and ref.seconds_to_target is not None
    assert ref.judge([1, 1, 1], [1, 2, 3]) == -1.0  # constant list: spearmanr is NaN, counted as -1


def test_hill_climb_counts_every_proposal_and_never_gets_worse():
    v, freq_m = init_matrices(10, seed=2)
    ref = Referee(Derivation())
    v2, f2 = hill_climb(v, freq_m, ref, max_evals=300, delta=0.5, accept="improve", seed=0)
    assert ref.evals == 300 or ref.rhos[-1] >= 1.0
    accepted_path = np.maximum.accumulate(ref.rhos)
    final = spearmanr(*Derivation().numpy(v2.numpy(), f2.numpy())).statistic
    assert final == pytest.approx(accepted_path[-1]) and final >= ref.rhos[0]
    moved = np.concatenate([(v2 - v).reshape(-1).numpy(), (f2 - freq_m).reshape(-1).numpy()])
    assert np.allclose(moved / 0.5, np.round(moved / 0.5))  # only whole +-delta steps


def test_nelder_mead_respects_budget_and_returns_best_point():
    v, freq_m = init_matrices(8, seed=3)
    ref = Referee(Derivation())
    v2, f2 = nelder_mead(v, freq_m, ref, max_evals=200)
    assert ref.evals <= 200
    final = spearmanr(*Derivation().numpy(v2.numpy(), f2.numpy())).statistic
    assert final == pytest.approx(max(ref.rhos))


@pytest.mark.parametrize("objective", ["pearson", "soft_rank"])
def test_gradient_ascent_counts_one_evaluation_per_step(objective):
    v, freq_m = init_matrices(20, seed=4)
    ref = Referee(Derivation())
    module = CorrelationAscent(
        v, freq_m, Derivation(), ref, objective, lr=0.01, regularization_strength=3.0, stop_at=1.0
    )
    module.fit(5)  # a step far too small to reach rho = 1 in 5 steps
    assert ref.evals == 5 + 1 and len(module.surrogate) == 5
    assert not torch.equal(module.v.detach(), v)


def test_soft_rank_ascent_reaches_the_target_at_n20():
    v, freq_m = init_matrices(20, seed=5)
    ref = Referee(Derivation(), target=0.99)
    v2, f2 = CorrelationAscent(v, freq_m, Derivation(), ref, "soft_rank", lr=1.0, regularization_strength=3.0).fit(40)
    assert ref.rhos[0] < 0.9
    assert ref.evals_to_target is not None
    assert spearmanr(*Derivation().numpy(v2.numpy(), f2.numpy())).statistic >= 0.99


def test_best_so_far_and_step_value():
    evals, best = best_so_far([0.1, 0.05, 0.3, 0.3, 0.2])
    assert evals == [1, 3, 5] and best == [0.1, 0.3, 0.3]
    assert step_value(evals, best, 2) == 0.1 and step_value(evals, best, 4) == 0.3 and step_value(evals, best, 9) == 0.3


def _check(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_section("spearman", SpearmanParams, raw)
    return str(err.value)


def test_parameter_checks():
    assert validate_section("spearman", SpearmanParams, {}).sizes == [20, 200, 2000, 20000]
    assert "spearman.scipy" in _check({"scipy": {"max_n": 5000}}) and "GiB" in _check({"scipy": {"max_n": 5000}})
    assert "outer_row_sum_dense" in _check({"sizes": [20000], "derivation": {"list1": "outer_row_sum_dense"}})
    assert "sizes.1" in _check({"sizes": [20, 2]})
    assert "spearman.methods.0" in _check({"methods": ["adam"]})
    assert "stop_at" in _check({"target": 0.99, "stop_at": 0.9})
    assert "unknown key" in _check({"bogus": 1})
