"""The mdn figures: fitted conditional densities, the stable loss vs baselines, logit gaps, lr-0 first steps."""

from __future__ import annotations

import numpy as np

from gradlab import plotting


def _seed_at(per_seed: list, which: str) -> int | None:
    """The seed index with the median (lower middle) or the worst (highest) validation NLL."""
    ranked = sorted((v, i) for i, v in enumerate(per_seed) if v is not None)
    if not ranked:
        return None
    return ranked[(len(ranked) - 1) // 2][1] if which == "median" else ranked[-1][1]


def figure_densities(grids: dict, components: int, st: dict, first_seed: int = 0):
    """p(y | x) fitted by the K-component MDN (its median and its worst seed by validation NLL) and by a single
    Gaussian (its median seed), over the training data."""
    import matplotlib.pyplot as plt

    a, b = st["val_nll_per_seed"], st["single_gaussian_val_nll_per_seed"]
    panels = []
    for k, per_seed, which, name in [
        (components, a, "median", f"MDN, K = {components}, median seed"),
        (components, a, "worst", f"MDN, K = {components}, worst seed"),
        (1, b, "median", "single Gaussian, median seed"),
    ]:
        i = _seed_at(per_seed, which)
        panels.append((k, i, f"{name} (val NLL {per_seed[i]:.2f})" if i is not None else name))
    fig, axes = plt.subplots(1, 3, figsize=(plotting.MAX_WIDTH, 4.5), sharey=True, constrained_layout=True)
    fig.suptitle("Fitted conditional densities p(y | x) on Bishop's inverse problem (stable loss)")
    for ax, (k, i, title) in zip(axes, panels, strict=True):
        g = grids.get((k, first_seed + i)) if i is not None else None
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x (scaled input)")
        if g is None:
            ax.text(0.5, 0.5, "no finite fit", ha="center", va="center", transform=ax.transAxes)
            continue
        dens = np.asarray(g["density"])
        ax.pcolormesh(g["x"], g["y"], dens, shading="auto", cmap="magma", vmin=0, vmax=8.0)
        ax.scatter(g["train_x"], g["train_y"], s=3, c="cyan", alpha=0.5, label="training points (400)")
        ax.legend(loc="lower right", fontsize=8)
    if any(c.collections for c in axes):
        fig.colorbar(axes[0].collections[0], ax=axes, label="density p(y | x) (clipped at 8)")
    axes[0].set_ylabel("y (scaled target)")
    return fig


def figure_stable(st: dict):
    """Validation NLL of each seed as a point, grouped by model (a seed's two fits joined by a faint line: the
    same data and initialisation seed), the mean as a bar, the marginal and uniform references as lines."""
    fig, ax = plotting.figure("Validation NLL per seed: stable MDN vs single Gaussian vs marginal")
    groups = [
        (f"MDN, K = {st['components']}", st["val_nll_per_seed"], "o"),
        ("single Gaussian (K = 1)", st["single_gaussian_val_nll_per_seed"], "s"),
    ]
    n = max(len(v) for _, v, _ in groups)
    jitter = np.linspace(-0.12, 0.12, n) if n > 1 else np.zeros(1)
    for i in range(n):  # the seed's pair
        pair = [v[i] if i < len(v) and v[i] is not None else np.nan for _, v, _ in groups]
        ax.plot([g + jitter[i] for g in range(len(groups))], pair, color="grey", lw=0.6, alpha=0.4)
    for g, (_, values, marker) in enumerate(groups):
        kept = [(jitter[i], v) for i, v in enumerate(values) if v is not None]
        colour = plotting.PALETTE[g]
        ax.plot([g + j for j, _ in kept], [v for _, v in kept], marker, color=colour, alpha=0.8, ls="none")
        if kept:
            mean = float(np.mean([v for _, v in kept]))
            ax.plot([g - 0.25, g + 0.25], [mean, mean], color=colour, lw=2.5)
    ax.plot([], [], "o", color="grey", label="one seed (a seed's two fits joined)")
    ax.plot([], [], color="grey", lw=2.5, label="mean over seeds")
    ax.axhline(st["marginal_val_nll"], color=plotting.PALETTE[2], ls="--", label="marginal p(y) (KDE)")
    ax.axhline(0.0, color="grey", lw=0.8, ls=":", label="uniform U(0, 1): 0 nats")
    ax.set_xticks(range(len(groups)), [name for name, _, _ in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    plotting.label(ax, f"lower is better; {n} seeds", "model", "validation NLL (nats per target)")
    return fig


def figure_logit_gap(rows: list[dict], gaps: dict, underflow_gap: float):
    """The largest logit gap so far, per asker trial and step, against the gap that makes a float32 weight 0."""
    fig, ax = plotting.figure("How close does training come to an exactly-zero mixing weight?", width=11)
    trials = [r for r in rows if r["block"] == "asker" and gaps.get((r["variant"], r["seed"]))]
    colours = {}
    for r in trials:
        key = f"{r['condition']}, {r['mixture']}, lr {r['lr']:g}"
        first = key not in colours
        colours.setdefault(key, plotting.PALETTE[len(colours) % len(plotting.PALETTE)])
        curve = gaps[(r["variant"], r["seed"])]
        ax.plot(
            [c[0] + 1 for c in curve],
            [c[1] for c in curve],
            color=colours[key],
            alpha=0.6,
            lw=1,
            label=key if first else None,
        )
        if r["diverged"]:
            ax.plot([r["first_nonfinite_step"] + 1], [curve[-1][1]], "x", color="red", ms=8)
    ax.axhline(underflow_gap, color="red", ls="--", label=f"float32 softmax weight exactly 0: gap {underflow_gap:.1f}")
    ax.set_xscale("log")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the lines, not over them
    plotting.label(
        ax,
        "running max over rows of max(logits) - min(logits); red x: a NaN",
        "step",
        "largest logit gap so far (nats)",
        legend=False,
    )
    return fig


def figure_lr0(rows: list[dict]):
    fig, ax = plotting.figure("lr = 0: at which step does the first non-finite value appear?")
    lr0 = [r for r in rows if r["block"] == "lr0" and r["diverged"]]
    groups = {}
    for r in lr0:
        key = f"{r['condition']} inputs,\nsigma = {r['sigma']}"
        groups.setdefault(key, []).append(r["first_nonfinite_step"])
    for i, (name, steps) in enumerate(sorted(groups.items())):
        ax.plot(
            steps,
            [i] * len(steps),
            "o",
            alpha=0.5,
            color=plotting.PALETTE[i % len(plotting.PALETTE)],
            label=f"{name} ({len(steps)} trials)",
        )
    ax.set_yticks(range(len(groups)), [n for n in sorted(groups)])
    plotting.label(
        ax, "every lr-0 trial with a non-finite value; x: its first step", "step", "mechanism", legend=bool(groups)
    )
    return fig
