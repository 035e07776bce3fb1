"""The question's own climb on the entries of sm and freq_m (stall.asker_climb), its certified stall, the gap
argument and the tie ceiling (stall.tie_ceiling), on tiny inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gradlab.studies.spearman import Derivation, init_matrices
from gradlab.studies.spearman.analysis import climb_overall, climb_table, ties_of
from gradlab.studies.spearman.methods import spearman
from gradlab.studies.spearman.stall import asker_climb, best_tie_ceiling, gap_certificate, tie_ceiling

DERIVATIONS = ["linear", "row_max", "logsumexp", "threshold_count"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in the stage (gradlab.numerics): a 6 x 6 max on a busy thread pool can take 20 ms."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _best_single_move(sm, freq_m, derivation, delta, matrices):
    """Brute force: the highest spearmanr of any single +-delta move of one climbed entry."""
    rule = derivation.rule()
    a, b = sm.clone(), freq_m.clone()
    best = -2.0
    for mat in ([a] if matrices != "freq_m" else []) + ([b] if matrices != "sm" else []):
        flat = mat.view(-1)
        for k in range(flat.numel()):
            old = flat[k].item()
            for step in (delta, -delta):
                flat[k] = old + step
                with torch.no_grad():
                    best = max(best, spearman(*rule(a, b)))
            flat[k] = old
    return best


@pytest.mark.parametrize("name", DERIVATIONS)
def test_the_shortcut_changes_nothing_and_the_stall_is_real(name):
    # small matrices and a large step, so that the climb moves before it stalls
    v, freq_m = init_matrices(6, seed=3)
    sm, d = v @ v.T, Derivation(name)
    fast = asker_climb(sm, freq_m, d, 0.3, "both", 50)
    slow = asker_climb(sm, freq_m, d, 0.3, "both", 50, shortcut=False)
    for key in ("final_spearman", "kept", "passes", "stalled", "plateau", "local_optimum"):
        assert fast[key] == slow[key], key
    assert np.array_equal(fast["sm"], slow["sm"]) and np.array_equal(fast["freq_m"], slow["freq_m"])
    assert fast["computed"] <= slow["computed"] == slow["proposals"] == fast["proposals"]
    assert fast["last_pass"]["changing"] == slow["last_pass"]["changing"]
    # certified: no single move from the final point raises spearmanr (checked by brute force here)
    assert fast["stalled"] and fast["last_pass"]["raising"] == 0
    end_sm, end_f = torch.from_numpy(fast["sm"]), torch.from_numpy(fast["freq_m"])
    assert _best_single_move(end_sm, end_f, d, 0.3, "both") <= fast["final_spearman"]
    # kept moves only raised spearmanr; every changed entry moved by whole steps; the caller's tensors untouched
    assert fast["final_spearman"] >= fast["initial_spearman"] + (1e-12 if fast["kept"] else 0)
    moved = np.concatenate([(fast["sm"] - sm.numpy()).ravel(), (fast["freq_m"] - freq_m.numpy()).ravel()]) / 0.3
    assert np.allclose(moved, np.round(moved), atol=1e-9) and np.abs(np.round(moved)).sum() >= fast["kept"]
    assert torch.equal(sm, v @ v.T)


def test_the_climb_runs_on_the_question_shapes_and_stalls():
    v, freq_m = init_matrices(20, seed=0)
    out = asker_climb(v @ v.T, freq_m, Derivation("linear"), 0.01, "both", 100)
    assert out["last_pass"]["moves"] == 2 * (400 + 240) and out["sm"].shape == (20, 20)
    assert out["stalled"] and out["passes"] <= 100
    with pytest.raises(ValueError, match="sm, freq_m or both"):
        asker_climb(v @ v.T, freq_m, Derivation("linear"), 0.01, "v", 1)


@pytest.mark.parametrize("name", DERIVATIONS)
def test_the_gap_argument_certifies_a_climb_that_never_moves(name):
    # every list value far from its neighbours and every freq_m entry far from 0: nothing can move
    n = 8
    v = torch.linspace(1.0, 2.0, n, dtype=torch.float64).reshape(n, 1)
    freq_m = torch.linspace(-1.0, 1.0, n, dtype=torch.float64).flip(0).repeat(12, 1)
    freq_m = freq_m + torch.linspace(0.0, 0.05, 12, dtype=torch.float64).reshape(12, 1)  # rows differ
    sm = v @ v.T
    d = Derivation(name)
    assert gap_certificate(sm, freq_m, d, 0.01, "both")
    out = asker_climb(sm, freq_m, d, 0.01, "both", 10)
    assert out["stalled"] and out["plateau"] and out["kept"] == 0 and out["passes"] == 1
    assert out["computed"] == 0 and out["final_spearman"] == out["initial_spearman"]
    # a step as large as the gaps: the argument no longer holds
    assert not gap_certificate(sm, freq_m, d, 2.0, "both")


def test_tie_ceiling_is_the_best_an_untied_list_can_do():
    tied = np.array([0, 0, 1, 2, 2, 2])
    best = max(spearmanr(np.array(p), tied).statistic for p in itertools.permutations(range(6)))
    assert tie_ceiling(tied) == pytest.approx(best, abs=1e-12) and best < 1
    assert tie_ceiling(np.arange(5.0)) == 1.0
    # 20 columns of counts 0..12 must tie; the best pattern spreads them evenly (7 pairs, 6 singles)
    assert best_tie_ceiling(20, 13) == pytest.approx(tie_ceiling([*range(13), *range(7)]), abs=1e-15)
    rng = np.random.default_rng(0)
    assert all(tie_ceiling(rng.integers(0, 13, 20)) <= best_tie_ceiling(20, 13) for _ in range(200))
    assert ties_of([1.0, 2.0, 3.0], [1.0, 1.0, 2.0]) == {
        "list1_tied": 0,
        "list2_tied": 1,
        "tie_ceiling": tie_ceiling([1, 1, 2]),
    }
    assert ties_of([1.0, 1.0, 3.0], [1.0, 1.0, 2.0])["tie_ceiling"] is None  # both tied: no bound derived


def test_climb_flags_say_whether_and_why():
    def row(seed, stalled, plateau, changing):
        return {
            "derivation": "linear", "matrices": "sm", "seed": seed, "stalled": stalled, "plateau": plateau,
            "local_optimum": stalled and not plateau, "gap_certified": plateau, "kept": 0 if plateau else 2,
            "passes": 1, "proposals": 800, "computed": 0, "last_pass_moves": 800, "last_pass_changing": changing,
            "initial_spearman": 0.1, "final_spearman": 0.1 if plateau else 0.2, "list1_tied": 0, "list2_tied": 0,
            "tie_ceiling": 1.0,
        }  # fmt: skip

    every = climb_table([row(0, True, True, 0), row(1, True, True, 0)], ["linear"], ["sm"])["linear"]["sm"]
    assert every["flags"] == {"stalled": 1, "plateau": 1} and every["seeds_gap_certified"] == 2
    mixed = climb_table([row(0, True, True, 0), row(1, True, False, 5)], ["linear"], ["sm"])["linear"]["sm"]
    assert mixed["flags"] == {"stalled": 1, "plateau": 0} and mixed["seeds_moved"] == 1
    local = climb_table([row(0, True, False, 3)], ["linear"], ["sm"])["linear"]["sm"]
    assert local["flags"]["plateau"] == -1 and local["tie_ceiling_mean"] is None
    never = climb_table([row(0, False, False, 3)], ["linear"], ["sm"])
    assert never["linear"]["sm"]["flags"]["stalled"] == -1
    assert climb_overall(never)["flags"]["stalled_everywhere"] == -1
    assert climb_overall({"linear": {"sm": every}})["flags"]["stalled_everywhere"] == 1
