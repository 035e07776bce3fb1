"""REINFORCE: how does a negative reward make the agent avoid an action, and what if the loss changes?

The plan, top to bottom (the same for ``pg_cartpole`` and ``pg_pong``):

1. Train every variant (``correct``, ``flipped``, ``abs``, ``pow``, ``no_standardize``,
   ``baseline``: see losses.py) for every seed with the same network, data pipeline and
   optimiser, trials in parallel worker processes. Seed k gives the same initial policy and
   the same first batch of episodes to every variant.
2. Mechanism probe on that first batch: one small gradient step of the variant's loss, then
   corr(change of log pi(a_t|s_t), A_t). Also the same correlation for every real update.
3. Final return (mean of the last K episodes) per seed, mean and 95 % CI over seeds, Welch's
   t-test of ``correct`` against each variant; CartPole: episodes until the moving average
   of the return reaches the threshold.
4. Tables, DVC plots, figures, MLflow child runs, summary.md; Pong: throughput in timing.json.
"""

from __future__ import annotations

import math
import platform

import numpy as np

from gradlab import plotting
from gradlab.parallel import default_workers, map_trials
from gradlab.stats import cohens_d, mean_ci, welch
from gradlab.studies.pg.module import Trial, train_trial

CURVE_WINDOW = 20  # episodes averaged per point of the learning curves


def run_cartpole(p, ctx) -> dict:
    return run_study(p, ctx, "cartpole")


def run_pong(p, ctx) -> dict:
    return run_study(p, ctx, "pong")


def run_study(p, ctx, kind: str) -> dict:
    seeds = [p.seed + k for k in range(p.seeds)]
    trials = [
        Trial(kind, p, v, s, str(ctx.checkpoints / f"{v}__seed{s}.pt") if p.checkpoint_every else None, ctx.resume)
        for s in seeds
        for v in p.variants
    ]
    workers = p.workers or default_workers()
    results = map_trials(train_trial, trials, workers, progress=lambda it: ctx.track(it, "trials", len(trials)))

    rows = episode_rows(results, kind)
    ctx.write_csv("episodes.csv", rows)
    per_trial = [trial_summary(r, p, kind) for r in results]
    log_children(ctx, results, per_trial)
    metrics = aggregate(per_trial, p, kind)
    curves = learning_curves(results, p)
    ctx.write_csv("plots/learning_curve.csv", curves)
    ctx.write_csv("plots/final_return.csv", final_table(metrics["variants"]))
    ctx.write_csv("plots/probe.csv", probe_rows(results))
    ctx.write_csv("trials.csv", per_trial)
    figure_learning(ctx, curves, p, kind, metrics)
    figure_final_and_probe(ctx, per_trial, metrics, p, kind)
    timing = timing_of(results, kind, workers)
    ctx.write_json("timing.json", timing)
    ctx.write_csv("timing.csv", [{"variant": r["variant"], "seed": r["seed"], **r["timing"]} for r in per_trial])
    ctx.write_text("summary.md", summary(metrics, timing, p, kind))
    return metrics


# per trial -----------------------------------------------------------------------
def episode_rows(results: list[dict], kind: str) -> list[dict]:
    rows = []
    for r in results:
        e = r["episodes"]
        for i, (ret, length, frames, upd) in enumerate(
            zip(e["return"], e["length"], e["frames"], e["update"], strict=True)
        ):
            rows.append(
                {
                    "variant": r["variant"],
                    "seed": r["seed"],
                    "episode": i,
                    "update": upd,
                    "return": ret,
                    "length": length,
                    "frames": frames,
                }
            )
    return rows


