"""Figures of a pg stage: learning curves by variant, final return and the mechanism probe."""

from __future__ import annotations

import numpy as np

from gradlab import plotting
from gradlab.studies.pg.analysis import CURVE_WINDOW


def learning(ctx, curves: list[dict], results: list[dict], p, kind: str, metrics: dict) -> None:
    """Mean over seeds per block of episodes; a 95 % CI band from MIN_CI_N seeds on, else every seed's curve."""
    title = "CartPole-v1" if kind == "cartpole" else "Pong"
    fig, ax = plotting.figure(f"{title}: learning curves by loss variant", width=8.0, height=4.5)
    banded = False
    for i, v in enumerate(p.variants):
        mine = [r for r in curves if r["variant"] == v]
        x = [r["episode"] for r in mine]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot(x, [r["return_mean"] for r in mine], color=colour, label=v)
        if mine and all(r["ci_low"] is not None for r in mine):
            banded = True
            ax.fill_between(x, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine], color=colour, alpha=0.2)
        elif p.seeds > 1:
            for r in (r for r in results if r["variant"] == v):
                returns = np.asarray(r["episodes"]["return"], float)
                w = x[0] if x else CURVE_WINDOW  # the curve's block length (shorter trials: all their episodes)
                blocks = [returns[e - w : e].mean() for e in x if e <= returns.size]
                ax.plot(x[: len(blocks)], blocks, color=colour, lw=0.7, alpha=0.45)
    if kind == "cartpole":
        ax.axhline(p.solve_threshold, color="black", ls="--", label=f"solved ({p.solve_threshold:g})")
        ax.axhline(metrics["reference"]["always_left_return_mean"], color="grey", ls=":", label="always push left")
    else:
        ref = metrics["reference"]
        ax.axhline(
            ref["random_return_mean"], color="grey", ls=":", label=f"random actions ({ref['random_games']} games)"
        )
        ax.axhline(0, color="black", lw=0.8, ls="--", label="as many points won as lost")
    ylabel = "episode return (steps balanced)" if kind == "cartpole" else "episode return (points won - lost)"
    if banded:
        band = f"band: 95 % bootstrap CI over {p.seeds} seeds"
    else:
        band = f"thin lines: each of the {p.seeds} seeds" if p.seeds > 1 else "one seed"
    plotting.label(
        ax,
        f"mean return per block of {CURVE_WINDOW} episodes; {band}",
        "episode",
        ylabel + (", log scale" if kind == "cartpole" else ""),
        logy=kind == "cartpole",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    ctx.savefig(fig, "learning_curves.png")


def final_and_probe(ctx, per_trial: list[dict], metrics: dict, p, kind: str) -> None:
    fig, (a, b) = plotting.figure("Which losses train the agent, and which way does one update push log pi?", ncols=2)
    xs = np.arange(len(p.variants))
    for i, v in enumerate(p.variants):
        m = metrics["variants"][v]
        mine = [t for t in per_trial if t["variant"] == v]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        a.bar(i, m["final_return_mean"], color=colour, alpha=0.6)
        if m["final_return_ci_low"] is not None:
            a.errorbar(
                i,
                m["final_return_mean"],
                yerr=[
                    [m["final_return_mean"] - m["final_return_ci_low"]],
                    [m["final_return_ci_high"] - m["final_return_mean"]],
                ],
                color="black",
                capsize=4,
            )
        a.plot([i] * len(mine), [t["final_return"] for t in mine], "k.", alpha=0.6)
        b.bar(i, m["probe_corr"], color=colour, alpha=0.6)
        b.plot([i] * len(mine), [t["probe_corr"] for t in mine], "k.", alpha=0.6)
        b.plot(i, m["probe_corr_train_mean"], "D", color="black", mfc="white")
    if kind == "pong":
        a.axhline(metrics["reference"]["random_return_mean"], color="grey", ls=":", label="random actions")
    a.plot([], [], "k.", label="one seed")
    if any(metrics["variants"][v]["final_return_ci_low"] is not None for v in p.variants):
        a.errorbar([], [], yerr=[], color="black", capsize=4, label="95 % bootstrap CI over seeds")
    b.plot([], [], "k.", label="small step on the first batch, one seed")
    b.plot([], [], "D", color="black", mfc="white", label="real updates, mean")
    for ax in (a, b):
        ax.set_xticks(xs, p.variants, rotation=30)
    b.axhline(0, color="black", lw=0.8)
    unit = "steps" if kind == "cartpole" else "points won - lost"
    plotting.label(a, f"final return: mean of the last {p.final_episodes} episodes", "loss variant", f"return ({unit})")
    plotting.label(b, "mechanism probe", "loss variant", "corr(change of log pi(a|s), A)")
    ctx.savefig(fig, "final_return_and_probe.png")


def win_curves(ctx, results: list[dict], p, metrics: dict) -> None:
    """Running mean of the last ``stop_window`` games against games played, one line per seed, win marked; with
    evaluations, each checkpoint's evaluated mean score and 95 % CI at the game it was taken."""
    from gradlab.studies.pg.trial import running_mean

    evaluated = bool(getattr(p, "evaluate_games", 0))
    target = 0.0 if evaluated else p.stop_at_mean
    question = (
        f"Pong: when does a frozen policy score above 0 over {p.evaluate_games} fresh games (95 % CI)?"
        if evaluated
        else f"Pong: when does the mean of the last {p.stop_window} games rise above {p.stop_at_mean:g}?"
    )
    fig, (a, b) = plotting.figure(question, ncols=2, width=6.5, height=4.5)
    for i, r in enumerate(results):
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        e = r["episodes"]
        mean = running_mean(e["return"], p.stop_window)
        games = np.arange(1, len(mean) + 1)
        minutes = np.asarray(e["seconds"]) / 60
        label = f"{r['variant']} seed {r['seed']}"
        a.plot(games, mean, color=colour, label=label)
        b.plot(minutes, mean, color=colour, label=label)
        g = r["stopped_at_game"]
        if g > 0 and not evaluated:
            a.plot(g, mean[g - 1], "o", color=colour)
            b.plot(minutes[g - 1], mean[g - 1], "o", color=colour)
        for ev in r.get("evaluations") or []:
            if ev["greedy"] or ev["ci_low"] is None:
                continue
            err = [[ev["mean"] - ev["ci_low"]], [ev["ci_high"] - ev["mean"]]]
            style = {"fmt": "o" if ev["won"] else "x", "color": colour, "capsize": 2, "ms": 5}
            a.errorbar(ev["games_trained"], ev["mean"], yerr=err, **style)
            b.errorbar(ev["train_seconds"] / 60, ev["mean"], yerr=err, **style)
    ref = metrics["reference"]["random_return_mean"]
    for ax in (a, b):
        ax.axhline(target, color="black", ls="--", lw=0.8, label=f"target ({target:g})")
        ax.axhline(ref, color="grey", ls=":", label="random actions")
    marks = (
        "x: a checkpoint's evaluation, o: the first that won (95 % CI)"
        if evaluated
        else "dot: first game above the target"
    )
    plotting.label(a, f"by games played ({marks})", "game", f"mean return of the last {p.stop_window} games (points)")
    plotting.label(
        b,
        "by training wall-clock time (evaluations not counted)",
        "minutes of training",
        f"mean return of the last {p.stop_window} games (points)",
    )
    b.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    ctx.savefig(fig, "win_curves.png")


def logp_moves(ctx, metrics: dict, p, kind: str) -> None:
    """Per variant: of the samples with A < 0, the fraction whose log pi went down, and of A > 0 the fraction
    whose log pi went up, after the probe's small step and after the real updates (mean over seeds, 95 % CI)."""
    fig, ax = plotting.figure(
        "Did each update lower log pi of the actions with A < 0 and raise it for A > 0?", width=9.0, height=4.5
    )
    bars = [
        ("probe_adv_neg_logp_down_fraction", "probe: A < 0, log pi down"),
        ("probe_adv_pos_logp_up_fraction", "probe: A > 0, log pi up"),
        ("adv_neg_logp_down_fraction", "real updates: A < 0, log pi down"),
        ("adv_pos_logp_up_fraction", "real updates: A > 0, log pi up"),
    ]
    width = 0.8 / len(bars)
    for j, (key, name) in enumerate(bars):
        xs, ys, lo, hi = [], [], [], []
        for i, v in enumerate(p.variants):
            m = metrics["variants"][v]
            if m[key] is None or not np.isfinite(m[key]):
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(m[key])
            has_ci = m.get(f"{key}_ci_low") is not None
            lo.append(m[key] - m[f"{key}_ci_low"] if has_ci else 0.0)
            hi.append(m[f"{key}_ci_high"] - m[key] if has_ci else 0.0)
        ax.bar(xs, ys, width, color=plotting.PALETTE[j], label=name, alpha=0.8 if j >= 2 else 0.45)
        if any(lo) or any(hi):
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", color="black", capsize=2)
    ax.axhline(0.5, color="black", ls="--", lw=0.8, label="0.5: as many samples moved either way")
    ax.set_xticks(np.arange(len(p.variants)), p.variants, rotation=30)
    ax.set_ylim(0, 1)
    band = f"mean over {p.seeds} seed(s); bars (real updates): 95 % block-bootstrap interval over updates"
    plotting.label(ax, f"fraction of the batch's samples; {band}", "loss variant", "fraction of samples")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    ctx.savefig(fig, "logp_moves.png")


def loss_value(ctx, results: list[dict], metrics: dict, p, kind: str) -> None:
    """The loss value: K steps on one fixed batch (left), and the loss against the return over training (right)."""
    fixed = [r for r in results if r.get("fixed_batch")]
    ncols = 3 if fixed else 2
    fig, axes = plotting.figure(
        "Does the value of the loss tell how well the agent plays? (one line per seed)", ncols=ncols, width=5.5
    )
    k = 0
    if fixed:
        a = axes[0]
        for i, v in enumerate(p.variants):
            mine = [r for r in fixed if r["variant"] == v]
            for j, r in enumerate(mine):
                a.plot(
                    r["fixed_batch"]["loss"],
                    color=plotting.PALETTE[i % len(plotting.PALETTE)],
                    lw=1,
                    label=v if j == 0 else None,
                )
        a.axhline(0, color="black", lw=0.8)
        a.set_yscale("symlog")
        plotting.label(
            a,
            f"one fixed batch: {p.fixed_batch_steps} steps of each loss",
            "optimiser step",
            "loss value (symlog)",
        )
        k = 1
    b, c = axes[k], axes[k + 1]
    show = [v for v in ("correct", "flipped") if v in p.variants] or p.variants[:1]
    for v in show:
        colour = plotting.PALETTE[p.variants.index(v) % len(plotting.PALETTE)]
        for j, r in enumerate(r for r in results if r["variant"] == v):
            u = r["updates"]
            b.plot(u["loss"], color=colour, lw=1, label=f"{v}: loss" if j == 0 else None)
            c.plot(u["loss"], u["batch_return"], ".", color=colour, ms=3, alpha=0.6, label=v if j == 0 else None)
    b.axhline(0, color="black", lw=0.8)
    b.set_yscale("symlog")
    plotting.label(b, "real training: the loss of each update", "update", "loss value (symlog)")
    corr = metrics.get("loss_value_return_corr")
    note = "" if corr is None or not np.isfinite(corr) else f" (correct: r = {corr:+.2f})"
    plotting.label(
        c,
        f"loss vs the batch's return{note}",
        "loss value of the update",
        "mean return of the batch's episodes",
        logy=kind == "cartpole",
    )
    c.set_xscale("symlog")
    ctx.savefig(fig, "loss_value.png")


def gradient_cosine(ctx, metrics: dict, p) -> None:
    """The cosine of each variant's expected update direction with grad J per checkpoint (at the correct run's
    policies, at the variant's own), mean over seeds with its 95 % interval; and the policies' entropy per update."""
    g = metrics["gradient"]
    ups = g["checkpoints"]
    fig, axes = plotting.figure(
        "Does each loss move the policy up the true gradient? cos(expected update, grad J)", ncols=3, width=5.0
    )
    for ax, where, title in (
        (axes[0], g.get("at_correct", {}), "at the correct run's policies"),
        (axes[1], g.get("own", {}), "at each variant's own policies"),
    ):
        for i, v in enumerate(p.variants):
            if v not in where:
                continue
            rows = [where[v][f"u{u}"] for u in ups]
            mean = np.array([r["mean"] for r in rows], float)
            lo = np.array([np.nan if r["ci_low"] is None else r["ci_low"] for r in rows], float)
            hi = np.array([np.nan if r["ci_high"] is None else r["ci_high"] for r in rows], float)
            x = np.arange(len(ups)) + (i - len(p.variants) / 2) * 0.06
            colour = plotting.PALETTE[i % len(plotting.PALETTE)]
            ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], color=colour, marker="o", capsize=3, label=v)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(np.arange(len(ups)), [str(u) for u in ups])
        ax.set_ylim(-1.05, 1.05)
        plotting.label(ax, f"{title}; bars: 95 % t CI over seeds", "policy after this many updates", "cosine")
    ax = axes[2]
    for i, v in enumerate(p.variants):
        curve = g.get("entropy_per_update", {}).get(v)
        if curve:
            ax.plot(np.arange(1, len(curve) + 1), curve, color=plotting.PALETTE[i % len(plotting.PALETTE)], label=v)
    ax.axhline(np.log(2), color="grey", ls=":", label="uniform (ln 2)")
    plotting.label(ax, "policy entropy on each update's batch, mean over seeds", "update", "entropy (nats)")
    ctx.savefig(fig, "gradient_cosine.png")
