"""pg verdicts on synthetic trials: each flag is +1 / 0 / -1 from an interval or an exact test, never a sign."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from gradlab.stats import sign_flip_test
from gradlab.studies.pg import analysis

UPDATES = 60


@pytest.fixture(autouse=True)
def _fewer_replicates(monkeypatch):
    monkeypatch.setattr(analysis, "N_BOOT", 400)  # the stage's 2000 are for its intervals' last digit, not needed here


def _updates(rng, loss, ret, fraction=0.5) -> dict:
    n = len(loss)
    if fraction == 0.5:  # exactly one half on average: a wave around it (noise could land wholly on one side)
        wave = list(0.5 + 0.05 * np.sin(np.arange(n)))
        return {**_updates(rng, loss, ret, 0.6), "adv_neg_logp_down_fraction": wave, "adv_pos_logp_up_fraction": wave}
    return {
        "loss": list(loss),
        "batch_return": list(ret),
        "sum_adv_ce": list(rng.normal(size=n)),
        "adv_neg_logp_down_fraction": list(np.clip(fraction + 0.05 * rng.normal(size=n), 0, 1)),
        "adv_pos_logp_up_fraction": list(np.clip(fraction + 0.05 * rng.normal(size=n), 0, 1)),
        "adv_weighted_right_fraction": list(np.full(n, fraction)),
        "share_likely_adv_neg": list(rng.random(n)),
    }


def _trial(variant: str, seed: int, final: float, probe: float = 0.6) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "first_return": 20.0,
        "final_return": final,
        "final_length": final,
        "probe_corr": probe,
        "probe_adv_neg_logp_down_fraction": probe,
        "probe_adv_pos_logp_up_fraction": probe,
        "probe_adv_weighted_right_fraction": probe,
        "probe_corr_first_update": 0.1,
        "probe_corr_train_mean": 0.1,
        "diverged_at_update": None,
        "likely_adv_neg_samples": 1.0,
        "sum_negative_update_fraction": 0.5,
        **{f"{k}_early": 0.5 for k in (*analysis.FRACTIONS, "adv_weighted_right_fraction")},
        "fixed_batch": {},
        "episodes_to_solve": None,
    }


def _run(seeds: int, series, finals=None, fraction=0.5):
    """aggregate() over `correct` and `flipped`: ``series(rng, seed) -> (loss, return)`` for correct's updates."""
    rng = np.random.default_rng(0)
    per_trial, updates = [], []
    for s in range(seeds):
        for v in ("correct", "flipped"):
            final = (
                (finals or {}).get(v, [400.0 + s, 10.0 + s])[s] if finals else (400.0 + s if v == "correct" else 10.0)
            )
            per_trial.append(_trial(v, s, final, 0.6 if v == "correct" else 0.4))
            loss, ret = series(rng, s)
            updates.append(_updates(rng, loss, ret, fraction if v == "correct" else 1 - fraction))
    p = SimpleNamespace(
        variants=["correct", "flipped"], seeds=seeds, updates=UPDATES, episodes_per_update=1, final_episodes=1
    )
    return analysis.aggregate(per_trial, p, "cartpole", updates)


def _noise(rng, seed):
    return rng.normal(size=UPDATES), rng.normal(size=UPDATES)


def test_a_verdict_is_zero_when_its_interval_contains_zero():
    m = _run(5, _noise)
    lo, hi = m["loss_value_return_corr_ci_low"], m["loss_value_return_corr_ci_high"]
    assert lo < 0 < hi  # independent noise: the interval straddles zero, whatever the point estimate's sign
    assert m["flags"]["loss_value_return_corr_negative"] == 0
    assert m["flags"]["loss_value_return_corr_detrended_negative"] == 0
    for key, value in m["flags"].items():
        assert type(value) is int and value in (-1, 0, 1), key
    for key, value in m["seed_counts"].items():
        assert type(value) is int and 0 <= value <= 5, key


def test_a_trend_shared_by_loss_and_return_is_negative_raw_and_inconclusive_detrended():
    def trend(rng, seed):
        t = np.arange(UPDATES, dtype=float)
        return -t + 3 * rng.normal(size=UPDATES), t + 3 * rng.normal(size=UPDATES)

    m = _run(6, trend)
    assert m["loss_value_return_corr_ci_high"] < 0 and m["flags"]["loss_value_return_corr_negative"] == 1
    assert m["loss_trend_corr"] < -0.9 and m["return_trend_corr"] > 0.9
    assert m["flags"]["loss_value_return_corr_detrended_negative"] == 0  # the noise around the trends is independent


