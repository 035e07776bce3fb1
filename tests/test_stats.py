"""gradlab.stats against reference values: scipy's own intervals and tests, and textbook numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from gradlab.stats import cohens_d, welch, wilson

A = [1.0, 2.0, 3.0, 4.0, 5.0]
B = [2.0, 4.5, 6.0, 7.5, 9.0, 11.0]


@pytest.mark.parametrize("k, n", [(8, 10), (0, 10), (10, 10), (1, 3), (37, 120)])
def test_wilson_matches_scipy(k, n):
    rate, low, high = wilson(k, n)
    ref = sp.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert rate == k / n
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert 0.0 <= low <= rate <= high <= 1.0


def test_wilson_textbook_value_and_exact_ends():
    assert wilson(8, 10)[1:] == pytest.approx((0.4901624715, 0.9433178485), abs=1e-9)
    assert wilson(0, 10)[1] == 0.0 and wilson(10, 10)[2] == 1.0
    rate, low, high = wilson(0, 0)
    assert math.isnan(rate) and (low, high) == (0.0, 1.0)


def test_welch_matches_scipy_and_the_formula():
    t, p = welch(A, B)
    ref = sp.ttest_ind(A, B, equal_var=False)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-12)
    va, vb = np.var(A, ddof=1) / len(A), np.var(B, ddof=1) / len(B)
    t_hand = (np.mean(A) - np.mean(B)) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))  # Welch-Satterthwaite
    assert t == pytest.approx(t_hand, rel=1e-12)
    assert p == pytest.approx(2 * sp.t.sf(abs(t_hand), dof), rel=1e-10)


def test_welch_edge_cases():
    assert all(math.isnan(v) for v in welch([1.0], [1.0, 2.0]))
    assert welch([1.0, 1.0], [1.0, 1.0]) == (0.0, 1.0)
    t, p = welch([2.0, 2.0], [1.0, 1.0])
    assert t == math.inf and p == 0.0


def test_cohens_d_is_the_pooled_sd_effect_size():
    d = cohens_d(A, B)
    pooled = math.sqrt(((len(A) - 1) * np.var(A, ddof=1) + (len(B) - 1) * np.var(B, ddof=1)) / (len(A) + len(B) - 2))
    assert d == pytest.approx((np.mean(A) - np.mean(B)) / pooled, rel=1e-12)
    assert cohens_d([1.0, 3.0], [2.0, 4.0]) == pytest.approx(-1 / math.sqrt(2), rel=1e-12)  # by hand: sd sqrt2
    assert math.isnan(cohens_d([1.0, 1.0], [1.0, 1.0]))


# --- small-sample tools: exact tests with their floor, clipped intervals, "n/a" for one value ---------------

import warnings  # noqa: E402
from itertools import combinations, product  # noqa: E402

from gradlab.stats import (  # noqa: E402
    Resampling,
    bootstrap_diff_ci,
    bootstrap_mean_ci,
    cliffs_delta,
    cohens_d_ci,
    compare,
    fmt,
    fmt_ci,
    fmt_spread,
    mann_whitney_exact,
    permutation_test,
    sign_flip_test,
    t_mean_ci,
    verdict,
    verdict_p,
    verdict_word,
)


def test_mann_whitney_exact_matches_scipy_without_ties_and_states_its_floor():
    a, b = [1.2, 3.4, 2.2, 5.0], [0.1, 0.5, 2.0]
    r = mann_whitney_exact(a, b)
    ref = sp.mannwhitneyu(a, b, alternative="two-sided", method="exact")
    assert r["p"] == pytest.approx(ref.pvalue, rel=1e-12) and r["u"] == ref.statistic and r["exact"]
    assert r["p_min"] == pytest.approx(2 / math.comb(7, 4))
    sep = mann_whitney_exact([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
    assert sep["p"] == pytest.approx(0.1) and sep["p_min"] == pytest.approx(0.1)  # 3 vs 3 cannot reach 0.05
    assert sep["auc"] == 1.0


def test_mann_whitney_exact_with_ties_is_the_enumerated_rank_distribution():
    a, b = [1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 5.0]
    r = mann_whitney_exact(a, b)
    ranks = sp.rankdata(a + b)
    centre = 4 * 10 / 2
    obs = abs(ranks[:4].sum() - centre)
    devs = [abs(ranks[list(s)].sum() - centre) for s in combinations(range(9), 4)]
    assert r["p"] == pytest.approx(np.mean(np.array(devs) >= obs - 1e-9), rel=1e-12)
    assert r["exact"] and 0 < r["p"] <= 1


def test_permutation_floor_and_extreme_split():
    r = permutation_test([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])
    assert r["p"] == pytest.approx(0.1) and r["p_min"] == pytest.approx(0.1) and r["exact"]
    assert permutation_test([1.0] * 5, [9.0] * 5)["p_min"] == pytest.approx(2 / 252)


TEN = [1.0, 2.0, 3.0, 4.0, 5.0, 2.5, 3.5, 1.5, 4.5, 3.0]


def test_t_mean_ci_is_student_t_clipped_and_na_below_ten_values():
    mean, low, high = t_mean_ci(TEN)
    assert (low, high) == pytest.approx(sp.t.interval(0.95, 9, loc=np.mean(TEN), scale=sp.sem(TEN)), rel=1e-12)
    mean, low, high = t_mean_ci([0.01, 0.02, 0.5] + [0.01] * 7, low=0.0)
    assert low == 0.0 and high > mean  # the unclipped t interval goes below 0; a loss cannot
    assert t_mean_ci([0.3]) == (0.3, None, None)
    assert t_mean_ci(A) == (3.0, None, None)  # 5 values: no "95 % CI"
    assert t_mean_ci([2.0] * 10) == (2.0, 2.0, 2.0)
    m, lo, hi = t_mean_ci([])
    assert math.isnan(m) and lo is None and hi is None


def test_bootstrap_intervals_inside_the_range_and_na_below_ten_values():
    m, lo, hi = bootstrap_mean_ci([0.99, 1.0, 0.97] * 4, -1.0, 1.0)
    assert -1 <= lo <= m <= hi <= 1
    assert bootstrap_mean_ci([0.99, 1.0, 0.97], -1.0, 1.0)[1:] == (None, None)  # 3 seeds: min-max, not a CI
    d, lo, hi = bootstrap_diff_ci([1.0, 2.0, 3.0] * 4, [0.0, 0.5, 1.0] * 4, -1.0, 1.0)
    assert d == pytest.approx(1.5) and hi == 1.0 and lo <= hi  # clipped to the range of a difference
    assert bootstrap_diff_ci([1.0], [0.0, 2.0]) == (0.0, None, None)


def test_sign_flip_test_is_exact_with_its_floor():
    r = sign_flip_test([1.0, 2.0, 3.0, 4.0, 5.0])
    assert r["p"] == pytest.approx(1 / 16) and r["p_min"] == pytest.approx(1 / 16) and r["exact"]
    r = sign_flip_test([1.0, -2.0, 3.0])  # |mean| 2/3: patterns with |mean| >= 2/3 by enumeration
    brute = [
        abs(sum(sg * v for sg, v in zip(signs, [1.0, -2.0, 3.0], strict=True)) / 3)
        for signs in product([-1, 1], repeat=3)
    ]
    assert r["p"] == pytest.approx(np.mean(np.array(brute) >= 2 / 3 - 1e-12))
    assert sign_flip_test([0.0, 0.0])["p"] == 1.0


def test_verdicts_need_the_interval_or_test_to_exclude_the_other_outcome():
    assert verdict(0.1, 0.3) == 1 and verdict(-0.3, -0.1) == -1
    assert verdict(-0.19, 0.02) == 0  # a point estimate below 0 decides nothing
    assert verdict(None, 0.3) == 0 and verdict(0.95, 1.2, threshold=0.9) == 1
    assert verdict_p(0.01, -2.0) == -1 and verdict_p(0.06, 5.0) == 0 and verdict_p(None, 1.0) == 0
    assert verdict_word(1) == "yes" and verdict_word(0) == "inconclusive" and verdict_word(-1, no="lower") == "lower"
    assert fmt_spread(None, None, [0.1, 0.25], ".2f") == "per seed: 0.10, 0.25"
    assert fmt_spread(0.1, 0.2, [0.1], ".1f") == "95 % CI 0.1 to 0.2"


def test_cohens_d_interval_inverts_the_noncentral_t():
    a, b = list(np.linspace(0, 2, 10) + 0.5), list(np.linspace(0, 2, 12))
    d, lo, hi = cohens_d_ci(a, b)
    scale = math.sqrt(1 / 10 + 1 / 12)
    t = d / scale
    assert sp.nct.cdf(t, 20, lo / scale) == pytest.approx(0.975, abs=1e-8)
    assert sp.nct.cdf(t, 20, hi / scale) == pytest.approx(0.025, abs=1e-8)
    se = math.sqrt(1 / 10 + 1 / 12 + d * d / (2 * 22))  # Hedges-Olkin normal approximation, close by
    assert lo == pytest.approx(d - 1.96 * se, abs=0.05) and hi == pytest.approx(d + 1.96 * se, abs=0.05)
    d, lo, hi = cohens_d_ci([1.0], [2.0])
    assert math.isnan(d) and lo is None and hi is None


def test_resampling_settings_travel_together_and_an_old_positional_confidence_is_refused():
    x = [0.1, 0.4, 0.35, 0.8, 0.5, 0.45, 0.6, 0.2, 0.9, 0.3]
    assert bootstrap_mean_ci(x, 0.0, 1.0, Resampling(seed=0)) == bootstrap_mean_ci(x, 0.0, 1.0)
    narrow, wide = bootstrap_mean_ci(x, 0.0, 1.0, Resampling(confidence=0.5)), bootstrap_mean_ci(x, 0.0, 1.0)
    assert wide[1] < narrow[1] < narrow[2] < wide[2]
    for call in (lambda: bootstrap_mean_ci(x, 0.0, 1.0, 0.9), lambda: cliffs_delta(x, x, 0.9)):  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"must be a Resampling, e.g. Resampling\(confidence=0.9\), got 0.9"):
            call()


def test_cliffs_delta_range():
    assert cliffs_delta([5.0, 6.0] * 5, [1.0, 2.0] * 5) == (1.0, 1.0, 1.0)
    delta, lo, hi = cliffs_delta([1.0, 3.0, 5.0, 2.0], [2.0, 4.0, 0.0])
    assert delta == pytest.approx(3 / 12) and lo is None  # by hand: 1 -> -1, 3 -> +1, 5 -> +3, 2 -> 0 (one tie)
    delta, lo, hi = cliffs_delta([1.0, 3.0, 5.0, 2.0] * 3, [2.0, 4.0, 0.0] * 4)
    assert -1 <= lo <= delta <= hi <= 1
    assert cliffs_delta([1.0], [0.0]) == (1.0, None, None)


def test_one_seed_gives_na_and_no_numpy_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = compare([1.0], [2.0], low=0.0)
        assert math.isnan(cohens_d([1.0], [2.0]))
        assert c["diff"] == -1.0 and c["diff_ci_low"] is None and c["cohens_d"] is None
        assert c["welch_p"] is None and c["permutation_p"] == 1.0 and c["p_min"] == 1.0
        c3 = compare([3.0, 3.1, 3.2], [1.0, 1.1, 1.2], low=0.0)
    assert c3["p_min"] == pytest.approx(0.1) and c3["permutation_p"] == pytest.approx(0.1)
    assert c3["welch_p"] < 0.01  # Welch claims far more than an exact test can at 3 vs 3
    assert c3["cohens_d_ci_low"] is None and c3["cliffs_delta"] == 1.0  # no interval from 3 seeds


def test_fmt_prints_na_for_missing_values():
    assert fmt(None) == "n/a" and fmt(float("nan")) == "n/a" and fmt(float("inf")) == "n/a"
    assert fmt(0.12345, ".2f") == "0.12" and fmt(True) == "yes"
    assert fmt_ci(None, None) == "n/a" and fmt_ci(0.1, 0.25, ".2f") == "0.10 to 0.25"


def test_sample_size_floors_say_when_an_exact_test_cannot_decide():
    from gradlab.stats import floor_note, permutation_min_n, reachable, sign_flip_min_n

    # the floors are the tests' own: sign_flip_test / permutation_test report them, these invert them
    assert sign_flip_min_n() == 6 and sign_flip_min_n(0.01) == 8 and sign_flip_min_n(1.0) == 2
    assert sign_flip_test([1.0] * 5)["p_min"] >= 0.05 > sign_flip_test([1.0] * 6)["p_min"]
    assert sp.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0], method="exact").pvalue == pytest.approx(0.0625)  # same floor
    assert sp.binomtest(5, 5).pvalue == pytest.approx(0.0625)  # McNemar on 5 discordant pairs: same floor
    assert permutation_min_n() == 4 and permutation_test(A[:3], B[:3])["p_min"] == pytest.approx(0.1)
    assert permutation_test(A[:4], B[:4])["p_min"] < 0.05
    assert reachable(1 / 32) and not reachable(0.0625) and not reachable(0.05) and not reachable(None)
    assert not reachable(math.nan) and reachable(0.0625, alpha=0.1)
    assert floor_note(10, 2 / 2**10, 6) == ""
    assert floor_note(5, 0.0625, 6) == (
        "5 seeds cannot reach p < 0.05 (smallest attainable p 0.0625; this test needs at least 6)"
    )
    assert floor_note(3, 0.25, 6, unit="games").startswith("3 games cannot reach")
    with pytest.raises(ValueError, match="alpha"):
        sign_flip_min_n(0.0)