def episodes_to_solve(returns: list[float], threshold: float, window: int) -> int | None:
    """Episodes played until the mean of the last ``window`` returns first reaches ``threshold``."""
    r = np.asarray(returns, float)
    if r.size < window:
        return None
    ma = np.convolve(r, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(ma >= threshold)
    return int(hit[0] + window) if hit.size else None


def trial_summary(r: dict, p, kind: str) -> dict:
    returns = r["episodes"]["return"]
    probes = [v for v in r["updates"]["probe"] if math.isfinite(v)]
    out = {
        "variant": r["variant"],
        "seed": r["seed"],
        "episodes": len(returns),
        "final_return": float(np.mean(returns[-p.final_episodes :])),
        "final_length": float(np.mean(r["episodes"]["length"][-p.final_episodes :])),
        "probe_corr": r["fixed_probe"],
        "probe_corr_first_update": r["updates"]["probe"][0] if r["updates"]["probe"] else math.nan,
        "probe_corr_train_mean": float(np.mean(probes)) if probes else math.nan,
        "diverged_at_update": r["diverged_at"] if r["diverged_at"] >= 0 else None,
        "frames": int(sum(r["episodes"]["frames"])),
        "timing": {
            "train_seconds": r["seconds"],
            "cpu_seconds": r["cpu_seconds"],
            "frames_per_second": sum(r["episodes"]["frames"]) / r["seconds"] if r["seconds"] > 0 else math.nan,
        },
    }
    if kind == "cartpole":
        out["episodes_to_solve"] = episodes_to_solve(returns, p.solve_threshold, p.solve_window)
    return out


def log_children(ctx, results: list[dict], per_trial: list[dict]) -> None:
    for r, s in zip(results, per_trial, strict=True):
        with ctx.child(r["variant"], r["seed"], params={"variant": r["variant"]}) as run:
            e, u = r["episodes"], r["updates"]
            run.log_curve("episode/return", e["return"])
            run.log_curve("episode/length", e["length"])
            clean = lambda xs: [v if math.isfinite(v) else 0.0 for v in xs]  # noqa: E731
            finite_loss = [(i, v) for i, v in enumerate(u["loss"]) if math.isfinite(v)]
            if finite_loss:
                run.log_curve("train/loss", [v for _, v in finite_loss], [i for i, _ in finite_loss])
            run.log_curve("train/grad_norm", clean(u["grad_norm"]))
            run.log_curve("probe/dlogp_adv_corr_update", clean(u["probe"]))
            final = {
                "eval/final_return": s["final_return"],
                "eval/final_length": s["final_length"],
                "probe/dlogp_adv_corr": s["probe_corr"],
                "train/diverged": float(s["diverged_at_update"] is not None),
            }
            if s.get("episodes_to_solve") is not None:
                final["eval/episodes_to_solve"] = s["episodes_to_solve"]
            run.log_metrics({k: v for k, v in final.items() if v is not None and math.isfinite(v)})


# across seeds ----------------------------------------------------------------------
def aggregate(per_trial: list[dict], p, kind: str) -> dict:
    finals = {v: [t["final_return"] for t in per_trial if t["variant"] == v] for v in p.variants}
    variants = {}
    for v in p.variants:
        mine = [t for t in per_trial if t["variant"] == v]
        mean, lo, hi = mean_ci(finals[v])
        pm, plo, phi = mean_ci([t["probe_corr"] for t in mine])
        m = {
            "final_return_mean": mean,
            "final_return_ci_low": lo,
            "final_return_ci_high": hi,
            "final_return_per_seed": finals[v],
            "final_length_mean": float(np.mean([t["final_length"] for t in mine])),
            "probe_corr": pm,
            "probe_corr_ci_low": plo,
            "probe_corr_ci_high": phi,
            "probe_corr_first_update": float(np.nanmean([t["probe_corr_first_update"] for t in mine])),
            "probe_corr_train_mean": float(np.nanmean([t["probe_corr_train_mean"] for t in mine])),
            "diverged_seeds": sum(t["diverged_at_update"] is not None for t in mine),
            "p_vs_correct": None,
            "cohens_d_vs_correct": None,
        }
        if v != "correct" and "correct" in finals:
            m["p_vs_correct"] = welch(finals["correct"], finals[v])[1]
            m["cohens_d_vs_correct"] = cohens_d(finals["correct"], finals[v])
        if kind == "cartpole":
            solve = [t["episodes_to_solve"] for t in mine]
            m["episodes_to_solve_per_seed"] = solve
            m["solved_seeds"] = sum(s is not None for s in solve)
            med = float(np.median([math.inf if s is None else s for s in solve]))
            m["episodes_to_solve_median"] = med if math.isfinite(med) else None
        variants[v] = m
    metrics = {
        "variants": variants,
        "seeds": p.seeds,
        "episodes_per_trial": p.updates * p.episodes_per_update,
        "final_episodes": p.final_episodes,
    }
    if kind == "cartpole":
        metrics["reference"] = cartpole_references(p.seed)
    else:
        metrics["env"] = pong_variant(p)
        metrics["frames_per_trial_mean"] = float(np.mean([t["frames"] for t in per_trial]))
    return metrics


def cartpole_references(seed: int, episodes: int = 100) -> dict:
    """Returns of two fixed policies on CartPole-v1: always push one way (the shortest episodes), uniform random."""
    from gradlab.studies.pg.envs import CartPoleEnvs

    env = CartPoleEnvs(episodes)
    out = {}
    for name, policy in {
        "always_left": lambda obs, rng: np.zeros(len(obs), dtype=np.int64),
        "random": lambda obs, rng: rng.integers(0, 2, len(obs)),
    }.items():
        rng = np.random.default_rng(seed)
        obs, alive, total = env.reset(seed + 12345), np.ones(episodes, bool), np.zeros(episodes)
        while alive.any():
            obs, r, done = env.step(policy(obs, rng))
            total += r * alive
            alive &= ~done
        out[f"{name}_return_mean"] = float(total.mean())
        out[f"{name}_return_min"] = float(total.min())
    env.close()
    return out


def pong_variant(p) -> dict:
    return {
        "id": "ALE/Pong-v5 dynamics via ale_py.AtariVectorEnv",
        "frameskip": p.frameskip,
        "repeat_action_probability": p.repeat_action_probability,
        "actions": "UP (RIGHT=2), DOWN (LEFT=3)",
        "input": f"{80 // p.downsample}x{80 // p.downsample} binary frame difference",
        "points_per_episode": p.points_per_episode,
        "max_episode_frames": p.max_episode_frames,
    }


def learning_curves(results: list[dict], p) -> list[dict]:
    """Mean return per block of CURVE_WINDOW episodes: mean and 95 % CI over seeds, per variant."""
    rows = []
    for v in p.variants:
        mine = [np.asarray(r["episodes"]["return"], float) for r in results if r["variant"] == v]
        n = min(len(x) for x in mine)
        w = min(CURVE_WINDOW, n)
        for start in range(0, n - w + 1, w):
            mean, lo, hi = mean_ci([x[start : start + w].mean() for x in mine])
            rows.append({"variant": v, "episode": start + w, "return_mean": mean, "ci_low": lo, "ci_high": hi})
    return rows


def final_table(variants: dict) -> list[dict]:
    return [
        {
            "variant": v,
            "final_return_mean": m["final_return_mean"],
            "ci_low": m["final_return_ci_low"],
            "ci_high": m["final_return_ci_high"],
            "probe_corr": m["probe_corr"],
            "p_vs_correct": m["p_vs_correct"],
        }
        for v, m in variants.items()
    ]


def probe_rows(results: list[dict]) -> list[dict]:
    return [
        {"variant": r["variant"], "seed": r["seed"], "update": i, "dlogp_adv_corr": c}
        for r in results
        for i, c in enumerate(r["updates"]["probe"])
    ]


def timing_of(results: list[dict], kind: str, workers: int) -> dict:
    """Wall-clock numbers: NOT in metrics.json (they vary from run to run)."""
    frames = sum(sum(r["episodes"]["frames"]) for r in results)
    seconds = sum(r["seconds"] for r in results)
    out = {
        "workers": workers,
        "trials": len(results),
        "train_seconds_total": seconds,
        "cpu_seconds_total": sum(r["cpu_seconds"] for r in results),
        "frames_total": frames,
        "frames_per_second": frames / seconds if seconds > 0 else None,  # per trial process
        "frames_per_second_all_workers": frames / seconds * min(workers, len(results)) if seconds > 0 else None,
        "machine": platform.machine(),
    }
    return out


# figures and summary ------------------------------------------------------------------
def figure_learning(ctx, curves: list[dict], p, kind: str, metrics: dict) -> None:
    title = "CartPole-v1" if kind == "cartpole" else "Pong"
    fig, ax = plotting.figure(f"{title}: learning curves by loss variant", width=8.0, height=4.5)
    for i, v in enumerate(p.variants):
        mine = [r for r in curves if r["variant"] == v]
        x = [r["episode"] for r in mine]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot(x, [r["return_mean"] for r in mine], color=colour, label=v)
        ax.fill_between(x, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine], color=colour, alpha=0.2)
    if kind == "cartpole":
        ax.axhline(p.solve_threshold, color="black", ls="--", label=f"solved ({p.solve_threshold:g})")
        ax.axhline(metrics["reference"]["always_left_return_mean"], color="grey", ls=":", label="always push left")
    ylabel = "episode return (steps balanced)" if kind == "cartpole" else "episode return (points won - lost)"
    plotting.label(
        ax,
        f"mean return per block of {CURVE_WINDOW} episodes; band: 95 % CI over {p.seeds} seeds",
        "episode",
        ylabel + (", log scale" if kind == "cartpole" else ""),
        logy=kind == "cartpole",
    )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    ctx.savefig(fig, "learning_curves.png")


