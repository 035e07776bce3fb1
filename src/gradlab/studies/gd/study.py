"""Why does gradient descent subtract step * gradient, and which step sizes diverge?

The plan, top to bottom:

1. A least-squares quadratic with a known Hessian H = (2/n) X^T X. Theory: gradient
   descent converges iff lr < 2 / lambda_max(H). Find the empirical threshold by
   bisection on real runs of the ``gradient`` rule and compare.
2. The four update rules of the question (gradient, scalar, sign, random) on that
   quadratic at the same step size: only rules that read the loss descend.
3. Final loss against the step size on the quadratic (around 2/lambda_max) and on a
   small ReLU network (a log grid, several seeds): the best step, steps to a target loss.
4. Beyond the question: the sharpness (top Hessian eigenvalue) during training of the
   network for a few step sizes, against 2/lr (edge of stability, Cohen et al. 2021).
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.studies.gd import analysis, figures
from gradlab.studies.gd.config import GDParams
from gradlab.studies.gd.problems import make_quadratic
from gradlab.studies.gd.summary import summary
from gradlab.studies.gd.threshold import find_lr_threshold, quadratic_diverges, quadratic_lr_sweep
from gradlab.studies.gd.trial import TrialSpec, run_trial


def run(p: GDParams, ctx) -> dict:
    q = p.quadratic
    problem = make_quadratic(q.n, q.d, q.condition_number, q.noise, p.seed)
    np.savez(ctx.path("problem.npz"), X=problem.X.numpy(), y=problem.y.numpy(), w0=problem.w0.numpy())
    eigenvalues = problem.eigenvalues()
    lam_max = float(eigenvalues[-1])
    lr_theory = 2.0 / lam_max

    # 1. the divergence threshold, found on real runs
    lr_empirical, probes = find_lr_threshold(
        lambda lr: quadratic_diverges(problem, lr, p.threshold.steps), start=1.0, rel_tol=p.threshold.rel_tol
    )
    with ctx.child("threshold", p.seed) as run:
        run.log_metrics({"quadratic/lr_crit_theory": lr_theory, "quadratic/lr_crit_empirical": lr_empirical})

    # 2. the four rules at the same step size
    lr_rules = p.rules.lr_times_lambda_max / lam_max
    curves = {}
    for rule in ctx.track(p.rules.names, "rules"):
        curves[rule] = run_trial(TrialSpec(rule, lr_rules, p.rules.steps, p.seed, q, p.seed))["losses"]
        with ctx.child(rule, p.seed, params={"lr": lr_rules}) as run:
            run.log_curve("train/loss", curves[rule])

    # 3. final loss vs step size: the quadratic around the threshold, the network over seeds
    quad_sweep = quadratic_lr_sweep(problem, lr_theory, p.rules.steps)
    lrs = np.logspace(math.log10(p.lr_grid.min), math.log10(p.lr_grid.max), p.lr_grid.num).tolist()
    seeds = [p.seed + k for k in range(p.seeds)]
    mlp_rows = []
    for lr in ctx.track(lrs, "network lr grid"):
        for seed in seeds:
            losses = run_trial(TrialSpec("gradient", lr, p.mlp.steps, seed, p.mlp, p.seed))["losses"]
            mlp_rows.append(analysis.mlp_row(lr, seed, losses, p.mlp.target_loss))
            with ctx.child(f"mlp_lr{lr:.3g}", seed, params={"lr": lr}) as run:
                run.log_curve("train/loss", [v if math.isfinite(v) else 1e308 for v in losses])
    mlp_table = analysis.summarise_grid(mlp_rows, lrs)

    # 4. sharpness against 2/lr
    sharp_rows, sharp_metrics = [], {}
    for lr in ctx.track(p.sharpness.lrs, "sharpness"):
        out = run_trial(TrialSpec("gradient", lr, p.sharpness.steps, p.seed, p.mlp, p.seed, p.sharpness))
        steps, values, losses = out["sharpness_steps"], out["sharpness"], out["losses"]
        sharp_rows += [
            {"lr": lr, "step": s, "sharpness": v, "two_over_lr": 2 / lr} for s, v in zip(steps, values, strict=True)
        ]
        sharp_metrics[analysis.sharpness_key(lr)] = analysis.sharpness_entry(lr, values, losses)
        with ctx.child(f"sharpness_lr{lr:g}", p.seed, params={"lr": lr}) as run:
            run.log_curve("probe/sharpness", values, steps)
            run.log_curve("train/loss", [v if math.isfinite(v) else 1e308 for v in losses])

    # outputs: tables for DVC plots, figures, metrics, summary
    rules = analysis.rules_table(curves, lr_rules)
    metrics = analysis.metrics(eigenvalues, lr_empirical, probes, rules, mlp_table, len(seeds), sharp_metrics)
    ctx.write_csv(
        "plots/loss_per_step.csv",
        [{"rule": r, "step": i, "loss": v} for r, c in curves.items() for i, v in enumerate(c)],
    )
    ctx.write_csv("plots/final_loss_vs_lr.csv", [{"problem": "mlp", **r} for r in mlp_table])
    ctx.write_csv("plots/quadratic_final_loss_vs_lr.csv", quad_sweep)
    ctx.write_csv("plots/sharpness.csv", sharp_rows)
    ctx.write_csv("mlp_trials.csv", mlp_rows)
    best_lr = metrics["mlp"]["best_lr"]
    ctx.savefig(figures.figure_rules(curves, lr_rules, lam_max), "rules_loss.png")
    ctx.savefig(figures.figure_lr_sweeps(quad_sweep, lr_theory, lr_empirical, mlp_table, best_lr), "lr_sweep.png")
    ctx.savefig(figures.figure_sharpness(sharp_rows, p.sharpness.lrs), "sharpness.png")
    ctx.write_text("summary.md", summary(metrics, p))
    return metrics
