"""Numbers from the gd trials: the one-step answer, the rules' outcome, divergence over the step-size grid,
the edge of stability and catapults over seeds, and the metrics. Every verdict is a flag computed here from a
stated criterion; summary.py and the report only print them.

Two kinds of flag. A fact about one deterministic run (the quadratic has no seeds: ``rules.*.diverged``,
``fixed_point.*.stays``, ``sign_stall.*.stalled``) is a boolean. A claim about the network over its seeds
is a verdict +1 / 0 / -1 (:func:`gradlab.stats.verdict`): it holds only when its interval or exact test
excludes the other outcome, else 0 (inconclusive).
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.stats import compare, t_mean_ci, verdict, verdict_p, wilson


def lr_key(lr: float) -> str:
    """A metric key for a step size: ``lr_0p1`` (no dots in dotted metric keys)."""
    return f"lr_{lr:.3g}".replace(".", "p").replace("-", "m").replace("+", "")


sharpness_key = lr_key  # the sharpness table's keys (kept under its former name)


def diverged(losses: list[float]) -> bool:
    """The stage's definition: a run diverged when its final loss is above its initial loss, or not finite."""
    first, last = losses[0], losses[-1]
    return not (math.isfinite(last) and math.isfinite(first)) or last > first


# --- 1. one step of each rule: the first-order / fixed-point answer ------------------------------------------


def first_order_metrics(fractions: dict, near: dict, rel_lrs: list[float], lam_max: float, rules_lr: float) -> dict:
    """Per rule: the fraction of random start points where one step lowers the loss, with Wilson 95 % CIs.

    ``fractions[rule]["by_lr"]`` counts descents at each lr of ``rel_lrs`` (/ lambda_max), in order;
    ``near[rule]["by_lr"]`` one count, near the minimum at the rules' lr. ``descent_fraction``: at the
    smallest lr of the grid (the "small step"); ``descent_fraction_limit``: lr -> 0 (the sign of the
    first-order term); ``by_lr``: every lr of the grid; ``near_optimum_fraction``: near the minimum.
    """
    small = int(np.argmin(rel_lrs))
    out = {"small_lr": rel_lrs[small] / lam_max, "small_lr_times_lambda_max": rel_lrs[small], "rules_lr": rules_lr}
    for rule, f in fractions.items():
        n = f["starts"]
        rate, lo, hi = wilson(f["by_lr"][small], n)
        by_lr = {}
        for rel, count in zip(rel_lrs, f["by_lr"], strict=True):
            r, a, b = wilson(count, n)
            by_lr[lr_key(rel)] = {"lr_times_lambda_max": rel, "fraction": r, "ci_low": a, "ci_high": b}
        nr, nlo, nhi = wilson(near[rule]["by_lr"][0], near[rule]["starts"])
        out[rule] = {
            "starts": n,
            "descent_fraction": rate,
            "descent_fraction_ci_low": lo,
            "descent_fraction_ci_high": hi,
            "descent_fraction_limit": f["limit"],
            "always_descends": bool(f["by_lr"][small] == n),
            "by_lr": by_lr,
            "near_optimum_fraction": nr,
            "near_optimum_ci_low": nlo,
            "near_optimum_ci_high": nhi,
        }
    return out


def fixed_point_metrics(fixed: dict, along: dict, w_star_norm: float) -> dict:
    """From the minimum, one step of each rule: ``stays`` when it moves less than 1e-9 (1 + ||w*||)."""
    out = {}
    for rule, f in fixed.items():
        out[rule] = {
            **f,
            "stays": bool(f["step_norm"] <= 1e-9 * (1.0 + w_star_norm)),
            "along_run_descent_fraction": along[rule]["descent_fraction"],
            "along_run_delta_loss_last": along[rule]["delta_loss_last"],
        }
    return out


def sign_stall_metrics(rows: list[dict], lam_max: float, slope: float) -> dict:
    """Sign descent's stall level per lr: ``stalled`` when the last two quarters' mean excess losses agree
    within 10 %; the log-log slope of the stall level against lr over the stalled lrs."""
    out = {"stall_slope": slope}
    for r in rows:
        stalled = abs(r["stall_excess"] - r["previous_excess"]) <= 0.1 * r["stall_excess"]
        out[lr_key(r["lr"] * lam_max)] = {
            **r,
            "lr_times_lambda_max": r["lr"] * lam_max,
            "stalled": bool(stalled),
            "excess_over_lr_squared": r["stall_excess"] / r["lr"] ** 2,
        }
    return out


# --- 2. the rules on least squares ------------------------------------------------------------------------------