def figure_final_and_probe(ctx, per_trial: list[dict], metrics: dict, p, kind: str) -> None:
    fig, (a, b) = plotting.figure("Which losses train the agent, and which way does one update push log pi?", ncols=2)
    xs = np.arange(len(p.variants))
    for i, v in enumerate(p.variants):
        m = metrics["variants"][v]
        mine = [t for t in per_trial if t["variant"] == v]
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        a.bar(i, m["final_return_mean"], color=colour, alpha=0.6)
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
    a.plot([], [], "k.", label="one seed")
    a.errorbar([], [], yerr=[], color="black", capsize=4, label="95 % CI")
    b.plot([], [], "k.", label="small step on the first batch, one seed")
    b.plot([], [], "D", color="black", mfc="white", label="real updates, mean")
    for ax in (a, b):
        ax.set_xticks(xs, p.variants, rotation=30)
    b.axhline(0, color="black", lw=0.8)
    unit = "steps" if kind == "cartpole" else "points won - lost"
    plotting.label(a, f"final return: mean of the last {p.final_episodes} episodes", "loss variant", f"return ({unit})")
    plotting.label(b, "mechanism probe", "loss variant", "corr(change of log pi(a|s), A)")
    ctx.savefig(fig, "final_return_and_probe.png")


def _fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}g}"


