"""gradlab.stats against scipy.stats: where scipy gives the same numbers, that it does; where the functions are kept
because scipy's differ (see each docstring), the difference described there."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gradlab.stats import (
    bootstrap_diff_ci,
    bootstrap_mean_ci,
    cliffs_delta,
    compare,
    permutation_min_n,
    permutation_test,
    sign_flip_min_n,
    sign_flip_test,
    wilson,
)

ROOT = Path(__file__).resolve().parents[1]
ALPHA = (1 - 0.95) / 2  # the lower tail of a 95 % interval, as both compute it


def scipy_wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def test_wilson_is_scipys_interval_to_the_last_bits():
    differ = 0
    for n in range(1, 41):
        for k in range(n + 1):
            rate, low, high = wilson(k, n)
            s_low, s_high = scipy_wilson(k, n)
            assert rate == k / n
            assert low == pytest.approx(s_low, abs=1e-15) and high == pytest.approx(s_high, abs=1e-15)
            differ += (low, high) != (s_low, s_high)
            if k == 0:
                assert low == s_low == 0.0
            if k == n:
                assert high == s_high == 1.0
    assert differ > 0  # why wilson is kept: the committed bounds are these, not scipy's


def test_wilson_differs_from_scipy_in_the_last_bits_and_takes_n_zero():
    assert wilson(1, 3)[1] == 0.06149194472039621
    assert scipy_wilson(1, 3)[0] == 0.06149194472039626
    rate, low, high = wilson(0, 0)
    assert math.isnan(rate) and (low, high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        stats.binomtest(0, 0)


def _abs_diff(a, b, axis=-1):
    return np.abs(np.mean(a, axis=axis) - np.mean(b, axis=axis))


def _abs_mean(a, axis=-1):
    return np.abs(np.mean(a, axis=axis))


def scipy_permutation_p(x, y) -> float:
    res = stats.permutation_test(
        (np.asarray(x, float), np.asarray(y, float)),
        _abs_diff,
        permutation_type="independent",
        alternative="greater",
        n_resamples=np.inf,
        vectorized=True,
    )
    return float(res.pvalue)


def scipy_sign_flip_p(x) -> float:
    res = stats.permutation_test(
        (np.asarray(x, float),), _abs_mean, permutation_type="samples", alternative="greater", n_resamples=np.inf,
        vectorized=True,
    )  # fmt: skip
    return float(res.pvalue)


@pytest.mark.parametrize("n_a,n_b", [(2, 2), (3, 3), (3, 5), (5, 4), (7, 6)])
def test_permutation_test_is_scipys_exact_test(n_a, n_b):
    rng = np.random.default_rng(n_a * 10 + n_b)
    for scale in (1e-6, 1.0, 1e4):
        x, y = rng.normal(size=n_a) * scale, (rng.normal(size=n_b) + 0.5) * scale
        assert permutation_test(x, y)["p"] == scipy_permutation_p(x, y)
        ties = rng.integers(0, 3, n_a) * 0.5, rng.integers(0, 3, n_b) * 0.5  # ties exactly representable
        assert permutation_test(*ties)["p"] == scipy_permutation_p(*ties)


def test_permutation_test_differs_from_scipy_on_rounded_ties_tiny_values_and_one_value():
    x, y = [0.1, 0.7, 0.3], [0.3, 0.7, 0.1]  # the same values: the observed difference is 6e-17 by rounding
    assert permutation_test(x, y)["p"] == 1.0
    assert scipy_permutation_p(x, y) == pytest.approx(0.8)
    tiny = np.arange(1.0, 5.0) * 1e-13
    assert permutation_test(tiny, -tiny)["p"] == 1.0  # everything within 1e-12 ties here
    assert scipy_permutation_p(tiny, -tiny) == pytest.approx(_two_over_comb(4, 4))
    assert permutation_test([1.0], [2.0, 3.0])["p"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="two or more"):
        scipy_permutation_p([1.0], [2.0, 3.0])


@pytest.mark.parametrize("n", [2, 3, 5, 6, 9])
def test_sign_flip_test_is_scipys_exact_test(n):
    rng = np.random.default_rng(n)
    for scale in (1e-6, 1.0, 1e4):
        x = (rng.normal(size=n) + 0.3) * scale
        assert sign_flip_test(x)["p"] == scipy_sign_flip_p(x)
    ints = rng.integers(-2, 3, n).astype(float)
    assert sign_flip_test(ints)["p"] == scipy_sign_flip_p(ints)


def test_sign_flip_test_differs_from_scipy_on_tiny_values_and_one_value():
    tiny = np.arange(1.0, 6.0) * 1e-13
    assert sign_flip_test(tiny)["p"] == 1.0
    assert scipy_sign_flip_p(tiny) == 0.0625
    assert sign_flip_test([2.0])["p"] == 1.0
    with pytest.raises(ValueError, match="two or more"):
        scipy_sign_flip_p([2.0])


def _two_over_comb(a: int, b: int) -> float:
    return 2 / math.comb(a + b, a)


def test_min_n_floors_agree_with_scipys_exact_tests():
    """At the sizes permutation_min_n / sign_flip_min_n name, scipy's exact tests can reach p < 0.05 on the most
    extreme data; one fewer cannot."""
    n = permutation_min_n()
    for m, reaches in ((n, True), (n - 1, False)):
        x, y = np.arange(m, dtype=float), np.arange(m, dtype=float) + 100
        p_perm = stats.permutation_test((x, y), lambda a, b, axis=-1: np.mean(a, axis) - np.mean(b, axis)).pvalue
        p_mw = stats.mannwhitneyu(x, y, method="exact").pvalue
        assert p_perm == pytest.approx(_two_over_comb(m, m)) and p_mw == pytest.approx(_two_over_comb(m, m))
        assert bool(p_perm < 0.05) is reaches and bool(p_mw < 0.05) is reaches
    n = sign_flip_min_n()
    for m, reaches in ((n, True), (n - 1, False)):
        x = np.arange(1.0, m + 1)
        p_flip = scipy_sign_flip_p(x)
        p_wilcoxon = stats.wilcoxon(x, method="exact").pvalue
        p_binom = stats.binomtest(m, m).pvalue
        assert p_flip == p_wilcoxon == p_binom == pytest.approx(2 / 2**m)
        assert bool(p_flip < 0.05) is reaches


def scipy_bootstrap(data, statistic):
    return stats.bootstrap(
        tuple(np.asarray(d, float) for d in data),
        statistic,
        n_resamples=10_000,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(0),
    )


def _mean_diff(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def _cliffs(a, b, axis=-1):
    return np.sign(a[..., :, None] - b[..., None, :]).mean(axis=(-2, -1))


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=10 + seed) * 10.0 ** (seed - 3), rng.normal(size=12) * 10.0 ** (seed - 3) + 0.1


@pytest.mark.parametrize("seed", range(6))
def test_bootstraps_draw_scipys_resamples_and_agree_but_for_the_last_bits(seed):
    """The same resamples as scipy.stats.bootstrap (numpy's quantile of scipy's bootstrap distribution is the
    interval bit for bit); scipy's own interval (scipy.stats.quantile) agrees to rounding."""
    x, y = _samples(seed)
    cases = [
        (bootstrap_mean_ci(x), scipy_bootstrap((x,), np.mean)),
        (bootstrap_diff_ci(x, y), scipy_bootstrap((x, y), _mean_diff)),
        (cliffs_delta(x, y), scipy_bootstrap((x, y), _cliffs)),
    ]
    for (_, low, high), res in cases:
        assert [low, high] == np.quantile(res.bootstrap_distribution, [ALPHA, 1 - ALPHA]).tolist()
        scale = float(np.max(np.abs(res.bootstrap_distribution)))
        ci = res.confidence_interval
        assert low == pytest.approx(ci.low, abs=4e-16 * scale) and high == pytest.approx(ci.high, abs=4e-16 * scale)


