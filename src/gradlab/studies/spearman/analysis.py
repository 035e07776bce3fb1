"""Numbers from the spearman trials: CIs inside [-1, 1], paired exact tests, flags the verdicts come from."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
from scipy import stats

from gradlab.stats import bootstrap_mean_ci, wilson


def _median(values) -> float | None:
    x = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(x)) if x else None


def _finite(x) -> float | None:
    return float(x) if math.isfinite(x) else None


def corr_ci(values) -> dict:
    """Mean and percentile-bootstrap 95 % CI of correlations, clipped to [-1, 1]; one value: no CI (None)."""
    mean, lo, hi = bootstrap_mean_ci(values, low=-1.0, high=1.0)
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def sign_flip_test(diffs, max_exact: int = 16, n_random: int = 100_000, seed: int = 0) -> dict:
    """Two-sided exact paired permutation (sign-flip) test of mean(diffs) = 0.

    Every one of the 2^k sign patterns when k <= ``max_exact`` (else ``n_random`` drawn ones).
    ``p_min`` = 2 / 2^k is the smallest p any k pairs can give (k = 10: 0.00195). Zero
    differences contribute nothing whatever their sign; ties with the observed |mean| count as extreme.
    """
    d = np.asarray([x for x in diffs if math.isfinite(x)], dtype=float)
    k = d.size
    if k == 0:
        return {"p": None, "p_min": None, "exact": True, "pairs": 0}
    observed = abs(d.mean())
    if k <= max_exact:
        signs = np.array(list(product((1.0, -1.0), repeat=k)))
        exact = True
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_random, k))
        exact = False
    means = np.abs(signs @ d) / k
    p = float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))
    return {"p": p, "p_min": min(1.0, 2.0 / 2**k), "exact": exact, "pairs": k}


def wilcoxon_exact(diffs) -> float | None:
    """Exact two-sided Wilcoxon signed-rank p (zero differences dropped); None when nothing is left."""
    d = np.asarray([x for x in diffs if math.isfinite(x) and x != 0.0], dtype=float)
    if d.size == 0:
        return None
    return float(stats.wilcoxon(d, method="exact").pvalue) if d.size <= 50 else float(stats.wilcoxon(d).pvalue)


def paired(a_name: str, a: list[float], b_name: str, b: list[float]) -> dict:
    """a - b over seeds: mean, bootstrap CI (clipped to [-2, 2]), sign-flip and Wilcoxon p, wins, flags."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, lo, hi = bootstrap_mean_ci(diffs, low=-2.0, high=2.0)
    test = sign_flip_test(diffs)
    p = test["p"]
    significant = p is not None and p < 0.05
    return {
        "diff_mean": mean,
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "p_exact": p,
        "p_min": test["p_min"],
        "p_wilcoxon": wilcoxon_exact(diffs),
        "pairs": test["pairs"],
        "wins": int(sum(x > 0 for x in diffs)),
        "losses": int(sum(x < 0 for x in diffs)),
        "ties": int(sum(x == 0 for x in diffs)),
        f"{a_name}_better": bool(significant and lo is not None and lo > 0),
        f"{b_name}_better": bool(significant and hi is not None and hi < 0),
    }


def label_of(method: str, knob: float, strength: float, tau: float) -> str:
    """The result name of an LTR trial: the headline soft_rank / neuralsort keep their method's name."""
    if method == "soft_rank" and knob != strength:
        return f"soft_rank_s{_tag(knob)}"
    if method == "neuralsort" and knob != tau:
        return f"neuralsort_t{_tag(knob)}"
    return method


def _tag(value: float) -> str:
    return format(value, "g").replace(".", "p")


