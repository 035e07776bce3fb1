"""Numbers from the mdn trials: the asker's path, lr 0, the formulations side by side, causes, the stable loss."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from scipy import stats as sps

from gradlab.stats import bootstrap_mean_ci, compare, wilson

# symptom -> cause -> fix, for the causes a trial or the independent check can show
FIXES = {
    "log_of_underflowed_weight": (
        "log of a mixing weight that underflowed to exactly 0 (TFP's Categorical(probs=) takes log(probs))",
        "pass logits: Categorical(logits=...) / gradlab nll(logits, ...), or nll(probs=...) (safe)",
    ),
    "nonfinite_input": (
        "a non-finite number in the batch (a 0/0 from scaling, a missing value)",
        "assert torch.isfinite(x).all() per batch; NonFiniteWatch names the first non-finite activation; "
        "torch.autograd.detect_anomaly() names the backward op",
    ),
    "zero_scale": (
        "a scale of exactly 0 (relu, or exp underflow): the Normal log-density is 0/0",
        "sigma_from(raw, 'softplus') (softplus + eps); nll() refuses sigma <= 0",
    ),
    "bn_running_stats": (
        "BatchNorm running statistics: updated by every forward pass in train mode, even at lr 0; one "
        "non-finite batch makes them NaN for good",
        "fix the inputs; after a bad batch, module.reset_running_stats(); evaluate in eval mode to see it",
    ),
    "probability_underflow": (
        "a mixture computed in probability space underflows (log 0)",
        "stay in log space: log_softmax + logsumexp",
    ),
    "gradient_overflow": ("a finite loss with an overflowing gradient", "lower the learning rate; clip gradients"),
    "weight_overflow": ("the update made a weight overflow", "lower the learning rate"),
    "loss_overflow": ("the loss overflowed", "lower the learning rate; check the targets' scale"),
    "other": ("not classified", "inspect NonFiniteWatch.first"),
}


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
    """probs_log vs torch's probs and logits on the same seeds (baseline, lr > 0): counts and Fisher tests; a tie
    is reported as a tie."""
    base = [
        r for r in rows if r["block"] == "asker" and r["condition"] == "baseline" and r["mixture"] in _mixtures(rows)
    ]
    groups = {m: [r for r in base if r["mixture"] == m] for m in dict.fromkeys(r["mixture"] for r in base)}
    out = {m: group(g) for m, g in groups.items()}
    counts = {m: g["nan_trials"] for m, g in out.items()}
    for m in out:
        if m == "probs_log" or "probs_log" not in out:
            continue
        a, b = out["probs_log"], out[m]
        table = [[a["nan_trials"], a["trials"] - a["nan_trials"]], [b["nan_trials"], b["trials"] - b["nan_trials"]]]
        out[m]["fisher_p_vs_probs_log"] = float(sps.fisher_exact(table)[1])
    out["tied"] = len(set(counts.values())) <= 1
    sat = [r for r in rows if r["block"] == "asker" and r["condition"] == "saturated"]
    out["saturated"] = {
        m: group([r for r in sat if r["mixture"] == m]) for m in dict.fromkeys(r["mixture"] for r in sat)
    }
    lr0 = [r for r in rows if r["block"] == "lr0"]
    out["lr0"] = {m: group([r for r in lr0 if r["mixture"] == m]) for m in dict.fromkeys(r["mixture"] for r in lr0)}
    out["lr0_tied"] = len({g["nan_trials"] for g in out["lr0"].values()}) <= 1
    return out


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
    weight also from the independent check when no trial showed it."""
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
            "explanation": FIXES[c][0],
            "fix": FIXES[c][1],
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
                "explanation": FIXES[c][0],
                "fix": FIXES[c][1],
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


def stable(rows: list[dict], marginal: float, components: int) -> dict:
    """The stable loss (logits, softplus, K components) vs a single Gaussian (K = 1) and the marginal, per seed."""
    mdn = sorted((r for r in rows if r["block"] == "stable" and r["components"] == components), key=lambda r: r["seed"])
    one = sorted((r for r in rows if r["block"] == "stable" and r["components"] == 1), key=lambda r: r["seed"])
    a = [r["val_nll"] for r in mdn if r["val_nll"] is not None]
    b = [r["val_nll"] for r in one if r["val_nll"] is not None]
    events = sum(r["diverged"] + r["val_nonfinite"] for r in mdn + one)
    m, lo, hi = bootstrap_mean_ci(a)
    m1, lo1, hi1 = bootstrap_mean_ci(b)
    cmp = compare(a, b)
    beats_single = bool(
        a and b and cmp["diff_ci_high"] is not None and cmp["diff_ci_high"] < 0 and (cmp["permutation_p"] or 1.0) < 0.05
    )
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
        "vs_single_gaussian": cmp,
        "seeds_better_than_single_gaussian": sum(x < y for x, y in zip(a, b, strict=False)),
        "nonfinite_events": events,
        "beats_single_gaussian": beats_single,
        "beats_marginal": bool(a and hi is not None and hi < marginal),
        "below_zero": bool(a and hi is not None and hi < 0),
        "learns": bool(
            beats_single and a and hi is not None and hi < min(marginal, 0.0) and events == 0 and len(a) >= 10
        ),
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
            "formulations_tied": f["tied"],
            "referee_available": bool(referee.get("available")),
            "referee_agrees": bool(referee.get("port_agrees")),
            "independent_check_passes": bool(independent["passes"]),
            "stable_learns": st["learns"],
        },
    }