def summary(m: dict, timing: dict, p, kind: str) -> str:
    v = m["variants"]
    env = "CartPole-v1" if kind == "cartpole" else "Pong"
    lines = [
        f"# {'pg_cartpole' if kind == 'cartpole' else 'pg_pong'}: REINFORCE loss-sign ablation on {env}",
        "",
        "Minimising `sum(A * CE)` with `CE = -log pi(a|s)` means *maximising* `sum(A * log pi(a|s))`: an action "
        "followed by a below-average return (A < 0) makes the loss smaller the *less* likely it is, so gradient "
        "descent lowers its probability. The optimiser does not minimise |loss| and does not push the loss to "
        "zero; the sign of A only sets the direction in which each action's log-probability moves.",
        "",
        f"Setup: {p.seeds} seeds x {len(p.variants)} variants, {m['episodes_per_trial']} episodes per trial "
        f"({p.episodes_per_update} per update), {p.optimizer.name} lr {p.optimizer.lr:g} decay {p.optimizer.decay:g}, "
        f"gamma {p.gamma:g}, returns standardised per {p.standardize_per}. Final return = mean of the last "
        f"{p.final_episodes} episodes; 95 % CI over seeds; Welch's t-test against `correct`.",
    ]
    if kind == "pong":
        e = m["env"]
        lines += [
            "",
            f"Pong variant: {e['id']}, frameskip {e['frameskip']}, sticky actions (repeat_action_probability) "
            f"{e['repeat_action_probability']}, actions {e['actions']}, input {e['input']}, an episode = "
            f"{e['points_per_episode']} points at most. Throughput (timing.json, this run): "
            f"{_fmt(timing['frames_per_second'], 4)} frames/s per trial process, "
            f"{timing['workers']} processes.",
        ]
    lines += [
        "",
        "| variant | final return (95 % CI) | probe corr (95 % CI) | real-update corr | p vs correct |"
        + (" episodes to solve (median) |" if kind == "cartpole" else ""),
        "|---|---|---|---|---|" + ("---|" if kind == "cartpole" else ""),
    ]
    for name, x in v.items():
        row = (
            f"| `{name}` | {_fmt(x['final_return_mean'])} ({_fmt(x['final_return_ci_low'])} to "
            f"{_fmt(x['final_return_ci_high'])}) | {_fmt(x['probe_corr'])} ({_fmt(x['probe_corr_ci_low'])} to "
            f"{_fmt(x['probe_corr_ci_high'])}) | {_fmt(x['probe_corr_train_mean'])} | {_fmt(x['p_vs_correct'])} |"
        )
        if kind == "cartpole":
            row += f" {_fmt(x['episodes_to_solve_median'])} ({x['solved_seeds']}/{p.seeds} seeds solved) |"
        lines.append(row)
    lines.append("")
    if "correct" in v and "flipped" in v:
        c, f = v["correct"], v["flipped"]
        lines.append(
            f"- `correct` vs `flipped`: final return {_fmt(c['final_return_mean'])} vs {_fmt(f['final_return_mean'])} "
            f"(Welch p = {_fmt(f['p_vs_correct'])}); the probe correlation is {_fmt(c['probe_corr'])} vs "
            f"{_fmt(f['probe_corr'])}: flipping the sign makes each update raise the probability of the actions "
            "that were followed by the worst returns."
        )
    if kind == "cartpole":
        ref = m["reference"]
        lines.append(
            f"- Reference policies: always pushing left lasts {_fmt(ref['always_left_return_mean'])} steps on average "
            f"(the shortest episodes), a uniform random policy {_fmt(ref['random_return_mean'])}."
        )
    for name in ("abs", "pow"):
        if name in v:
            x = v[name]
            lines.append(
                f"- `{name}`: final return {_fmt(x['final_return_mean'])} (p = {_fmt(x['p_vs_correct'])} vs correct), "
                f"probe {_fmt(x['probe_corr'])}, real-update correlation {_fmt(x['probe_corr_train_mean'])}"
                + (f", {x['diverged_seeds']} seed(s) hit a non-finite loss" if x["diverged_seeds"] else "")
                + "."
            )
    lines += [
        "",
        "The probe: on the first batch of each seed (the same batch for every variant), one gradient step of "
        f"length {p.probe_step:g} in parameter space, then the Pearson correlation between the change of "
        "log pi(a_t|s_t) and A_t. 'Real-update corr' is the same correlation for the optimiser's actual updates "
        "during training (mean over updates).",
        "",
        "Figures: `figures/learning_curves.png`, `figures/final_return_and_probe.png`. Tables: `episodes.csv`, "
        "`trials.csv`, `plots/*.csv`.",
        "",
    ]
    return "\n".join(lines)
