"""Why does gradient descent subtract step * gradient, and which step sizes diverge?

The plan, top to bottom:

1. One step of each rule on a least-squares quadratic (Hessian H = (2/n) X^T X known): dL against lr from
   w0 and from every iterate of a training run, the fraction of random start points from which one small
   step goes downhill, one step from the minimum (is it a fixed point?), the best loss ``w0 - t * 1`` can
   reach (closed form, checked by a line search), and where sign descent stalls as a function of lr.
2. The divergence threshold of gradient descent on the quadratic: theory 2 / lambda_max(H) against
   bisection on real runs.
3. The four rules of the question (gradient, scalar, sign, random) trained at the same step size.
4. Final loss against the step size on the quadratic (around 2/lambda_max) and on a small ReLU network
   (a log grid, several seeds); a run diverged when its final loss is above its initial loss or non-finite.
5. Beyond the question: the sharpness (top Hessian eigenvalue) of the network during training for a few
   step sizes and several seeds, against 2/lr: edge of stability and catapults by stated criteria.
6. The network's divergence learning rate per seed, bisected, against 2/lambda0 (the classic prediction) and
   4/lambda0 (the catapult model's), lambda0 the sharpness at initialisation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gradlab.context import StageContext
from gradlab.models import log_model
from gradlab.stats import finite_or_none
from gradlab.studies.gd import analysis, figures
from gradlab.studies.gd import first_order as fo
from gradlab.studies.gd.config import GDParams, Quadratic
from gradlab.studies.gd.problems import QuadraticProblem, make_quadratic
from gradlab.studies.gd.summary import summary
from gradlab.studies.gd.threshold import find_lr_threshold, quadratic_diverges, quadratic_lr_sweep
from gradlab.studies.gd.trial import (
    ThresholdSpec,
    TrialSpec,
    dataset,
    run_any,
    run_trial,
    spec_json,
)
from gradlab.tracking import Run
from gradlab.trials import Child

THRESHOLD_COLUMNS: tuple[str, ...] = ("seed", "lambda0", "two_over_lambda0", "four_over_lambda0", "lr", "lr_low")
THRESHOLD_COLUMNS += ("lr_high", "ratio_classic", "ratio_catapult")


def _finite(losses: list[float]) -> list[float]:
    return [v if math.isfinite(v) else 1e308 for v in losses]


def child_of(spec: TrialSpec | ThresholdSpec) -> Child:
    """A trial's child run: a rule at the stage's step size, a grid point, a sharpness run or a threshold."""
    if isinstance(spec, ThresholdSpec):
        return Child("mlp_threshold", spec.seed)
    if isinstance(spec.problem, Quadratic):
        return Child(spec.rule, spec.seed, {"lr": spec.lr})
    name = f"sharpness_lr{spec.lr:g}" if spec.sharpness else f"mlp_lr{spec.lr:.3g}"
    return Child(name, spec.seed, {"lr": spec.lr})


def log_trial(run: Run, spec: TrialSpec | ThresholdSpec, out: dict) -> None:
    """What a trial returned, on its child run (in the process that ran it)."""
    if isinstance(spec, ThresholdSpec):
        row = analysis.threshold_seed(spec.seed, out)
        run.log_metrics(
            {"mlp/lambda0": row["lambda0"], "mlp/lr_crit_empirical": row["lr"], "mlp/probes": row["probes"]}
        )
        return
    if spec.sharpness:
        run.log_curve("probe/sharpness", out["sharpness"], out["sharpness_steps"])
    run.log_curve("train/loss", _finite(out["losses"]))
    state = out.pop("state")  # the model goes to MLflow (trial.load_logged, trial.reevaluate), not back
    evaluation = {"final_loss": finite_or_none(out["losses"][-1])}  # a diverged run's inf: null in model.json
    network = "torch.nn.Linear" if isinstance(spec.problem, Quadratic) else "gradlab.studies.gd.problems.make_mlp"
    log_model(run, state, {"network": network, "spec": spec_json(spec), "evaluation": evaluation})
    run.log_dataset(*dataset(spec))


def one_step(problem: QuadraticProblem, p: GDParams, lam_max: float, lr_rules: float) -> tuple[dict, dict]:
    """Part 1: (metrics, tables) of one step of each rule."""
    o, rules = p.one_step, p.rules.names
    w_star, _ = fo.optimum(problem)
    gen = torch.Generator().manual_seed(10_000 + p.seed)  # not make_quadratic's stream
    starts = torch.randn(o.starts, problem.w0.numel(), generator=gen, dtype=torch.float64)
    near = w_star + o.near_radius * torch.randn(o.starts, problem.w0.numel(), generator=gen, dtype=torch.float64)
    fractions = fo.descent_fractions(problem, starts, [r / lam_max for r in o.lr_times_lambda_max], rules, p.seed)
    near_fractions = fo.descent_fractions(problem, near, [lr_rules], rules, p.seed)

    grid = (np.logspace(-4, 1, o.lr_points) / lam_max).tolist()
    point_rows, point = fo.delta_loss_vs_lr(problem, problem.w0, grid, rules, p.seed)
    run_rows, along = fo.along_run(
        problem, fo.gd_trajectory(problem, problem.w0, lr_rules, p.rules.steps), lr_rules, rules
    )
    fixed = fo.fixed_point(problem, lr_rules, rules, p.seed)
    sign_lrs = [r / lam_max for r in o.sign_lr_times_lambda_max]
    sign_rows, sign_curves = fo.sign_stall(problem, problem.w0, sign_lrs, o.sign_steps)
    sign = analysis.sign_stall_metrics(sign_rows, lam_max, 0.0)
    stalled = [r for r in sign_rows if sign[analysis.lr_key(r["lr"] * lam_max)]["stalled"]]
    sign["stall_slope"] = fo.loglog_slope([r["lr"] for r in stalled], [r["stall_excess"] for r in stalled])
    sign["stalled_lrs"] = len(stalled)
    metrics = {
        "first_order": analysis.first_order_metrics(
            fractions, near_fractions, o.lr_times_lambda_max, lam_max, lr_rules
        ),
        "one_point": point,
        "fixed_point": analysis.fixed_point_metrics(fixed, along, float(w_star.norm())),
        "scalar_line": fo.scalar_line(problem, problem.w0),
        "sign_stall": sign,
    }
    every = max(1, o.sign_steps // 400)  # the curves in the csv: at most ~400 points per lr
    tables = {
        "point": point_rows,
        "run": run_rows,
        "sign": [
            {"lr": lr, "step": k, "loss": float(c[k])}
            for lr, c in zip(sign_lrs, sign_curves, strict=True)
            for k in range(0, len(c), every)
        ],
    }
    return metrics, tables


def run(p: GDParams, ctx: StageContext) -> dict:
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared machine (the runner restores it)
    q = p.quadratic
    problem = make_quadratic(q.n, q.d, q.condition_number, q.noise, p.seed)
    np.savez(ctx.path("problem.npz"), X=problem.X.numpy(), y=problem.y.numpy(), w0=problem.w0.numpy())
    eigenvalues = problem.eigenvalues()
    lam_max = float(eigenvalues[-1])
    lr_theory = 2.0 / lam_max
    lr_rules = p.rules.step_size(lam_max)

    # 1. one step of each rule: the first-order / fixed-point answer
    one, one_tables = one_step(problem, p, lam_max, lr_rules)

    # 2. the divergence threshold, found on real runs
    lr_empirical, probes = find_lr_threshold(
        lambda lr: quadratic_diverges(problem, lr, p.threshold.steps), start=1.0, rel_tol=p.threshold.rel_tol
    )
    with ctx.child("threshold", p.seed) as run:
        run.log_metrics({"quadratic/lr_crit_theory": lr_theory, "quadratic/lr_crit_empirical": lr_empirical})

    # 3. the four rules at the same step size
    rule_specs = [TrialSpec(rule, lr_rules, p.rules.steps, p.seed, q, p.seed) for rule in p.rules.names]
    rule_out = ctx.run_trials(run_trial, rule_specs, child_of, log_trial, workers=1, desc="rules")
    curves = {spec.rule: out["losses"] for spec, out in zip(rule_specs, rule_out, strict=True)}

    # 4-5. the network over seeds: final loss vs step size, and sharpness against 2/lr. Independent trials,
    # run on the worker pool (one torch thread each), the long sharpness runs first.
    quad_sweep = quadratic_lr_sweep(problem, lr_theory, p.rules.steps)
    lrs = np.logspace(math.log10(p.lr_grid.min), math.log10(p.lr_grid.max), p.lr_grid.num).tolist()
    seeds = [p.seed + k for k in range(p.seeds)]
    s = p.sharpness
    sharp_specs = [TrialSpec("gradient", lr, s.steps, seed, p.mlp, p.seed, s) for lr in s.lrs for seed in seeds]
    grid_specs = [TrialSpec("gradient", lr, p.mlp.steps, seed, p.mlp, p.seed) for lr in lrs for seed in seeds]
    t = p.mlp_threshold
    thr_specs = [ThresholdSpec(seed, p.mlp, p.seed, t) for seed in seeds[: t.seeds or len(seeds)]]
    specs: list[TrialSpec | ThresholdSpec] = [*sharp_specs, *thr_specs, *grid_specs]
    done = ctx.run_trials(run_any, specs, child_of, log_trial)
    n_sharp, n_thr = len(sharp_specs), len(thr_specs)
    sharp_out, thr_out, grid_out = done[:n_sharp], done[n_sharp : n_sharp + n_thr], done[n_sharp + n_thr :]

    mlp_rows = []
    for spec, out in zip(grid_specs, grid_out, strict=True):
        mlp_rows.append(analysis.mlp_row(spec.lr, spec.seed, out["losses"], p.mlp.target_loss))
    mlp_table = analysis.summarise_grid(mlp_rows, lrs)

    sharp_rows, sharp_metrics = [], {}
    per_lr: dict[float, list[dict]] = {lr: [] for lr in s.lrs}
    for spec, out in zip(sharp_specs, sharp_out, strict=True):
        lr, seed = spec.lr, spec.seed
        steps, values, losses = out["sharpness_steps"], out["sharpness"], out["losses"]
        sharp_rows += [
            {"lr": lr, "seed": seed, "step": k, "sharpness": v, "two_over_lr": 2 / lr, "loss": losses[k]}
            for k, v in zip(steps, values, strict=True)
        ]
        per_lr[lr].append(
            analysis.sharpness_seed(lr, steps, values, losses, s.tail, (s.eos_low, s.eos_high), seed=seed)
        )
    for lr, per_seed in per_lr.items():
        sharp_metrics[analysis.lr_key(lr)] = {
            **analysis.sharpness_entry(lr, per_seed, (s.eos_low, s.eos_high)),
            "per_seed": per_seed,
        }

    thr_seeds = []
    for thr_spec, out in zip(thr_specs, thr_out, strict=True):
        thr_seeds.append(analysis.threshold_seed(thr_spec.seed, out))
    thr_metrics = analysis.threshold_metrics(thr_seeds, t.rel_tol)

    # outputs: tables for DVC plots, figures, metrics, summary
    rules = analysis.rules_table(curves, lr_rules)
    metrics = {
        **one,
        **analysis.metrics(eigenvalues, lr_empirical, probes, rules, mlp_table, len(seeds), sharp_metrics),
        "mlp_best_vs_next": analysis.best_vs_next(mlp_rows, mlp_table),
        "criteria": {"eos_low": s.eos_low, "eos_high": s.eos_high, "tail_probes": s.tail, "every": s.every},
        "mlp_threshold": thr_metrics,
    }
    ctx.write_csv(
        "plots/loss_per_step.csv",
        [{"rule": r, "step": i, "loss": v} for r, c in curves.items() for i, v in enumerate(c)],
    )
    ctx.write_csv("plots/delta_loss_vs_lr.csv", one_tables["point"])
    ctx.write_csv("plots/delta_loss_along_run.csv", one_tables["run"])
    ctx.write_csv("plots/sign_stall.csv", one_tables["sign"])
    ctx.write_csv("plots/final_loss_vs_lr.csv", [{"problem": "mlp", **r} for r in mlp_table])
    ctx.write_csv("plots/quadratic_final_loss_vs_lr.csv", quad_sweep)
    ctx.write_csv("plots/sharpness.csv", sharp_rows)
    ctx.write_csv("mlp_trials.csv", mlp_rows)
    ctx.write_csv(
        "plots/mlp_threshold.csv",
        [{k: r[k] for k in THRESHOLD_COLUMNS} for r in thr_seeds],
    )
    ctx.savefig(figures.figure_one_step(one_tables, metrics, lam_max, lr_rules), "one_step.png")
    ctx.savefig(figures.figure_scalar_and_sign(problem, metrics, one_tables, lam_max), "scalar_line_sign_stall.png")
    ctx.savefig(figures.figure_rules(curves, p.rules.describe()), "rules_loss.png")
    ctx.savefig(
        figures.figure_lr_sweeps(quad_sweep, lr_theory, lr_empirical, mlp_table, metrics["mlp"]["best_lr"]),
        "lr_sweep.png",
    )
    ctx.savefig(figures.figure_sharpness(sharp_rows, s.lrs, (s.eos_low, s.eos_high)), "sharpness.png")
    ctx.savefig(figures.figure_threshold(thr_metrics), "mlp_threshold.png")
    ctx.write_text("summary.md", summary(metrics, p))
    return metrics
