"""The gd figures: one step of each rule, the scalar line and sign's stall, the rules trained on least squares,
final loss against the step size, sharpness against 2/lr."""

from __future__ import annotations

import math

import numpy as np

from gradlab import plotting

RULE_COLOURS = {"gradient": 0, "scalar": 3, "sign": 2, "random": 4}
DIVERGED = 1e4  # a final loss this many times the smallest of the sweep counts as diverged (figure only)


def _colour(rule: str) -> str:
    return plotting.PALETTE[RULE_COLOURS.get(rule, 7)]


def _symlog(ax, linthresh: float) -> None:
    ax.set_yscale("symlog", linthresh=linthresh)
    ax.axhline(0.0, color="black", lw=0.8)


def figure_one_step(tables: dict, m: dict, lam_max: float, lr_rules: float):
    fig, (a, b, c) = plotting.figure(
        "One step of each rule on least squares: which ones go downhill?", ncols=3, width=5
    )
    point = tables["point"]
    for rule in dict.fromkeys(r["rule"] for r in point):
        mine = [r for r in point if r["rule"] == rule]
        a.plot([r["lr"] * lam_max for r in mine], [r["delta_loss"] for r in mine], color=_colour(rule), label=rule)
        a.plot([r["lr"] * lam_max for r in mine], [r["first_order"] for r in mine], color=_colour(rule), ls=":", lw=1)
    _symlog(a, 1e-4)
    a.set_xscale("log")
    plotting.label(a, "(a) from w0 (dotted: first order -lr g.d)", "lr x lambda_max", "loss change dL (symlog)")
    run = tables["run"]
    for rule in dict.fromkeys(r["rule"] for r in run):
        mine = [r for r in run if r["rule"] == rule]
        b.plot([r["step"] for r in mine], [r["delta_loss"] for r in mine], color=_colour(rule), label=rule)
    _symlog(b, 1e-8)
    plotting.label(
        b,
        f"(b) from each iterate of a GD run, lr = {lr_rules * lam_max:.3g}/lambda_max",
        "iterate of the gradient-descent run",
        "dL of one step (symlog)",
    )
    fo = m["first_order"]
    for rule in (k for k in fo if isinstance(fo[k], dict)):
        rows = list(fo[rule]["by_lr"].values())
        x = [r["lr_times_lambda_max"] for r in rows]
        y = [r["fraction"] for r in rows]
        err = [
            [v - r["ci_low"] for v, r in zip(y, rows, strict=True)],
            [r["ci_high"] - v for v, r in zip(y, rows, strict=True)],
        ]
        c.errorbar(x, y, yerr=err, fmt="o-", color=_colour(rule), label=rule, capsize=3)
    c.set_ylim(-0.03, 1.03)
    plotting.label(
        c,
        f"(c) over {next(v['starts'] for v in fo.values() if isinstance(v, dict))} random w (Wilson 95 % CI)",
        "lr x lambda_max",
        "fraction of start points where one step lowers L",
        logx=True,
    )
    return fig


