"""Numbers from the trials of a pg stage: per variant across seeds, references, curves, verdicts.

Two kinds of sample, two kinds of statistics:

* **Seeds** (5 on CartPole, 3 on Pong): per-seed values are reported as lists; with fewer than
  :data:`gradlab.stats.MIN_CI_N` seeds there is no interval over seeds (``None``). Comparisons between
  variants are *paired* (seed k gives every variant the same initial policy and the same first batch), so
  their test is the exact sign-flip test on the per-seed differences, with its smallest attainable p
  (``p_min`` = 2 / 2^n: 0.0625 with 5 seeds, 0.25 with 3 — neither can reach 0.05).
* **Updates** (100 per CartPole trial, 28 per Pong trial): what the updates did (the fractions of samples
  whose log pi moved the way their A says, the loss-value / return correlation) is a series over updates
  per seed. Its interval is a moving-block bootstrap over updates within each seed (blocks of
  ceil(n^(1/3)) consecutive updates, so neighbouring updates stay together), the statistic being the mean
  over seeds of the per-seed statistic (percentile interval). It is an interval for *these* trials' updates,
  not over seeds.
  Correlations across updates are Spearman rank correlations (a Pearson correlation of these series is
  carried by a few extreme updates: its block-bootstrap distribution is skewed and off-centre, e.g. on
  CartPole's ``flipped``), computed on first differences (update-to-update changes: the common trend of
  the loss and the return with training time removed), beside the raw correlation and each series'
  correlation with the update index (the trend); the raw Pearson correlation is kept per seed.

Every flag under ``flags`` is a verdict (``gradlab.stats.VERDICT_ENCODING``): +1 the claim its name
states holds, -1 the opposite holds, 0 inconclusive. Facts about the sample ("k of n seeds") are counts
under ``seed_counts``, not verdicts.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence

import numpy as np

from gradlab.stats import MIN_CI_N, bootstrap_mean_ci, sign_flip_test, t_mean_ci, verdict, verdict_p
from gradlab.studies.pg.config import CORRECT_CORRELATION_KEYS
from gradlab.studies.pg.trial import finite_mean, running_mean

CURVE_WINDOW = 20  # episodes averaged per point of the learning curves
PONG_IMPROVEMENT = 4.0  # points: a seed "improved" when its last games' mean is this far above its first games'
ALPHA = 0.05  # an exact test decides a verdict when p < ALPHA (and its smallest attainable p allows it)
FRACTIONS = ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction")
N_BOOT = 2000  # block-bootstrap replicates (seeded: the same interval on every run)
UPDATE_SERIES = (*FRACTIONS, "adv_weighted_right_fraction", "share_likely_adv_neg")


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


# ---------------------------------------------------------------------------------------------------------------
# statistics over updates: a moving-block bootstrap within each seed


def block_length(n: int) -> int:
    """Consecutive updates per bootstrap block: ceil(n^(1/3)) (100 updates: 5; 28 updates: 4)."""
    return max(1, math.ceil(n ** (1 / 3) - 1e-9))


def _block_index(n: int, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """[n_boot, n] indices: ceil(n / b) blocks of b consecutive updates, starts uniform, cut to n."""
    b = block_length(n)
    starts = rng.integers(0, n - b + 1, (n_boot, math.ceil(n / b)))
    return (starts[:, :, None] + np.arange(b)).reshape(n_boot, -1)[:, :n]


def masked_mean(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean over the last axis of the finite values (where ``mask``); NaN where there is none, no warning."""
    ok = np.isfinite(x) if mask is None else np.isfinite(x) & (np.asarray(mask) > 0.5)  # a mask may arrive as 0./1.
    count = ok.sum(-1)
    total = np.where(ok, x, 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def row_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation over the last axis, over the pairs where both are finite (NaN below 3 pairs or with a
    constant side), no warning."""
    ok = np.isfinite(x) & np.isfinite(y)
    count = ok.sum(-1)
    xm, ym = masked_mean(x, ok), masked_mean(y, ok)
    with np.errstate(invalid="ignore"):
        dx = np.where(ok, x - xm[..., None], 0.0)
        dy = np.where(ok, y - ym[..., None], 0.0)
    den = np.sqrt((dx * dx).sum(-1) * (dy * dy).sum(-1))
    return np.where((count >= 3) & (den > 0), (dx * dy).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rank correlation over the last axis (average ranks for ties), over the pairs where both are
    finite; NaN as :func:`row_corr`."""
    from scipy.stats import rankdata

    ok = np.isfinite(x) & np.isfinite(y)
    rx = rankdata(np.where(ok, x, np.nan), axis=-1, nan_policy="omit")
    ry = rankdata(np.where(ok, y, np.nan), axis=-1, nan_policy="omit")
    return row_corr(rx, ry)


def block_bootstrap(
    series: list[tuple], stat, low: float = -math.inf, high: float = math.inf, seed: int = 0
) -> tuple[float, float | None, float | None, list[float]]:
    """The mean over seeds of ``stat`` on each seed's series, its 95 % moving-block bootstrap interval over
    updates (every seed resampled on its own, blocks of :func:`block_length` updates; percentile interval), and
    the per-seed values.

    ``series``: per seed, a tuple of equal-length arrays over updates; ``stat(*arrays)`` maps arrays of shape
    [..., n] to [...]. No interval (None) when the seeds hold fewer than :data:`MIN_CI_N` updates in all.

    Not ``scipy.stats.bootstrap``: it resamples single updates (``paired=True`` for several arrays), which breaks
    the dependence between consecutive updates that the blocks keep; it has no block resampling.
    """
    arrays = [tuple(np.asarray(a, float) for a in s) for s in series]
    per_seed = [float(stat(*(a[None, :] for a in s))[0]) for s in arrays]
    estimate = finite_mean(per_seed)
    if not math.isfinite(estimate) or sum(s[0].size for s in arrays) < MIN_CI_N:
        return estimate, None, None, per_seed
    rng = np.random.default_rng(seed)
    boots = []
    for s in arrays:
        if s[0].size:
            idx = _block_index(s[0].size, rng, N_BOOT)  # one resampling of the updates for every series of a seed
            boots.append(stat(*(a[idx] for a in s)))
    boots = np.vstack(boots)
    combined = masked_mean(boots.T)
    combined = combined[np.isfinite(combined)]
    if combined.size < N_BOOT // 2:
        return estimate, None, None, per_seed
    lo, hi = np.quantile(combined, [0.025, 0.975])
    return estimate, float(np.clip(lo, low, high)), float(np.clip(hi, low, high)), per_seed


def first_differences(x) -> np.ndarray:
    return np.diff(np.asarray(x, float))


def linear_residuals(x) -> np.ndarray:
    """``x`` minus its least-squares line in the update index (over the finite values)."""
    x = np.asarray(x, float)
    t = np.arange(x.size, dtype=float)
    ok = np.isfinite(x)
    if ok.sum() < 2:
        return np.full_like(x, np.nan)
    slope, intercept = np.polyfit(t[ok], x[ok], 1)
    return x - (slope * t + intercept)


def loss_return_corr(updates: list[dict]) -> dict:
    """corr(loss value, mean return of the update's episodes) across a variant's updates, as Spearman rank
    correlations: raw, detrended (first differences: the verdict's series; and residuals after a linear trend
    in the update index), and the trend of each series (corr with the update index). Means over seeds, per-seed
    lists, block-bootstrap intervals over updates, the exact sign-flip test of the per-seed correlations (raw and
    detrended) across seeds, and the raw Pearson correlation per seed."""
    raw = [(u["loss"], u["batch_return"]) for u in updates]
    diffs = [(first_differences(a), first_differences(b)) for a, b in raw]
    out = {}
    for name, series in (("loss_value_return_corr", raw), ("loss_value_return_corr_detrended", diffs)):
        est, lo, hi, per_seed = block_bootstrap(series, row_spearman, -1.0, 1.0)
        out[name], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = est, lo, hi
        out[f"{name}_per_seed"] = per_seed
    for name in ("loss_value_return_corr", "loss_value_return_corr_detrended"):
        test = sign_flip_test(out[f"{name}_per_seed"])
        out[f"{name}_p_seeds"], out[f"{name}_p_seeds_min"] = test["p"], test["p_min"]
    resid = [  # residuals of a line fitted to n points have n - 2 degrees of freedom: none below 5 updates
        float(row_spearman(linear_residuals(a)[None], linear_residuals(b)[None])[0]) if len(a) >= 5 else math.nan
        for a, b in raw
    ]
    out["loss_value_return_corr_resid"], out["loss_value_return_corr_resid_per_seed"] = finite_mean(resid), resid
    pearson = [float(row_corr(np.asarray(a, float)[None], np.asarray(b, float)[None])[0]) for a, b in raw]
    out["loss_value_return_corr_pearson"], out["loss_value_return_corr_pearson_per_seed"] = (
        finite_mean(pearson),
        pearson,
    )
    for key, name in (("loss", "loss_trend_corr"), ("batch_return", "return_trend_corr")):
        per_seed = [
            float(row_spearman(np.asarray(u[key], float)[None], np.arange(len(u[key]), dtype=float)[None])[0])
            for u in updates
        ]
        out[name], out[f"{name}_per_seed"] = finite_mean(per_seed), per_seed
    out["updates_per_seed"] = [len(u["loss"]) for u in updates]
    out["block_length"] = block_length(min(out["updates_per_seed"])) if updates else None
    return out


def update_metrics(mine: list[dict], updates: list[dict]) -> dict:
    """What the variant's updates did to log pi: the fractions of samples that moved the right way (real updates:
    mean over updates, then over seeds, with a block-bootstrap interval over updates; the first-batch probe: one
    value per seed), on updates with sum A*CE < 0 and > 0, the share of the update carried by likely actions with
    A < 0, and corr(loss value, batch return) across updates (:func:`loss_return_corr`)."""
    out = {}
    for key in UPDATE_SERIES:
        est, lo, hi, per_seed = block_bootstrap([(u[key],) for u in updates], masked_mean, 0.0, 1.0)
        out[key], out[f"{key}_ci_low"], out[f"{key}_ci_high"], out[f"{key}_per_seed"] = est, lo, hi, per_seed
    for key in (*(f"probe_{k}" for k in FRACTIONS), "probe_adv_weighted_right_fraction"):
        values = [t[key] for t in mine]
        out[key], out[f"{key}_per_seed"] = finite_mean(values), values
    for name, sign in (("sum_negative", -1.0), ("sum_positive", 1.0)):
        for key in FRACTIONS:
            series = [(u[key], np.sign(np.asarray(u["sum_adv_ce"], float)) == sign) for u in updates]
            est, lo, hi, per_seed = block_bootstrap(series, masked_mean, 0.0, 1.0)
            k = f"{key}_{name}"
            out[k], out[f"{k}_ci_low"], out[f"{k}_ci_high"], out[f"{k}_per_seed"] = est, lo, hi, per_seed
    early = tuple(f"{k}_early" for k in (*FRACTIONS, "adv_weighted_right_fraction"))
    for key in ("likely_adv_neg_samples", "sum_negative_update_fraction", *early):
        out[key] = finite_mean([t[key] for t in mine])
    out.update(loss_return_corr(updates))
    return out


# ---------------------------------------------------------------------------------------------------------------
# statistics over seeds: per-seed values, paired exact tests


def paired_test(a: list[float], b: list[float]) -> dict:
    """mean(a - b) over seeds (paired: the same seeds), the per-seed differences, and the exact sign-flip test."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    test = sign_flip_test(d)
    return {"diff": finite_mean(d), "diff_per_seed": d, "p": test["p"], "p_min": test["p_min"]}


def aggregate(per_trial: list[dict], p, kind: str, updates: list[dict], results: list[dict] | None = None) -> dict:
    """Every number of the stage from the trial summaries and (aligned with them) each trial's per-update logs;
    ``results`` (the trials' raw results) for the gradient measurements (CartPole)."""
    lo_r, hi_r = return_range(kind, p)
    seeds = sorted({t["seed"] for t in per_trial})

    def of(v: str, key: str) -> list:
        by_seed = {t["seed"]: t[key] for t in per_trial if t["variant"] == v}
        return [by_seed[s] for s in seeds if s in by_seed]

    variants = {}
    for v in p.variants:
        mine = sorted((t for t in per_trial if t["variant"] == v), key=lambda t: t["seed"])
        mine_updates = [
            u
            for t, u in sorted(
                ((t, u) for t, u in zip(per_trial, updates, strict=True) if t["variant"] == v),
                key=lambda tu: tu[0]["seed"],
            )
        ]
        finals = of(v, "final_return")
        mean, lo, hi = bootstrap_mean_ci(finals, lo_r, hi_r)  # None below MIN_CI_N seeds
        pm, plo, phi = bootstrap_mean_ci(of(v, "probe_corr"), -1.0, 1.0)
        gain = [t["final_return"] - t["first_return"] for t in mine]
        m = {
            "seeds": len(mine),
            "final_return_mean": mean,
            "final_return_ci_low": lo,
            "final_return_ci_high": hi,
            "final_return_per_seed": finals,
            "first_return_per_seed": of(v, "first_return"),
            "improvement_per_seed": gain,
            "improvement_mean": finite_mean(gain),
            "final_length_mean": finite_mean(of(v, "final_length")),
            "probe_corr": pm,
            "probe_corr_ci_low": plo,
            "probe_corr_ci_high": phi,
            "probe_corr_per_seed": of(v, "probe_corr"),
            "probe_corr_first_update": finite_mean(of(v, "probe_corr_first_update")),
            "probe_corr_train_mean": finite_mean(of(v, "probe_corr_train_mean")),
            "diverged_seeds": sum(t["diverged_at_update"] is not None for t in mine),
            **update_metrics(mine, mine_updates),
        }
        if v != "correct" and "correct" in p.variants:
            test = paired_test(finals, of("correct", "final_return"))
            m["p_exact_vs_correct"], m["p_exact_min"] = test["p"], test["p_min"]
            m["final_return_diff_vs_correct"] = test["diff"]
            m["final_return_diff_vs_correct_per_seed"] = test["diff_per_seed"]
            _, dlo, dhi = t_mean_ci(test["diff_per_seed"], lo_r - hi_r, hi_r - lo_r)  # None below MIN_CI_N
            m["final_return_diff_vs_correct_ci_low"], m["final_return_diff_vs_correct_ci_high"] = dlo, dhi
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
        "alpha": ALPHA,
        "bootstrap_replicates": N_BOOT,
    }
    if "correct" in variants:
        c = variants["correct"]
        for key in CORRECT_CORRELATION_KEYS:
            metrics[key] = c[key]
    fixed = fixed_batch_metrics(per_trial, p.variants)
    if fixed:
        metrics["fixed_batch"] = fixed
    metrics["flags"], metrics["seed_counts"] = mechanism_flags(variants, fixed)
    if kind == "cartpole" and results and getattr(p, "gradient_at", None) and p.gradient_episodes:
        g = gradient_metrics(results, p)
        if g:
            metrics["gradient"] = g
            flags, counts = gradient_flags(g)
            metrics["flags"].update(flags)
            metrics["seed_counts"].update(counts)
    if kind == "pong":
        metrics["env"] = pong_variant(p)
        metrics["frames_per_trial_mean"] = float(np.mean([t["frames"] for t in per_trial]))
        metrics["improvement_threshold"] = PONG_IMPROVEMENT
        flags, counts = pong_flags(variants)
        metrics["flags"].update(flags)
        metrics["seed_counts"].update(counts)
    return metrics


def fixed_batch_metrics(per_trial: list[dict], variants: list[str]) -> dict:
    """K optimiser steps of each variant's loss on its first batch: the loss before and after (mean over seeds,
    per seed), on how many seeds it went below zero and was still falling, and (CartPole) the return of the
    policy before and after, with the paired sign-flip test of after - before. The headline numbers are those of
    ``correct``; every variant is under ``variants``."""
    per_variant = {}
    for v in variants:
        mine = sorted((t for t in per_trial if t["variant"] == v and t.get("fixed_batch")), key=lambda t: t["seed"])
        mine = [t["fixed_batch"] for t in mine]
        if not mine:
            continue
        after = [f["loss_after_k_steps"] for f in mine]
        before_ret = [f["eval_return_before"] for f in mine]
        after_ret = [f["eval_return_after"] for f in mine]
        evaluated = all(x is not None and math.isfinite(x) for x in (*before_ret, *after_ret))
        row = {
            "steps": mine[0]["steps"],
            "seeds": len(mine),
            "loss_before": finite_mean([f["loss_before"] for f in mine]),
            "loss_before_per_seed": [f["loss_before"] for f in mine],
            "loss_after_k_steps": finite_mean(after),
            "loss_after_k_steps_per_seed": after,
            "loss_below_zero_seeds": int(sum(math.isfinite(a) and a < 0 for a in after)),
            "falling_at_end_seeds": int(sum(bool(f["falling_at_end"]) for f in mine)),
            "decreasing_step_fraction": finite_mean([f["decreasing_step_fraction"] for f in mine]),
            "first_step_below_zero_per_seed": [f["first_step_below_zero"] for f in mine],
            "eval_return_before": finite_mean(before_ret) if evaluated else None,
            "eval_return_after": finite_mean(after_ret) if evaluated else None,
            "eval_return_before_per_seed": before_ret,
            "eval_return_after_per_seed": after_ret,
        }
        if evaluated:
            test = paired_test(after_ret, before_ret)
            row["eval_return_rose_seeds"] = int(sum(d > 0 for d in test["diff_per_seed"]))
            row["eval_return_change"] = test["diff"]
            row["eval_return_change_p"], row["eval_return_change_p_min"] = test["p"], test["p_min"]
        per_variant[v] = row
    if not per_variant:
        return {}
    out = dict(per_variant.get("correct", {}))
    out["variants"] = per_variant
    return out


def _all(verdicts: list[int]) -> int:
    """A claim made of parts (both fractions above one half): +1 when every part holds, -1 when any part's
    opposite holds, else 0."""
    if verdicts and all(v == 1 for v in verdicts):
        return 1
    return -1 if any(v == -1 for v in verdicts) else 0


def _fractions_verdict(m: dict, above: bool, probe: bool) -> int:
    """Both fractions above (``above``) or below one half: real updates by their block-bootstrap interval over
    updates, the probe (one value per seed) by the exact sign-flip test of the per-seed values minus one half."""
    sign = 1 if above else -1
    parts = []
    for key in FRACTIONS:
        if probe:
            values = [x - 0.5 for x in m[f"probe_{key}_per_seed"]]
            parts.append(sign * verdict_p(sign_flip_test(values)["p"], finite_mean(values), ALPHA))
        else:
            parts.append(sign * verdict(m[f"{key}_ci_low"], m[f"{key}_ci_high"], 0.5))
    return _all(parts)


def _fractions_count(m: dict, above: bool, probe: bool) -> int:
    """On how many seeds both per-seed fractions are above (below) one half."""
    keys = [f"probe_{k}_per_seed" if probe else f"{k}_per_seed" for k in FRACTIONS]
    rows = zip(*(m[k] for k in keys), strict=True)
    return int(
        sum(all(x is not None and math.isfinite(x) and (x > 0.5 if above else x < 0.5) for x in r) for r in rows)
    )


def _corr_verdict(c: dict, name: str) -> int:
    """The sign of a loss-value correlation in general: its block-bootstrap interval over updates (these trials)
    and the exact sign-flip test of its per-seed values (across seeds) must both exclude 0 on the same side.
    The interval alone speaks only for these trials' updates (at 3 seeds it excluded 0 while a seed had the other
    sign), so below the seed count where the test can reach p < 0.05 the verdict stays 0."""
    by_updates = verdict(c[f"{name}_ci_low"], c[f"{name}_ci_high"])
    by_seeds = verdict_p(c[f"{name}_p_seeds"], finite_mean(c[f"{name}_per_seed"]), ALPHA)
    return by_updates if by_updates == by_seeds else 0


def mechanism_flags(variants: dict, fixed: dict) -> tuple[dict, dict]:
    """(flags, seed_counts): every verdict (+1 / 0 / -1) and the facts about the sample they sit beside.

    A flag is absent when its variants did not run."""
    flags, counts = {}, {}
    for name, probe in (("update", False), ("probe", True)):
        if "correct" in variants:
            key = f"correct_{name}_fractions_above_half"
            flags[key] = _fractions_verdict(variants["correct"], True, probe)
            counts[key] = _fractions_count(variants["correct"], True, probe)
        if "flipped" in variants:
            key = f"flipped_{name}_fractions_below_half"
            flags[key] = _fractions_verdict(variants["flipped"], False, probe)
            counts[key] = _fractions_count(variants["flipped"], False, probe)
    if "correct" in variants:
        c = variants["correct"]
        for name in ("loss_value_return_corr", "loss_value_return_corr_detrended"):
            flags[f"{name}_negative"] = -_corr_verdict(c, name)
            counts[f"{name}_negative"] = int(sum(math.isfinite(r) and r < 0 for r in c[f"{name}_per_seed"]))
    if "pow" in variants and "correct" in variants:
        test = paired_test(
            variants["pow"]["share_likely_adv_neg_per_seed"], variants["correct"]["share_likely_adv_neg_per_seed"]
        )
        variants["pow"]["share_likely_adv_neg_vs_correct"] = test["diff"]
        variants["pow"]["share_likely_adv_neg_vs_correct_p"] = test["p"]
        variants["pow"]["share_likely_adv_neg_vs_correct_p_min"] = test["p_min"]
        flags["pow_share_likely_adv_neg_above_correct"] = verdict_p(test["p"], test["diff"], ALPHA)
        counts["pow_share_likely_adv_neg_above_correct"] = int(sum(d > 0 for d in test["diff_per_seed"]))
    if "abs" in variants:
        a = variants["abs"]
        flags["abs_fractions_below_half_when_sum_negative"] = _all(
            [-verdict(a[f"{k}_sum_negative_ci_low"], a[f"{k}_sum_negative_ci_high"], 0.5) for k in FRACTIONS]
        )
        flags["abs_fractions_above_half_when_sum_positive"] = _all(
            [verdict(a[f"{k}_sum_positive_ci_low"], a[f"{k}_sum_positive_ci_high"], 0.5) for k in FRACTIONS]
        )
    if fixed and "correct" in fixed.get("variants", {}):
        c = fixed["variants"]["correct"]
        counts["fixed_batch_loss_below_zero"] = c["loss_below_zero_seeds"]
        counts["fixed_batch_loss_falling_at_end"] = c["falling_at_end_seeds"]
        if "eval_return_change_p" in c:
            flags["fixed_batch_return_rose"] = verdict_p(c["eval_return_change_p"], c["eval_return_change"], ALPHA)
            counts["fixed_batch_return_rose"] = c["eval_return_rose_seeds"]
    for v, m in variants.items():
        if "p_exact_vs_correct" in m:
            # below correct: the paired difference (v - correct) is negative, by the exact sign-flip test
            flags[f"{v}_below_correct"] = -verdict_p(m["p_exact_vs_correct"], m["final_return_diff_vs_correct"], ALPHA)
            counts[f"{v}_below_correct"] = int(sum(d < 0 for d in m["final_return_diff_vs_correct_per_seed"]))
    return flags, counts


def pong_flags(variants: dict) -> tuple[dict, dict]:
    """Does ``correct`` improve (its last games above its first, exact sign-flip test over seeds), does
    ``flipped``; and on how many seeds each gained at least :data:`PONG_IMPROVEMENT` points."""
    flags, counts = {}, {}
    for v in ("correct", "flipped"):
        if v in variants:
            gains = variants[v]["improvement_per_seed"]
            test = sign_flip_test(gains)
            variants[v]["improvement_p"], variants[v]["improvement_p_min"] = test["p"], test["p_min"]
            flags[f"{v}_improves"] = verdict_p(test["p"], finite_mean(gains), ALPHA)
            counts[f"{v}_improves"] = int(sum(g >= PONG_IMPROVEMENT for g in gains))
    if "correct" in variants and "flipped" in variants:
        counts["correct_above_flipped"] = int(
            sum(d < 0 for d in variants["flipped"]["final_return_diff_vs_correct_per_seed"])
        )
    return flags, counts


_EVAL_KEYS = (
    "eval_mean",
    "eval_ci_low",
    "eval_ci_high",
    "eval_greedy_mean",
    "eval_greedy_ci_low",
    "eval_greedy_ci_high",
)


def win_metrics(per_trial: list[dict], p) -> dict:
    """Per seed: whether and when it won. With ``evaluate_games``: the first checkpoint whose evaluation's 95 % CI
    lies above 0 (training seconds until it, its score); otherwise the running mean of the last ``stop_window``
    games going above ``stop_at_mean``. Also games and frames until the running mean reached ``progress_mean``."""
    evaluated = bool(getattr(p, "evaluate_games", 0))
    out = {
        "rule": "evaluation" if evaluated else "training_mean",
        "stop_at_mean": p.stop_at_mean,
        "stop_window": p.stop_window,
        "cap_games": min(p.updates * p.episodes_per_update, getattr(p, "max_games", None) or 10**12),
        "progress_mean": getattr(p, "progress_mean", None),
    }
    if evaluated:
        out["evaluate_games"] = p.evaluate_games
    wins = []
    for t in per_trial:
        key = f"{t['variant']}__seed{t['seed']}"
        out[key] = {
            "won": t["won"],
            "games": t["episodes"],
            "games_to_win": t["games_to_win"],
            "frames_to_win": t["frames_to_win"],
            "seconds_to_win": t["seconds_to_win"],
            "games_to_progress": t.get("games_to_progress"),
            "frames_to_progress": t.get("frames_to_progress"),
            "frames": t["frames"],
            "train_seconds": t["timing"]["train_seconds"],
            "frames_per_second": t["timing"]["frames_per_second"],
        }
        if evaluated:
            out[key] |= {k: t.get(k) for k in _EVAL_KEYS}
            out[key]["evaluations"] = len([e for e in t["evaluations"] if not e["greedy"]])
            out[key]["eval_seconds"] = t["eval_seconds"]
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
            "median_games_to_progress": _median_or_none([t.get("games_to_progress") for t in mine]),
        }
    return out


