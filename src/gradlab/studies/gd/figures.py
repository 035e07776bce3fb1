"""The gd figures: the rules on least squares, final loss against the step size, sharpness against 2/lr."""

from __future__ import annotations

import math

from gradlab import plotting


def figure_rules(curves: dict, lr: float, lam_max: float):
    fig, ax = plotting.figure("Least squares: only rules that read the gradient descend")
    for rule, c in curves.items():
        ax.plot(range(len(c)), c, label=rule)
    first = next(iter(curves.values()))[0]
    ax.axhline(first, color="grey", ls=":", label="initial loss")
    plotting.label(ax, f"lr = {lr * lam_max:g} / lambda_max", "step", "training loss (MSE)", logy=True)
    return fig


def figure_lr_sweeps(quad: list[dict], lr_theory, lr_empirical, mlp: list[dict], best_lr):
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
    return fig


def figure_sharpness(rows: list[dict], lrs: list[float]):
    fig, ax = plotting.figure("Does the sharpness settle at 2/lr? (edge of stability)")
    for i, lr in enumerate(lrs):
        mine = [r for r in rows if r["lr"] == lr]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot([r["step"] for r in mine], [r["sharpness"] for r in mine], color=colour, label=f"lr = {lr:g}")
        ax.axhline(2 / lr, color=colour, ls="--", alpha=0.7)
    plotting.label(ax, "dashed: 2/lr", "step", "top Hessian eigenvalue", logy=True)
    return fig
