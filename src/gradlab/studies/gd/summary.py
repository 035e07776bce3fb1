"""summary.md of the gd stage: the answer in a few sentences, every number and verdict read from the metrics."""

from __future__ import annotations

from gradlab.studies.gd.config import GDParams


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
