"""gradlab.stats against reference values: scipy's own intervals and tests, and textbook numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from gradlab.stats import cohens_d, mean_ci, welch, wilson

A = [1.0, 2.0, 3.0, 4.0, 5.0]
B = [2.0, 4.5, 6.0, 7.5, 9.0, 11.0]


def test_mean_ci_is_the_student_t_interval():
    mean, low, high = mean_ci(A)
    ref_low, ref_high = sp.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sp.sem(A))
    assert mean == 3.0
    assert (low, high) == pytest.approx((ref_low, ref_high), rel=1e-12)
    assert (low, high) == pytest.approx((1.0367568385224428, 4.963243161477557), rel=1e-12)  # by hand: 3 -+ t*s/sqrt5


def test_mean_ci_other_confidence_and_edge_cases():
    _, low, high = mean_ci(B, confidence=0.9)
    assert (low, high) == pytest.approx(sp.t.interval(0.9, len(B) - 1, loc=np.mean(B), scale=sp.sem(B)), rel=1e-12)
    assert mean_ci([2.0]) == (2.0, 2.0, 2.0)  # one value: no spread
    assert mean_ci([4.0, 4.0, 4.0]) == (4.0, 4.0, 4.0)
    assert mean_ci([1.0, float("nan"), 3.0, float("inf")])[0] == 2.0  # non-finite values are left out
    assert all(math.isnan(v) for v in mean_ci([]))


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
