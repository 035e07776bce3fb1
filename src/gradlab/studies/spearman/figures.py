"""The spearman figures: best spearmanr against evaluations, cost and result against n, soft ranks."""

from __future__ import annotations

import numpy as np
import torch

from gradlab import plotting
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.softrank import soft_rank


def figure_curves(curves: dict, p: SpearmanParams):
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
    return fig


def figure_cost(table: list[dict], p: SpearmanParams):
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
    return fig


def figure_soft_rank():
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
    return fig
