"""Numbers from the spearman trials: running best, per-method tables with CIs, the acceptance ratios, metrics."""

from __future__ import annotations

import math

import numpy as np

from gradlab.stats import mean_ci, wilson
from gradlab.studies.spearman.config import SpearmanParams


def best_so_far(rhos: list[float]) -> tuple[list[int], list[float]]:
    """Change points of the running maximum: (evaluation numbers, best spearmanr), plus the last evaluation."""
    evals, values, best = [], [], -math.inf
    for i, r in enumerate(rhos, start=1):
        if r > best:
            best = r
            evals.append(i)
            values.append(r)
    if evals and evals[-1] != len(rhos):
        evals.append(len(rhos))
        values.append(best)
    return evals, values


def summarise(results: list[dict], p: SpearmanParams) -> list[dict]:
    """Per method and n: median final spearmanr (and mean CI), reach rate, median evals to the target."""
    table = []
    for m in p.methods:
        for n in p.sizes:
            mine = [r for r in results if r["method"] == m and r["n"] == n]
            if not mine:
                continue
            finals = [r["final_spearman"] for r in mine]
            hits = [r["evals_to_099"] for r in mine]
            reached = sum(h is not None for h in hits)
            # never = +inf: the median is finite only when at least half the seeds reached the target
            med = float(np.median([h if h is not None else math.inf for h in hits]))
            mean, lo, hi = mean_ci(finals)
            rate, rlo, rhi = wilson(reached, len(mine))
            table.append(
                {
                    "method": m,
                    "n": n,
                    "seeds": len(mine),
                    "median_final_spearman": float(np.median(finals)),
                    "mean_final_spearman": mean,
                    "final_spearman_ci_low": lo,
                    "final_spearman_ci_high": hi,
                    "reached": reached,
                    "reach_rate_ci_low": rlo,
                    "reach_rate_ci_high": rhi,
                    "median_evals_to_099": med if math.isfinite(med) else None,
                    "max_evaluations": max(r["evaluations"] for r in mine),
                    "median_evaluations": float(np.median([r["evaluations"] for r in mine])),
                }
            )
    return table


def acceptance(table: list[dict], p: SpearmanParams) -> dict:
    """soft_rank vs the hill climbs at the smallest n (median evals to the target), and soft_rank at the largest n."""

    def row(m, n):
        return next((r for r in table if r["method"] == m and r["n"] == n), None)

    small, large = min(p.sizes), max(p.sizes)
    out: dict = {}
    soft = row("soft_rank", small)
    for hc in ("hill_climb", "hill_climb_tuned"):
        h = row(hc, small)
        if soft is None or h is None or soft["median_evals_to_099"] is None:
            continue
        if h["median_evals_to_099"] is not None:
            out[f"{hc}_over_soft_rank_evals_n{small}"] = h["median_evals_to_099"] / soft["median_evals_to_099"]
            out[f"{hc}_ratio_is_lower_bound"] = False
        else:  # the hill climb never reached the target: its whole budget is a lower bound
            out[f"{hc}_over_soft_rank_evals_n{small}"] = h["max_evaluations"] / soft["median_evals_to_099"]
            out[f"{hc}_ratio_is_lower_bound"] = True
    big = row("soft_rank", large)
    if big is not None:
        out[f"soft_rank_reached_n{large}"] = f"{big['reached']}/{big['seeds']}"
        out[f"soft_rank_median_final_spearman_n{large}"] = big["median_final_spearman"]
    return out


def step_value(evals: list[int], values: list[float], k: int) -> float:
    """The running maximum after k evaluations (held after the trial's last evaluation)."""
    i = int(np.searchsorted(evals, k, side="right")) - 1
    return values[i] if i >= 0 else math.nan


def curve_table(results: list[dict], n: int) -> list[dict]:
    """Median (and min, max over seeds) best spearmanr after k evaluations, k on a log grid."""
    rows = []
    for m in dict.fromkeys(r["method"] for r in results if r["n"] == n):
        mine = [r for r in results if r["method"] == m and r["n"] == n]
        last = max(r["evaluations"] for r in mine)
        grid = np.unique(np.round(np.logspace(0, math.log10(last), 60)).astype(int))
        for k in grid:
            vals = [step_value(r["best_evals"], r["best_spearman"], int(k)) for r in mine]
            rows.append(
                {
                    "method": m,
                    "evaluations": int(k),
                    "best_spearman_median": float(np.median(vals)),
                    "best_spearman_min": float(np.min(vals)),
                    "best_spearman_max": float(np.max(vals)),
                }
            )
    return rows


def metrics(table: list[dict], skipped: list[dict], reproduced: int, trials: int, p: SpearmanParams) -> dict:
    """The stage's metrics.json: per method and n, the skipped pairs, the npz check, the acceptance ratios."""
    return {
        "methods": {
            m: {
                f"n{row['n']}": {k: v for k, v in row.items() if k not in ("method", "n")}
                for row in table
                if row["method"] == m
            }
            for m in p.methods
        },
        "skipped": [f"{s['method']} n={s['n']}" for s in skipped],
        "npz_reproduced": f"{reproduced}/{trials}",
        "acceptance": acceptance(table, p),
        "accounting": "1 evaluation = 1 call of the list derivation, judged once by scipy.stats.spearmanr; "
        "a gradient step = 1 forward evaluation (backward not counted); evaluation 1 = the initial matrices",
    }
