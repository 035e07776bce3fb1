"""Numbers from the mdn trials: failure rates with Wilson intervals and tests, formulations, lr = 0, causes."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy import stats as sps

from gradlab.stats import mean_ci, welch, wilson
from gradlab.studies.mdn.config import KEY_FACTORS, OTHER_FACTORS, MdnParams
from gradlab.studies.mdn.trial import FACTORS, level_name

FORMULATION = ("mixture", "sigma", "target_shape")
STABLE = {"mixture": ["logits"], "sigma": ["softplus", "elu1"], "target_shape": ["correct"]}


def is_stable(row: dict) -> bool:
    return all(row[k] in v for k, v in STABLE.items())


def _rate(failures: int, n: int) -> dict:
    rate, lo, hi = wilson(failures, n)
    return {"failures": failures, "trials": n, "rate": rate, "ci_low": lo, "ci_high": hi}


def failure_by_level(rows: list[dict], p: MdnParams) -> dict:
    """Per factor: failure rate per level (Wilson 95 %), chi-square test of independence, spread of rates."""
    out = {}
    for f in FACTORS:
        levels = {}
        table = []
        for value in getattr(p.factors, f):
            mine = [r for r in rows if r[f] == value]
            k = sum(r["diverged"] for r in mine)
            levels[level_name(f, value)] = {"level": value, **_rate(k, len(mine))}
            table.append([k, len(mine) - k])
        rates = [s["rate"] for s in levels.values()]
        table = np.array(table)
        if len(table) > 1 and table[:, 0].sum() > 0 and table[:, 1].sum() > 0:
            chi2_p = float(sps.chi2_contingency(table)[1])
        else:
            chi2_p = 1.0
        out[f] = {"levels": levels, "chi2_p": chi2_p, "spread": max(rates) - min(rates)}
    return out


def failure_by_formulation(rows: list[dict]) -> list[dict]:
    """Failure rate of each (mixture, sigma, target_shape) over everything else, worst first."""
    table = []
    for combo in sorted({tuple(r[f] for f in FORMULATION) for r in rows}):
        mine = [r for r in rows if tuple(r[f] for f in FORMULATION) == combo]
        k = sum(r["diverged"] for r in mine)
        steps = [r["first_nonfinite_step"] for r in mine if r["diverged"]]
        nll = [r["val_nll"] for r in mine if r["val_nll"] is not None and r["lr"] > 0]
        lr0 = [r for r in mine if r["lr"] == 0.0]
        table.append(
            dict(zip(FORMULATION, combo, strict=True))
            | _rate(k, len(mine))
            | {
                "lr0_failures": sum(r["diverged"] for r in lr0),
                "lr0_trials": len(lr0),
                "median_first_nonfinite_step": float(np.median(steps)) if steps else None,
                "val_nll_trained_mean": float(np.mean(nll)) if nll else None,
            }
        )
    # worst first: highest failure rate, then earliest failure, then worst validation NLL of trained trials
    table.sort(
        key=lambda r: (
            -r["rate"],
            r["median_first_nonfinite_step"] if r["median_first_nonfinite_step"] is not None else math.inf,
            -(r["val_nll_trained_mean"] if r["val_nll_trained_mean"] is not None else math.inf),
        )
    )
    return table


def lr_zero_mechanism(rows: list[dict]) -> dict:
    """At lr = 0: what triggers the first non-finite value, and what makes it permanent?

    * trigger -- the probe evaluates loss and gradients of every batch of one epoch on the
      fixed initial weights: non-finite on *every* batch means the weights alone are to blame
      (e.g. a relu scale of exactly 0 somewhere in every batch); on *some* batches means the
      trigger is data-dependent (a target the density cannot represent). Before its first
      non-finite value an lr-0 trial's weights have not moved at all (``drift`` = 0), so its
      first non-finite step is simply the first such batch in its order.
    * persistence -- whether the weights were non-finite right after that step's optimizer
      update (NaN gradient x lr 0 = NaN), which makes every later step non-finite.
    """
    lr0 = [r for r in rows if r["lr"] == 0.0]
    div = [r for r in lr0 if r["diverged"]]
    every = [r for r in div if r["fixed_nonfinite_batches"] == r["fixed_batches"]]
    some = [r for r in div if 0 < r["fixed_nonfinite_batches"] < r["fixed_batches"]]
    none = [r for r in div if r["fixed_nonfinite_batches"] == 0]
    epoch1 = [r for r in div if r["first_nonfinite_step"] < r["fixed_batches"]]
    steps_some = [r["first_nonfinite_step"] for r in some]

    def whats(group):
        return dict(sorted(Counter(r["first_nonfinite_what"] for r in group).items()))

    return {
        "trials": len(lr0),
        "diverged": len(div),
        "weights_unmoved_before_first_nonfinite": sum(r["drift_before_first_nonfinite"] == 0.0 for r in div),
        "weights_nonfinite": sum(r["weights_nonfinite"] for r in div),
        "weights_nonfinite_same_step": sum(r["weights_nonfinite_step"] == r["first_nonfinite_step"] for r in div),
        "trials_with_nonfinite_batch_on_fixed_weights": sum(r["fixed_nonfinite_batches"] > 0 for r in lr0),
        "nonfinite_on_every_batch": {"trials": len(every), "first_nonfinite_what": whats(every)},
        "nonfinite_on_some_batches": {
            "trials": len(some),
            "first_nonfinite_what": whats(some),
            "batch_fraction_median": float(np.median([r["fixed_nonfinite_batches"] / r["fixed_batches"] for r in some]))
            if some
            else None,
            "first_step_min": min(steps_some) if some else None,
            "first_step_max": max(steps_some) if some else None,
            "distinct_first_steps": len(set(steps_some)),
        },
        "no_nonfinite_batch_in_first_epoch": {
            "trials": len(none),
            "first_nonfinite_what": whats(none),
            "batchnorm": sum(bool(r["batchnorm"]) for r in none),
        },
        "first_in_epoch_one": len(epoch1),
        "first_in_epoch_one_at_first_probe_batch": sum(
            r["fixed_first_nonfinite_batch"] == r["first_nonfinite_step"] for r in epoch1
        ),
        "by_formulation": {
            "-".join(str(c) for c in combo): {
                "trials": len(mine),
                "diverged": sum(r["diverged"] for r in mine),
                "distinct_first_steps": len({r["first_nonfinite_step"] for r in mine if r["diverged"]}),
            }
            for combo in sorted({tuple(r[f] for f in FORMULATION) for r in lr0})
            for mine in [[r for r in lr0 if tuple(r[f] for f in FORMULATION) == combo]]
        },
    }


def causes(rows: list[dict]) -> dict:
    """The numbers behind each cause named in the summary."""

    def rate(group):
        return _rate(sum(r["diverged"] for r in group), len(group))

    def pick(**levels):
        return [r for r in rows if all((r[k] in v) if isinstance(v, list) else r[k] == v for k, v in levels.items())]

    relu = pick(sigma="relu")
    out = {
        "zero_scale_relu": rate(relu)
        | {"first_step_max": max((r["first_nonfinite_step"] for r in relu if r["diverged"]), default=None)},
        "probs": {
            dt: rate(pick(mixture="probs", dtype=dt, sigma=["exp", "softplus", "elu1"]))
            for dt in ("float32", "float64")
        },
        "logits_nonzero_scale": {
            sg: rate(pick(mixture="logits", sigma=sg)) for sg in ("exp", "softplus", "elu1") if pick(sigma=sg)
        },
        "probs_by_target_shape": {
            ts: rate(pick(mixture="probs", target_shape=ts, sigma=["exp", "softplus", "elu1"]))
            for ts in ("correct", "broadcast")
        },
        "probs_first_nonfinite_what": dict(
            sorted(
                Counter(
                    r["first_nonfinite_what"].split(":")[0]
                    for r in pick(mixture="probs", sigma=["exp", "softplus", "elu1"])
                    if r["diverged"]
                ).items()
            )
        ),
    }
    exp_fail = [r for r in pick(mixture="logits", sigma="exp") if r["diverged"]]
    out["logits_exp_failures"] = [
        {
            "variant": r["variant"],
            "seed": r["seed"],
            "step": r["first_nonfinite_step"],
            "what": r["first_nonfinite_what"],
            "loss_finite": int(r["nonfinite_loss_steps"] == 0),
        }
        for r in exp_fail
    ]
    shape = {}
    for ts in ("correct", "broadcast"):
        trained = pick(mixture="logits", sigma=["softplus", "elu1"], target_shape=ts)
        nll = [r["val_nll"] for r in trained if r["lr"] > 0 and r["val_nll"] is not None]
        mean, lo, hi = mean_ci(nll)
        shape[ts] = rate(trained) | {
            "val_nll_trained_median": float(np.median(nll)) if nll else None,
            "val_nll_trained_min": min(nll) if nll else None,
            "val_nll_trained_mean": mean,
            "val_nll_trained_ci_low": lo,
            "val_nll_trained_ci_high": hi,
        }
    trained = {
        ts: [
            r["val_nll"]
            for r in pick(mixture="logits", sigma=["softplus", "elu1"], target_shape=ts)
            if r["lr"] > 0 and r["val_nll"] is not None
        ]
        for ts in ("correct", "broadcast")
    }
    shape["welch_p"] = welch(trained["broadcast"], trained["correct"])[1]
    out["target_shape_in_log_space"] = shape
    return out


def curve_pair(rows: list[dict], curves: dict) -> dict:
    """A stable trial and the same trial with the probs formulation (same everything else), at the largest lr."""
    lr = max(r["lr"] for r in rows)
    stable = [r for r in rows if is_stable(r) and r["lr"] == lr and not r["diverged"]]
    for s in stable:
        twin = next(
            (
                r
                for r in rows
                if r["mixture"] == "probs"
                and r["diverged"]
                and r["seed"] == s["seed"]
                and all(r[f] == s[f] for f in FACTORS if f != "mixture")
            ),
            None,
        )
        if twin is not None:
            return {"stable (logits)": (s["variant"], s["seed"]), "naive (probs)": (twin["variant"], twin["seed"])}
    pair = {}
    if stable:
        pair["stable (logits)"] = (stable[0]["variant"], stable[0]["seed"])
    failing = sorted((r for r in rows if r["diverged"]), key=lambda r: -r["first_nonfinite_step"])
    if failing:
        pair["failing"] = (failing[0]["variant"], failing[0]["seed"])
    return pair


def metrics(rows: list[dict], p: MdnParams, by_level: dict, formulations: list[dict]) -> dict:
    """The stage's metrics.json: failure rates per factor (``by_level``) and formulation, the stable formulation,
    lr 0, causes."""
    strongest = sorted(FACTORS, key=lambda f: -by_level[f]["spread"])[:2]
    stable_rows = [r for r in rows if is_stable(r)]
    stable_nll = [r["val_nll"] for r in stable_rows if r["val_nll"] is not None and r["lr"] > 0]
    m, lo, hi = mean_ci(stable_nll)
    whats = Counter(r["first_nonfinite_what"] for r in rows if r["diverged"])
    return {
        "trials": len(rows),
        "diverged": sum(r["diverged"] for r in rows),
        "design": {
            "fraction": p.design.fraction,
            "configurations": len(rows) // p.seeds,
            "seeds": p.seeds,
            "key_factors": list(KEY_FACTORS),
            "fractional_factors": list(OTHER_FACTORS),
        },
        "failure_rate": {
            f: {
                "chi2_p": by_level[f]["chi2_p"],
                "spread": by_level[f]["spread"],
                **{lvl: {k: v for k, v in s.items() if k != "level"} for lvl, s in by_level[f]["levels"].items()},
            }
            for f in FACTORS
        },
        "strongest_factors": strongest,
        "worst": formulations[0],
        "best": formulations[-1],
        "stable": {
            "definition": "mixture=logits, sigma in {softplus, elu1}, target_shape=correct",
            "trials": len(stable_rows),
            "failures": sum(r["diverged"] for r in stable_rows),
            "val_nll_trained_mean": m,  # trials with lr > 0
            "val_nll_trained_ci_low": lo,
            "val_nll_trained_ci_high": hi,
        },
        "lr0": lr_zero_mechanism(rows),
        "causes": causes(rows),
        "first_nonfinite_what": dict(sorted(whats.items())),
    }
