"""Numbers from the mdn trials: the asker's path, lr 0, the formulations side by side, causes, the stable loss.

Two kinds of flag (``flags.*``):

* **observations** (booleans): what the trials or a constructed check show by themselves, the same on every
  run of the same code (a trial had a NaN, every NaN trial has a cause, the port agrees with TFP, a head built
  with a weight of exactly 0 fails at step 0);
* **verdicts** (+1 / 0 / -1, :data:`gradlab.stats.VERDICT_ENCODING`): a claim about a difference, decided
  only by an exact test that excludes the other outcome (p < 0.05), else 0 (inconclusive). The formulations'
  NaN rates: Fisher's exact test per pair against ``probs_log`` (``<mixture>_fewer_nan``: +1 fewer NaN
  trials than ``probs_log``, -1 more). The stable loss: seed by seed, paired with the single Gaussian (same
  seed, same data, same batch order), and against the marginal and the uniform density (fixed numbers),
  each by the exact sign-flip test (``p_min`` = 2 / 2^seeds), with the mean's interval beside it.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy import stats as sps

from gradlab.doctor.causes import CAUSES
from gradlab.stats import bootstrap_mean_ci, compare, sign_flip_test, t_mean_ci, verdict_p, wilson


def _rate(k: int, n: int) -> dict:
    rate, lo, hi = wilson(k, n)
    return {"rate": rate if n else None, "rate_ci_low": lo if n else None, "rate_ci_high": hi if n else None}


def _median(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(v)) if v else None


def _max(values) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(max(v)) if v else None


def group(rows: list[dict]) -> dict:
    """Counts of one group of trials: NaN trials, finite-loss-NaN-gradient trials, causes, saturation, NLL."""
    div = [r for r in rows if r["diverged"]]
    return {
        "trials": len(rows),
        "nan_trials": len(div),
        **_rate(len(div), len(rows)),
        "finite_loss_nan_grad_trials": sum(r["finite_loss_nan_grad"] for r in rows),
        "nan_trials_with_cause": sum(bool(r["cause"]) and r["first_nonfinite_what"] != "" for r in div),
        "zero_weight_trials": sum(r["zero_weight_steps"] > 0 for r in rows),
        "max_logit_gap": _max(r["max_logit_gap"] for r in rows),
        "max_logit_gap_median": _median(r["max_logit_gap"] for r in rows),
        "val_nll_median": _median(r["val_nll"] for r in rows),
        "first_nonfinite_step_min": min((r["first_nonfinite_step"] for r in div), default=None),
        "first_nonfinite_step_max": max((r["first_nonfinite_step"] for r in div), default=None),
        "causes": dict(sorted(Counter(r["cause"] for r in div).items())),
    }


def asker(rows: list[dict]) -> dict:
    """The asker's path (probs_log) at lr > 0: on clean data (``trials``: every condition but outliers and the
    constructed saturated head), per lr,
    per condition; and at lr 0 (``lr0``)."""
    mine = [r for r in rows if r["block"] == "asker" and r["mixture"] == "probs_log"]
    clean = [r for r in mine if not r["outliers"] and r["condition"] != "saturated"]
    out = group(clean)
    out["by_lr"] = {
        f"lr{lr:g}".replace(".", "p"): group([r for r in clean if r["lr"] == lr])
        for lr in sorted({r["lr"] for r in clean})
    }
    out["by_condition"] = {
        c: group([r for r in mine if r["condition"] == c]) for c in dict.fromkeys(r["condition"] for r in mine)
    }
    out["lr0"] = lr_zero([r for r in rows if r["block"] == "lr0" and r["mixture"] == "probs_log"])
    return out


def lr_zero(rows: list[dict]) -> dict:
    """lr = 0: which inputs and settings give NaN, when, and what BatchNorm's running statistics do."""
    div = [r for r in rows if r["diverged"]]
    clean = [r for r in rows if r["condition"] == "clean"]
    nonfinite = [r for r in rows if r["condition"] == "nonfinite"]
    relu = [r for r in rows if r["sigma"] == "relu"]
    bn_clean = [r for r in clean if r["batchnorm"] and not r["diverged"]]
    nobn_clean = [r for r in clean if not r["batchnorm"] and not r["diverged"]]

    def changed(r) -> bool:
        a, b = r.get("val_nll_start"), r["val_nll"]
        return a is not None and b is not None and a != b

    nf_soft = [r for r in nonfinite if r["sigma"] != "relu"]
    steps = [r["first_nonfinite_step"] for r in nf_soft if r["diverged"]]
    return {
        **group(rows),
        "clean_trials": len(clean),
        "clean_nan_trials": sum(r["diverged"] for r in clean),
        "clean_nonzero_scale_nan_trials": sum(r["diverged"] for r in clean if r["sigma"] != "relu"),
        "nonfinite_input_trials": len(nonfinite),
        "nonfinite_input_nan_trials": sum(r["diverged"] for r in nonfinite),
        "zero_scale_trials": len(relu),
        "zero_scale_nan_trials": sum(r["diverged"] for r in relu),
        "weights_unmoved_before_first_nonfinite": sum(r.get("drift_before_first_nonfinite") == 0.0 for r in div),
        "weights_nonfinite_same_step": sum(r["weights_nonfinite_step"] == r["first_nonfinite_step"] for r in div),
        "running_stats_nonfinite_trials": sum(r["running_stats_nonfinite"] for r in rows),
        "running_stats_nonfinite_with_nonfinite_input": sum(r["running_stats_nonfinite"] for r in nonfinite),
        "nonfinite_input_first_step_min": min(steps, default=None),
        "nonfinite_input_first_step_max": max(steps, default=None),
        "nonfinite_input_distinct_first_steps": len(set(steps)),
        "nonfinite_input_positive_scale_trials": len(nf_soft),
        "nonfinite_input_first_at_probe_batch": sum(
            r["first_nonfinite_step"] == r["fixed_first_nonfinite_batch"] for r in nf_soft if r["diverged"]
        ),
        "bn_clean_trials": len(bn_clean),
        "bn_val_changed_trials": sum(changed(r) for r in bn_clean),
        "nobn_clean_trials": len(nobn_clean),
        "nobn_val_changed_trials": sum(changed(r) for r in nobn_clean),
        "bn_val_change_median": _median(abs(r["val_nll"] - r["val_nll_start"]) for r in bn_clean if changed(r)),
    }


