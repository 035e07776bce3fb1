"""Numbers from the trials of a pg stage: per variant across seeds, references, curves, flags.

Returns live in [-21, 21] (Pong: points won - lost in one game) or [0, 500] (CartPole), so their
intervals are percentile bootstraps clipped to that range; a comparison between variants is an
exact permutation test over seeds (with its smallest attainable p: 0.1 with 3 vs 3 seeds) beside
Welch's t-test. Every verdict of the summary is one of the flags computed here.
"""

from __future__ import annotations

import math
import platform

import numpy as np

from gradlab.stats import bootstrap_mean_ci, cohens_d, permutation_test, welch
from gradlab.studies.pg.trial import finite_mean, running_mean

CURVE_WINDOW = 20  # episodes averaged per point of the learning curves
PONG_IMPROVEMENT = 4.0  # points: "learns" = last games' mean at least this far above the first games' mean
ALPHA = 0.05  # a variant is "below correct" when its exact permutation p is below this (and its mean is lower)
FRACTIONS = ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction")


def return_range(kind: str, p) -> tuple[float, float]:
    if kind == "cartpole":
        return 0.0, 500.0
    return -float(p.points_per_episode), float(p.points_per_episode)


def episode_rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        e = r["episodes"]
        mean100 = running_mean(e["return"])
        for i in range(len(e["return"])):
            rows.append(
                {
                    "variant": r["variant"],
                    "seed": r["seed"],
                    "episode": i,
                    "update": e["update"][i],
                    "return": e["return"][i],
                    "return_mean100": float(mean100[i]),
                    "length": e["length"][i],
                    "frames": e["frames"][i],
                }
            )
    return rows


def aggregate(per_trial: list[dict], p, kind: str) -> dict:
    lo_r, hi_r = return_range(kind, p)
    finals = {v: [t["final_return"] for t in per_trial if t["variant"] == v] for v in p.variants}
    variants = {}
    for v in p.variants:
        mine = [t for t in per_trial if t["variant"] == v]
        mean, lo, hi = bootstrap_mean_ci(finals[v], lo_r, hi_r)
        pm, plo, phi = bootstrap_mean_ci([t["probe_corr"] for t in mine], -1.0, 1.0)
        gain = [t["final_return"] - t["first_return"] for t in mine]
        m = {
            "final_return_mean": mean,
            "final_return_ci_low": lo,
            "final_return_ci_high": hi,
            "final_return_per_seed": finals[v],
            "first_return_per_seed": [t["first_return"] for t in mine],
            "improvement_per_seed": gain,
            "improvement_mean": float(np.mean(gain)),
            "final_length_mean": float(np.mean([t["final_length"] for t in mine])),
            "probe_corr": pm,
            "probe_corr_ci_low": plo,
            "probe_corr_ci_high": phi,
            "probe_corr_first_update": finite_mean([t["probe_corr_first_update"] for t in mine]),
            "probe_corr_train_mean": finite_mean([t["probe_corr_train_mean"] for t in mine]),
            "diverged_seeds": sum(t["diverged_at_update"] is not None for t in mine),
            "p_vs_correct": None,
            "p_exact_vs_correct": None,
            "p_exact_min": None,
            "cohens_d_vs_correct": None,
            **update_metrics(mine),
        }
        if v != "correct" and "correct" in finals:
            m["p_vs_correct"] = welch(finals["correct"], finals[v])[1]
            perm = permutation_test(finals["correct"], finals[v])
            m["p_exact_vs_correct"], m["p_exact_min"] = perm["p"], perm["p_min"]
            m["cohens_d_vs_correct"] = cohens_d(finals["correct"], finals[v]) if len(mine) > 1 else None
            diff, dlo, dhi = bootstrap_diff_ci(finals[v], finals["correct"], hi_r - lo_r)
            m["final_return_diff_vs_correct"] = diff
            m["final_return_diff_vs_correct_ci_low"] = dlo
            m["final_return_diff_vs_correct_ci_high"] = dhi
            m["below_correct"] = bool(
                perm["p"] < ALPHA and np.mean(finals[v]) < np.mean(finals["correct"])
            )  # exact p < ALPHA and a lower mean
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
    if "correct" in variants:
        c = variants["correct"]
        metrics["loss_value_return_corr"] = c["loss_value_return_corr"]
        metrics["loss_value_return_corr_ci_low"] = c["loss_value_return_corr_ci_low"]
        metrics["loss_value_return_corr_ci_high"] = c["loss_value_return_corr_ci_high"]
    fixed = fixed_batch_metrics(per_trial, p.variants)
    if fixed:
        metrics["fixed_batch"] = fixed
    metrics["flags"] = mechanism_flags(variants, per_trial, fixed)
    if kind == "pong":
        metrics["env"] = pong_variant(p)
        metrics["frames_per_trial_mean"] = float(np.mean([t["frames"] for t in per_trial]))
        metrics["flags"].update(pong_flags(variants, per_trial))
    return metrics