def rules_table(curves: dict[str, list[float]], lr: float) -> dict:
    """Per rule: its start, end and lowest loss; ``descended`` (final below initial) and ``diverged``."""
    return {
        rule: {
            "lr": lr,
            "initial_loss": c[0],
            "final_loss": c[-1],
            "min_loss": min(c),
            "descended": bool(c[-1] < c[0]),
            "diverged": diverged(c),
        }
        for rule, c in curves.items()
    }


# --- 3. the network's step-size grid: divergence per lr ---------------------------------------------------------


def mlp_row(lr: float, seed: int, losses: list[float], target_loss: float) -> dict:
    """One network run: initial and final loss (inf when not finite), diverged, first step at the target."""
    final = losses[-1] if math.isfinite(losses[-1]) else math.inf
    hit = next((i for i, v in enumerate(losses) if v <= target_loss), None)
    return {
        "lr": lr,
        "seed": seed,
        "initial_loss": losses[0],
        "final_loss": final,
        "diverged": diverged(losses),
        "steps_to_target": hit,
    }


def summarise_grid(rows: list[dict], lrs: list[float]) -> list[dict]:
    """Per step size: seeds, diverged seeds (final > initial or non-finite) with a Wilson CI, the mean final loss
    of the seeds that did not diverge with a Student-t CI clipped at 0 (n/a for one seed), median steps to target."""
    table = []
    for lr in lrs:
        mine = [r for r in rows if r["lr"] == lr]
        kept = [r["final_loss"] for r in mine if not r["diverged"]]
        n_div = sum(r["diverged"] for r in mine)
        rate, rlo, rhi = wilson(n_div, len(mine))
        mean, lo, hi = t_mean_ci(kept, low=0.0) if kept else (math.nan, None, None)
        hits = [r["steps_to_target"] for r in mine if r["steps_to_target"] is not None]
        table.append(
            {
                "lr": lr,
                "seeds": len(mine),
                "diverged_seeds": n_div,
                "diverged": bool(n_div == len(mine)),
                "diverged_fraction": rate,
                "diverged_fraction_ci_low": rlo,
                "diverged_fraction_ci_high": rhi,
                "initial_loss_mean": float(np.mean([r["initial_loss"] for r in mine])),
                "final_loss_max": max(r["final_loss"] for r in mine),
                "final_loss_mean": mean,
                "final_loss_ci_low": lo,
                "final_loss_ci_high": hi,
                "steps_to_target_median": float(np.median(hits)) if mine and len(hits) == len(mine) else None,
            }
        )
    return table


def best_step_size(table: list[dict]) -> dict:
    """The grid row with the lowest mean final loss among the step sizes where no seed diverged."""
    ok = [r for r in table if r["diverged_seeds"] == 0 and math.isfinite(r["final_loss_mean"])]
    return min(ok, key=lambda r: r["final_loss_mean"]) if ok else table[0]


def best_vs_next(rows: list[dict], table: list[dict]) -> dict:
    """The best step size against the runner-up: Welch beside exact permutation and Mann-Whitney tests;
    ``best_lower`` +1 when the exact permutation test (p < 0.05) puts the best one's final loss lower."""
    ok = sorted(
        (r for r in table if r["diverged_seeds"] == 0 and math.isfinite(r["final_loss_mean"])),
        key=lambda r: r["final_loss_mean"],
    )
    if len(ok) < 2:
        return {"next_lr": None, "best_lower": 0}
    best, nxt = ok[0]["lr"], ok[1]["lr"]
    a = [r["final_loss"] for r in rows if r["lr"] == best]
    b = [r["final_loss"] for r in rows if r["lr"] == nxt]
    c = compare(a, b, low=0.0)
    # +1: the best step size's final loss is lower than the runner-up's by the exact permutation test
    return {"next_lr": nxt, **c, "best_lower": verdict_p(c["permutation_p"], -(c["diff"] or 0.0))}


# --- 4. sharpness: edge of stability and catapults, per seed and per lr -------------------------------------------