def formulations(rows: list[dict]) -> dict:
    """probs_log vs torch's probs and logits on the same seeds (baseline, lr > 0): counts, and each formulation
    against ``probs_log`` seed by seed (exact paired test, :func:`paired_nan`); equal rates are a tie."""
    base = [
        r for r in rows if r["block"] == "asker" and r["condition"] == "baseline" and r["mixture"] in _mixtures(rows)
    ]
    groups = {m: [r for r in base if r["mixture"] == m] for m in dict.fromkeys(r["mixture"] for r in base)}
    out = {m: group(g) for m, g in groups.items()}
    for m, mine in groups.items():
        if m != "probs_log" and "probs_log" in groups:
            out[m] |= paired_nan(groups["probs_log"], mine)
    out["tied"] = len({g["rate"] for g in out.values()}) <= 1
    sat = [r for r in rows if r["block"] == "asker" and r["condition"] == "saturated"]
    out["saturated"] = {
        m: group([r for r in sat if r["mixture"] == m]) for m in dict.fromkeys(r["mixture"] for r in sat)
    }
    lr0 = [r for r in rows if r["block"] == "lr0"]
    out["lr0"] = {m: group([r for r in lr0 if r["mixture"] == m]) for m in dict.fromkeys(r["mixture"] for r in lr0)}
    out["lr0_tied"] = len({g["nan_trials"] for g in out["lr0"].values()}) <= 1
    return out


def paired_nan(reference: list[dict], other: list[dict]) -> dict:
    """``other`` against ``reference`` on the seeds and learning rates both ran (same initialisation, same batch
    order): per pair d = NaN(reference) - NaN(other) in {-1, 0, 1}; the exact sign-flip test of mean d = 0 (exact
    McNemar: only discordant pairs count) with ``p_min`` = 2 / 2^pairs; ``fewer_nan_than_probs_log`` +1 when
    ``other`` had NaN on fewer seeds (p < 0.05), -1 on more, 0 inconclusive."""
    ref = {(r["seed"], r["lr"]): r["diverged"] for r in reference}
    pairs = [(ref[(r["seed"], r["lr"])], r["diverged"]) for r in other if (r["seed"], r["lr"]) in ref]
    d = [float(a - b) for a, b in pairs]
    test = sign_flip_test(d)
    effect = float(np.mean(d)) if d else None
    return {
        "pairs": len(d),
        "pairs_only_probs_log_nan": sum(a > b for a, b in pairs),
        "pairs_only_this_nan": sum(b > a for a, b in pairs),
        "paired_p_vs_probs_log": test["p"] if d else None,
        "paired_p_min_vs_probs_log": test["p_min"] if d else None,
        "fewer_nan_than_probs_log": verdict_p(test["p"] if d else None, effect),
    }


