"""Numbers from the spearman trials: CIs inside [-1, 1], paired exact tests, the verdicts (+1 / 0 / -1).

Seeds are paired across methods (a seed fixes the data and the initialisation), so comparisons are
paired: the exact sign-flip test on the per-seed differences (10 pairs: smallest attainable p
2/1024 = 0.00195; fewer than 5 pairs can never reach 0.05). A verdict is +1 or -1 only when that
test rejects at :data:`ALPHA`; otherwise 0, inconclusive (``gradlab.stats.VERDICT_ENCODING``).
Below :data:`gradlab.stats.MIN_CI_N` seeds there is no CI (None); the per-seed values are kept.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from gradlab.stats import bootstrap_mean_ci, sign_flip_test, verdict_p, wilson

ALPHA = 0.05


def _median(values) -> float | None:
    x = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(x)) if x else None


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def corr_ci(values) -> dict:
    """Mean and percentile-bootstrap 95 % CI of correlations, clipped to [-1, 1]; one value: no CI (None)."""
    mean, lo, hi = bootstrap_mean_ci(values, low=-1.0, high=1.0)
    return {"mean": mean, "ci_low": lo, "ci_high": hi}


def wilcoxon_exact(diffs) -> float | None:
    """Exact two-sided Wilcoxon signed-rank p (zero differences dropped); None when nothing is left."""
    d = np.asarray([x for x in diffs if math.isfinite(x) and x != 0.0], dtype=float)
    if d.size == 0:
        return None
    return float(stats.wilcoxon(d, method="exact").pvalue) if d.size <= 50 else float(stats.wilcoxon(d).pvalue)


def paired(a_name: str, a: list[float], b_name: str, b: list[float]) -> dict:
    """a - b over paired seeds (same data and initialisation): mean, per-seed differences, bootstrap CI
    (from :data:`MIN_CI_N` pairs; clipped to [-2, 2]), exact sign-flip p with its smallest attainable p,
    Wilcoxon p, wins, and the verdict ``flags.<a_name>_better``: +1 when the exact test rejects and a is
    ahead, -1 when it rejects and b is ahead, 0 (inconclusive) otherwise (``VERDICT_ENCODING``; under
    ``flags`` so that ``gradlab replicate`` compares it as a verdict)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, lo, hi = bootstrap_mean_ci(diffs, low=-2.0, high=2.0)
    test = sign_flip_test(diffs)
    p = _finite(test["p"])
    return {
        "diff_mean": _finite(mean),
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "diffs": [float(x) for x in diffs],
        "p_exact": p,
        "p_min": _finite(test["p_min"]),
        "p_wilcoxon": wilcoxon_exact(diffs),
        "pairs": test["n"],
        "wins": int(sum(x > 0 for x in diffs)),
        "losses": int(sum(x < 0 for x in diffs)),
        "ties": int(sum(x == 0 for x in diffs)),
        "flags": {f"{a_name}_better": verdict_p(p, mean, ALPHA)},
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


def ltr_task(results: list[dict], methods: list[str], strengths: list[float], strength: float) -> dict:
    """One task's numbers: per method, paired soft_rank vs each other method, the winner, the strength sweep."""
    by: dict[str, list[dict]] = {}
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
            "heldout_spearman_values": [float(r["heldout_spearman"]) for r in rows],
            "train_spearman_mean": train["mean"],
            "seeds": len(rows),
            "forward_median": _median([r["forward"] for r in rows]),
            "backward_median": _median([r["backward"] for r in rows]),
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
    out |= winner(present, {m: [r["heldout_spearman"] for r in by[m]] for m in present})
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
    return out


def winner(present: list[str], values: dict[str, list[float]]) -> dict:
    """Which method has the highest held-out spearmanr, as verdicts that a rerun cannot flip.

    The leader is the method with the highest mean (a fact: ``highest_mean_is_<m>``, a boolean). Its
    verdict ``flags.winner_is_<leader>`` is +1 only when the exact paired test puts it ahead of *every* other
    method (the runner-up included), else 0: the top methods are not separated. Every other method's
    ``winner_is_<m>`` is -1 when the leader is ahead of it by that test (it is excluded), else 0. The
    comparison with the runner-up is kept in full (``winner_vs_runner_up``).
    """
    if not present:
        return {}
    means = {m: float(np.mean(values[m])) for m in present}
    leader = max(present, key=lambda m: means[m])
    out: dict = {f"highest_mean_is_{m}": m == leader for m in present}
    vs = {m: paired("leader", values[leader], m, values[m]) for m in present if m != leader}
    ahead = {m: t["flags"]["leader_better"] for m, t in vs.items()}
    separated = bool(vs) and all(v == 1 for v in ahead.values())
    out["flags"] = {
        f"winner_is_{m}": (1 if separated else 0) if m == leader else (-1 if ahead[m] == 1 else 0) for m in present
    }
    out["leader_vs"] = {m: {"p_exact": t["p_exact"], "verdict": ahead[m]} for m, t in vs.items()}
    if vs:
        second = max(vs, key=lambda m: means[m])
        w = vs[second]
        out["winner_vs_runner_up"] = {
            k: w[k] for k in ("diff_mean", "diff_ci_low", "diff_ci_high", "diffs", "p_exact", "p_min", "pairs")
        }
        out["winner_vs_runner_up"]["verdict"] = ahead[second]
        out |= {f"runner_up_is_{m}": m == second for m in present}
    return out


def matrix_table(results: list[dict], derivations: list[str], methods: list[str], target: float) -> dict:
    """Per derivation and method: final spearmanr (mean, CI in [-1, 1], per-seed values), reach rate,
    evaluations, backward passes, budget units (counts only: the CPU seconds stay in matrix_runs.csv)."""
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
                "final_spearman_values": [float(r["final_spearman"]) for r in rows],
                "initial_spearman_mean": float(np.mean([r["initial_spearman"] for r in rows])),
                "seeds": len(rows),
                "reached_target": reached,
                "reach_rate_ci_low": rlo,
                "reach_rate_ci_high": rhi,
                "evaluations_median": _median([r["evaluations"] for r in rows]),
                "forward_median": _median([r["forward"] for r in rows]),
                "backward_median": _median([r["backward"] for r in rows]),
                "units_median": _median([r["units"] for r in rows]),
                # never = +inf: the median is finite only when at least half the seeds reached the target
                "evals_to_target_median": _finite(
                    np.median([r["evals_to_target"] if r["evals_to_target"] is not None else math.inf for r in rows])
                ),
                "units_to_target_median": _finite(
                    np.median([math.inf if r["units_to_target"] is None else r["units_to_target"] for r in rows])
                ),
                "accepted_moves_total": sum(r["accepted"] for r in rows) if rows[0]["accepted"] is not None else None,
            }
    return out


def anytime(rows: list[dict], grid: list[int]) -> dict:
    """Median over seeds of the trials' anytime curves (each sampled on ``grid``), and the seeds' curves."""
    curves = np.stack([np.asarray(r["curve"], dtype=np.float64) for r in sorted(rows, key=lambda r: r["seed"])])
    return {"x": list(grid), "median": [float(v) for v in np.median(curves, axis=0)], "seeds": curves}
