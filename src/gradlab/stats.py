"""Confidence intervals, tests and effect sizes (scipy) that fit the small seed counts of the studies.

Every comparison reports a spread over seeds. At small n:

* tests are exact: :func:`permutation_test` (difference of means, every split of the pooled values) and
  :func:`mann_whitney_exact` (ranks, exact null distribution, ties handled), each with ``p_min``, the
  smallest p any data could give at these sample sizes (3 vs 3 seeds: 0.1, so no 3-seed comparison can
  reach 0.05), beside Welch's t-test (:func:`welch`);
* intervals stay inside the quantity's possible range (``low``/``high``: correlations in [-1, 1],
  losses and rates >= 0, returns in [min, max]): :func:`bootstrap_mean_ci`, :func:`t_mean_ci`;
* one value has no interval: ``None`` (printed "n/a" by :func:`fmt` / :func:`fmt_ci`), never "x to x";
* effect sizes come with intervals: :func:`cohens_d_ci` (noncentral t), :func:`cliffs_delta` (bootstrap),
  :func:`bootstrap_diff_ci` (difference of means);
* :func:`compare` bundles all of these for two groups.

Nothing here warns with n = 1 or constant data (no numpy ``RuntimeWarning``): undefined is NaN or None.
Below :data:`MIN_CI_N` values no interval is given at all (a percentile bootstrap of 3 seeds is their
min-max): report the values and an exact test with its ``p_min`` (:func:`sign_flip_test`,
:func:`permutation_test`). Verdicts are +1 / 0 / -1 (:func:`verdict`, :func:`verdict_p`). A test whose ``p_min`` is
not below :data:`ALPHA` cannot decide at all (:func:`reachable`): say so with :func:`floor_note`, and the sample
size it would need (:func:`sign_flip_min_n`: 6 paired values at 0.05; :func:`permutation_min_n`: 4 per group).

scipy.stats has the Wilson interval, the permutation tests and the percentile bootstrap too
(``binomtest(k, n).proportion_ci(method="wilson")``, ``permutation_test``, ``bootstrap``). The ones here are
kept because scipy's numbers differ from them (in the last bits, or on ties and tiny values) and the
committed results are theirs; each says how. tests/test_stats_scipy.py checks every one against scipy: where
they agree, that they agree, and where they differ, the difference described.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import optimize, stats

_NA = "n/a"
MIN_CI_N = 10  # fewer values than this: no "95 % CI" (a percentile bootstrap of 3 values is their min-max)
ALPHA = 0.05  # an exact test decides a verdict when p < ALPHA, which its smallest attainable p must allow


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    return x[np.isfinite(x)]


def finite_or_none(value: float | None) -> float | None:
    """``value``, or None where it is None, NaN or infinite (JSON has no NaN or inf: a diverged run's loss)."""
    return None if value is None or not math.isfinite(value) else value


def _sd(x: np.ndarray) -> float:
    """Sample standard deviation (ddof 1); NaN below two values, without a warning."""
    return float(x.std(ddof=1)) if x.size >= 2 else math.nan


def _mean_and_enough(values: Sequence[float]) -> tuple[float, np.ndarray | None]:
    """The mean of the finite values (NaN if none), and the values when there are enough for an interval
    (at least :data:`MIN_CI_N`; else None)."""
    x = _finite(values)
    mean = float(x.mean()) if x.size else math.nan
    return mean, (x if x.size >= MIN_CI_N else None)


def t_mean_ci(
    values: Sequence[float], low: float = -math.inf, high: float = math.inf, confidence: float = 0.95
) -> tuple[float, float | None, float | None]:
    """Mean and Student-t interval clipped to the quantity's range [low, high]; fewer than
    :data:`MIN_CI_N` values: (mean, None, None) (report the values themselves).

    No finite value: (NaN, None, None). Identical values: the interval is the value (a spread of zero
    is measured, not missing).
    """
    mean, x = _mean_and_enough(values)
    if x is None:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * _sd(x) / math.sqrt(x.size))
    return mean, float(np.clip(mean - half, low, high)), float(np.clip(mean + half, low, high))


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Rate and Wilson score interval for ``successes`` out of ``n``; ``n`` = 0: (NaN, 0, 1).

    Not ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``: the same interval, but its arrangement of
    the formula rounds differently, so the bounds differ in the last bits (by up to 3.3e-16 for 47 % of the
    (k, n) with n <= 400, and for 14 of the 25 pairs behind the committed results); it also refuses n = 0.
    """
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
    """(mean a - mean b) / pooled SD; NaN when it is undefined (fewer than 3 values in all, or no spread)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    dof = x.size + y.size - 2
    if x.size == 0 or y.size == 0 or dof <= 0:
        return math.nan
    ssx = float(((x - x.mean()) ** 2).sum()) if x.size else 0.0
    ssy = float(((y - y.mean()) ** 2).sum()) if y.size else 0.0
    pooled = math.sqrt((ssx + ssy) / dof)
    return float((x.mean() - y.mean()) / pooled) if pooled > 0 else math.nan


