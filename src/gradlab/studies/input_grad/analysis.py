"""Numbers from the input_grad checks and trials: agreement, the BatchNorm gap, Sobolev CIs and tests, metrics."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats as sps

from gradlab.stats import mean_ci
from gradlab.studies.input_grad.config import InputGradParams
from gradlab.studies.input_grad.methods import METHODS, batch_jacobian, per_sample_input_grad
from gradlab.studies.input_grad.trial import VARIANTS


def compare_to(grads: dict[str, torch.Tensor], ref: str, rel_tol: float) -> dict[str, dict]:
    """max |G_m - G_ref| and max |G_m - G_ref| / max |G_ref| for every method m."""
    scale = float(grads[ref].abs().max())
    out = {}
    for m, G in grads.items():
        diff = float((G - grads[ref]).abs().max())
        rel = diff / scale if scale > 0 else diff
        out[m] = {"max_abs_diff": diff, "max_rel_diff": rel, "passed": rel <= rel_tol}
    return out


def batchnorm_case(net: torch.nn.Module, X: torch.Tensor, rel_tol: float) -> tuple[dict, dict]:
    """The sum trick against the true per-sample gradient with BatchNorm in training and in eval mode."""
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d))
    net.train()
    train = {m: per_sample_input_grad(net, X, m, allow_coupling=True) for m in METHODS}  # the sum trick on purpose
    J = batch_jacobian(net, X)  # [N, N, d], J[i, j] = dh(x_i)/dx_j
    column_sums = J.sum(dim=0)  # sum_i dh(x_i)/dx_j: what the sum trick claims to be
    n = X.shape[0]
    off_diagonal = J.clone()
    off_diagonal[torch.arange(n), torch.arange(n)] = 0
    # eval mode normalises with running statistics; set them to this batch's (one pass, momentum=None)
    with torch.no_grad():
        bn.reset_running_stats()
        bn.momentum = None
        net(X)
        bn.momentum = 0.1
    net.eval()
    evaluation = {m: per_sample_input_grad(net, X, m) for m in METHODS}
    net.train()
    true = train["loop"]
    scale = float(true.abs().max())
    metrics = {
        "n": n,
        "train_sum_trick_max_abs_diff": float((train["sum"] - true).abs().max()),
        "train_sum_trick_max_rel_diff": float((train["sum"] - true).abs().max()) / scale,
        "train_sum_trick_mean_abs_diff": float((train["sum"] - true).abs().mean()),
        "train_grad_outputs_max_abs_diff": float((train["grad_outputs"] - true).abs().max()),
        "train_vmap_max_abs_diff": float((train["vmap"] - true).abs().max()),
        "train_jacrev_max_abs_diff": float((train["jacrev"] - true).abs().max()),
        "train_sum_trick_vs_jacobian_column_sums_max_abs_diff": float((train["sum"] - column_sums).abs().max()),
        "train_true_grad_max_abs": scale,
        "train_off_diagonal_max_abs": float(off_diagonal.abs().max()),
        "eval_sum_trick_max_abs_diff": float((evaluation["sum"] - evaluation["loop"]).abs().max()),
        "eval_vmap_max_abs_diff": float((evaluation["vmap"] - evaluation["loop"]).abs().max()),
        "eval_jacrev_max_abs_diff": float((evaluation["jacrev"] - evaluation["loop"]).abs().max()),
    }
    exact = ["train_vmap_max_abs_diff", "train_jacrev_max_abs_diff", "eval_vmap_max_abs_diff"]
    metrics["exact_methods_agree"] = all(metrics[k] <= rel_tol * scale for k in exact)
    metrics["eval_sum_trick_exact"] = metrics["eval_sum_trick_max_abs_diff"] <= rel_tol * scale
    metrics["train_sum_trick_wrong"] = metrics["train_sum_trick_max_abs_diff"] > 1e-3
    return metrics, {"train": train, "eval": evaluation}


def batchnorm_table(bn_grads: dict) -> dict:
    return {
        (mode, m): float((G - grads["loop"]).abs().max()) for mode, grads in bn_grads.items() for m, G in grads.items()
    }


def summarise_sobolev(trials: list[dict], results: list[dict]) -> dict:
    out: dict = {}
    by = {v: {t.seed: r for t, r in zip(trials, results, strict=True) if t.variant == v} for v in VARIANTS}
    seeds = sorted(by["value_only"])
    for variant, runs in by.items():
        entry = {}
        for key in ["value_rmse", "grad_rmse", "train_value_rmse", "train_grad_rmse"]:
            values = [runs[s][key] for s in seeds]
            mean, lo, hi = mean_ci(values)
            entry.update({key: mean, f"{key}_ci_low": lo, f"{key}_ci_high": hi, f"{key}_per_seed": values})
        out[variant] = entry
    for key in ["grad_rmse", "value_rmse"]:
        a = np.array([by["with_grad"][s][key] for s in seeds])
        b = np.array([by["value_only"][s][key] for s in seeds])
        ratio_mean, ratio_lo, ratio_hi = mean_ci(a / b)
        t_stat, p_value = sps.ttest_rel(a, b)
        out[f"{key}_ratio"] = {
            "with_grad_over_value_only": ratio_mean,
            "ci_low": ratio_lo,
            "ci_high": ratio_hi,
            "seeds_lowered": int((a < b).sum()),
            "paired_t": float(t_stat),
            "paired_t_p": float(p_value),
        }
    out["seeds"] = len(seeds)
    out["sobolev_lowers_grad_rmse"] = bool(
        out["with_grad"]["grad_rmse_ci_high"] < out["value_only"]["grad_rmse_ci_low"]
        or (out["grad_rmse_ratio"]["ci_high"] < 1.0)
    )
    return out


def sobolev_curves(trials: list[dict], results: list[dict]) -> list[dict]:
    """Held-out gradient RMSE per evaluation step and variant, mean over seeds."""
    rows = []
    for variant in VARIANTS:
        mine = [r for t, r in zip(trials, results, strict=True) if t.variant == variant]
        for i, step in enumerate(mine[0]["eval_steps"]):
            rows.append(
                {"variant": variant, "step": step, "grad_rmse": float(np.mean([r["eval_grad_rmse"][i] for r in mine]))}
            )
    return rows


def long_table(rows: list[dict], key: str) -> list[dict]:
    """(method, n, key) for the calls that ran, for DVC plots."""
    return [{"method": r["method"], "n": r["n"], key: r[key]} for r in rows if r["status"] == "ok"]


def metrics(agreement: dict, fd: dict, batchnorm: dict, caps: dict, sobolev: dict, p: InputGradParams) -> dict:
    """The stage's metrics.json (wall-clock and memory numbers stay in timings.csv)."""
    return {
        "agreement": agreement,
        "fd": fd,
        "batchnorm": batchnorm,
        "timing": {
            "ns": list(p.timing.ns),
            "methods": list(p.timing.methods),
            "capped": {m: [n for n in p.timing.ns if n > cap] for m, cap in caps.items() if m in p.timing.methods},
            "note": "wall-clock and memory numbers are in timings.csv (not deterministic)",
        },
        "sobolev": sobolev,
    }