def sharpness_seed(
    lr: float, steps: list[int], values: list[float], losses: list[float], tail: int, band, seed: int | None = None
) -> dict:
    """One run's sharpness against 2/lr and the criteria's verdicts (see config.Sharpness)."""
    low, high = band
    ratios = [v * lr / 2 for v in values]
    last = ratios[-min(tail, len(ratios)) :] if ratios else []
    settled = float(np.median(last)) if last else math.nan
    peak = int(np.argmax(losses)) if all(math.isfinite(v) for v in losses) else None
    spike = bool(any(v > losses[0] for v in losses[1:]))  # the loss rose above where it started
    div = diverged(losses)
    initial_ratio = ratios[0] if ratios else math.nan
    eos = bool(last) and not div and low <= settled <= high
    rose = bool(eos and initial_ratio < low)  # reached the band from below, not sat in it from the start
    in_band = float(np.mean([low <= r <= high for r in last])) if last else math.nan
    return {
        **({} if seed is None else {"seed": seed}),
        "initial_ratio": initial_ratio,
        "max_ratio": max(ratios) if ratios else math.nan,
        "settled_ratio": settled,
        "loss_peak_step": peak,
        "loss_spike": spike,
        "diverged": div,
        "eos": bool(eos),
        "rose_to_band": rose,
        "below": bool(last) and not div and settled < low,
        "above": bool(last) and not div and settled > high,
        "catapult": bool(initial_ratio > 1.0 and spike and not div and settled <= high),
        "final_loss": losses[-1] if math.isfinite(losses[-1]) else math.inf,
        "initial_loss": losses[0],
        "probes_in_tail": len(last),
        "tail_in_band_fraction": in_band,  # of the tail probes, each on its own inside the band
    }


def sharpness_entry(lr: float, per_seed: list[dict], band: tuple[float, float] = (0.9, 1.1)) -> dict:
    """Per lr over seeds: the settled ratio (mean, t CI clipped at 0; n/a below 10 seeds) with every seed's
    value, each per-seed criterion counted (``<flag>_seeds``) with its Wilson interval, and the verdicts:

    * ``eos``: +1 when the settled ratio's interval lies inside the band, -1 when it lies outside it,
      0 otherwise (or no interval);
    * ``catapult``, ``rose_to_band``: +1 when the Wilson interval of the share of seeds with it lies above
      one half, -1 below, 0 otherwise.
    """
    n = len(per_seed)
    settled = [s["settled_ratio"] for s in per_seed]
    mean, lo, hi = t_mean_ci(settled, low=0.0)
    if lo is None or hi is None:
        eos = 0
    elif band[0] <= lo and hi <= band[1]:
        eos = 1
    elif hi < band[0] or lo > band[1]:
        eos = -1
    else:
        eos = 0
    out = {
        "lr": lr,
        "two_over_lr": 2 / lr,
        "seeds": n,
        "settled_ratio_mean": mean,
        "settled_ratio_ci_low": lo,
        "settled_ratio_ci_high": hi,
        "initial_ratio_mean": float(np.mean([s["initial_ratio"] for s in per_seed])),
        "max_ratio_mean": float(np.mean([s["max_ratio"] for s in per_seed])),
        "settled_ratio_min": float(np.min(settled)),
        "settled_ratio_max": float(np.max(settled)),
        "tail_in_band_fraction_mean": float(np.mean([s["tail_in_band_fraction"] for s in per_seed])),
        "settled_ratio_per_seed": settled,
        "initial_ratio_per_seed": [s["initial_ratio"] for s in per_seed],
        "tail_in_band_fraction_per_seed": [s["tail_in_band_fraction"] for s in per_seed],
        "eos": eos,
    }
    for flag in ("eos", "rose_to_band", "below", "above", "catapult", "diverged", "loss_spike"):
        k = sum(bool(s[flag]) for s in per_seed)
        out[f"{flag}_seeds"] = k
        if flag in ("catapult", "rose_to_band"):
            _, wlo, whi = wilson(k, n)
            out[f"{flag}_share_ci_low"], out[f"{flag}_share_ci_high"] = wlo, whi
            out[flag] = verdict(wlo, whi, 0.5)
        elif flag != "eos":
            out[flag] = bool(n > 0 and k == n)  # a fact about these seeds: every one of them
    return out


# --- the stage's metrics ---------------------------------------------------------------------------------------


def metrics(eigenvalues, lr_empirical: float, probes: int, rules: dict, table: list[dict], seeds: int, sharp) -> dict:
    """The quadratic's threshold, the rules, the network's grid (divergence per lr), the sharpness."""
    lam_max, lam_min = float(eigenvalues[-1]), float(eigenvalues[0])
    lr_theory = 2.0 / lam_max
    best = best_step_size(table)
    return {
        "quadratic": {
            "lambda_max": lam_max,
            "lambda_min": lam_min,
            "condition_number": lam_max / lam_min,
            "lr_crit_theory": lr_theory,
            "lr_crit_empirical": lr_empirical,
            "lr_crit_rel_error": abs(lr_empirical - lr_theory) / lr_theory,
            "threshold_probes": probes,
        },
        "rules": rules,
        "mlp": {
            "best_lr": best["lr"],
            "best_final_loss_mean": best["final_loss_mean"],
            "best_final_loss_ci_low": best["final_loss_ci_low"],
            "best_final_loss_ci_high": best["final_loss_ci_high"],
            "best_steps_to_target_median": best["steps_to_target_median"],
            "diverged_lrs": [r["lr"] for r in table if r["diverged"]],
            "first_diverged_lr": next((r["lr"] for r in table if r["diverged"]), None),
            "seeds": seeds,
            "grid": {lr_key(r["lr"]): r for r in table},
        },
        "sharpness": sharp,
    }