def cohens_d_ci(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95
) -> tuple[float, float | None, float | None]:
    """Cohen's d with the exact interval from the noncentral t distribution (Steiger & Fouladi 1997).

    The pooled-variance t = d / sqrt(1/n_a + 1/n_b) has a noncentral t distribution with n_a + n_b - 2
    degrees of freedom and noncentrality delta / sqrt(1/n_a + 1/n_b); the interval inverts it. Undefined
    d (no spread): (NaN, None, None); fewer than :data:`MIN_CI_N` values a side: (d, None, None).
    """
    x, y = _finite(a), _finite(b)
    d = cohens_d(x, y)
    if not math.isfinite(d) or min(x.size, y.size) < MIN_CI_N:
        return d, None, None
    scale = math.sqrt(1 / x.size + 1 / y.size)
    t, df = d / scale, x.size + y.size - 2

    def bound(q: float) -> float:
        f = lambda nc: float(stats.nct.cdf(t, df, nc)) - q  # noqa: E731 - decreasing in nc
        lo, hi = t - 10.0, t + 10.0
        while f(lo) < 0:
            lo -= 10.0 + abs(lo)
        while f(hi) > 0:
            hi += 10.0 + abs(hi)
        return optimize.brentq(f, lo, hi, xtol=1e-10) * scale

    alpha = 1 - confidence
    return d, bound(1 - alpha / 2), bound(alpha / 2)


