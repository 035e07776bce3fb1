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

import numpy as np
import pandas as pd

from gradlab.parallel import default_workers, map_trials
from gradlab.studies.spearman import analysis, figures
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.derivation import Derivation
from gradlab.studies.spearman.methods import spearman
from gradlab.studies.spearman.summary import summary
from gradlab.studies.spearman.trial import TrialSpec, run_trial, skip_reason


def run(p: SpearmanParams, ctx) -> dict:
    derivation = Derivation(p.derivation.list1, p.derivation.list2)
    seeds = [p.seed + k for k in range(p.seeds)]
    specs, skipped = [], []
    for method in p.methods:
        for n in p.sizes:
            reason = skip_reason(p, method, n)
            if reason:
                skipped.append({"method": method, "n": n, "reason": reason})
                continue
            specs += [TrialSpec(method, n, s, p) for s in seeds]
    # longest trials first so that the two cores finish together
    cost = {"hill_climb": 3, "hill_climb_tuned": 3, "scipy": 3, "pearson": 1, "soft_rank": 2}
    order = sorted(range(len(specs)), key=lambda i: -cost[specs[i].method] * specs[i].n ** 0.5)
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
    table = analysis.summarise(results, p)
    ctx.write_csv("summary_table.csv", table)

    largest = max(p.sizes)
    curves = {n: analysis.curve_table(results, n) for n in sorted({min(p.sizes), largest})}
    for n, c in curves.items():
        ctx.write_csv(f"plots/spearman_vs_evals_n{n}.csv", c)
    ctx.savefig(figures.figure_curves(curves, p), "spearman_vs_evals.png")
    ctx.savefig(figures.figure_cost(table, p), "cost_vs_n.png")
    ctx.savefig(figures.figure_soft_rank(), "soft_rank_vs_strength.png")

    metrics = analysis.metrics(table, skipped, reproduced, len(results), p)
    ctx.write_text("summary.md", summary(metrics, table, skipped, p))
    return metrics
