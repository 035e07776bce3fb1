"""The mdn verdicts: exact tests over seeds (paired where the seeds are shared), +1 / 0 / -1, never a point estimate."""

from __future__ import annotations

import pytest

from gradlab.studies.mdn import analysis


def _stable_rows(mdn: list[float], single: list[float], diverged_seed: int | None = None) -> list[dict]:
    rows = []
    for components, values in ((5, mdn), (1, single)):
        for seed, v in enumerate(values):
            bad = seed == diverged_seed and components == 5
            rows.append(
                {
                    "block": "stable",
                    "components": components,
                    "seed": seed,
                    "val_nll": None if bad else v,
                    "diverged": int(bad),
                    "val_nonfinite": int(bad),
                }
            )
    return rows


def test_stable_beats_every_baseline_with_ten_paired_seeds():
    mdn = [-1.4 - 0.01 * k for k in range(10)]
    single = [-0.3 - 0.01 * k for k in range(10)]
    st = analysis.stable(_stable_rows(mdn, single), marginal=0.05, components=5)
    vs1 = st["vs_single_gaussian"]
    assert vs1["pairs"] == 10 and vs1["seeds_better"] == 10
    assert vs1["sign_flip_p"] == pytest.approx(2 / 2**10) and vs1["sign_flip_p_min"] == pytest.approx(2 / 2**10)
    assert vs1["diff_ci_low"] is not None and vs1["diff_ci_high"] < 0  # 10 seeds: an interval
    assert (vs1["below"], st["vs_marginal"]["below"], st["vs_uniform"]["below"], st["learns"]) == (1, 1, 1, 1)


def test_five_seeds_can_never_decide_and_give_no_interval():
    mdn, single = [-1.4] * 5, [-0.3] * 5
    st = analysis.stable(_stable_rows(mdn, single), marginal=0.05, components=5)
    vs1 = st["vs_single_gaussian"]
    assert vs1["sign_flip_p"] == pytest.approx(0.0625) == vs1["sign_flip_p_min"]
    assert vs1["below"] == 0 and st["learns"] == 0  # inconclusive, not "yes"
    assert st["val_nll_ci_low"] is None and vs1["diff_ci_low"] is None and len(vs1["diff_per_seed"]) == 5


def test_a_point_estimate_below_is_not_a_verdict():
    mdn = [-1.0, 0.5, -1.0, 0.6, -1.0, 0.7, -1.0, 0.4, -0.2, 0.3]  # mean below the single Gaussian, seeds split
    single = [0.0] * 10
    st = analysis.stable(_stable_rows(mdn, single), marginal=0.05, components=5)
    assert st["vs_single_gaussian"]["diff_mean"] < 0 and st["vs_single_gaussian"]["below"] == 0


def test_above_a_baseline_or_a_nonfinite_event_is_minus_one():
    worse = analysis.stable(_stable_rows([0.5 + 0.01 * k for k in range(10)], [0.0] * 10), 0.05, 5)
    assert worse["vs_single_gaussian"]["below"] == -1 and worse["learns"] == -1
    nan = analysis.stable(
        _stable_rows([-1.4 - 0.01 * k for k in range(10)], [-0.3 + 0.02 * k for k in range(10)], diverged_seed=3),
        0.05,
        5,
    )
    assert nan["nonfinite_events"] > 0 and nan["learns"] == -1


def _trial(mixture: str, seed: int, diverged: int, lr: float = 0.01) -> dict:
    return {"block": "asker", "condition": "baseline", "mixture": mixture, "seed": seed, "lr": lr, "diverged": diverged}


def test_formulations_are_compared_seed_by_seed_and_a_tie_is_a_tie():
    ref = [_trial("probs_log", k, 0) for k in range(5)]
    tied = analysis.paired_nan(ref, [_trial("logits", k, 0) for k in range(5)])
    assert tied["paired_p_vs_probs_log"] == 1.0 and tied["fewer_nan_than_probs_log"] == 0
    assert tied["paired_p_min_vs_probs_log"] == pytest.approx(0.0625)
    bad = [_trial("probs_log", k, 1) for k in range(6)]
    fewer = analysis.paired_nan(bad, [_trial("logits", k, 0) for k in range(6)])
    assert fewer["pairs_only_probs_log_nan"] == 6 and fewer["fewer_nan_than_probs_log"] == 1
    more = analysis.paired_nan(
        [_trial("probs_log", k, 0) for k in range(6)], [_trial("logits", k, 1) for k in range(6)]
    )
    assert more["fewer_nan_than_probs_log"] == -1
    five = analysis.paired_nan(
        [_trial("probs_log", k, 1) for k in range(5)], [_trial("logits", k, 0) for k in range(5)]
    )
    assert five["fewer_nan_than_probs_log"] == 0  # 5 of 5 discordant seeds: p = 0.0625, inconclusive


def test_formulations_pair_only_the_learning_rates_both_ran():
    ref = [_trial("probs_log", k, 1, lr=0.001) for k in range(3)] + [_trial("probs_log", k, 0) for k in range(3)]
    out = analysis.paired_nan(ref, [_trial("logits", k, 0) for k in range(3)])
    assert out["pairs"] == 3 and out["pairs_only_probs_log_nan"] == 0