def _mixtures(rows: list[dict]) -> set:
    return {r["mixture"] for r in rows if r["block"] == "asker"}


def symptom(r: dict) -> str:
    if not r["diverged"]:
        return "training finite, validation (eval mode) NaN" if r["val_nonfinite"] else ""
    if r.get("fixed_batches") and r["fixed_nonfinite_batches"] == r["fixed_batches"] and r["first_nonfinite_step"] == 0:
        return "NaN from step 0, on every batch"
    if r["finite_loss_nan_grad"]:
        return "finite loss, NaN gradient, then NaN weights"
    return "loss turns NaN at a step set by the batch order"


def cause_of(r: dict) -> str:
    if r["diverged"]:
        return r["cause"] or "other"
    return "bn_running_stats" if r["val_nonfinite"] and r["running_stats_nonfinite"] else "other"


def symptom_table(rows: list[dict], independent: dict) -> list[dict]:
    """symptom -> cause -> fix, one row per (symptom, cause) seen in the trials, with counts; the underflowed
    weight also from the independent check when no trial showed it.

    The symptom is what the trial showed; the cause is the NaN doctor's (:func:`gradlab.doctor.diagnose` on the
    trial's first non-finite step), its explanation and fix the doctor's table (:data:`gradlab.doctor.CAUSES`).
    """
    seen = Counter()
    lr0, lrpos = Counter(), Counter()
    for r in rows:
        s = symptom(r)
        if not s:
            continue
        key = (s, cause_of(r))
        seen[key] += 1
        (lr0 if r["lr"] == 0 else lrpos)[key] += 1
    table = [
        {
            "symptom": s,
            "cause": c,
            "explanation": CAUSES[c].why,
            "fix": CAUSES[c].fix,
            "trials": n,
            "trials_lr0": lr0[(s, c)],
            "trials_lr_positive": lrpos[(s, c)],
            "source": "trials",
        }
        for (s, c), n in sorted(seen.items(), key=lambda kv: -kv[1])
    ]
    if not any(t["cause"] == "log_of_underflowed_weight" for t in table) and independent.get("passes"):
        c = "log_of_underflowed_weight"
        table.append(
            {
                "symptom": "finite loss, NaN gradient, then NaN weights",
                "cause": c,
                "explanation": CAUSES[c].why,
                "fix": CAUSES[c].fix,
                "trials": 0,
                "trials_lr0": 0,
                "trials_lr_positive": 0,
                "source": "independent check only: no trial reached it",
            }
        )
    return table


def marginal_nll(y_train: np.ndarray, y_val: np.ndarray) -> float:
    """Validation NLL of the marginal p(y), a Gaussian KDE of the training targets (Scott's bandwidth)."""
    kde = sps.gaussian_kde(y_train)
    return float(-np.mean(np.log(np.maximum(kde(y_val), np.finfo(float).tiny))))


def against(values: list[float], reference: float) -> dict:
    """``values`` (one per seed) against a fixed ``reference``: the exact one-sample sign-flip test of
    mean(value - reference) = 0, its smallest attainable p, seeds below, and the verdict ``below`` (+1: the
    mean lies below the reference, p < 0.05; -1: above; 0: inconclusive)."""
    d = [v - reference for v in values]
    test = sign_flip_test(d)
    return {
        "reference": reference,
        "seeds_below": sum(x < 0 for x in d),
        "sign_flip_p": test["p"] if d else None,
        "sign_flip_p_min": test["p_min"] if d else None,
        "below": verdict_p(test["p"] if d else None, -float(np.mean(d)) if d else None),
    }


