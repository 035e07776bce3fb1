"""The spearman figures and DVC plot tables: held-out spearmanr per method, the strength sweep, the
matrix problem at an equal budget of evaluations, the anytime curves (best spearmanr against
evaluations), what soft ranks look like."""

from __future__ import annotations

import numpy as np
import torch

from gradlab import plotting
from gradlab.stats import MIN_CI_N
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.ltr import GRADIENT
from gradlab.studies.spearman.softrank import soft_rank


def _tasks(m: dict, p: SpearmanParams) -> list[tuple[str, dict]]:
    return [(t, m["ltr" if t == "nonlinear" else f"ltr_{t}"]) for t in p.ltr.tasks]


def plot_tables(m: dict, p: SpearmanParams, curves: dict) -> dict[str, list[dict]]:
    """DVC plots: held-out spearmanr per method and task, against the soft-rank strength, and the anytime
    curves (median over seeds) of both problems."""
    heldout, sweep = [], []
    for task, t in _tasks(m, p):
        for meth in p.ltr.methods:
            if meth in t:
                mean = t[meth]["heldout_spearman_mean"]
                heldout.append(
                    {"series": f"{task}: {meth}", "task": task, "method": meth, "heldout_spearman_mean": mean}
                )
        for row in t["sweep"].values():
            sweep.append({"task": task, "strength": row["strength"], "heldout_spearman_mean": row["heldout_mean"]})
    anytime_matrix = [
        {"series": f"{d}: {meth}", "derivation": d, "method": meth, "units": x, "best_spearman_median": y}
        for (d, meth), c in curves["matrix"].items()
        for x, y in zip(c["x"], c["median"], strict=True)
    ]
    anytime_ltr = [
        {
            "series": f"{task}: {meth}",
            "task": task,
            "method": meth,
            "kind": "gradient" if meth in GRADIENT else "derivative-free",
            "x": x,
            "train_spearman_median": y,
        }
        for (task, meth), c in curves["ltr"].items()
        for x, y in zip(c["x"], c["median"], strict=True)
    ]
    return {
        "ltr_heldout": heldout,
        "soft_rank_strength": sweep,
        "anytime_matrix": anytime_matrix,
        "anytime_ltr": anytime_ltr,
    }


def _seeds(ax, x: float, values, colour: str, spread: float = 0.08) -> None:
    """Each seed's value as a small point at ``x`` (spread sideways so that equal values stay visible)."""
    values = [v for v in values or [] if v is not None]
    if values:
        offsets = np.linspace(-spread, spread, len(values)) if len(values) > 1 else [0.0]
        ax.plot([x + o for o in offsets], values, ".", color=colour, ms=4, alpha=0.6)


def _err(mean, lo, hi):
    if lo is None or hi is None:
        return [[0.0], [0.0]]
    return [[mean - lo], [hi - mean]]


def figure_ltr(m: dict, p: SpearmanParams):
    tasks = _tasks(m, p)
    fig, axes = plotting.figure(
        f"Learning to rank: held-out spearmanr ({p.ltr.seeds} seeds, "
        + ("mean and 95 % bootstrap CI)" if p.ltr.seeds >= MIN_CI_N else "mean; no CI below 10 seeds)"),
        ncols=len(tasks),
        width=6.0,
    )
    axes = axes if isinstance(axes, list) else [axes]
    for ax, (task, t) in zip(axes, tasks, strict=True):
        present = [meth for meth in p.ltr.methods if meth in t]
        for i, meth in enumerate(present):
            r = t[meth]
            mean = r["heldout_spearman_mean"]
            colour = plotting.PALETTE[i % len(plotting.PALETTE)]
            ax.errorbar(
                [i],
                [mean],
                yerr=_err(mean, r["heldout_spearman_ci_low"], r["heldout_spearman_ci_high"]),
                fmt="o",
                capsize=4,
                color=colour,
            )
            _seeds(ax, i + 0.18, r.get("heldout_spearman_values"), colour)
        ax.plot([], [], ".", color="grey", label="one seed")
        if "oracle_heldout_mean" in t:
            ax.axhline(t["oracle_heldout_mean"], color="grey", ls="--", label="oracle (the true latent score)")
        ax.set_xticks(range(len(present)), present, rotation=30)
        plotting.label(ax, f"task: {task}", "training objective / optimiser", "held-out spearmanr")
    return fig


def figure_sweep(m: dict, p: SpearmanParams):
    fig, ax = plotting.figure("soft_rank: held-out spearmanr against the regularisation strength")
    for i, (task, t) in enumerate(_tasks(m, p)):
        rows = sorted(t["sweep"].values(), key=lambda r: r["strength"])
        if not rows:
            continue
        x = [r["strength"] for r in rows]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot(x, [r["heldout_mean"] for r in rows], "o-", color=colour, label=f"{task}: soft_rank")
        lo = [r["heldout_ci_low"] if r["heldout_ci_low"] is not None else r["heldout_mean"] for r in rows]
        hi = [r["heldout_ci_high"] if r["heldout_ci_high"] is not None else r["heldout_mean"] for r in rows]
        ax.fill_between(x, lo, hi, color=colour, alpha=0.15)
        if "pearson" in t:
            ax.axhline(t["pearson"]["heldout_spearman_mean"], color=colour, ls=":", label=f"{task}: pearson")
    plotting.label(
        ax,
        "large strength -> soft ranks affine in the scores -> the Pearson objective",
        "strength (rank positions)",
        "held-out spearmanr (mean over seeds)",
        logx=True,
    )
    return fig