def _p_min(n_a: int, n_b: int) -> float:
    """The smallest two-sided p of an exact two-sample test at these sizes: 2 / C(n_a + n_b, n_a)."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def permutation_test(a: Sequence[float], b: Sequence[float], max_exact: int = 200_000, seed: int = 0) -> dict:
    """Two-sided exact permutation test of the difference of means (every split of the pooled values).

    Returns ``p``, the smallest p any data could give at these sample sizes (``p_min`` =
    2 / C(n_a + n_b, n_a) for the two-sided test: with 3 vs 3 seeds it is 0.1, so no 3-seed
    comparison can reach 0.05), and ``exact`` (False when the splits are too many and
    ``max_exact`` random ones are drawn instead). Ties count as at least as extreme.

    Not ``scipy.stats.permutation_test`` (``permutation_type="independent"``, statistic |mean a - mean b|,
    ``alternative="greater"``): the same exact p on ordinary data (the committed mdn comparison too), but scipy
    counts a tie only within 100 eps x |observed|, so a split that rounding puts at 0 while the observed
    difference is 6e-17 is not a tie there (a group against its own values in another order: p 0.8, here 1),
    values below 1e-12 all tie here, it needs two values per group, and its sampled path draws other splits.
    """
    x, y = _finite(a), _finite(b)
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
    return {"p": p, "p_min": _p_min(k, n - k), "exact": exact}


def mann_whitney_exact(a: Sequence[float], b: Sequence[float], max_exact: int = 200_000, seed: int = 0) -> dict:
    """Two-sided Mann-Whitney U test with its exact null distribution.

    Without ties, scipy's exact distribution; with ties, the exact permutation distribution of the
    midrank sum over every split (so ties never fall back to the normal approximation). Returns ``u``
    (U of ``a``), ``p``, ``p_min`` (2 / C(n_a + n_b, n_a)), ``exact`` and ``auc`` = U / (n_a n_b),
    the probability that a value of ``a`` exceeds one of ``b`` (ties half).
    """
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return {"u": math.nan, "p": math.nan, "p_min": math.nan, "exact": True, "auc": math.nan}
    pooled = np.concatenate([x, y])
    ranks = stats.rankdata(pooled)
    k, n = x.size, pooled.size
    u = float(ranks[:k].sum() - k * (k + 1) / 2)
    auc = u / (k * (n - k))
    if np.unique(pooled).size == n:
        p = float(stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
        return {"u": u, "p": min(1.0, p), "p_min": _p_min(k, n - k), "exact": True, "auc": auc}
    total = math.comb(n, k)
    if total <= max_exact:
        splits, exact = np.array(list(combinations(range(n), k))), True
    else:
        rng = np.random.default_rng(seed)
        splits, exact = np.argsort(rng.random((max_exact, n)), axis=1)[:, :k], False
    centre = k * (n + 1) / 2
    observed = abs(ranks[:k].sum() - centre)
    deviations = np.abs(ranks[splits].sum(axis=1) - centre)
    p = float(np.mean(deviations >= observed - 1e-9))
    return {"u": u, "p": p, "p_min": _p_min(k, n - k), "exact": exact, "auc": auc}


@dataclass(frozen=True)
class Resampling:
    """How a percentile-bootstrap interval is drawn: its confidence, how many resamples, their seed.

    One value serves :func:`bootstrap_mean_ci`, :func:`bootstrap_diff_ci` and :func:`cliffs_delta`, e.g.
    ``bootstrap_mean_ci(x, 0.0, 1.0, Resampling(confidence=0.9))``.
    """

    confidence: float = 0.95
    n_boot: int = 10_000
    seed: int = 0

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def samples(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[n_boot, x.size]: resamples of ``x`` (with replacement, each as long as ``x``)."""
        return x[rng.integers(0, x.size, (self.n_boot, x.size))]

    def interval(self, draws: np.ndarray, low: float, high: float) -> tuple[float, float]:
        """The percentile interval of bootstrap ``draws`` (``np.quantile``), clipped to [low, high]."""
        lo, hi = np.quantile(draws, [(1 - self.confidence) / 2, (1 + self.confidence) / 2])
        return float(np.clip(lo, low, high)), float(np.clip(hi, low, high))


DEFAULT_RESAMPLING = Resampling()


def _resampling(value: object, where: str) -> Resampling:
    """``value`` if it is a :class:`Resampling`; else a TypeError (an old call passed the confidence here)."""
    if not isinstance(value, Resampling):
        raise TypeError(f"{where}: resampling must be a Resampling, e.g. Resampling(confidence=0.9), got {value!r}")
    return value


def bootstrap_mean_ci(
    values: Sequence[float],
    low: float = -math.inf,
    high: float = math.inf,
    resampling: Resampling = DEFAULT_RESAMPLING,
) -> tuple[float, float | None, float | None]:
    """Mean and percentile-bootstrap interval, inside the quantity's possible range [low, high].

    Fewer than :data:`MIN_CI_N` values have no interval: (mean, None, None), reported as "n/a" (with
    fewer, the percentile bootstrap is about the min-max of the values, not a 95 % interval). The
    resampled means of values inside [low, high] stay inside it, and the bounds are clipped for safety.

    Not ``scipy.stats.bootstrap(..., method="percentile", rng=resampling.rng())``: it draws the very same
    resamples (its ``bootstrap_distribution`` equals this one bit for bit) but reads the interval with
    ``scipy.stats.quantile``, which rounds differently from ``np.quantile``: the bounds differ in the last bits
    (21 of the 95 committed intervals of :func:`bootstrap_mean_ci`, by up to 1.1e-16; the committed mdn
    difference's upper bound -0.569143192358315 would be -0.5691431923583149).
    """
    resampling = _resampling(resampling, "bootstrap_mean_ci")
    mean, x = _mean_and_enough(values)
    if x is None:
        return mean, None, None
    return mean, *resampling.interval(resampling.samples(x, resampling.rng()).mean(axis=1), low, high)