def bootstrap_diff_ci(a, b, span: float, n_boot: int = 10_000, seed: int = 0) -> tuple:
    """mean(a) - mean(b) and its 95 % percentile-bootstrap interval (seeds resampled within each group),
    clipped to [-span, span] (the largest possible difference); (diff, None, None) with one value in a group."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size == 0 or y.size == 0:
        return math.nan, None, None
    diff = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return diff, None, None
    rng = np.random.default_rng(seed)
    d = x[rng.integers(0, x.size, (n_boot, x.size))].mean(1) - y[rng.integers(0, y.size, (n_boot, y.size))].mean(1)
    lo, hi = np.quantile(d, [0.025, 0.975])
    return diff, float(np.clip(lo, -span, span)), float(np.clip(hi, -span, span))


def update_metrics(mine: list[dict]) -> dict:
    """What the variant's updates did to log pi, across seeds: the fractions of samples that moved the right way
    (real updates and the first-batch probe), on updates with sum A*CE < 0 and > 0, the share of the update
    carried by likely actions with A < 0, and corr(loss value, batch return) across updates. Means over seeds,
    95 % bootstrap CIs inside [0, 1] (fractions) or [-1, 1] (correlations); 'n/a' (None) with one seed."""
    out = {}
    bounded = {
        **{k: (0.0, 1.0) for k in FRACTIONS},
        **{f"probe_{k}": (0.0, 1.0) for k in FRACTIONS},
        "adv_weighted_right_fraction": (0.0, 1.0),
        "probe_adv_weighted_right_fraction": (0.0, 1.0),
        "loss_value_return_corr": (-1.0, 1.0),
        "share_likely_adv_neg": (0.0, 1.0),
    }
    for key, (lo, hi) in bounded.items():
        values = [t[key] for t in mine]
        mean, clo, chi = bootstrap_mean_ci(values, lo, hi)
        out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"] = mean, clo, chi
        out[f"{key}_per_seed"] = values
    early = tuple(f"{k}_early" for k in (*FRACTIONS, "adv_weighted_right_fraction"))
    for key in ("likely_adv_neg_samples", "sum_negative_update_fraction", *early) + tuple(
        f"{k}_{s}" for k in FRACTIONS for s in ("sum_negative", "sum_positive")
    ):
        out[key] = finite_mean([t[key] for t in mine])
    return out


def fixed_batch_metrics(per_trial: list[dict], variants: list[str]) -> dict:
    """K optimiser steps of each variant's loss on its first batch: the loss before and after (mean over seeds,
    per seed), whether it went below zero and was still falling on every seed, and (CartPole) the return of the
    policy before and after. The headline numbers are those of ``correct``; every variant is under ``variants``."""
    per_variant = {}
    for v in variants:
        mine = [t["fixed_batch"] for t in per_trial if t["variant"] == v and t.get("fixed_batch")]
        if not mine:
            continue
        after = [f["loss_after_k_steps"] for f in mine]
        before_ret = [f["eval_return_before"] for f in mine]
        after_ret = [f["eval_return_after"] for f in mine]
        rose = [b is not None and a is not None and a > b for b, a in zip(before_ret, after_ret, strict=True)]
        per_variant[v] = {
            "steps": mine[0]["steps"],
            "loss_before": finite_mean([f["loss_before"] for f in mine]),
            "loss_before_per_seed": [f["loss_before"] for f in mine],
            "loss_after_k_steps": finite_mean(after),
            "loss_after_k_steps_per_seed": after,
            "loss_below_zero_every_seed": bool(all(math.isfinite(a) and a < 0 for a in after)),
            "falling_at_end_every_seed": bool(all(f["falling_at_end"] for f in mine)),
            "decreasing_step_fraction": finite_mean([f["decreasing_step_fraction"] for f in mine]),
            "first_step_below_zero_per_seed": [f["first_step_below_zero"] for f in mine],
            "eval_return_before": finite_mean(before_ret),
            "eval_return_after": finite_mean(after_ret),
            "eval_return_before_per_seed": before_ret,
            "eval_return_after_per_seed": after_ret,
            "eval_return_rose_every_seed": bool(all(rose)) if all(math.isfinite(x) for x in before_ret) else None,
        }
    if not per_variant:
        return {}
    out = dict(per_variant.get("correct", {}))
    out["variants"] = per_variant
    return out


def mechanism_flags(variants: dict, per_trial: list[dict], fixed: dict) -> dict:
    """The flags the mechanism verdicts are read from (a flag is absent when its variants did not run)."""
    flags = {}

    def every_seed(v: str, test) -> bool:
        rows = [t for t in per_trial if t["variant"] == v]
        return bool(rows) and all(test(t) for t in rows)

    def both(t, prefix, cmp):
        return all(t[f"{prefix}{k}"] is not None and cmp(t[f"{prefix}{k}"]) for k in FRACTIONS)

    for prefix, name in (("", "update"), ("probe_", "probe")):
        if "correct" in variants:
            flags[f"correct_{name}_fractions_above_half_every_seed"] = every_seed(
                "correct", lambda t, p=prefix: both(t, p, lambda x: x > 0.5)
            )
        if "flipped" in variants:
            flags[f"flipped_{name}_fractions_below_half_every_seed"] = every_seed(
                "flipped", lambda t, p=prefix: both(t, p, lambda x: x < 0.5)
            )
    if "correct" in variants:
        lo, hi = (
            variants["correct"]["loss_value_return_corr_ci_low"],
            variants["correct"]["loss_value_return_corr_ci_high"],
        )
        flags["loss_value_return_corr_ci_excludes_zero"] = None if lo is None else bool(lo > 0 or hi < 0)
        r = variants["correct"]["loss_value_return_corr"]
        flags["loss_value_return_corr_negative"] = bool(r < 0) if math.isfinite(r) else None
    if "pow" in variants and "correct" in variants:
        share = {(t["variant"], t["seed"]): t["share_likely_adv_neg"] for t in per_trial}
        seeds = sorted({t["seed"] for t in per_trial if t["variant"] == "pow"})
        flags["pow_share_likely_adv_neg_above_correct_every_seed"] = bool(
            all(share[("pow", s)] > share[("correct", s)] for s in seeds)
        )
    if "abs" in variants:
        a = variants["abs"]
        neg = [a[f"{k}_sum_negative"] for k in FRACTIONS]
        pos = [a[f"{k}_sum_positive"] for k in FRACTIONS]
        flags["abs_fractions_below_half_when_sum_negative"] = bool(all(math.isfinite(x) and x < 0.5 for x in neg))
        flags["abs_fractions_above_half_when_sum_positive"] = bool(all(math.isfinite(x) and x > 0.5 for x in pos))
    if fixed and "correct" in fixed.get("variants", {}):
        c = fixed["variants"]["correct"]
        flags["fixed_batch_loss_below_zero_every_seed"] = c["loss_below_zero_every_seed"]
        flags["fixed_batch_loss_falling_at_end_every_seed"] = c["falling_at_end_every_seed"]
        if c["eval_return_rose_every_seed"] is not None:
            flags["fixed_batch_return_rose_every_seed"] = c["eval_return_rose_every_seed"]
    for v, m in variants.items():
        if "below_correct" in m:
            flags[f"{v}_below_correct"] = m["below_correct"]
    return flags


def pong_flags(variants: dict, per_trial: list[dict]) -> dict:
    """Does ``correct`` learn on every seed, does it end above ``flipped`` on every seed, does ``flipped`` improve?"""
    flags = {}
    if "correct" in variants:
        gains = variants["correct"]["improvement_per_seed"]
        flags["correct_improves_every_seed"] = bool(all(g >= PONG_IMPROVEMENT for g in gains))
    if "flipped" in variants:
        flags["flipped_improves_any_seed"] = bool(
            any(g >= PONG_IMPROVEMENT for g in variants["flipped"]["improvement_per_seed"])
        )
    if "correct" in variants and "flipped" in variants:
        by_seed = {
            (t["variant"], t["seed"]): t["final_return"] for t in per_trial if t["variant"] in ("correct", "flipped")
        }
        seeds = sorted({s for _, s in by_seed})
        flags["correct_above_flipped_every_seed"] = bool(
            all(by_seed[("correct", s)] > by_seed[("flipped", s)] for s in seeds)
        )
    return flags


def win_metrics(per_trial: list[dict], p) -> dict:
    """Per seed: whether and when the running mean of the last ``stop_window`` games went above ``stop_at_mean``."""
    out = {"stop_at_mean": p.stop_at_mean, "stop_window": p.stop_window, "cap_games": p.updates * p.episodes_per_update}
    wins = []
    for t in per_trial:
        key = f"{t['variant']}__seed{t['seed']}"
        out[key] = {
            "won": t["won"],
            "games": t["episodes"],
            "games_to_win": t["games_to_win"],
            "frames_to_win": t["frames_to_win"],
            "seconds_to_win": t["seconds_to_win"],
            "frames": t["frames"],
            "train_seconds": t["timing"]["train_seconds"],
            "frames_per_second": t["timing"]["frames_per_second"],
        }
        wins.append(t)
    for v in p.variants:
        mine = [t for t in wins if t["variant"] == v]
        won = [t for t in mine if t["won"]]
        out[v] = {
            "seeds": len(mine),
            "seeds_won": len(won),
            # median over seeds, a seed that did not win counting as +inf (None when half or more did not win)
            "median_seconds_to_win": _median_or_none([t["seconds_to_win"] for t in mine]),
            "median_games_to_win": _median_or_none([t["games_to_win"] for t in mine]),
            "median_frames_to_win": _median_or_none([t["frames_to_win"] for t in mine]),
        }
    return out


def _median_or_none(xs: list) -> float | None:
    med = float(np.median([math.inf if x is None else x for x in xs]))
    return med if math.isfinite(med) else None


def random_policy_reference(p, seed: int, games: int = 100) -> dict:
    """Pong: mean return of uniform random actions over ``games`` games (same emulator settings and actions)."""
    from gradlab.studies.pg.envs import make_envs

    env = make_envs("pong", p.model_copy(update={"rollout": "stream", "episodes_per_update": 16}))
    env.start(seed + 12345)
    episodes = env.play(lambda obs, rng: rng.integers(0, env.n_actions, obs.shape[0]), games)
    env.close()
    returns = [float(e["rewards"].sum()) for e in episodes]
    mean, lo, hi = bootstrap_mean_ci(returns, *return_range("pong", p))
    return {"games": games, "return_mean": mean, "return_ci_low": lo, "return_ci_high": hi}


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
    actions = "UP (RIGHT=2), DOWN (LEFT=3)" if p.actions == "up_down" else "NOOP (0), UP (RIGHT=2), DOWN (LEFT=3)"
    return {
        "id": "ALE/Pong-v5 dynamics via ale_py.AtariVectorEnv",
        "frameskip": p.frameskip,
        "repeat_action_probability": p.repeat_action_probability,
        "actions": actions,
        "move_cost": p.move_cost,
        "rollout": p.rollout,
        "input": f"{80 // p.downsample}x{80 // p.downsample} binary frame difference",
        "points_per_episode": p.points_per_episode,
        "max_episode_frames": p.max_episode_frames,
    }


def learning_curves(results: list[dict], p, kind: str) -> list[dict]:
    """Mean return per block of CURVE_WINDOW episodes: mean and 95 % bootstrap CI over seeds, per variant."""
    lo_r, hi_r = return_range(kind, p)
    rows = []
    for v in p.variants:
        mine = [np.asarray(r["episodes"]["return"], float) for r in results if r["variant"] == v]
        n = min(len(x) for x in mine)
        w = min(CURVE_WINDOW, n)
        for start in range(0, n - w + 1, w):
            mean, lo, hi = bootstrap_mean_ci([x[start : start + w].mean() for x in mine], lo_r, hi_r)
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
            "p_exact_vs_correct": m["p_exact_vs_correct"],
        }
        for v, m in variants.items()
    ]


def probe_rows(results: list[dict]) -> list[dict]:
    """One row per real update: corr(change of log pi, A), the two fractions, the loss value and the batch return."""
    keys = ("loss", "batch_return", "sum_adv_ce", *FRACTIONS, "adv_weighted_right_fraction", "share_likely_adv_neg")
    rows = []
    for r in results:
        u = r["updates"]
        for i, c in enumerate(u["probe"]):
            rows.append(
                {
                    "variant": r["variant"],
                    "seed": r["seed"],
                    "update": i,
                    "dlogp_adv_corr": c,
                    **{k: u[k][i] for k in keys},
                }
            )
    return rows


def fixed_batch_rows(results: list[dict]) -> list[dict]:
    """The loss of each variant at each optimiser step on its first batch (one row per step and seed)."""
    return [
        {"variant": r["variant"], "seed": r["seed"], "step": k, "loss": x}
        for r in results
        if r.get("fixed_batch")
        for k, x in enumerate(r["fixed_batch"]["loss"])
    ]


def trial_rows(per_trial: list[dict]) -> list[dict]:
    """trials.csv: one row per trial, the fixed-batch numbers flattened."""
    rows = []
    for t in per_trial:
        row = {k: x for k, x in t.items() if k not in ("timing", "fixed_batch")}
        row.update({f"fixed_batch_{k}": x for k, x in t.get("fixed_batch", {}).items()})
        rows.append(row)
    return rows


def timing_of(results: list[dict], workers: int) -> dict:
    """Wall-clock numbers: NOT in metrics.json (they vary from run to run)."""
    frames = sum(sum(r["episodes"]["frames"]) for r in results)
    seconds = sum(r["seconds"] for r in results)
    return {
        "workers": workers,
        "trials": len(results),
        "train_seconds_total": seconds,
        "cpu_seconds_total": sum(r["cpu_seconds"] for r in results),
        "frames_total": frames,
        "frames_per_second": frames / seconds if seconds > 0 else None,  # per trial process
        "frames_per_second_all_workers": frames / seconds * min(workers, len(results)) if seconds > 0 else None,
        "machine": platform.machine(),
    }