# --- 5. the network's divergence threshold per seed against 2/lambda0 and 4/lambda0 ------------------------------


def threshold_seed(seed: int, out: dict) -> dict:
    """One initialisation: lambda0, the bisected divergence lr with its final bracket, and the two ratios
    ``ratio_classic`` = lr lambda0 / 2 (1: the classic 2/lambda0) and ``ratio_catapult`` = lr lambda0 / 4
    (1: the catapult model's 4/lambda0, Lewkowycz et al. 2020)."""
    lam, lr = out["lambda0"], out["lr"]
    return {
        "seed": seed,
        "lambda0": lam,
        "two_over_lambda0": 2 / lam,
        "four_over_lambda0": 4 / lam,
        "lr": lr,
        "lr_low": out["lo"],
        "lr_high": out["hi"],
        "probes": out["probes"],
        "ratio_classic": lr * lam / 2,
        "ratio_catapult": lr * lam / 4,
        "above_classic": bool(out["lo"] > 2 / lam),  # the whole final bracket above 2/lambda0
        "above_catapult": bool(out["lo"] > 4 / lam),
        "below_catapult": bool(out["hi"] < 4 / lam),
    }


def threshold_metrics(per_seed: list[dict], rel_tol: float) -> dict:
    """Over seeds: lambda0, the divergence lr and both ratios (mean, t CI; n/a below 10 seeds), per-seed lists,
    counts of seeds whose bracket lies above 2/lambda0, above 4/lambda0, below 4/lambda0, and the verdicts
    (``flags``, :func:`gradlab.stats.verdict` of the ratio's CI against 1):

    * ``beyond_classic``: +1 when the CI of lr lambda0 / 2 lies above 1 (the network survives learning rates
      beyond 2/lambda0), -1 below, 0 when it contains 1 (the classic prediction not excluded);
    * ``beyond_catapult``: the same for lr lambda0 / 4 against the catapult model's 4/lambda0.
    """
    out: dict = {"seeds": len(per_seed), "rel_tol": rel_tol}
    for name, low in (("lambda0", 0.0), ("lr", 0.0), ("ratio_classic", 0.0), ("ratio_catapult", 0.0)):
        values = [s[name] for s in per_seed]
        mean, lo, hi = t_mean_ci(values, low=low)
        out[f"{name}_mean"], out[f"{name}_ci_low"], out[f"{name}_ci_high"] = mean, lo, hi
        out[f"{name}_min"], out[f"{name}_max"] = float(np.min(values)), float(np.max(values))
        out[f"{name}_per_seed"] = values
    for flag in ("above_classic", "above_catapult", "below_catapult"):
        out[f"{flag}_seeds"] = sum(s[flag] for s in per_seed)
    out["probes_total"] = sum(s["probes"] for s in per_seed)
    out["flags"] = {
        "beyond_classic": verdict(out["ratio_classic_ci_low"], out["ratio_classic_ci_high"], 1.0),
        "beyond_catapult": verdict(out["ratio_catapult_ci_low"], out["ratio_catapult_ci_high"], 1.0),
    }
    out["per_seed"] = per_seed
    return out


def threshold_theory(flags: dict) -> str:
    """Which prediction of the divergence learning rate the interval verdicts favour (prose for summary/report)."""
    bc, bk = flags["beyond_classic"], flags["beyond_catapult"]
    if bc == -1:
        return "below even the classic 2/lambda0: neither prediction"
    if bk == 1:
        return "above even the catapult bound 4/lambda0: neither prediction (both too low)"
    if bc == 1 and bk == -1:
        return "between 2/lambda0 and 4/lambda0: neither prediction (above the classic one, below the catapult one)"
    if bc == 1 and bk == 0:
        return "above 2/lambda0 and consistent with the catapult bound 4/lambda0: the catapult prediction"
    if bc == 0 and bk == -1:
        return "consistent with 2/lambda0 and below 4/lambda0: the classic prediction"
    return "inconclusive (the interval does not separate the two predictions)"
