"""The matrix problem: derivations, the asker's loop, the stall analysis, the optimisers' budgets (counts) and
their anytime curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gradlab.config import ConfigError, validate_section
from gradlab.studies.spearman import Derivation, init_matrices
from gradlab.studies.spearman import methods as M
from gradlab.studies.spearman.asker import fixed_loop, literal_loop
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.stall import linear_gaps, single_moves


def test_shapes_and_derivations_are_the_question():
    v, freq_m = init_matrices(20, seed=0)
    assert v.shape == (20, 1) and freq_m.shape == (12, 20) and (v @ v.T).shape == (20, 20)
    sm = v @ v.T
    l1, l2 = Derivation("linear")(v, freq_m)
    assert torch.allclose(l1, sm.sum(1)) and torch.equal(l2, freq_m.mean(0))
    l1, l2 = Derivation("row_max")(v, freq_m)
    assert torch.equal(l1, sm.max(1).values) and torch.equal(l2, freq_m.max(0).values)
    l1, l2 = Derivation("logsumexp")(v, freq_m)
    assert torch.allclose(l2, torch.logsumexp(freq_m, 0))
    _, count = Derivation("threshold_count")(v, freq_m)
    assert torch.equal(count, (freq_m > 0).sum(0).to(count.dtype)) and set(count.tolist()) <= set(range(13))
    _, smooth = Derivation("threshold_count", smooth=True)(v, freq_m)
    assert (smooth - count).abs().max() < 1.5  # the sigmoid stand-in is close to the count
    with pytest.raises(ValueError, match="allowed"):
        Derivation("nope")


def test_the_literal_loop_raises_and_the_fix_reaches_one():
    out = literal_loop(0, steps=3)
    assert out["raised"] and out["failed_at_step"] == 0 and out["sm_is_leaf"] is False
    assert out["error"] == "TypeError: unsupported operand type(s) for *: 'float' and 'NoneType'"
    assert "not a leaf" in out["warning"]
    assert out["sm"] == [20, 20] and out["freq_m"] == [12, 20]
    fixed = fixed_loop(0, lr=20.0, steps=100)
    assert fixed["initial_spearman"] < 0.5 and fixed["final_spearman"] == 1.0


def test_stall_certificate_means_no_move_changes_spearmanr():
    # hand-made matrices with every gap far above the step: provably stalled, and no move changes rho
    v = torch.linspace(1.0, 3.0, 20, dtype=torch.float64).reshape(20, 1)
    freq_m = torch.linspace(-1, 1, 20, dtype=torch.float64).flip(0).repeat(12, 1)
    gaps = linear_gaps(v, freq_m, 0.01)
    assert gaps["certified"] and gaps["min_gap_v"] > 0.1
    moves = single_moves(v, freq_m, Derivation("linear"), 0.01)
    assert moves == {"moves": 520, "changing": 0, "improving": 0, "best_gain": 0.0}
    # a step larger than the gaps can reorder
    assert not linear_gaps(v, freq_m, 0.5)["certified"]
    assert single_moves(v, freq_m, Derivation("linear"), 0.5)["changing"] > 0


def test_hill_climb_keeps_only_improvements_and_respects_the_cap():
    v, freq_m = init_matrices(10, seed=2)
    ref = M.Referee(Derivation("linear"), budget=300)
    v2, f2, accepted = M.hill_climb(v, freq_m, ref, delta=0.5, seed=0)
    assert ref.evals == 300 or ref.best >= 1.0
    final = spearmanr(*Derivation("linear").numpy(v2.numpy(), f2.numpy())).statistic
    assert final == pytest.approx(np.maximum.accumulate(ref.rhos)[-1]) and final >= ref.rhos[0]
    moved = np.concatenate([(v2 - v).reshape(-1).numpy(), (f2 - freq_m).reshape(-1).numpy()])
    assert np.allclose(moved / 0.5, np.round(moved / 0.5))  # only whole +-delta steps
    assert accepted >= 1


@pytest.mark.parametrize("method", ["random_search", "cma", "nelder_mead"])
def test_derivative_free_methods_return_their_best_point_within_budget(method):
    pytest.importorskip("cma")
    v, freq_m = init_matrices(8, seed=3)
    ref = M.Referee(Derivation("row_max"), budget=120)
    run = {
        "random_search": lambda: M.random_search(v, freq_m, ref, 0.1, 0),
        "cma": lambda: M.cma_es(v, freq_m, ref, 0.5, 0),
        "nelder_mead": lambda: M.nelder_mead(v, freq_m, ref, 0.1),
    }[method]
    v2, f2, _ = run()
    assert ref.evals == ref.units and ref.backward == 0 and (ref.evals == 120 or ref.best >= 1.0)
    final = spearmanr(*Derivation("row_max").numpy(v2.numpy(), f2.numpy())).statistic
    assert final == pytest.approx(max(ref.rhos))
    assert ref.rhos[0] == spearmanr(*Derivation("row_max").numpy(v.numpy(), freq_m.numpy())).statistic  # the start


def test_the_budget_is_a_count_and_gives_the_same_run_twice():
    v, freq_m = init_matrices(20, seed=1)
    runs = []
    for _ in range(2):
        ref = M.Referee(Derivation("linear"), budget=200)
        out = M.random_search(v, freq_m, ref, 0.1, seed=0)
        assert ref.evals == ref.units == 200
        runs.append((ref.rhos, out[0].numpy().tolist()))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("objective", ["pearson", "soft_rank"])
def test_gradient_ascent_pays_an_evaluation_and_a_backward_pass_per_step(objective):
    v, freq_m = init_matrices(20, seed=4)
    ref = M.Referee(Derivation("linear"), budget=11)  # 1 + 5 steps x 2 units
    _, _, steps = M.gradient_ascent(v, freq_m, ref, objective, lr=0.001, strength=3.0)
    assert ref.evals == 6 and ref.backward == steps == 5 and ref.units == 11
    assert ref.units_at == [1, 3, 5, 7, 9, 11]
    ref = M.Referee(Derivation("linear"), budget=12)  # a 6th step would need 13 units: not started
    M.gradient_ascent(v, freq_m, ref, objective, lr=0.001, strength=3.0)
    assert ref.backward == 5 and ref.units == 11
    ref = M.Referee(Derivation("linear"), budget=16, backward_cost=2)  # 1 + 5 steps x 3 units
    M.gradient_ascent(v, freq_m, ref, objective, lr=0.001, strength=3.0)
    assert ref.evals == 6 and ref.backward == 5 and ref.units == 16


def test_anytime_curve_is_the_best_so_far_on_a_log_grid():
    grid = M.anytime_grid(720)
    assert grid[0] == 1 and grid[-1] == 720 and grid == sorted(set(grid)) and 30 <= len(grid) <= 50
    assert M.best_so_far([1, 3, 5], [0.1, -0.2, 0.5], [1, 2, 4, 5, 9]) == [0.1, 0.1, 0.1, 0.5, 0.5]
    v, freq_m = init_matrices(20, seed=5)
    ref = M.Referee(Derivation("logsumexp"), budget=100)
    M.gradient_ascent(v, freq_m, ref, "soft_rank", lr=1.0, strength=3.0)
    curve = ref.curve(M.anytime_grid(100))
    assert curve[0] == ref.rhos[0] and curve[-1] == ref.best and curve == sorted(curve)


def test_soft_rank_ascent_reaches_one_on_a_nonlinear_derivation():
    v, freq_m = init_matrices(20, seed=5)
    ref = M.Referee(Derivation("logsumexp"), budget=400)
    M.gradient_ascent(v, freq_m, ref, "soft_rank", lr=1.0, strength=3.0)
    assert ref.rhos[0] < 0.9 and ref.evals_to_target is not None


def _check(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        validate_section("spearman", SpearmanParams, raw)
    return str(err.value)


def test_parameter_checks():
    p = validate_section("spearman", SpearmanParams, {})
    assert p.matrix.n == 20 and p.ltr.seeds >= 10 and p.ltr.strength in p.ltr.strengths
    assert _check({"matrix": {"custom": "no_such_module_xyz:f"}}).startswith("spearman.matrix.custom: ")
    assert "unknown key" in _check({"matrix": {"seconds": 0.4}})  # budgets are counts, never seconds
    assert "spearman.ltr.dfo_evaluations" in _check({"ltr": {"dfo_evaluations": 1}})
    assert "module:function" in _check({"matrix": {"custom": "justaname"}})
    assert "spearman.matrix.methods.0" in _check({"matrix": {"methods": ["adam"]}})
    assert "strength" in _check({"ltr": {"strength": 2.0, "strengths": [1.0, 3.0]}})
    assert "stop_at" in _check({"matrix": {"target": 0.99, "stop_at": 0.9}})
    assert "unknown key" in _check({"bogus": 1})


def test_user_list_function(tmp_path, monkeypatch):
    (tmp_path / "my_lists.py").write_text(
        "import torch\n"
        "def lists(sm, freq_m):\n"
        "    return sm.diagonal(), freq_m.abs().mean(0)\n"
        "def wrong(sm, freq_m):\n"
        "    return sm.sum()\n"
    )
    monkeypatch.chdir(tmp_path)
    p = validate_section("spearman", SpearmanParams, {"matrix": {"custom": "my_lists:lists"}})
    v, freq_m = init_matrices(20, 0)
    l1, l2 = Derivation("custom", custom=p.matrix.custom)(v, freq_m)
    assert torch.allclose(l1, (v @ v.T).diagonal())
    assert "pair of tensors" in _check({"matrix": {"custom": "my_lists:wrong"}})
    assert "has no function" in _check({"matrix": {"custom": "my_lists:nope"}})


def test_lightning_module_still_trains_on_the_new_derivations():
    from gradlab.studies.spearman.module import CorrelationAscent

    v, freq_m = init_matrices(20, seed=4)
    ref = M.Referee(Derivation("logsumexp"))
    module = CorrelationAscent(
        v, freq_m, Derivation("logsumexp"), ref, "soft_rank", lr=0.01, regularization_strength=3.0
    )
    module.fit(3)
    assert ref.evals == 3 + 1 and ref.backward == 3 and len(module.surrogate) == 3
    assert not torch.equal(module.v.detach(), v)