def bootstrap_diff_ci(
    a: Sequence[float],
    b: Sequence[float],
    low: float = -math.inf,
    high: float = math.inf,
    resampling: Resampling = DEFAULT_RESAMPLING,
) -> tuple[float, float | None, float | None]:
    """mean(a) - mean(b) and a percentile-bootstrap interval (each group resampled on its own).

    ``low``/``high`` bound the *difference* (for values in [m, M] it lies in [m - M, M - m]). A side
    with fewer than :data:`MIN_CI_N` values: (difference, None, None). Kept for the reason given in
    :func:`bootstrap_mean_ci` (scipy: the same resamples of each group, x's drawn first, another quantile).
    """
    resampling = _resampling(resampling, "bootstrap_diff_ci")
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return math.nan, None, None
    diff = float(x.mean() - y.mean())
    if min(x.size, y.size) < MIN_CI_N:
        return diff, None, None
    rng = resampling.rng()
    bx = resampling.samples(x, rng).mean(axis=1)  # x's resamples first, then y's
    by = resampling.samples(y, rng).mean(axis=1)
    return diff, *resampling.interval(bx - by, low, high)


def cliffs_delta(
    a: Sequence[float], b: Sequence[float], resampling: Resampling = DEFAULT_RESAMPLING
) -> tuple[float, float | None, float | None]:
    """Cliff's delta P(a > b) - P(a < b) in [-1, 1] with a percentile-bootstrap interval (inside [-1, 1]).

    A side with fewer than :data:`MIN_CI_N` values: (delta, None, None). Kept for the reason given in
    :func:`bootstrap_mean_ci` (scipy: the same resamples, another quantile).
    """
    resampling = _resampling(resampling, "cliffs_delta")
    x, y = _finite(a), _finite(b)
    if x.size == 0 or y.size == 0:
        return math.nan, None, None
    delta = float(np.sign(x[:, None] - y[None, :]).mean())
    if min(x.size, y.size) < MIN_CI_N:
        return delta, None, None
    rng = resampling.rng()
    bx, by = resampling.samples(x, rng), resampling.samples(y, rng)
    deltas = np.sign(bx[:, :, None] - by[:, None, :]).mean(axis=(1, 2))
    return delta, *resampling.interval(deltas, -1.0, 1.0)