def test_a_detrended_dependence_is_found_and_the_interval_holds_the_estimate():
    def coupled(rng, seed):
        noise = rng.normal(size=UPDATES)
        return np.arange(UPDATES) * 0.1 - noise, noise + 0.3 * rng.normal(size=UPDATES)

    m = _run(6, coupled)
    c = m["variants"]["correct"]
    assert c["loss_value_return_corr_detrended_ci_low"] <= c["loss_value_return_corr_detrended"]
    assert c["loss_value_return_corr_detrended"] <= c["loss_value_return_corr_detrended_ci_high"] < 0
    assert m["flags"]["loss_value_return_corr_detrended_negative"] == 1
    assert m["seed_counts"]["loss_value_return_corr_detrended_negative"] == 6
    assert c["loss_value_return_corr_detrended_p_seeds"] == pytest.approx(0.03125)  # 6 seeds: the floor


@pytest.mark.parametrize("seeds", [3, 5])
def test_a_loss_value_verdict_needs_the_seeds_test_as_well_as_the_interval_over_updates(seeds):
    def coupled(rng, seed):
        noise = rng.normal(size=UPDATES)
        return np.arange(UPDATES) * 0.1 - noise, noise + 0.3 * rng.normal(size=UPDATES)

    m = _run(seeds, coupled)
    c = m["variants"]["correct"]
    assert c["loss_value_return_corr_detrended_ci_high"] < 0  # these trials' updates: clearly negative
    assert m["seed_counts"]["loss_value_return_corr_detrended_negative"] == seeds  # on every seed
    assert c["loss_value_return_corr_detrended_p_seeds"] == pytest.approx(2 / 2**seeds)  # the floor: >= 0.05
    assert m["flags"]["loss_value_return_corr_detrended_negative"] == 0


@pytest.mark.parametrize(("seeds", "expected"), [(5, 0), (6, 1)])
def test_below_correct_needs_an_exact_paired_test_that_can_reach_alpha(seeds, expected):
    m = _run(seeds, _noise)
    f = m["variants"]["flipped"]
    assert m["seed_counts"]["flipped_below_correct"] == seeds  # every seed below: a count, not a verdict
    assert f["p_exact_min"] == pytest.approx(2 / 2**seeds) and f["p_exact_vs_correct"] == f["p_exact_min"]
    assert m["flags"]["flipped_below_correct"] == expected  # 5 paired seeds cannot reach p < 0.05
    assert f["final_return_ci_low"] is None and f["final_return_diff_vs_correct_ci_low"] is None  # < 10 seeds


def test_fraction_verdicts_read_the_interval_against_one_half():
    m = _run(5, _noise, fraction=0.6)  # correct's fractions 0.6, flipped's 0.4
    assert m["flags"]["correct_update_fractions_above_half"] == 1
    assert m["flags"]["flipped_update_fractions_below_half"] == 1
    m = _run(5, _noise, fraction=0.4)
    assert m["flags"]["correct_update_fractions_above_half"] == -1  # the opposite holds
    m = _run(5, _noise, fraction=0.5)
    assert m["flags"]["correct_update_fractions_above_half"] == 0


def test_block_bootstrap_keeps_pairs_and_blocks():
    assert analysis.block_length(140) == 6 and analysis.block_length(28) == 4 and analysis.block_length(1) == 1
    rng = np.random.default_rng(3)
    idx = analysis._block_index(28, rng, 5)
    assert idx.shape == (5, 28) and idx.max() < 28
    assert np.all(np.diff(idx[:, :4], axis=1) == 1)  # the first block is 4 consecutive updates
    x = np.arange(30, dtype=float)
    est, lo, hi, per_seed = analysis.block_bootstrap([(x, 2 * x)], analysis.row_corr, -1, 1)
    assert est == pytest.approx(1.0) and lo == pytest.approx(1.0) and hi == pytest.approx(1.0)  # resampled jointly
    assert analysis.block_bootstrap([(x[:5], x[:5])], analysis.row_corr)[1:3] == (None, None)  # < MIN_CI_N updates


def test_sign_flip_floor_matches_the_seed_counts_of_the_stages():
    assert sign_flip_test([1.0, 2.0, 3.0])["p_min"] == pytest.approx(0.25)  # pg_pong: 3 seeds
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0, 5.0])["p"] == pytest.approx(0.0625)  # pg_cartpole: 5 seeds
    assert math.isclose(sign_flip_test([-1.0, 2.0, 3.0])["p"], 0.5)
