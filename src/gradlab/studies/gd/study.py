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
import torch

from gradlab import plotting
from gradlab.stats import mean_ci
from gradlab.studies.gd.config import GDParams
from gradlab.studies.gd.module import FullBatchRegression, SharpnessProbe
from gradlab.studies.gd.problems import QuadraticProblem, make_mlp, make_mlp_data, make_quadratic
from gradlab.studies.gd.rules import GradientDescent
from gradlab.studies.gd.threshold import find_lr_threshold

QUADRATIC_LR_FRACTIONS = [0.25, 0.5, 0.9, 0.98, 1.02, 1.1, 1.5]  # of 2/lambda_max


def run(p: GDParams, ctx) -> dict:
    problem = make_quadratic(p.quadratic.n, p.quadratic.d, p.quadratic.condition_number, p.quadratic.noise, p.seed)
    np.savez(ctx.path("problem.npz"), X=problem.X.numpy(), y=problem.y.numpy(), w0=problem.w0.numpy())
    eigenvalues = problem.eigenvalues()
    lam_max, lam_min = float(eigenvalues[-1]), float(eigenvalues[0])
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
        net = torch.nn.Linear(p.quadratic.d, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            net.weight.copy_(problem.w0.unsqueeze(0))
        module = FullBatchRegression(net, problem.X, problem.y.unsqueeze(1), rule, lr_rules, seed=p.seed)
        curves[rule] = module.fit(p.rules.steps)
        with ctx.child(rule, p.seed, params={"lr": lr_rules}) as run:
            run.log_curve("train/loss", curves[rule])
    rules = {
        rule: {
            "lr": lr_rules,
            "initial_loss": c[0],
            "final_loss": c[-1],
            "min_loss": min(c),
            "descended": bool(c[-1] < c[0]),
        }
        for rule, c in curves.items()
    }

    # 3a. final loss vs step size on the quadratic, around the threshold
    quad_sweep = [
        {
            "lr": f * lr_theory,
            "lr_over_crit": f,
            "final_loss": quadratic_final_loss(problem, f * lr_theory, p.rules.steps),
        }
        for f in QUADRATIC_LR_FRACTIONS
    ]

    # 3b. final loss vs step size on the network, several seeds
    x, y = make_mlp_data(p.mlp.n, p.seed)
    lrs = np.logspace(math.log10(p.lr_grid.min), math.log10(p.lr_grid.max), p.lr_grid.num).tolist()
    seeds = [p.seed + k for k in range(p.seeds)]
    mlp_rows = []
    for lr in ctx.track(lrs, "network lr grid"):
        for seed in seeds:
            module = FullBatchRegression(make_mlp(p.mlp.hidden, seed), x, y, "gradient", lr)
            losses = module.fit(p.mlp.steps)
            final = losses[-1] if math.isfinite(losses[-1]) else math.inf
            hit = next((i for i, v in enumerate(losses) if v <= p.mlp.target_loss), None)
            mlp_rows.append({"lr": lr, "seed": seed, "final_loss": final, "steps_to_target": hit})
            with ctx.child(f"mlp_lr{lr:.3g}", seed, params={"lr": lr}) as run:
                run.log_curve("train/loss", [v if math.isfinite(v) else 1e308 for v in losses])
    mlp_table = summarise_grid(mlp_rows, lrs)
    best = min(mlp_table, key=lambda r: r["final_loss_mean"] if math.isfinite(r["final_loss_mean"]) else math.inf)

    # 4. sharpness against 2/lr
    sharp_rows, sharp_metrics = [], {}
    for lr in ctx.track(p.sharpness.lrs, "sharpness"):
        probe = SharpnessProbe(p.sharpness.every, p.sharpness.power_iters, seed=p.seed)
        module = FullBatchRegression(make_mlp(p.mlp.hidden, p.seed), x, y, "gradient", lr)
        losses = module.fit(p.sharpness.steps, callbacks=[probe])
        sharp_rows += [
            {"lr": lr, "step": s, "sharpness": v, "two_over_lr": 2 / lr}
            for s, v in zip(probe.steps, probe.values, strict=True)
        ]
        tail = probe.values[-max(1, len(probe.values) // 4) :]
        settled = float(np.median(tail)) if tail else math.nan
        sharp_metrics[f"lr_{lr:g}".replace(".", "p")] = {  # no dots in metric keys
            "lr": lr,
            "two_over_lr": 2 / lr,
            "max_sharpness": max(probe.values) if probe.values else math.nan,
            "settled_sharpness": settled,
            "settled_over_two_over_lr": settled * lr / 2,
            "final_loss": losses[-1],
        }
        with ctx.child(f"sharpness_lr{lr:g}", p.seed, params={"lr": lr}) as run:
            run.log_curve("probe/sharpness", probe.values, probe.steps)
            run.log_curve("train/loss", [v if math.isfinite(v) else 1e308 for v in losses])

    # outputs: tables for DVC plots, figures, summary
    ctx.write_csv(
        "plots/loss_per_step.csv",
        [{"rule": r, "step": i, "loss": v} for r, c in curves.items() for i, v in enumerate(c)],
    )
    ctx.write_csv("plots/final_loss_vs_lr.csv", [{"problem": "mlp", **r} for r in mlp_table])
    ctx.write_csv("plots/quadratic_final_loss_vs_lr.csv", quad_sweep)
    ctx.write_csv("plots/sharpness.csv", sharp_rows)
    ctx.write_csv("mlp_trials.csv", mlp_rows)
    figure_rules(ctx, curves, lr_rules, lam_max)
    figure_lr_sweeps(ctx, quad_sweep, lr_theory, lr_empirical, mlp_table, best["lr"])
    figure_sharpness(ctx, sharp_rows, p.sharpness.lrs)

    metrics = {
        "quadratic": {
            "lambda_max": lam_max,
            "lambda_min": lam_min,
            "condition_number": lam_max / lam_min,
            "lr_crit_theory": lr_theory,
            "lr_crit_empirical": lr_empirical,
            "lr_crit_rel_error": abs(lr_empirical - lr_theory) / lr_theory,
            "threshold_probes": probes,
        },
        "rules": rules,
        "mlp": {
            "best_lr": best["lr"],
            "best_final_loss_mean": best["final_loss_mean"],
            "best_final_loss_ci_low": best["final_loss_ci_low"],
            "best_final_loss_ci_high": best["final_loss_ci_high"],
            "best_steps_to_target_median": best["steps_to_target_median"],
            "diverged_lrs": [r["lr"] for r in mlp_table if r["diverged"] == r["seeds"]],
            "seeds": len(seeds),
        },
        "sharpness": sharp_metrics,
    }
    ctx.write_text("summary.md", summary(metrics, p))
    return metrics


def quadratic_diverges(problem: QuadraticProblem, lr: float, steps: int) -> bool:
    """Does plain gradient descent at ``lr`` end above its starting loss (or non-finite)?"""
    final = quadratic_final_loss(problem, lr, steps)
    return not (final < float(problem.loss(problem.w0)))


def quadratic_final_loss(problem: QuadraticProblem, lr: float, steps: int) -> float:
    w = problem.w0.clone().requires_grad_(True)
    opt = GradientDescent([w], lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = problem.loss(w)
        if not torch.isfinite(loss):
            return math.inf
        loss.backward()
        opt.step()
    value = float(problem.loss(w.detach()))
    return value if math.isfinite(value) else math.inf


def summarise_grid(rows: list[dict], lrs: list[float]) -> list[dict]:
    table = []
    for lr in lrs:
        mine = [r for r in rows if r["lr"] == lr]
        finals = [r["final_loss"] for r in mine]
        diverged = sum(not math.isfinite(v) for v in finals)
        mean, lo, hi = mean_ci(finals) if diverged == 0 else (math.inf, math.inf, math.inf)
        hits = [r["steps_to_target"] for r in mine if r["steps_to_target"] is not None]
        table.append(
            {
                "lr": lr,
                "seeds": len(mine),
                "diverged": diverged,
                "final_loss_mean": mean,
                "final_loss_ci_low": lo,
                "final_loss_ci_high": hi,
                "steps_to_target_median": float(np.median(hits)) if len(hits) == len(mine) else None,
            }
        )
    return table


def figure_rules(ctx, curves: dict, lr: float, lam_max: float) -> None:
    fig, ax = plotting.figure("Least squares: only rules that read the gradient descend")
    for rule, c in curves.items():
        ax.plot(range(len(c)), c, label=rule)
    first = next(iter(curves.values()))[0]
    ax.axhline(first, color="grey", ls=":", label="initial loss")
    plotting.label(ax, f"lr = {lr * lam_max:g} / lambda_max", "step", "training loss (MSE)", logy=True)
    ctx.savefig(fig, "rules_loss.png")


def figure_lr_sweeps(ctx, quad: list[dict], lr_theory, lr_empirical, mlp: list[dict], best_lr) -> None:
    fig, (a, b) = plotting.figure("Which step sizes diverge?", ncols=2, width=5.5)
    ok = [r for r in quad if r["final_loss"] < 1e100]
    a.plot([r["lr"] for r in ok], [r["final_loss"] for r in ok], "o-", label="gradient descent")
    for r in quad:
        if r["final_loss"] >= 1e100:
            a.axvline(r["lr"], color=plotting.PALETTE[3], alpha=0.4)
    a.axvline(lr_theory, color="black", ls="--", label=f"2/lambda_max = {lr_theory:.4g}")
    a.axvline(lr_empirical, color=plotting.PALETTE[3], ls=":", label=f"empirical = {lr_empirical:.4g}")
    plotting.label(a, "(a) least squares (red: loss > 1e100)", "learning rate", "final loss", logx=True, logy=True)
    finite = [r for r in mlp if math.isfinite(r["final_loss_mean"])]
    xs = [r["lr"] for r in finite]
    b.plot(xs, [r["final_loss_mean"] for r in finite], "o-", label="mean over seeds")
    b.fill_between(
        xs,
        [r["final_loss_ci_low"] for r in finite],
        [r["final_loss_ci_high"] for r in finite],
        alpha=0.3,
        label="95 % CI",
    )
    for r in mlp:
        if not math.isfinite(r["final_loss_mean"]):
            b.axvline(r["lr"], color=plotting.PALETTE[3], alpha=0.4)
    b.axvline(best_lr, color="black", ls="--", label=f"best lr = {best_lr:.3g}")
    plotting.label(b, "(b) ReLU network (red: diverged)", "learning rate", "final loss (MSE)", logx=True, logy=True)
    ctx.savefig(fig, "lr_sweep.png")


def figure_sharpness(ctx, rows: list[dict], lrs: list[float]) -> None:
    fig, ax = plotting.figure("Does the sharpness settle at 2/lr? (edge of stability)")
    for i, lr in enumerate(lrs):
        mine = [r for r in rows if r["lr"] == lr]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot([r["step"] for r in mine], [r["sharpness"] for r in mine], color=colour, label=f"lr = {lr:g}")
        ax.axhline(2 / lr, color=colour, ls="--", alpha=0.7)
    plotting.label(ax, "dashed: 2/lr", "step", "top Hessian eigenvalue", logy=True)
    ctx.savefig(fig, "sharpness.png")


def summary(m: dict, p: GDParams) -> str:
    q, r, mlp = m["quadratic"], m["rules"], m["mlp"]
    lines = [
        "# gd: why subtract step x gradient, and which step sizes diverge?",
        "",
        "`w - step` is legal code (broadcasting), but it moves every weight by the same amount whatever the loss is, "
        "so nothing makes the loss go down. `w - step * gradient` moves against the slope, and descends when the step "
        "is below 2 / lambda_max of the Hessian.",
        "",
        f"- Least squares (n={p.quadratic.n}, d={p.quadratic.d}, condition number {q['condition_number']:.3g}): "
        f"lambda_max = {q['lambda_max']:.5g}, so theory says gradient descent diverges above "
        f"2/lambda_max = {q['lr_crit_theory']:.5g}. Bisection on real runs finds {q['lr_crit_empirical']:.5g} "
        f"({100 * q['lr_crit_rel_error']:.2f} % apart, {q['threshold_probes']} runs of {p.threshold.steps} steps).",
    ]
    for rule, v in r.items():
        verdict = "descends" if v["descended"] else "does not descend"
        lines.append(
            f"- Rule `{rule}` at lr = {p.rules.lr_times_lambda_max:g}/lambda_max: loss {v['initial_loss']:.4g} -> "
            f"{v['final_loss']:.4g} after {p.rules.steps} steps "
            f"({verdict}; ratio {v['final_loss'] / v['initial_loss']:.3g})."
        )
    lines += [
        f"- ReLU network (H={p.mlp.hidden}, {p.mlp.steps} full-batch steps, {mlp['seeds']} seeds): best lr = "
        f"{mlp['best_lr']:.3g}, final loss {mlp['best_final_loss_mean']:.4g} "
        f"(95 % CI {mlp['best_final_loss_ci_low']:.4g} to {mlp['best_final_loss_ci_high']:.4g}); "
        f"diverged at lr = {', '.join(f'{v:.3g}' for v in mlp['diverged_lrs']) or 'none of the grid'}.",
    ]
    for s in m["sharpness"].values():
        lines.append(
            f"- Sharpness at lr = {s['lr']:g}: peaked at {s['max_sharpness']:.3g}, "
            f"settled at {s['settled_sharpness']:.3g} = {s['settled_over_two_over_lr']:.2f} x 2/lr."
        )
    lines += ["", "Figures: `figures/rules_loss.png`, `figures/lr_sweep.png`, `figures/sharpness.png`.", ""]
    return "\n".join(lines)