def ltr_task(
    results: list[dict], methods: list[str], strengths: list[float], strength: float, dfo_seconds: float
) -> dict:
    """One task's numbers: per method, paired soft_rank vs each other method, the winner, the strength sweep."""
    by = {}
    for r in results:
        by.setdefault(r["label"], []).append(r)
    for rows in by.values():
        rows.sort(key=lambda r: r["seed"])
    out: dict = {}
    for m in methods:
        rows = by.get(m, [])
        if not rows:
            continue
        held = corr_ci([r["heldout_spearman"] for r in rows])
        train = corr_ci([r["train_spearman"] for r in rows])
        out[m] = {
            "heldout_spearman_mean": held["mean"],
            "heldout_spearman_ci_low": held["ci_low"],
            "heldout_spearman_ci_high": held["ci_high"],
            "train_spearman_mean": train["mean"],
            "seeds": len(rows),
            "forward_median": _median([r["forward"] for r in rows]),
            "backward_median": _median([r["backward"] for r in rows]),
            "seconds_median": _median([r["seconds"] for r in rows]),
        }
    oracle = corr_ci([r["oracle_spearman"] for r in by[methods[0]]]) if methods[0] in by else None
    if oracle:
        out["oracle_heldout_mean"] = oracle["mean"]
    pairs = {}
    if "soft_rank" in by:
        mine = [r["heldout_spearman"] for r in by["soft_rank"]]
        for m in methods:
            if m != "soft_rank" and m in by:
                pairs[f"soft_rank_vs_{m}"] = paired("soft_rank", mine, m, [r["heldout_spearman"] for r in by[m]])
    out["paired"] = pairs
    present = [m for m in methods if m in out]
    best = max(present, key=lambda m: out[m]["heldout_spearman_mean"])
    for m in present:
        out[f"winner_is_{m}"] = m == best
    # is the winner ahead of the runner-up by an exact paired test?
    if len(present) > 1:
        second = max((m for m in present if m != best), key=lambda m: out[m]["heldout_spearman_mean"])
        w = paired(
            "winner",
            [r["heldout_spearman"] for r in by[best]],
            "runner_up",
            [r["heldout_spearman"] for r in by[second]],
        )
        out["winner_vs_runner_up"] = {k: w[k] for k in ("diff_mean", "diff_ci_low", "diff_ci_high", "p_exact")}
        out["winner_vs_runner_up"]["winner_better"] = w["winner_better"]
        out["runner_up_is_" + second] = True
    sweep = {}
    for s in strengths:
        rows = by.get("soft_rank" if s == strength else f"soft_rank_s{_tag(s)}")
        if not rows:
            continue
        held = corr_ci([r["heldout_spearman"] for r in rows])
        sweep[f"strength_{_tag(s)}"] = {
            "strength": s,
            "heldout_mean": held["mean"],
            "heldout_ci_low": held["ci_low"],
            "heldout_ci_high": held["ci_high"],
            "train_mean": float(np.mean([r["train_spearman"] for r in rows])),
        }
    out["sweep"] = sweep
    grad = [r["seconds"] for r in by.get("soft_rank", [])]
    dfo = [r for m in ("cma", "random_search", "nelder_mead") for r in by.get(m, [])]
    if grad and dfo:
        out["dfo_budget_at_least_soft_rank_median_time"] = bool(dfo_seconds >= float(np.median(grad)))
    return out


def matrix_table(results: list[dict], derivations: list[str], methods: list[str], target: float) -> dict:
    """Per derivation and method: final spearmanr (mean, CI in [-1, 1]), reach rate, evaluations, passes."""
    out: dict = {}
    for d in derivations:
        out[d] = {}
        for m in methods:
            rows = sorted((r for r in results if r["derivation"] == d and r["method"] == m), key=lambda r: r["seed"])
            if not rows:
                continue
            fin = corr_ci([r["final_spearman"] for r in rows])
            reached = sum(r["evals_to_target"] is not None for r in rows)
            rate, rlo, rhi = wilson(reached, len(rows))
            out[d][m] = {
                "final_spearman_mean": fin["mean"],
                "final_spearman_ci_low": fin["ci_low"],
                "final_spearman_ci_high": fin["ci_high"],
                "final_spearman_median": _median([r["final_spearman"] for r in rows]),
                "initial_spearman_mean": float(np.mean([r["initial_spearman"] for r in rows])),
                "seeds": len(rows),
                "reached_target": reached,
                "reach_rate_ci_low": rlo,
                "reach_rate_ci_high": rhi,
                "evaluations_median": _median([r["evaluations"] for r in rows]),
                "forward_median": _median([r["forward"] for r in rows]),
                "backward_median": _median([r["backward"] for r in rows]),
                # never = +inf: the median is finite only when at least half the seeds reached the target
                "evals_to_target_median": _finite(
                    np.median([r["evals_to_target"] if r["evals_to_target"] is not None else math.inf for r in rows])
                ),
                "seconds_median": _median([r["seconds"] for r in rows]),
                "seconds_to_target_median": _finite(
                    np.median([math.inf if r["seconds_to_target"] is None else r["seconds_to_target"] for r in rows])
                ),
                "accepted_moves_total": sum(r["accepted"] for r in rows) if rows[0]["accepted"] is not None else None,
            }
    return out
