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
from gradlab.studies.spearman.derivation import ROWS, Derivation
from gradlab.studies.spearman.stall import best_tie_ceiling, tie_ceiling

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


def _tied(x: np.ndarray) -> int:
    """How many values of ``x`` repeat an earlier one (0: no ties)."""
    return int(x.size - np.unique(x).size)


def ties_of(list1, list2) -> dict:
    """Ties in the two lists and the tie ceiling: the highest spearmanr reachable when one list keeps its ties and
    the other is untied (``stall.tie_ceiling`` of the tied one; 1 without ties; None when both lists have ties)."""
    a, b = np.asarray(list1, np.float64).reshape(-1), np.asarray(list2, np.float64).reshape(-1)
    t1, t2 = _tied(a), _tied(b)
    ceiling = None if t1 and t2 else tie_ceiling(a if t1 else b)
    return {"list1_tied": t1, "list2_tied": t2, "tie_ceiling": ceiling}


def add_tie_ceilings(matrix: dict, results: list[dict], derivations: list[str], custom: str, n: int) -> dict:
    """Beside each method's final spearmanr, where its final lists have ties: the tie ceiling per seed, its mean,
    the seeds at their ceiling and the mean gap to it (into ``matrix[d][m]``). Returns, per derivation, how many
    trials ended with ties and, for the count (a list that takes only ROWS + 1 values), the best ceiling over every
    freq_m (``stall.best_tie_ceiling``)."""
    out: dict = {}
    for d in derivations:
        derivation = Derivation(d, custom=custom if d == "custom" else "")
        tied_trials = 0
        for m, row in matrix[d].items():
            rows = sorted((r for r in results if r["derivation"] == d and r["method"] == m), key=lambda r: r["seed"])
            ties = [ties_of(*derivation.numpy(r["v"], r["freq_m"])) for r in rows]
            tied = sum(bool(t["list1_tied"] or t["list2_tied"]) for t in ties)
            tied_trials += tied
            row["seeds_tied"] = tied
            if not tied:
                continue
            ceil = [t["tie_ceiling"] for t in ties]
            known = [(c, r["final_spearman"]) for c, r in zip(ceil, rows, strict=True) if c is not None]
            row["tie_ceiling_values"] = ceil
            row["tie_ceiling_mean"] = float(np.mean([c for c, _ in known])) if known else None
            row["seeds_at_tie_ceiling"] = sum(f >= c - 1e-12 for c, f in known)
            row["gap_to_tie_ceiling_mean"] = float(np.mean([c - f for c, f in known])) if known else None
        out[d] = {"trials_tied": tied_trials}
        if d == "threshold_count":
            out[d] |= {"count_levels": ROWS + 1, "best_ceiling": best_tie_ceiling(n, ROWS + 1)}
    return out


def _flag(count: int, total: int) -> int:
    """+1 when every seed has the property, -1 when none has it, 0 when some have it."""
    return 1 if count == total else -1 if count == 0 else 0


def climb_table(rows: list[dict], derivations: list[str], matrices: list[str]) -> dict:
    """The question's climb (``stall.asker_climb``) per derivation and climbed matrices, over seeds: final and initial
    spearmanr, seeds stalled (certified: a pass kept nothing), and why: on a plateau (no move changed spearmanr) or
    at a local optimum (every move that changed it lowered it); seeds where the gap argument alone certifies the
    stall at the start (``None``: no argument for a custom derivation); the tie ceiling where the lists have ties.

    ``flags.stalled``: +1 every seed stalled, -1 none did within the passes, 0 some. ``flags.plateau``: +1 every
    seed stalled on a plateau, -1 every seed stalled at a local optimum, 0 otherwise (a mix, or not all stalled)."""
    out: dict = {}
    for d in derivations:
        out[d] = {}
        for mat in matrices:
            rs = sorted((r for r in rows if r["derivation"] == d and r["matrices"] == mat), key=lambda r: r["seed"])
            if not rs:
                continue
            n = len(rs)
            stalled = sum(bool(r["stalled"]) for r in rs)
            plateau = sum(bool(r["plateau"]) for r in rs)
            local = sum(bool(r["local_optimum"]) for r in rs)
            gap = [r["gap_certified"] for r in rs]
            final = [float(r["final_spearman"]) for r in rs]
            initial = [float(r["initial_spearman"]) for r in rs]
            tied = [r for r in rs if r["list1_tied"] or r["list2_tied"]]
            ceil = [r["tie_ceiling"] for r in tied if r["tie_ceiling"] is not None]
            out[d][mat] = {
                "seeds": n,
                "seeds_stalled": stalled,
                "seeds_plateau": plateau,
                "seeds_local_optimum": local,
                "seeds_gap_certified": None if any(g is None for g in gap) else sum(bool(g) for g in gap),
                "seeds_moved": sum(r["kept"] > 0 for r in rs),
                "kept_total": int(sum(r["kept"] for r in rs)),
                "kept_max": int(max(r["kept"] for r in rs)),
                "passes_max": int(max(r["passes"] for r in rs)),
                "proposals_total": int(sum(r["proposals"] for r in rs)),
                "computed_total": int(sum(r["computed"] for r in rs)),
                "moves_per_pass": int(rs[0]["last_pass_moves"]),
                "last_pass_changing_median": _median([r["last_pass_changing"] for r in rs]),
                "initial_spearman_mean": float(np.mean(initial)),
                "final_spearman_mean": float(np.mean(final)),
                "final_spearman_values": final,
                "gain_mean": float(np.mean(np.subtract(final, initial))),
                "gain_max": float(np.max(np.subtract(final, initial))),
                "seeds_tied": len(tied),
                "tie_ceiling_mean": float(np.mean(ceil)) if ceil else None,
                "flags": {
                    "stalled": _flag(stalled, n),
                    "plateau": 1 if plateau == n else -1 if local == n else 0,
                },
            }
    return out


def climb_overall(climb: dict) -> dict:
    """Every climb together: ``flags.stalled_everywhere`` (+1: every seed of every derivation and matrices stalled;
    -1: none did; 0: some), and the range of the mean final spearmanr over derivations and matrices."""
    cells = [c for by_matrix in climb.values() for c in by_matrix.values()]
    stalled = sum(c["seeds_stalled"] for c in cells)
    total = sum(c["seeds"] for c in cells)
    finals = [c["final_spearman_mean"] for c in cells]
    return {
        "climbs": total,
        "climbs_stalled": stalled,
        "derivations": len(climb),
        "final_spearman_mean_min": float(min(finals)),
        "final_spearman_mean_max": float(max(finals)),
        "kept_max": int(max(c["kept_max"] for c in cells)),
        "flags": {"stalled_everywhere": _flag(stalled, total)},
    }