def compare(
    a: Sequence[float],
    b: Sequence[float],
    low: float = -math.inf,
    high: float = math.inf,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Everything a small-n comparison of two groups reports, as plain numbers (None where undefined).

    ``[low, high]`` is the range of one value (a loss: [0, inf); a return: [min, max]); the difference's
    interval is clipped to [low - high, high - low]. Keys: ``n_a``, ``n_b``, ``mean_a``, ``mean_b``,
    ``diff`` with ``diff_ci_low``/``diff_ci_high`` (bootstrap), ``welch_t``, ``welch_p``,
    ``permutation_p``, ``mann_whitney_p`` (both exact when the splits are few), ``p_min`` (their floor),
    ``cohens_d`` with ``cohens_d_ci_low``/``_high`` (noncentral t), ``cliffs_delta`` with its interval.
    """
    x, y = _finite(a), _finite(b)
    span = high - low
    resampling = Resampling(confidence, seed=seed)
    diff, dlo, dhi = bootstrap_diff_ci(x, y, -span, span, resampling)
    t, p = welch(x, y) if x.size and y.size else (math.nan, math.nan)
    perm, mw = permutation_test(x, y, seed=seed), mann_whitney_exact(x, y, seed=seed)
    d, d_lo, d_hi = cohens_d_ci(x, y, confidence)
    cd, cd_lo, cd_hi = cliffs_delta(x, y, resampling)

    return {
        "n_a": int(x.size),
        "n_b": int(y.size),
        "mean_a": finite_or_none(float(x.mean()) if x.size else math.nan),
        "mean_b": finite_or_none(float(y.mean()) if y.size else math.nan),
        "diff": finite_or_none(diff),
        "diff_ci_low": dlo,
        "diff_ci_high": dhi,
        "welch_t": finite_or_none(t),
        "welch_p": finite_or_none(p),
        "permutation_p": finite_or_none(perm["p"]),
        "mann_whitney_p": finite_or_none(mw["p"]),
        "p_min": finite_or_none(perm["p_min"]),
        "exact": bool(perm["exact"] and mw["exact"]),
        "cohens_d": finite_or_none(d),
        "cohens_d_ci_low": d_lo,
        "cohens_d_ci_high": d_hi,
        "cliffs_delta": finite_or_none(cd),
        "cliffs_delta_ci_low": cd_lo,
        "cliffs_delta_ci_high": cd_hi,
    }


def sign_flip_test(values: Sequence[float], max_exact: int = 2**20, seed: int = 0) -> dict:
    """Two-sided exact sign-flip test that the mean of ``values`` is 0 (one sample, or paired differences).

    Under the null each value's sign is a fair coin; p is the share of the 2^n sign patterns whose mean
    is at least as far from 0 as the observed one (ties count). ``p_min`` = 2 / 2^n is the smallest p any
    data could give (5 values: 0.0625, so 5 seeds can never reach 0.05; 6 values: 0.03125). Above
    ``max_exact`` patterns, that many random ones are drawn (``exact`` False).

    Not ``scipy.stats.permutation_test`` (one sample, ``permutation_type="samples"`` flips the signs): the same
    exact p on ordinary data (every committed p traced to its values too), but ties are counted as in
    :func:`permutation_test` (within 1e-12 here: values of 1e-13 give p 1, scipy 0.0625), it needs two values and
    samples other patterns.
    """
    x = _finite(values)
    n = x.size
    if n == 0:
        return {"p": math.nan, "p_min": math.nan, "exact": True, "n": 0}
    observed = abs(x.mean())
    if 2**n <= max_exact:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)
        exact = True
    else:
        signs = np.random.default_rng(seed).choice([-1, 1], size=(max_exact, n))
        exact = False
    means = np.abs((signs * x[None, :]).mean(axis=1))
    p = float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))
    return {"p": p, "p_min": min(1.0, 2.0 / 2**n), "exact": exact, "n": int(n)}


def sign_flip_min_n(alpha: float = ALPHA) -> int:
    """The fewest values whose exact sign-flip test (:func:`sign_flip_test`) can give p < ``alpha``: the smallest n
    with 2 / 2^n < alpha (6 at 0.05: 0.03125; 5 values stop at 0.0625). The same floor holds for the exact
    Wilcoxon signed-rank test and for the exact two-sided binomial (McNemar) test on n discordant pairs. scipy has no
    such function; tests/test_stats_scipy.py checks the floor against scipy's exact tests."""
    if not 0 < alpha <= 1:
        raise ValueError(f"sign_flip_min_n: alpha must be in (0, 1], got {alpha!r}")
    n = 1
    while 2.0 / 2**n >= alpha:
        n += 1
    return n


def permutation_min_n(alpha: float = ALPHA) -> int:
    """The fewest values per group (two equal groups) whose exact two-sample test (:func:`permutation_test`,
    :func:`mann_whitney_exact`) can give p < ``alpha``: the smallest n with 2 / C(2n, n) < alpha (4 at 0.05:
    0.0286; 3 vs 3 stops at 0.1). scipy has no such function; tests/test_stats_scipy.py checks the floor against
    scipy's exact tests."""
    if not 0 < alpha <= 1:
        raise ValueError(f"permutation_min_n: alpha must be in (0, 1], got {alpha!r}")
    n = 1
    while _p_min(n, n) >= alpha:
        n += 1
    return n


def reachable(p_min: float | None, alpha: float = ALPHA) -> bool:
    """Can an exact test whose smallest attainable p is ``p_min`` decide at ``alpha`` at all (p_min < alpha)?

    False for a missing or NaN floor. When it is False the test's verdict is 0 *by construction*, whatever the
    data: say "n too small for p < alpha" (:func:`floor_note`), not merely "inconclusive"."""
    return p_min is not None and math.isfinite(p_min) and p_min < alpha


def floor_note(n: int, p_min: float | None, needed: int, alpha: float = ALPHA, unit: str = "seeds") -> str:
    """The prose of a test that cannot reach ``alpha`` at this sample size, with every number passed in (read
    from the results by the caller): "5 seeds cannot reach p < 0.05 (smallest attainable p 0.0625; this test needs
    at least 6)". Empty when the test can reach it (:func:`reachable`)."""
    if reachable(p_min, alpha):
        return ""
    return (
        f"{n} {unit} cannot reach p < {alpha:g} (smallest attainable p {fmt(p_min)}; this test needs at least {needed})"
    )


VERDICT_ENCODING = (
    "+1: the claim holds (its interval or exact test excludes the other outcome); "
    "-1: the opposite holds (likewise excluded); 0: inconclusive (the interval contains the boundary, "
    "or the test cannot reject it)"
)


def verdict(low: float | None, high: float | None, threshold: float = 0.0) -> int:
    """+1 when the interval [low, high] lies above ``threshold``, -1 when below, 0 otherwise (or no interval).

    The encoding of every statistical verdict (``flags.*``): an interval that contains the boundary
    decides nothing, whatever the point estimate says (:data:`VERDICT_ENCODING`).
    """
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return 0
    if low > threshold:
        return 1
    if high < threshold:
        return -1
    return 0


def verdict_p(p: float | None, effect: float | None, alpha: float = 0.05) -> int:
    """sign(``effect``) when the exact test's ``p`` < ``alpha``, else 0 (inconclusive)."""
    if p is None or effect is None or not (math.isfinite(p) and math.isfinite(effect)) or p >= alpha or effect == 0:
        return 0
    return 1 if effect > 0 else -1


def verdict_word(value: int, yes: str = "yes", no: str = "no") -> str:
    """The prose of a verdict: ``yes`` (+1), ``no`` (-1) or "inconclusive" (0)."""
    return {1: yes, -1: no}.get(int(value), "inconclusive")


def fmt(value, spec: str = ".3g") -> str:
    """``format(value, spec)``, or "n/a" for None, NaN and infinities (summaries never print nan/None/inf)."""
    if value is None or isinstance(value, bool):
        return _NA if value is None else ("yes" if value else "no")
    v = float(value)
    return format(v, spec) if math.isfinite(v) else _NA


def fmt_ci(low, high, spec: str = ".3g") -> str:
    """ "low to high", or "n/a" when either bound is missing or not finite."""
    a, b = fmt(low, spec), fmt(high, spec)
    return _NA if _NA in (a, b) else f"{a} to {b}"


def fmt_spread(low, high, per_seed=None, spec: str = ".3g") -> str:
    """ "95 % CI low to high" when there is an interval, else the values themselves ("per seed: a, b, c"),
    else "n/a": below :data:`MIN_CI_N` seeds the reader gets the seeds, never a pretend interval."""
    if low is not None and high is not None and _NA not in (fmt(low, spec), fmt(high, spec)):
        return f"95 % CI {fmt_ci(low, high, spec)}"
    if per_seed:
        return "per seed: " + ", ".join(fmt(v, spec) for v in per_seed)
    return _NA
