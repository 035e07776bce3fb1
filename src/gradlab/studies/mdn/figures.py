"""The mdn figures: failure rates per level, the two strongest factors, NLL curves, the first non-finite step."""

from __future__ import annotations

import math

import numpy as np

from gradlab import plotting
from gradlab.studies.mdn.trial import FACTORS, level_name


def figure_failure_rates(by_level: dict):
    fig, ax = plotting.figure("Which factor levels make the MDN loss non-finite?", width=11, height=4.5)
    xs, labels, x = [], [], 0
    for i, f in enumerate(FACTORS):
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        first = True
        for lvl, s in by_level[f]["levels"].items():
            err = [[s["rate"] - s["ci_low"]], [s["ci_high"] - s["rate"]]]
            ax.bar(x, s["rate"], color=colour, yerr=err, capsize=3, label=f if first else None)
            xs.append(x)
            labels.append(lvl)
            first, x = False, x + 1
        x += 0.6
    ax.set_xticks(xs, labels, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
    plotting.label(ax, "bars: share of trials diverged; whiskers: Wilson 95 % CI", "factor level", "failure rate")
    return fig


def figure_heatmap(rows: list[dict], factors: list[str]):
    a, b = factors
    la = list(dict.fromkeys(r[a] for r in rows))  # levels in the order of params.yaml
    lb = list(dict.fromkeys(r[b] for r in rows))
    grid = np.full((len(la), len(lb)), np.nan)
    fig, ax = plotting.figure(f"Failure rate over the two strongest factors: {a} x {b}", width=6.5, height=4.5)
    for i, va in enumerate(la):
        for j, vb in enumerate(lb):
            mine = [r for r in rows if r[a] == va and r[b] == vb]
            k = sum(r["diverged"] for r in mine)
            grid[i, j] = k / len(mine) if mine else np.nan
            ax.text(j, i, f"{k}/{len(mine)}", ha="center", va="center", color="white" if grid[i, j] > 0.5 else "k")
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="failure rate (diverged / trials)")
    ax.set_xticks(range(len(lb)), [level_name(b, v) for v in lb])
    ax.set_yticks(range(len(la)), [level_name(a, v) for v in la])
    ax.grid(False)
    plotting.label(ax, "cells: diverged / trials, all other factors pooled", b, a, legend=False)
    return fig


def figure_curves(pair: dict, curves: dict, rows: list[dict]):
    fig, ax = plotting.figure("Training NLL: stable (log space) vs naive (probability space)")
    for i, (name, key) in enumerate(pair.items()):
        losses = curves[key]
        steps = [s for s, v in enumerate(losses) if math.isfinite(v)]
        colour = plotting.PALETTE[i]
        ax.plot(steps, [losses[s] for s in steps], color=colour, label=f"{name}: {key[0]} seed {key[1]}"[:90])
        bad = next((s for s, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is not None:
            ax.axvline(bad, color=colour, ls="--", label=f"{name}: first non-finite loss at step {bad}")
    plotting.label(
        ax,
        "dashed: first non-finite loss (a run stops once its weights are NaN)",
        "step",
        "training NLL (nats per target)",
    )
    return fig


def figure_first_step(rows: list[dict], steps: int):
    fig, ax = plotting.figure("After how many steps does the loss turn non-finite?")
    relu = sum(r["diverged"] for r in rows if r["sigma"] == "relu")
    rest = [r for r in rows if r["sigma"] != "relu"]
    groups = {"lr = 0": [r for r in rest if r["lr"] == 0.0], "lr > 0": [r for r in rest if r["lr"] > 0.0]}
    bins = np.linspace(0, steps, min(steps, 50) + 1)
    for i, (name, mine) in enumerate(groups.items()):
        first = [r["first_nonfinite_step"] for r in mine if r["diverged"]]
        if first:
            ax.hist(first, bins=bins, alpha=0.6, color=plotting.PALETTE[i], label=f"{name} ({len(first)} diverged)")
    plotting.label(
        ax,
        f"diverged trials with a non-zero scale; the {relu} relu trials all fail at step 0",
        "first step with a non-finite value",
        "trials",
    )
    return fig
