"""Numbers from the input_grad checks and trials: agreement, the BatchNorm gap, Sobolev tests, metrics.

The checks (agreement, finite differences, BatchNorm, images) are deterministic: their flags are booleans
(``passed``, ``train_sum_refused``...). The Sobolev comparison is statistical: the same seeds (data and
initialisation) train both variants, so each seed gives a paired difference; the verdicts
(``flags.sobolev_lowers_grad_rmse``, ``flags.sobolev_lowers_value_rmse``: +1 / 0 / -1,
:data:`gradlab.stats.VERDICT_ENCODING`) come from the exact sign-flip test over those differences
(p < 0.05, else 0: inconclusive), with its smallest attainable p = 2 / 2^seeds beside it; below
``seeds_needed`` (6) seeds that floor is not below 0.05 and the prose says so. Intervals
(Student t, inside [0, inf)) only from :data:`gradlab.stats.MIN_CI_N` seeds up; fewer: the per-seed values.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats as sps

from gradlab.stats import reachable, sign_flip_min_n, sign_flip_test, t_mean_ci, verdict_p
from gradlab.studies.input_grad.config import InputGradParams
from gradlab.studies.input_grad.methods import METHODS, auto_method, batch_jacobian, per_sample_input_grad
from gradlab.studies.input_grad.problems import IMAGE_SHAPE, make_cnn, make_images
from gradlab.studies.input_grad.trial import VARIANTS, TrialSpec


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
    auto = per_sample_input_grad(net, X)  # method="auto", the default
    try:
        per_sample_input_grad(net, X, "sum")
        refused = False
    except ValueError:
        refused = True
    metrics = {
        "n": n,
        "train_auto_method": auto_method(net),
        "train_auto_max_abs_diff": float((auto - true).abs().max()),
        "train_sum_refused": refused,
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
    exact = [
        "train_auto_max_abs_diff",
        "train_vmap_max_abs_diff",
        "train_jacrev_max_abs_diff",
        "eval_vmap_max_abs_diff",
    ]
    metrics["exact_methods_agree"] = all(metrics[k] <= rel_tol * scale for k in exact)
    metrics["eval_sum_trick_exact"] = metrics["eval_sum_trick_max_abs_diff"] <= rel_tol * scale
    metrics["train_sum_trick_wrong"] = metrics["train_sum_trick_max_abs_diff"] > 1e-3
    return metrics, {"train": train, "eval": evaluation}


def one_backward_per_sample(net: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The reference, written out: one forward of the batch, then ``autograd.grad(out[i], X)[0][i]`` for each i."""
    Xg = X.detach().clone().requires_grad_(True)
    with torch.no_grad():
        state = {k: v.clone() for k, v in net.state_dict().items()}
    out = net(Xg).reshape(X.shape[0])
    rows = [torch.autograd.grad(out[i], Xg, retain_graph=True)[0][i] for i in range(X.shape[0])]
    net.load_state_dict(state)  # the forward moved BatchNorm running statistics; put them back
    return torch.stack(rows)


def image_case(n: int, seed: int, rel_tol: float) -> dict:
    """Image-shaped batches [n, 1, 8, 8] on a small CNN: method="auto" against one backward per sample,
    without and with BatchNorm2d in training mode (where the sum trick is also measured)."""
    X = make_images(n, torch.Generator().manual_seed(seed + 2))
    out: dict = {"shape": [n, *IMAGE_SHAPE]}
    for name, batchnorm in [("cnn", False), ("cnn_batchnorm", True)]:
        net = make_cnn(batchnorm=batchnorm, seed=seed).train()
        true = one_backward_per_sample(net, X)
        auto = per_sample_input_grad(net, X)
        entry = {
            "auto_method": auto_method(net),
            "auto_max_abs_diff": float((auto - true).abs().max()),
            "true_grad_max_abs": float(true.abs().max()),
        }
        if batchnorm:
            trick = per_sample_input_grad(net, X, "sum", allow_coupling=True)
            entry["sum_trick_max_abs_diff"] = float((trick - true).abs().max())
        out[name] = entry
    out["passed"] = all(
        out[k]["auto_max_abs_diff"] <= rel_tol * out[k]["true_grad_max_abs"] for k in ["cnn", "cnn_batchnorm"]
    )
    return out


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    """Paired t statistic and two-sided p; None when undefined (one pair, or no spread in the differences)."""
    d = a - b
    if d.size < 2 or float(d.std(ddof=1)) == 0.0:
        return None, None
    t, p = sps.ttest_rel(a, b)
    return float(t), float(p)