def figure_scalar_and_sign(problem, m: dict, tables: dict, lam_max: float):
    from gradlab.studies.gd.first_order import losses

    fig, (a, b) = plotting.figure("w0 - t*1 moves on one line; sign descent stalls", ncols=2, width=5.5)
    line = m["scalar_line"]
    ts = np.linspace(line["best_t"] - 3 * abs(line["best_t"]) - 1, line["best_t"] + 3 * abs(line["best_t"]) + 1, 200)
    import torch

    W = problem.w0.unsqueeze(0) - torch.as_tensor(ts).unsqueeze(1) * torch.ones_like(problem.w0)
    a.plot(ts, losses(problem, W).numpy(), label="L(w0 - t*1)")
    a.plot([line["best_t"]], [line["best_loss"]], "o", color="black", label=f"closed form: {line['best_loss']:.4g}")
    a.plot(
        [line["line_search_t"]], [line["line_search_loss"]], "x", ms=10, color=plotting.PALETTE[3], label="line search"
    )
    a.axhline(
        line["optimum_loss"], color=plotting.PALETTE[2], ls="--", label=f"optimum L(w*) = {line['optimum_loss']:.3g}"
    )
    plotting.label(a, "(a) the best t along w0 - t*1", "t", "loss (MSE)", logy=True)
    sign = m["sign_stall"]
    rows = [v for v in sign.values() if isinstance(v, dict)]
    x = [r["lr"] for r in rows]
    done = [r for r in rows if r["stalled"]]
    b.plot([r["lr"] for r in done], [r["stall_excess"] for r in done], "o-", color=_colour("sign"), label="stall level")
    for r in rows:
        if not r["stalled"]:
            b.plot([r["lr"]], [r["stall_excess"]], "o", mfc="white", color=_colour("sign"))
    ref = rows[len(rows) // 2]
    b.plot(x, [ref["stall_excess"] * (v / ref["lr"]) ** 2 for v in x], ":", color="grey", label="slope 2 (lr^2)")
    plotting.label(
        b,
        f"(b) sign descent's stall level (slope {sign['stall_slope']:.2f}; open: not yet stalled)",
        "lr",
        "excess loss over the last quarter",
        logx=True,
        logy=True,
    )
    return fig


def figure_rules(curves: dict, describe: str):
    fig, ax = plotting.figure("Least squares: the four rules trained at one step size")
    for rule, c in curves.items():
        ax.plot(range(len(c)), [v if math.isfinite(v) else np.nan for v in c], label=rule, color=_colour(rule))
    first = next(iter(curves.values()))[0]
    ax.axhline(first, color="grey", ls=":", label="initial loss")
    plotting.label(ax, describe, "step", "training loss (MSE)", logy=True)
    return fig


def figure_lr_sweeps(quad: list[dict], lr_theory, lr_empirical, mlp: list[dict], best_lr):
    fig, (a, b) = plotting.figure(
        "Which step sizes diverge (final loss above the initial, or non-finite)?", ncols=2, width=5.5
    )
    # diverged: non-finite or DIVERGED x above the smallest final loss (drawn as a rule, not on the log axis,
    # which would otherwise span ~150 decades)
    finite = [r["final_loss"] for r in quad if math.isfinite(r["final_loss"]) and r["final_loss"] > 0]
    cap = DIVERGED * min(finite) if finite else math.inf
    ok = [r for r in quad if math.isfinite(r["final_loss"]) and r["final_loss"] <= cap]
    a.plot([r["lr"] for r in ok], [r["final_loss"] for r in ok], "o-", label="gradient descent")
    for r in quad:
        if r not in ok:
            a.axvline(r["lr"], color=plotting.PALETTE[3], alpha=0.4)
    a.axvline(lr_theory, color="black", ls="--", label=f"2/lambda_max = {lr_theory:.4g}")
    a.axvline(lr_empirical, color=plotting.PALETTE[3], ls=":", label=f"empirical = {lr_empirical:.4g}")
    plotting.label(
        a,
        f"(a) least squares (red: diverged, loss > {DIVERGED:g} x the least)",
        "learning rate",
        "final loss",
        logx=True,
        logy=True,
    )
    kept = [r for r in mlp if math.isfinite(r["final_loss_mean"])]
    xs = [r["lr"] for r in kept]
    b.plot(xs, [r["final_loss_mean"] for r in kept], "o-", label="mean over seeds that did not diverge")
    lo = [r["final_loss_ci_low"] if r["final_loss_ci_low"] is not None else r["final_loss_mean"] for r in kept]
    hi = [r["final_loss_ci_high"] if r["final_loss_ci_high"] is not None else r["final_loss_mean"] for r in kept]
    b.fill_between(xs, lo, hi, alpha=0.3, label="95 % CI")
    for r in mlp:
        if r["diverged_seeds"]:
            b.axvline(r["lr"], color=plotting.PALETTE[3], alpha=0.15 + 0.6 * r["diverged_seeds"] / r["seeds"])
    b.axvline(best_lr, color="black", ls="--", label=f"best lr = {best_lr:.3g}")
    plotting.label(
        b,
        "(b) ReLU network (red: seeds diverged, darker = more)",
        "learning rate",
        "final loss (MSE)",
        logx=True,
        logy=True,
    )
    return fig


def figure_sharpness(rows: list[dict], lrs: list[float], band: tuple[float, float]):
    fig, ax = plotting.figure("Does the sharpness settle at 2/lr? (edge of stability)", width=7)
    for i, lr in enumerate(lrs):
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        seeds = sorted({r["seed"] for r in rows if r["lr"] == lr})
        for j, seed in enumerate(seeds):
            mine = [r for r in rows if r["lr"] == lr and r["seed"] == seed]
            ax.plot(
                [r["step"] for r in mine],
                [r["sharpness"] for r in mine],
                color=colour,
                alpha=0.8,
                lw=1,
                label=f"lr = {lr:g} ({len(seeds)} seeds)" if j == 0 else None,
            )
        ax.axhline(2 / lr, color=colour, ls="--", alpha=0.7)
        ax.axhspan(band[0] * 2 / lr, band[1] * 2 / lr, color=colour, alpha=0.08)
    plotting.label(
        ax, f"dashed: 2/lr; shaded: [{band[0]:g}, {band[1]:g}] x 2/lr", "step", "top Hessian eigenvalue", logy=True
    )
    return fig


def figure_threshold(m: dict):
    """Per seed: the bisected divergence learning rate (its final bracket as an error bar) beside 2/lambda0 and
    4/lambda0; right, the ratio lr lambda0 / 2 per seed with its mean and 95 % CI."""
    fig, (a, b) = plotting.figure(
        "ReLU network: where does gradient descent diverge, against 2/lambda0 and 4/lambda0?", ncols=2, width=6
    )
    rows = m["per_seed"]
    x = np.arange(len(rows))
    lr = np.array([r["lr"] for r in rows])
    err = np.array([[r["lr"] - r["lr_low"] for r in rows], [r["lr_high"] - r["lr"] for r in rows]])
    a.errorbar(x, lr, yerr=err, fmt="o", color=plotting.PALETTE[0], label="bisected divergence lr")
    a.plot(x, [r["two_over_lambda0"] for r in rows], "v", color=plotting.PALETTE[3], label="2/lambda0 (classic)")
    a.plot(x, [r["four_over_lambda0"] for r in rows], "^", color=plotting.PALETTE[2], label="4/lambda0 (catapult)")
    a.set_xticks(x, [str(r["seed"]) for r in rows])
    plotting.label(a, "(a) per seed", "seed", "learning rate", logy=True)
    ratio = [r["ratio_classic"] for r in rows]
    b.plot(x, ratio, "o", color=plotting.PALETTE[0], label="lr x lambda0 / 2 per seed")
    b.axhline(1.0, color=plotting.PALETTE[3], ls="--", label="1: diverges at 2/lambda0")
    b.axhline(2.0, color=plotting.PALETTE[2], ls="--", label="2: diverges at 4/lambda0")
    lo, hi = m.get("ratio_classic_ci_low"), m.get("ratio_classic_ci_high")
    if lo is not None and hi is not None:
        b.axhspan(lo, hi, color=plotting.PALETTE[0], alpha=0.15, label="mean's 95 % CI")
    b.axhline(m["ratio_classic_mean"], color=plotting.PALETTE[0], lw=1)
    b.set_xticks(x, [str(r["seed"]) for r in rows])
    b.set_ylim(0, max(max(ratio), 2.0) * 1.15)
    plotting.label(b, "(b) divergence lr in units of 2/lambda0", "seed", "lr x lambda0 / 2")
    return fig
