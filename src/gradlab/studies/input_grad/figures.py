"""The input_grad figures: agreement, the BatchNorm gap, cost against N, Sobolev training."""

from __future__ import annotations

import numpy as np

from gradlab import plotting
from gradlab.stats import MIN_CI_N, t_mean_ci
from gradlab.studies.input_grad.config import InputGradParams
from gradlab.studies.input_grad.trial import VARIANTS, TrialSpec


def figure_agreement(agreement: dict, fd_diff: float, p: InputGradParams, scale: float):
    fig, ax = plotting.figure("Do the five methods give the same per-sample input gradients?", width=7.5)
    names = [m for m in agreement if m != "loop"] + ["finite differences"]
    values = [agreement[m]["max_abs_diff"] for m in agreement if m != "loop"] + [fd_diff]
    floor = 1e-18  # exact zeros drawn at the floor of the log axis
    ax.bar(names, [max(v, floor) for v in values], color=plotting.PALETTE[: len(names)])
    ax.axhline(p.check.fd_tol, color="black", ls="--", label=f"finite-difference tolerance {p.check.fd_tol:g}")
    ax.axhline(p.check.rel_tol * scale, color="black", ls=":", label=f"method tolerance {p.check.rel_tol:g} x max|G|")
    for i, v in enumerate(values):
        ax.text(i, max(v, floor) * 2, "0 (exact)" if v == 0 else f"{v:.1e}", ha="center", fontsize=8)
    plotting.label(
        ax,
        f"question's network (H={p.model.hidden}, {p.model.activation}), N={p.check.n}, float64",
        "method",
        "max |G - G_loop| (exact zeros at 1e-18)",
        logy=True,
    )
    return fig


def figure_batchnorm(bn_grads: dict, m: dict):
    fig, axes = plotting.figure("BatchNorm: is the sum trick the per-sample gradient?", ncols=2, width=5.0)
    for ax, mode, title in [
        (axes[0], "train", f"(a) training mode: max |diff| = {m['train_sum_trick_max_abs_diff']:.3g}"),
        (axes[1], "eval", f"(b) eval mode: max |diff| = {m['eval_sum_trick_max_abs_diff']:.1e}"),
    ]:
        true, trick = bn_grads[mode]["loop"].numpy(), bn_grads[mode]["sum"].numpy()
        lim = float(np.abs(np.concatenate([true, trick])).max()) * 1.05
        ax.plot([-lim, lim], [-lim, lim], color="black", lw=0.8, label="y = x")
        for k in range(true.shape[1]):
            ax.scatter(true[:, k], trick[:, k], s=10, alpha=0.7, label=f"component x{k + 1}")
        plotting.label(ax, title, "true dh(x_i)/dx_i (loop)", "grad(pred.sum(), X)[i]")
    return fig


def figure_timing(rows: list[dict], methods: list[str], memory: bool):
    fig, axes = plotting.figure("What does each method cost as the batch grows?", ncols=2 if memory else 1, width=5.5)
    axes = axes if memory else [axes]
    for i, method in enumerate(methods):
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        ok = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        capped = [r for r in rows if r["method"] == method and r["status"] == "capped"]
        style = "--" if method == "reference_backward" else "o-"
        label = "plain batched backward (reference)" if method == "reference_backward" else method
        axes[0].plot([r["n"] for r in ok], [r["seconds"] for r in ok], style, color=colour, label=label)
        if capped and ok:
            axes[0].plot(
                [ok[-1]["n"], *(r["n"] for r in capped)],
                [ok[-1]["seconds"], *(r["extrapolated_seconds"] for r in capped)],
                ":",
                color=colour,
                alpha=0.6,
            )
            axes[0].scatter(
                [r["n"] for r in capped], [r["extrapolated_seconds"] for r in capped], marker="x", color=colour
            )
        if memory:
            axes[1].plot([r["n"] for r in ok], [max(r["peak_bytes"], 1) for r in ok], style, color=colour, label=label)
    plotting.label(
        axes[0],
        "(a) time per call (x, dotted: capped, O(N^2) extrapolation)",
        "batch size N",
        "seconds",
        logx=True,
        logy=True,
    )
    if memory:
        plotting.label(
            axes[1], "(b) peak torch allocator memory per call", "batch size N", "bytes", logx=True, logy=True
        )
    return fig


def figure_sobolev(trials: list[TrialSpec], results: list[dict], s: dict):
    fig, axes = plotting.figure("Does training on input gradients (Sobolev) help?", ncols=2, width=5.5)
    labels = {"value_only": "values only", "with_grad": "values + input gradients"}
    for i, variant in enumerate(VARIANTS):
        mine = [r for t, r in zip(trials, results, strict=True) if t.variant == variant]
        steps = mine[0]["eval_steps"]
        curves = np.array([r["eval_grad_rmse"] for r in mine])
        ci = [t_mean_ci(curves[:, j], low=0.0) for j in range(curves.shape[1])]  # one seed: no band
        colour = plotting.PALETTE[i]
        axes[0].plot(steps, [c[0] for c in ci], color=colour, label=f"{labels[variant]} (mean)")
        if all(c[1] is not None for c in ci):
            axes[0].fill_between(steps, [c[1] for c in ci], [c[2] for c in ci], color=colour, alpha=0.25)
        else:  # fewer than MIN_CI_N seeds: no 95 % band, the seeds themselves
            for curve in curves:
                axes[0].plot(steps, curve, color=colour, alpha=0.3, lw=0.8)
        for j, key in enumerate(["value_rmse", "grad_rmse"]):
            x = j * 3 + i
            per_seed = s[variant][f"{key}_per_seed"]
            axes[1].scatter([x] * len(per_seed), per_seed, color=colour, alpha=0.5, s=12)
            low, high = s[variant][f"{key}_ci_low"], s[variant][f"{key}_ci_high"]
            axes[1].errorbar(
                x,
                s[variant][key],
                yerr=None if low is None else [[s[variant][key] - low], [high - s[variant][key]]],
                fmt="o",
                color=colour,
                capsize=4,
                label=labels[variant] if j == 0 else None,
            )
    band = "95 % CI" if s["seeds"] >= MIN_CI_N else "thin lines: seeds"
    plotting.label(axes[0], f"(a) held-out gradient RMSE during training ({band})", "step", "gradient RMSE", logy=True)
    axes[1].set_xticks([0.5, 3.5], ["value RMSE", "gradient RMSE"])
    bars = "mean, 95 % CI" if s["seeds"] >= MIN_CI_N else "mean and seeds (no CI below 10 seeds)"
    plotting.label(axes[1], f"(b) held-out, after training: {bars}, {s['seeds']} seeds", "metric", "RMSE", logy=True)
    return fig