def batchnorm_table(bn_grads: dict) -> dict:
    return {
        (mode, m): float((G - grads["loop"]).abs().max()) for mode, grads in bn_grads.items() for m, G in grads.items()
    }


def summarise_sobolev(trials: list[TrialSpec], results: list[dict]) -> dict:
    out: dict = {}
    by = {v: {t.seed: r for t, r in zip(trials, results, strict=True) if t.variant == v} for v in VARIANTS}
    seeds = sorted(by["value_only"])
    for variant, runs in by.items():
        entry = {}
        for key in ["value_rmse", "grad_rmse", "train_value_rmse", "train_grad_rmse"]:
            values = [runs[s][key] for s in seeds]
            mean, lo, hi = t_mean_ci(values, low=0.0)  # an RMSE is >= 0; one seed: no interval (None)
            entry.update({key: mean, f"{key}_ci_low": lo, f"{key}_ci_high": hi, f"{key}_per_seed": values})
        out[variant] = entry
    for key in ["grad_rmse", "value_rmse"]:
        a = np.array([by["with_grad"][s][key] for s in seeds])
        b = np.array([by["value_only"][s][key] for s in seeds])
        ratio_mean, ratio_lo, ratio_hi = t_mean_ci(a / b, low=0.0)
        t_stat, p_value = paired_t(a, b)
        flip = sign_flip_test(a - b)
        out[f"{key}_ratio"] = {
            "with_grad_over_value_only": ratio_mean,
            "ci_low": ratio_lo,
            "ci_high": ratio_hi,
            "per_seed": (a / b).tolist(),
            "diff_per_seed": (a - b).tolist(),
            "seeds_lowered": int((a < b).sum()),
            "paired_t": t_stat,
            "paired_t_p": p_value,
            "sign_flip_p": flip["p"] if seeds else None,
            "sign_flip_p_min": flip["p_min"] if seeds else None,
            # False: these seeds cannot reach p < 0.05 whatever the data, so the verdict is 0 by construction
            "sign_flip_reachable": reachable(flip["p_min"] if seeds else None),
            # +1: training on the gradients lowers this held-out RMSE (exact test, p < 0.05); -1 raises; 0 inconclusive
            "lowered": verdict_p(flip["p"] if seeds else None, float((b - a).mean()) if seeds else None),
        }
    out["seeds"] = len(seeds)
    out["seeds_needed"] = sign_flip_min_n()  # the fewest paired seeds whose sign-flip test can reach p < 0.05
    return out


def sobolev_curves(trials: list[TrialSpec], results: list[dict]) -> list[dict]:
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


def metrics(
    agreement: dict, fd: dict, batchnorm: dict, image: dict, caps: dict, sobolev: dict, p: InputGradParams
) -> dict:
    """The stage's numbers (stats.json; the headline goes to metrics.json); wall-clock ones stay in timings.csv."""
    return {
        "agreement": agreement,
        "fd": fd,
        "batchnorm": batchnorm,
        "image": image,
        "flags": {  # the statistical verdicts, +1 / 0 / -1 (the deterministic checks stay booleans where they are)
            "sobolev_lowers_grad_rmse": sobolev["grad_rmse_ratio"]["lowered"],
            "sobolev_lowers_value_rmse": sobolev["value_rmse_ratio"]["lowered"],
        },
        "timing": {
            "ns": list(p.timing.ns),
            "methods": list(p.timing.methods),
            "capped": {m: [n for n in p.timing.ns if n > cap] for m, cap in caps.items() if m in p.timing.methods},
            "note": "wall-clock and memory numbers are in timings.csv (not deterministic)",
        },
        "sobolev": sobolev,
    }