def test_bootstrap_differs_from_scipys_interval_on_committed_values():
    """mdn's committed comparison: the difference's upper bound is numpy's quantile, scipy's is one bit off."""
    path = ROOT / "results" / "mdn" / "stats.json"
    if not path.exists():
        pytest.skip("no committed mdn results")
    stable = json.loads(path.read_text())["stable"]
    a, b = stable["val_nll_per_seed"], stable["single_gaussian_val_nll_per_seed"]
    committed = stable["unpaired_vs_single_gaussian"]
    mine = compare(a, b)
    assert {k: mine[k] for k in committed} == committed  # the committed numbers are these functions'
    assert mine["permutation_p"] == scipy_permutation_p(a, b)  # scipy gives this one
    ci = scipy_bootstrap((a, b), _mean_diff).confidence_interval
    assert mine["diff_ci_low"] == float(ci.low)
    assert mine["diff_ci_high"] == -0.569143192358315 and float(ci.high) == -0.5691431923583149


def test_block_bootstrap_keeps_consecutive_updates_that_scipys_bootstrap_breaks():
    """scipy.stats.bootstrap resamples single updates; the moving-block bootstrap keeps runs of block_length."""
    from gradlab.studies.pg.analysis import block_bootstrap, block_length

    n = 27
    b = block_length(n)  # 3

    def runs(x, axis=-1):  # share of neighbours in a resample that were neighbours in the series
        return (np.diff(x, axis=axis) == 1).mean(axis=axis)

    series = np.arange(n, dtype=float)
    _, low, high, per_seed = block_bootstrap([(series,)], runs)
    assert per_seed == [1.0] and low >= (n // b) * (b - 1) / (n - 1)  # within each block: b - 1 neighbours
    res = scipy_bootstrap((series,), runs)
    assert float(res.confidence_interval.high) < 0.2 < low  # iid resamples keep about 1 / n of them
