"""Confidence intervals and tests (scipy). Every comparison reports a spread over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval; the interval collapses for one value."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size == 1 or float(x.std(ddof=1)) == 0.0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Rate and Wilson score interval for ``successes`` out of ``n``."""
    if n == 0:
        return math.nan, 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = centre - half, centre + half
    low = 0.0 if low < 1e-12 else low  # 0 and n successes: the bound is exact, not 1e-18 of rounding
    high = 1.0 if high > 1 - 1e-12 else high
    return p, low, high


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t-test: (t statistic, two-sided p). NaN when either side has < 2 values."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size < 2 or y.size < 2:
        return math.nan, math.nan
    if np.all(x == x[0]) and np.all(y == y[0]):
        return (0.0, 1.0) if x[0] == y[0] else (math.copysign(math.inf, x[0] - y[0]), 0.0)
    res = stats.ttest_ind(x, y, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    x, y = np.asarray(a, float), np.asarray(b, float)
    pooled = math.sqrt(((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1)) / (x.size + y.size - 2))
    return float((x.mean() - y.mean()) / pooled) if pooled > 0 else math.nan


def permutation_test(a: Sequence[float], b: Sequence[float], max_exact: int = 200_000, seed: int = 0) -> dict:
    """Two-sided exact permutation test of the difference of means (every split of the pooled values).

    Returns ``p``, the smallest p any data could give at these sample sizes (``p_min`` =
    2 / C(n_a + n_b, n_a) for the two-sided test: with 3 vs 3 seeds it is 0.1, so no 3-seed
    comparison can reach 0.05), and ``exact`` (False when the splits are too many and
    ``max_exact`` random ones are drawn instead). Ties count as at least as extreme.
    """
    from itertools import combinations

    x, y = np.asarray(a, float), np.asarray(b, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        return {"p": math.nan, "p_min": math.nan, "exact": True}
    pooled = np.concatenate([x, y])
    n, k = pooled.size, x.size
    total = math.comb(n, k)
    observed = abs(x.mean() - y.mean())
    sums = pooled.sum()
    if total <= max_exact:
        splits = np.array(list(combinations(range(n), k)))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        splits = np.argsort(rng.random((max_exact, n)), axis=1)[:, :k]
        exact = False
    sx = pooled[splits].sum(axis=1)
    diffs = np.abs(sx / k - (sums - sx) / (n - k))
    p = float(np.mean(diffs >= observed - 1e-12 * max(1.0, observed)))
    return {"p": p, "p_min": min(1.0, 2.0 / total), "exact": exact}


def bootstrap_mean_ci(
    values: Sequence[float],
    low: float = -math.inf,
    high: float = math.inf,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float | None, float | None]:
    """Mean and percentile-bootstrap interval, inside the quantity's possible range [low, high].

    One value has no interval: (mean, None, None), reported as "n/a". The resampled means of values
    inside [low, high] stay inside it, and the bounds are clipped for safety.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, None, None
    mean = float(x.mean())
    if x.size == 1:
        return mean, None, None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return mean, float(np.clip(lo, low, high)), float(np.clip(hi, low, high))
