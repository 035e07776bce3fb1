"""Can PyTorch adjust matrices so that a Spearman rank correlation computed from them reaches 1?

The plan, top to bottom:

1. The question's set-up: v = randn(n, 1), freq_m = randn(12, n); list1 = (v v^T).sum(1),
   list2 = freq_m.mean(0) (configurable, derivation.py); scipy.stats.spearmanr is the referee.
2. Every method x size n x seed is one trial (run on all cores by gradlab.parallel.map_trials):
   the question's hill climb (delta = 0.01, keep if better), a tuned hill climb, scipy's
   Nelder-Mead on -spearmanr, gradient ascent on the Pearson correlation of the lists, and
   gradient ascent on the Pearson correlation of their soft ranks (Blondel et al. 2020).
   Pairs beyond a method's ``max_n`` are skipped and listed with the reason.
3. Each trial counts evaluations of the list derivation (methods.py says how), records
   spearmanr at each one, and returns its final matrices; the main process saves them to
   final/<method>_n<n>_seed<k>.npz, recomputes the lists from the saved matrices and checks
   that spearmanr reproduces the reported value exactly.
4. Tables (runs.csv; wall times only there), curves (best spearmanr vs evaluations), figures,
   metrics.json (medians per method and n: deterministic) and summary.md.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import torch

from gradlab import plotting
from gradlab.parallel import default_workers, map_trials
from gradlab.stats import mean_ci, wilson
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.derivation import Derivation, init_matrices
from gradlab.studies.spearman.methods import Referee, hill_climb, nelder_mead, spearman
from gradlab.studies.spearman.softrank import soft_rank

GRADIENT = ("pearson", "soft_rank")


def skip_reason(p: SpearmanParams, method: str, n: int) -> str | None:
    limit = getattr(p, method).max_n
    if n <= limit:
        return None
    why = {
        "hill_climb": "one entry per evaluation: the budget cannot reorder this many entries",
        "hill_climb_tuned": "one entry per evaluation: the budget cannot reorder this many entries",
        "scipy": f"the Nelder-Mead simplex holds {13 * n + 1} x {13 * n} floats "
        f"({8 * 13 * n * (13 * n + 1) / 2**30:.2g} GiB) and each iteration costs O((13 n)^2) operations",
    }.get(method, "beyond max_n")
    return f"n > {method}.max_n = {limit}: {why}"


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


def run_trial(spec: dict) -> dict:
    """One method on one (n, seed): plain data in, plain data out (runs in a worker process)."""
    torch.set_num_threads(1)
    method, n, seed, p = spec["method"], spec["n"], spec["seed"], SpearmanParams.model_validate(spec["params"])
    derivation = Derivation(p.derivation.list1, p.derivation.list2)
    v, freq_m = init_matrices(n, seed)
    referee = Referee(derivation, target=p.target)
    surrogate: list[float] = []
    start = time.perf_counter()
    if method in ("hill_climb", "hill_climb_tuned"):
        h = getattr(p, method)
        v, freq_m = hill_climb(v, freq_m, referee, h.max_evals, h.delta, h.accept, seed, p.stop_at)
    elif method == "scipy":
        v, freq_m = nelder_mead(v, freq_m, referee, p.scipy.max_evals, p.stop_at)
    else:
        from gradlab.studies.spearman.module import CorrelationAscent

        g = getattr(p, method)
        strength = g.regularization_strength if method == "soft_rank" else 1.0  # pearson has none
        module = CorrelationAscent(v, freq_m, derivation, referee, method, g.lr, strength, p.stop_at, g.optimizer)
        v, freq_m = module.fit(g.max_steps)
        surrogate = module.surrogate
    seconds = time.perf_counter() - start
    with torch.no_grad():
        list1, list2 = derivation(v, freq_m)
    evals, best = best_so_far(referee.rhos)
    return {
        "method": method,
        "n": n,
        "seed": seed,
        "final_spearman": spearman(list1, list2),
        "evaluations": referee.evals,
        "seconds": seconds,
        "evals_to_099": referee.evals_to_target,
        "seconds_to_099": referee.seconds_to_target,
        "initial_spearman": referee.rhos[0],
        "best_evals": evals,
        "best_spearman": best,
        "rhos": referee.rhos if method in GRADIENT else [],
        "surrogate": surrogate,
        "v": v.numpy(),
        "freq_m": freq_m.numpy(),
        "list1": list1.numpy(),
        "list2": list2.numpy(),
    }


def run(p: SpearmanParams, ctx) -> dict:
    derivation = Derivation(p.derivation.list1, p.derivation.list2)
    seeds = [p.seed + k for k in range(p.seeds)]
    plain = p.model_dump(mode="json")
    specs, skipped = [], []
    for method in p.methods:
        for n in p.sizes:
            reason = skip_reason(p, method, n)
            if reason:
                skipped.append({"method": method, "n": n, "reason": reason})
                continue
            specs += [{"method": method, "n": n, "seed": s, "params": plain} for s in seeds]
    # longest trials first so that the two cores finish together
    cost = {"hill_climb": 3, "hill_climb_tuned": 3, "scipy": 3, "pearson": 1, "soft_rank": 2}
    order = sorted(range(len(specs)), key=lambda i: -cost[specs[i]["method"]] * specs[i]["n"] ** 0.5)
    workers = p.workers or default_workers()
    done = map_trials(run_trial, [specs[i] for i in order], workers, lambda it: ctx.track(it, "trials", len(order)))
    results = [None] * len(specs)
    for i, r in zip(order, done, strict=True):
        results[i] = r

    # final matrices: save, recompute the lists from the saved file, check the referee agrees
    reproduced = 0
    for r in results:
        rel = f"final/{r['method']}_n{r['n']}_seed{r['seed']}.npz"
        np.savez(ctx.path(rel), v=r["v"], freq_m=r["freq_m"], list1=r["list1"], list2=r["list2"])
        saved = np.load(ctx.path(rel))
        again = spearman(*derivation.numpy(saved["v"], saved["freq_m"]))
        if again != r["final_spearman"]:
            raise RuntimeError(f"{rel}: recomputed spearmanr {again!r} != reported {r['final_spearman']!r}")
        reproduced += 1

    for r in results:
        with ctx.child(f"{r['method']}_n{r['n']}", r["seed"], params={"method": r["method"], "n": r["n"]}) as run:
            run.log_metrics(
                {
                    "eval/final_spearman": r["final_spearman"],
                    "eval/evaluations": r["evaluations"],
                    "eval/initial_spearman": r["initial_spearman"],
                    "time/seconds": r["seconds"],
                    **({"eval/evals_to_099": r["evals_to_099"]} if r["evals_to_099"] else {}),
                }
            )
            run.log_curve("eval/best_spearman", r["best_spearman"], r["best_evals"])
            if r["rhos"]:
                run.log_curve("eval/spearman", r["rhos"], list(range(1, len(r["rhos"]) + 1)))
            if r["surrogate"]:
                run.log_curve("train/surrogate_corr", r["surrogate"], list(range(1, len(r["surrogate"]) + 1)))

    columns = ["method", "n", "seed", "final_spearman", "evaluations", "seconds", "evals_to_099", "seconds_to_099"]
    rows = [{k: r[k] for k in columns} | {"initial_spearman": r["initial_spearman"]} for r in results]
    ctx.write_csv("runs.csv", rows)
    ctx.write_csv("skipped.csv", pd.DataFrame(skipped, columns=["method", "n", "reason"]))
    table = summarise(results, p)
    ctx.write_csv("summary_table.csv", table)

    largest = max(p.sizes)
    curves = {n: curve_table(results, n) for n in sorted({min(p.sizes), largest})}
    for n, c in curves.items():
        ctx.write_csv(f"plots/spearman_vs_evals_n{n}.csv", c)
    figure_curves(ctx, curves, p)
    figure_cost(ctx, table, p)
    figure_soft_rank(ctx)

    metrics = {
        "methods": {
            m: {
                f"n{row['n']}": {k: v for k, v in row.items() if k not in ("method", "n")}
                for row in table
                if row["method"] == m
            }
            for m in p.methods
        },
        "skipped": [f"{s['method']} n={s['n']}" for s in skipped],
        "npz_reproduced": f"{reproduced}/{len(results)}",
        "acceptance": acceptance(table, p),
        "accounting": "1 evaluation = 1 call of the list derivation, judged once by scipy.stats.spearmanr; "
        "a gradient step = 1 forward evaluation (backward not counted); evaluation 1 = the initial matrices",
    }
    ctx.write_text("summary.md", summary(metrics, table, skipped, p))
    return metrics


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


def figure_curves(ctx, curves: dict, p: SpearmanParams) -> None:
    fig, axes = plotting.figure("Best spearmanr after k evaluations of the lists", ncols=len(curves), width=5.5)
    axes = axes if isinstance(axes, list) else [axes]
    for ax, (n, rows) in zip(axes, curves.items(), strict=True):
        for m in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == m]
            x = [r["evaluations"] for r in mine]
            colour = plotting.PALETTE[p.methods.index(m) % len(plotting.PALETTE)]
            ax.plot(x, [r["best_spearman_median"] for r in mine], color=colour, label=m, drawstyle="steps-post")
            ax.fill_between(
                x,
                [r["best_spearman_min"] for r in mine],
                [r["best_spearman_max"] for r in mine],
                color=colour,
                alpha=0.15,
                step="post",
            )
        ax.axhline(p.target, color="grey", ls="--", label=f"target {p.target:g}")
        ax.set_ylim(-1.05, 1.05)
        plotting.label(
            ax,
            f"n = {n} (median over {p.seeds} seeds; band: min-max)",
            "evaluations of the lists",
            "best spearmanr so far",
            logx=True,
        )
    ctx.savefig(fig, "spearman_vs_evals.png")


def figure_cost(ctx, table: list[dict], p: SpearmanParams) -> None:
    fig, (a, b) = plotting.figure("How the cost and the result scale with n", ncols=2, width=5.5)
    for i, m in enumerate(p.methods):
        mine = [r for r in table if r["method"] == m]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        hit = [r for r in mine if r["median_evals_to_099"] is not None]
        miss = [r for r in mine if r["median_evals_to_099"] is None]
        if hit:
            a.plot([r["n"] for r in hit], [r["median_evals_to_099"] for r in hit], "o-", color=colour, label=m)
        if miss:
            a.plot(
                [r["n"] for r in miss],
                [r["max_evaluations"] for r in miss],
                "x",
                color=colour,
                ms=9,
                label=f"{m}: not reached within budget (x = budget)",
            )
        b.plot([r["n"] for r in mine], [r["median_final_spearman"] for r in mine], "o-", color=colour, label=m)
    plotting.label(
        a,
        f"median evaluations to reach spearmanr >= {p.target:g}",
        "n (list length)",
        "evaluations",
        logx=True,
        logy=True,
    )
    b.axhline(p.target, color="grey", ls="--", label=f"target {p.target:g}")
    plotting.label(b, "median final spearmanr", "n (list length)", "spearmanr", logx=True)
    for ax in (a, b):
        ax.set_xticks(sorted(p.sizes), [str(n) for n in sorted(p.sizes)], minor=False)
        ax.minorticks_off()
    ctx.savefig(fig, "cost_vs_n.png")


def figure_soft_rank(ctx) -> None:
    """What soft ranks look like: one list, the regularisation strength swept."""
    x = torch.tensor([0.0, 0.4, 0.5, 1.5, 2.6, 2.7, 2.75, 4.0], dtype=torch.float64)
    eps = np.logspace(-2, 1.5, 80)
    ranks = np.stack([soft_rank(x, float(e)).numpy() for e in eps])
    fig, ax = plotting.figure("Soft ranks of 8 values vs regularisation strength")
    for j in range(x.numel()):
        ax.plot(eps, ranks[:, j], label=f"x = {float(x[j]):g}")
    plotting.label(
        ax,
        "eps -> 0: hard ranks 1..8; eps large: all -> (n+1)/2",
        "regularisation strength eps",
        "soft rank",
        logx=True,
    )
    ctx.savefig(fig, "soft_rank_vs_strength.png")


def _fmt(v, spec=".3g") -> str:
    return "never" if v is None else format(v, spec)


def summary(m: dict, table: list[dict], skipped: list[dict], p: SpearmanParams) -> str:
    small, large = min(p.sizes), max(p.sizes)
    acc = m["acceptance"]

    def row(meth, n):
        return next((r for r in table if r["method"] == meth and r["n"] == n), None)

    lines = [
        "# spearman: can PyTorch push a rank correlation to 1?",
        "",
        "Ranks are piecewise constant, so spearmanr has no useful gradient and a tiny +-delta tweak almost never "
        "changes it. Replace the ranks by soft ranks (a projection onto the permutahedron, Blondel et al. 2020) or "
        "the lists by themselves (Pearson), and plain gradient ascent reaches spearmanr ~ 1 in a handful of "
        "evaluations at every size tried.",
        "",
        f"Set-up: v = randn(n,1), freq_m = randn(12,n), list1 = {p.derivation.list1}, list2 = {p.derivation.list2}; "
        f"{p.seeds} seeds; scipy.stats.spearmanr judges every evaluation. {m['accounting']}.",
        "",
        "| method | n | median final spearmanr | reached >= "
        f"{p.target:g} | median evals to {p.target:g} | evaluations (max) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['method']} | {r['n']} | {r['median_final_spearman']:.4f} | {r['reached']}/{r['seeds']} | "
            f"{_fmt(r['median_evals_to_099'])} | {r['max_evaluations']} |"
        )
    lines.append("")
    soft = row("soft_rank", small)
    for hc, label in (("hill_climb", "the question's hill climb"), ("hill_climb_tuned", "the tuned hill climb")):
        key = f"{hc}_over_soft_rank_evals_n{small}"
        if key in acc and soft is not None:
            h = getattr(p, hc)
            bound = "at least " if acc[f"{hc}_ratio_is_lower_bound"] else ""
            lines.append(
                f"- n = {small}: soft_rank needs a median {soft['median_evals_to_099']:g} evaluations to reach "
                f"{p.target:g}; {label} (delta = {h.delta:g}, accept = {h.accept}) needs {bound}"
                f"{acc[key]:.0f}x as many" + (f" (it never reached it in {h.max_evals} evaluations)." if bound else ".")
            )
    if f"soft_rank_reached_n{large}" in acc:
        lines.append(
            f"- n = {large}: soft_rank reached {p.target:g} in {acc[f'soft_rank_reached_n{large}']} seeds, median "
            f"final spearmanr {acc[f'soft_rank_median_final_spearman_n{large}']:.4f}."
        )
    for s in skipped:
        lines.append(f"- skipped {s['method']} at n = {s['n']}: {s['reason']}.")
    lines += [
        "- Every final/*.npz reproduced its reported spearmanr when the lists were recomputed "
        f"({m['npz_reproduced']}).",
        "",
        "Wall times: runs.csv (seconds, seconds_to_099). Figures: `figures/spearman_vs_evals.png`, "
        "`figures/cost_vs_n.png`, `figures/soft_rank_vs_strength.png`.",
        "",
    ]
    return "\n".join(lines)