def stable(rows: list[dict], marginal: float, components: int) -> dict:
    """The stable loss (logits, softplus, K components) vs a single Gaussian (K = 1, the same seeds: same data
    and batch order, paired) and vs the marginal and the uniform density (fixed numbers), per seed.

    Each comparison is an exact sign-flip test over the seeds (paired differences for the single Gaussian);
    the means get a bootstrap interval, the paired difference a Student-t one (None below
    :data:`gradlab.stats.MIN_CI_N` seeds: the per-seed values are reported instead). ``learns`` is +1 when the
    stable loss is below all three (each +1) with no non-finite event, -1 when it is shown above one of them
    or a non-finite event occurred, else 0.
    """
    mdn = {r["seed"]: r for r in rows if r["block"] == "stable" and r["components"] == components}
    one = {r["seed"]: r for r in rows if r["block"] == "stable" and r["components"] == 1}
    seeds = sorted(mdn)
    a = [mdn[k]["val_nll"] for k in seeds if mdn[k]["val_nll"] is not None]
    b = [one[k]["val_nll"] for k in sorted(one) if one[k]["val_nll"] is not None]
    both = [k for k in seeds if k in one and mdn[k]["val_nll"] is not None and one[k]["val_nll"] is not None]
    diff = [mdn[k]["val_nll"] - one[k]["val_nll"] for k in both]
    events = sum(r["diverged"] + r["val_nonfinite"] for r in [*mdn.values(), *one.values()])
    m, lo, hi = bootstrap_mean_ci(a)
    m1, lo1, hi1 = bootstrap_mean_ci(b)
    dm, dlo, dhi = t_mean_ci(diff)
    paired = sign_flip_test(diff)
    vs_single = {
        "pairs": len(diff),
        "diff_per_seed": diff,
        "diff_mean": dm if diff else None,
        "diff_ci_low": dlo,
        "diff_ci_high": dhi,
        "sign_flip_p": paired["p"] if diff else None,
        "sign_flip_p_min": paired["p_min"] if diff else None,
        "seeds_better": sum(x < 0 for x in diff),
        "below": verdict_p(paired["p"] if diff else None, -dm if diff else None),
    }
    vs_marginal, vs_uniform = against(a, marginal), against(a, 0.0)
    parts = (vs_single["below"], vs_marginal["below"], vs_uniform["below"])
    if events or -1 in parts:
        learns = -1
    else:
        learns = 1 if all(v == 1 for v in parts) else 0
    return {
        "components": components,
        "seeds": len(mdn),
        "val_nll_mean": m if a else None,
        "val_nll_ci_low": lo,
        "val_nll_ci_high": hi,
        "val_nll_per_seed": a,
        "single_gaussian_val_nll_mean": m1 if b else None,
        "single_gaussian_val_nll_ci_low": lo1,
        "single_gaussian_val_nll_ci_high": hi1,
        "single_gaussian_val_nll_per_seed": b,
        "marginal_val_nll": marginal,
        "uniform_val_nll": 0.0,  # U(0, 1) has density 1 on the scaled range
        "vs_single_gaussian": vs_single,
        "vs_marginal": vs_marginal,
        "vs_uniform": vs_uniform,
        "unpaired_vs_single_gaussian": compare(a, b),  # beside the paired test, for reference only
        "nonfinite_events": events,
        "learns": learns,
    }


def metrics(rows: list[dict], referee: dict, independent: dict, marginal: float, components: int) -> dict:
    a = asker(rows)
    f = formulations(rows)
    st = stable(rows, marginal, components)
    table = symptom_table(rows, independent)
    diverged = [r for r in rows if r["diverged"]]
    causes = Counter(cause_of(r) for r in rows if symptom(r))
    lr0 = a["lr0"]
    return {
        "trials": len(rows),
        "asker": a,
        "compare": f,
        "causes": dict(sorted(causes.items())),
        "referee": referee,
        "independent": independent,
        "stable": st,
        "symptoms": table,
        "flags": {
            "asker_nan_on_clean_data": a["nan_trials"] > 0,
            "asker_lr0_nan_on_clean_data": lr0["clean_nonzero_scale_nan_trials"] > 0,
            "lr0_nan_with_nonfinite_input": lr0["nonfinite_input_nan_trials"] > 0,
            "lr0_nan_with_zero_scale": lr0["zero_scale_nan_trials"] > 0,
            "bn_running_stats_move_at_lr0": lr0["bn_val_changed_trials"] > 0,
            "every_nan_trial_has_cause": all(r["cause"] and r["first_nonfinite_what"] for r in diverged),
            "saturation_reached": a["zero_weight_trials"] > 0,
            "saturated_head_probs_log_all_nan": bool(
                f["saturated"].get("probs_log", {}).get("trials")
                and f["saturated"]["probs_log"]["finite_loss_nan_grad_trials"] == f["saturated"]["probs_log"]["trials"]
            ),
            "saturated_head_others_finite": bool(
                f["saturated"] and all(g["nan_trials"] == 0 for m, g in f["saturated"].items() if m != "probs_log")
            ),
            **{
                f"{m}_fewer_nan": g["fewer_nan_than_probs_log"]
                for m, g in f.items()
                if isinstance(g, dict) and "fewer_nan_than_probs_log" in g
            },
            "referee_available": bool(referee.get("available")),
            "referee_agrees": bool(referee.get("port_agrees")),
            "independent_check_passes": bool(independent["passes"]),
            "stable_beats_single_gaussian": st["vs_single_gaussian"]["below"],
            "stable_beats_marginal": st["vs_marginal"]["below"],
            "stable_below_zero": st["vs_uniform"]["below"],
            "stable_learns": st["learns"],
        },
    }