def figure_matrix(m: dict, p: SpearmanParams, derivations: list[str]):
    fig, ax = plotting.figure(
        f"Matrix problem (n = {p.matrix.n}): final spearmanr after {p.matrix.budget:,} budget units per trial "
        f"({p.matrix.seeds} seeds)",
        width=9.5,
    )
    methods = list(p.matrix.methods)
    width = 0.8 / max(1, len(methods))
    for j, meth in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, d in enumerate(derivations):
            r = m["matrix"][d].get(meth)
            if r is None:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(r["final_spearman_mean"])
            lo.append(r["final_spearman_mean"] - (r["final_spearman_ci_low"] or r["final_spearman_mean"]))
            hi.append((r["final_spearman_ci_high"] or r["final_spearman_mean"]) - r["final_spearman_mean"])
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=2, label=meth, color=plotting.PALETTE[j % 8], alpha=0.6)
        for x, d in zip(xs, (d for d in derivations if m["matrix"][d].get(meth) is not None), strict=True):
            _seeds(ax, x, m["matrix"][d][meth].get("final_spearman_values"), "black", spread=width * 0.3)
    ax.plot([], [], ".", color="black", label="one seed")
    ax.set_xticks(range(len(derivations)), derivations)
    ax.set_ylim(-1.05, 1.05)
    ci = "mean and 95 % bootstrap CI" if p.matrix.seeds >= MIN_CI_N else "mean (no CI below 10 seeds)"
    plotting.label(
        ax,
        f"equal budget: an evaluation = 1 unit, a gradient step = {1 + p.matrix.backward_cost}; {ci}",
        "list derivation (an assumption)",
        "final spearmanr",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the bars, not over the seeds' points
    return fig


def _anytime_panel(ax, c: dict, colour: str, label: str, ls: str = "-") -> None:
    """One method's curve: the median over seeds, every seed as a faint line."""
    for row in c["seeds"]:
        ax.plot(c["x"], row, color=colour, alpha=0.12, lw=0.7, ls=ls)
    ax.plot(c["x"], c["median"], color=colour, lw=1.8, ls=ls, label=label)


def figure_anytime_matrix(curves: dict, p: SpearmanParams, derivations: list[str]):
    """Best spearmanr so far against budget units, one panel per derivation (log x)."""
    fig, axes = plotting.figure(
        f"Matrix problem: best spearmanr so far against budget units (median over {p.matrix.seeds} seeds; "
        "faint: each seed)",
        ncols=len(derivations),
        width=4.6,
    )
    axes = axes if isinstance(axes, list) else [axes]
    step = 1 + p.matrix.backward_cost
    for ax, d in zip(axes, derivations, strict=True):
        for j, meth in enumerate(p.matrix.methods):
            c = curves.get((d, meth))
            if c is not None:
                _anytime_panel(ax, c, plotting.PALETTE[j % len(plotting.PALETTE)], meth)
        ax.set_ylim(-1.05, 1.05)
        plotting.label(
            ax,
            f"derivation: {d}",
            f"budget units (evaluation 1, gradient step {step})",
            "best spearmanr so far",
            logx=True,
            legend=d == derivations[0],
        )
    return fig


def figure_anytime_ltr(curves: dict, p: SpearmanParams):
    """Training spearmanr: the derivative-free methods' best so far against evaluations (solid) and, for
    reference, the gradient methods' against Adam steps (dashed); one panel per task (log x)."""
    tasks = list(p.ltr.tasks)
    fig, axes = plotting.figure(
        f"Learning to rank: training spearmanr against evaluations / steps (median over {p.ltr.seeds} seeds; "
        "faint: each seed)",
        ncols=len(tasks),
        width=6.0,
    )
    axes = axes if isinstance(axes, list) else [axes]
    for ax, task in zip(axes, tasks, strict=True):
        for j, meth in enumerate(p.ltr.methods):
            c = curves.get((task, meth))
            if c is None:
                continue
            grad = meth in GRADIENT
            label = f"{meth} (per Adam step)" if grad else f"{meth} (best so far)"
            _anytime_panel(ax, c, plotting.PALETTE[j % len(plotting.PALETTE)], label, "--" if grad else "-")
        plotting.label(
            ax,
            f"task: {task}",
            "evaluations (derivative-free, solid) / Adam steps (gradient, dashed)",
            "training spearmanr",
            logx=True,
            legend=task == tasks[0],
        )
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