def evaluation_rows(results: list[dict]) -> list[dict]:
    """One row per evaluation game: the trial, the checkpoint (update), sampled or greedy, the emulator, the score."""
    rows = []
    for r in results:
        for ev in r.get("evaluations") or []:
            per_env = len(ev["scores"]) // len(ev["env_seeds"])
            for i, score in enumerate(ev["scores"]):
                rows.append(
                    {
                        "variant": r["variant"],
                        "seed": r["seed"],
                        "update": ev["update"],
                        "games_trained": ev["games_trained"],
                        "train_seconds": ev["train_seconds"],
                        "greedy": ev["greedy"],
                        "game": i,
                        "env_seed": ev["env_seeds"][i // per_env],
                        "score": score,
                    }
                )
    return rows


def _median_or_none(xs: list) -> float | None:
    med = float(np.median([math.inf if x is None else x for x in xs]))
    return med if math.isfinite(med) else None


def pong_reference(returns: list[float], p) -> dict:
    """Pong: the mean return of uniform random actions (the reference trial's games, references.py) and its
    bootstrap interval inside the possible range of a game's return."""
    mean, lo, hi = bootstrap_mean_ci(returns, *return_range("pong", p))
    return {"random_games": len(returns), "random_return_mean": mean, "random_return_ci_low": lo,
            "random_return_ci_high": hi}  # fmt: skip


def cartpole_references(returns: dict[str, list[float]]) -> dict:
    """CartPole: mean and smallest return of each reference policy (always left, uniform random)."""
    out = {}
    for name, r in returns.items():
        x = np.asarray(r, dtype=float)
        out[f"{name}_return_mean"] = float(x.mean())
        out[f"{name}_return_min"] = float(x.min())
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
    """Mean return per block of CURVE_WINDOW episodes: mean over seeds, per variant, with a 95 % bootstrap CI
    over seeds from :data:`MIN_CI_N` seeds on (empty below)."""
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
            "p_exact_vs_correct": m.get("p_exact_vs_correct"),
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
        row = {k: x for k, x in t.items() if k not in ("timing", "fixed_batch", "evaluations")}
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


# ---------------------------------------------------------------------------------------------------------------
# does each loss move the policy up the true gradient? (CartPole, gradient.py)

GRADIENT_SERIES = ("cos", "direction_rel_se")
POLICY_SERIES = ("return_mean", "entropy", "grad_j_rel_se", "grad_j_split_half_cos", "grad_j_norm")
ABS_SERIES = ("abs_cos_sum_negative", "abs_cos_sum_positive", "sum_negative_batch_fraction")
POW_SERIES = (
    "pow_factor_adv_pos_q50",
    "pow_factor_adv_pos_q90",
    "pow_factor_adv_pos_q99",
    "pow_factor_adv_neg_q50",
    "pow_factor_adv_neg_q90",
    "pow_factor_adv_neg_q99",
    "pow_weight_share_adv_neg",
    "correct_weight_share_adv_neg",
    "pow_finite_batches",
)


def gradient_rows(results: list[dict]) -> list[dict]:
    """gradient.csv: one row per trial (whose policies), checkpoint and variant (whose direction)."""
    rows = []
    for r in results:
        for m in r.get("gradient") or []:
            for d, c in m["cos"].items():
                rows.append(
                    {
                        "policy_of": r["variant"],
                        "seed": r["seed"],
                        "update": m["update"],
                        "direction_of": d,
                        "cos": c,
                        "direction_rel_se": m["direction_rel_se"][d],
                        **{k: m[k] for k in POLICY_SERIES},
                        **{k: m.get(k, math.nan) for k in ABS_SERIES if d == "abs"},
                    }
                )
    return rows


def _over_seeds(values: list[float], low: float = -1.0, high: float = 1.0) -> dict:
    """Mean over seeds, 95 % t interval inside [low, high] (None below MIN_CI_N seeds), exact sign-flip test of
    the mean against 0, per-seed values, how many are positive."""
    mean, lo, hi = t_mean_ci(values, low, high)
    test = sign_flip_test(values)
    finite = [x for x in values if x is not None and math.isfinite(x)]
    return {
        "mean": mean,
        "ci_low": lo,
        "ci_high": hi,
        "p": test["p"],
        "p_min": test["p_min"],
        "seeds": len(finite),
        "positive_seeds": int(sum(x > 0 for x in finite)),
        "per_seed": values,
    }


def gradient_metrics(results: list[dict], p) -> dict:
    """Per checkpoint u (``u<update>``): at the policies of ``correct`` (every variant's direction on the same
    policies) and at each variant's own policies, the cosine of the variant's expected update direction with the
    grad J estimate, over seeds (:func:`_over_seeds`); grad J's noise and the policies' return and entropy; `abs`
    split by the sign of the batch sum; `pow`'s per-sample factors CE^(A-1); paired differences pow - correct.
    Empty when nothing was measured."""
    measured = {(r["variant"], r["seed"]): {m["update"]: m for m in r.get("gradient") or []} for r in results}
    if not any(measured.values()):
        return {}
    seeds = sorted({s for _, s in measured})
    ups = sorted({u for ms in measured.values() for u in ms})

    def series(policy_of: str, u: int, get) -> list[float]:
        out = []
        for s in seeds:
            m = measured.get((policy_of, s), {}).get(u)
            x = get(m) if m is not None else None
            out.append(math.nan if x is None else float(x))
        return out

    def cos_of(d):
        return lambda m: m["cos"].get(d)

    out: dict = {"checkpoints": ups, "episodes": p.gradient_episodes, "batches": p.gradient_batches}
    sources = {"at_correct": "correct"} if "correct" in p.variants else {}
    others = {"at_pow": "pow"} if "pow" in p.variants else {}  # correct's direction at pow's policies, beside pow's
    for name, policy_of in {**sources, **others}.items():
        out[name] = {
            d: {f"u{u}": _over_seeds(series(policy_of, u, cos_of(d))) for u in ups}
            for d in p.variants
            if any(math.isfinite(x) for u in ups for x in series(policy_of, u, cos_of(d)))
        }
    out["own"] = {v: {f"u{u}": _over_seeds(series(v, u, cos_of(v))) for u in ups} for v in p.variants}
    out["policies"] = {
        v: {
            f"u{u}": {
                key: _over_seeds(series(v, u, lambda m, k=key: m[k]), -math.inf, math.inf) for key in POLICY_SERIES
            }
            for u in ups
        }
        for v in p.variants
    }
    for v in p.variants:  # policies where every episode reached the cap: grad J's estimate is exactly 0 (J at its
        for u in ups:  # maximum), so no cosine is defined there
            norms = series(v, u, lambda m: m["grad_j_norm"])
            out["policies"][v][f"u{u}"]["grad_j_zero_seeds"] = int(sum(x == 0 for x in norms))
    if "abs" in p.variants:
        out["abs"] = {
            where: {
                f"u{u}": {key: _over_seeds(series(of, u, lambda m, k=key: m.get(k))) for key in ABS_SERIES} for u in ups
            }
            for where, of in (("own", "abs"), *((("at_correct", "correct"),) if sources else ()))
        }
    if "pow" in p.variants:
        out["pow"] = {
            where: {
                f"u{u}": {
                    key: _over_seeds(series(of, u, lambda m, k=key: m.get(k)), -math.inf, math.inf)
                    for key in POW_SERIES
                }
                for u in ups
            }
            for where, of in (("own", "pow"), *((("at_correct", "correct"),) if sources else ()))
        }
        if sources:  # paired over seeds: pow's cosine minus correct's on correct's policies, and the entropies
            out["pow"]["cos_minus_correct"] = {
                f"u{u}": _paired(series("correct", u, cos_of("pow")), series("correct", u, cos_of("correct")))
                for u in ups
            }
            out["pow"]["entropy_minus_correct"] = {
                f"u{u}": _paired(series("pow", u, lambda m: m["entropy"]), series("correct", u, lambda m: m["entropy"]))
                for u in ups
            }
    return out


def _paired(a: list[float], b: list[float]) -> dict:
    """a - b per seed (paired: the same seeds), with :func:`_over_seeds` of the differences (no range)."""
    return _over_seeds([x - y for x, y in zip(a, b, strict=True)], -math.inf, math.inf)


def entropy_curves(updates: list[dict], variants: Sequence[str], per_trial: list[dict]) -> dict:
    """The policy's mean entropy over each update's batch (CartPole), mean over seeds per update, per variant."""
    out = {}
    for v in variants:
        rows = [u["entropy"] for t, u in zip(per_trial, updates, strict=True) if t["variant"] == v and "entropy" in u]
        if not rows:
            continue
        n = min(len(r) for r in rows)
        out[v] = [finite_mean([r[i] for r in rows]) for i in range(n)]
    return out


def gradient_flags(g: dict) -> tuple[dict, dict]:
    """Verdicts on the cosines (exact sign-flip tests over seeds, ``ALPHA``), per checkpoint, and the counts of
    seeds beside them. Absent when their variants or checkpoints were not measured."""
    flags, counts = {}, {}
    at = g.get("at_correct", {})
    for u in (f"u{u}" for u in g.get("checkpoints", [])):
        for d, sign, word in (
            ("correct", 1, "positive"),
            ("flipped", -1, "negative"),
            ("no_standardize", 1, "positive"),
        ):
            if d in at:
                x = at[d][u]
                key = f"gradient_{d}_{word}_{u}"
                flags[key] = sign * verdict_p(x["p"], x["mean"], ALPHA)
                counts[key] = x["positive_seeds"] if sign > 0 else x["seeds"] - x["positive_seeds"]
        for v, x in g.get("own", {}).items():
            key = f"gradient_{v}_own_positive_{u}"
            flags[key] = verdict_p(x[u]["p"], x[u]["mean"], ALPHA)
            counts[key] = x[u]["positive_seeds"]
        if "abs" in g and "at_correct" in g["abs"]:
            a = g["abs"]["at_correct"][u]
            neg, pos = a["abs_cos_sum_negative"], a["abs_cos_sum_positive"]
            flags[f"gradient_abs_negative_when_sum_negative_{u}"] = -verdict_p(neg["p"], neg["mean"], ALPHA)
            flags[f"gradient_abs_positive_when_sum_positive_{u}"] = verdict_p(pos["p"], pos["mean"], ALPHA)
        if "pow" in g and "cos_minus_correct" in g["pow"]:
            x = g["pow"]["cos_minus_correct"][u]
            key = f"gradient_pow_below_correct_{u}"
            flags[key] = -verdict_p(x["p"], x["mean"], ALPHA)
            counts[key] = x["seeds"] - x["positive_seeds"]
            e = g["pow"]["entropy_minus_correct"][u]
            key = f"pow_entropy_above_correct_{u}"
            flags[key] = verdict_p(e["p"], e["mean"], ALPHA)
            counts[key] = e["positive_seeds"]
    return flags, counts
