"""summary.md of the input_grad stage: the answer in a few sentences, every number read from the results."""

from __future__ import annotations

from gradlab.stats import floor_note, fmt, fmt_ci, verdict_word
from gradlab.studies.input_grad.config import InputGradParams


def _ci(entry: dict, key: str, spec: str = ".3g") -> str:
    return fmt_ci(entry[f"{key}_ci_low"], entry[f"{key}_ci_high"], spec)


def summary(m: dict, rows: list[dict], p: InputGradParams) -> str:
    a, fd, bn, s, im = m["agreement"], m["fd"], m["batchnorm"], m["sobolev"], m["image"]
    worst = max((v["max_rel_diff"] for k, v in a.items() if k != "loop"), default=0.0)
    lines = [
        "# input_grad: the gradient of a network's output with respect to each input of a batch",
        "",
        "`torch.autograd.grad(pred, X)` refuses a non-scalar `pred`; `grad(pred.sum(), X)` gives row i = "
        "sum_j dh(x_j)/dx_i, which equals dh(x_i)/dx_i exactly when no sample's output depends on another "
        "sample's input. That holds for the question's network, and fails with BatchNorm in training mode.",
        "",
        f"- Agreement (H={p.model.hidden}, {p.model.activation}, N={p.check.n}, float64): the largest relative "
        f"difference of sum, grad_outputs, vmap and jacrev to one backward per sample (`loop`) is {worst:.2g} "
        f"(tolerance {p.check.rel_tol:g}: {'passed' if all(v['passed'] for v in a.values()) else 'FAILED'}). "
        f"Central finite differences (eps={fd['eps']:g}) differ by at most {fd['max_abs_diff']:.2g} "
        f"({'passed' if fd['passed'] else 'FAILED'}, tolerance {p.check.fd_tol:g}).",
        f"- BatchNorm1d in training mode: the sum trick is off by up to {bn['train_sum_trick_max_abs_diff']:.3g} "
        f"({100 * bn['train_sum_trick_max_rel_diff']:.0f} % of the largest true gradient entry, mean |error| "
        f"{bn['train_sum_trick_mean_abs_diff']:.3g}); it matches the column sums of the batch Jacobian to "
        f"{bn['train_sum_trick_vs_jacobian_column_sums_max_abs_diff']:.1g}. vmap (differentiating h_i with respect "
        f"to row i, the rest of the batch fixed) and jacrev match the true per-sample gradient to "
        f"{max(bn['train_vmap_max_abs_diff'], bn['train_jacrev_max_abs_diff']):.1g}. In eval mode (running "
        f"statistics) the sum trick is exact again: difference {bn['eval_sum_trick_max_abs_diff']:.1g}.",
        f'- The library call `per_sample_input_grad(model, X)` (method "auto") picks `{bn["train_auto_method"]}` '
        f"for this BatchNorm network in training mode and matches one backward per sample to "
        f'{bn["train_auto_max_abs_diff"]:.1g}; an explicit `method="sum"` on it is '
        f"{'refused, naming the BatchNorm layer' if bn['train_sum_refused'] else 'NOT refused'}.",
        f'- Image batches {tuple(im["shape"])} on a small CNN: "auto" ({im["cnn"]["auto_method"]}) matches one '
        f"backward per sample to {im['cnn']['auto_max_abs_diff']:.1g}; with BatchNorm2d in training mode "
        f'("auto" = {im["cnn_batchnorm"]["auto_method"]}) to {im["cnn_batchnorm"]["auto_max_abs_diff"]:.1g}, '
        f"where the sum trick is off by {im['cnn_batchnorm']['sum_trick_max_abs_diff']:.3g} "
        f"({'passed' if im['passed'] else 'FAILED'}, tolerance {p.check.rel_tol:g} relative).",
    ]
    ok = {(r["method"], r["n"]): r for r in rows if r["status"] == "ok"}
    big = max(r["n"] for r in ok.values())
    ref = ok.get(("reference_backward", big))
    parts = []
    for method in p.timing.methods:
        mine = [r for r in rows if r["method"] == method and r["status"] == "ok"]
        if not mine:
            continue
        last = mine[-1]
        text = f"{method} {last['seconds'] * 1e3:.3g} ms at N={last['n']}"
        if ref and last["n"] == big:
            text += f" ({last['seconds'] / ref['seconds']:.2g}x a plain backward)"
        parts.append(text)
    capped = [
        f"{r['method']} at N={r['n']} (~{r['extrapolated_seconds']:.3g} s extrapolated)"
        for r in rows
        if r["status"] == "capped"
    ]
    lines.append(
        "- Cost (float32, wall-clock on this machine, see timings.csv): "
        + "; ".join(parts)
        + ". "
        + ("Not run (O(N^2) caps): " + ", ".join(capped) + "." if capped else "")
    )
    lines += [sobolev_line(s, m["flags"], p)]
    lines += [
        "",
        "Answer: for a network whose samples do not interact, `grad(pred.sum(), X)` (or `grad_outputs=ones`) is exact "
        "and costs one backward pass; it composes with `create_graph=True` for training. With BatchNorm in training "
        "mode it is wrong; use eval mode, or vmap/jacrev/loop when the coupling is intended. "
        "`gradlab.per_sample_input_grad(model, X)` makes that choice itself.",
        "",
        "Figures: `figures/agreement.png`, `figures/batchnorm.png`, `figures/timing.png`, `figures/sobolev.png`.",
        "",
    ]
    return "\n".join(lines)


def signed(v: int) -> str:
    """A verdict as printed: +1, 0, -1."""
    return f"{v:+d}" if v else "0"


def _spread(entry: dict, key: str) -> str:
    """``mean (95 % CI low to high)`` from 10 seeds up; fewer: ``mean (per seed a, b, ...)``."""
    if entry[f"{key}_ci_low"] is None:
        return f"{fmt(entry[key])} (per seed: {', '.join(fmt(v) for v in entry[f'{key}_per_seed'])})"
    return f"{fmt(entry[key])} (95 % CI {_ci(entry, key)})"


def sobolev_line(s: dict, flags: dict, p: InputGradParams) -> str:
    """Values only vs values + input gradients on the same seeds: per-seed values or CIs, the exact paired test
    with its smallest attainable p, and each verdict from its flag."""
    wo, wg = s["value_only"], s["with_grad"]
    n = s["seeds"]

    def paired(key: str, flag: str) -> str:
        r = s[f"{key}_ratio"]
        ratio = (
            f"ratio {fmt(r['with_grad_over_value_only'], '.2f')} (95 % CI {fmt_ci(r['ci_low'], r['ci_high'], '.2f')})"
            if r["ci_low"] is not None
            else f"ratio {fmt(r['with_grad_over_value_only'], '.2f')} (per seed: "
            + ", ".join(fmt(v, ".2f") for v in r["per_seed"])
            + ")"
        )
        return (
            f"{ratio}, lower in {r['seeds_lowered']}/{n} seeds; exact sign-flip test over the paired seeds p = "
            f"{fmt(r['sign_flip_p'], '.2g')} (the smallest p {n} paired seeds can give: "
            f"{fmt(r['sign_flip_p_min'], '.2g')}), paired t-test p = {fmt(r['paired_t_p'], '.2g')}; lowered by "
            f"training on the gradients: **{verdict_word(flags[flag], 'yes', 'no, raised')}** (`flags.{flag}` = "
            f"{signed(flags[flag])})"
            + ("" if r["sign_flip_reachable"] else f": {floor_note(n, r['sign_flip_p_min'], s['seeds_needed'])}")
        )

    return (
        f"- Sobolev training ({n} seed{'s' if n != 1 else ''}, each seed's data and initialisation shared by both "
        f"variants; {p.sobolev.n_train} training points, {p.sobolev.steps} Adam steps, input gradients by "
        f"`{p.sobolev.method}` with create_graph=True): held-out gradient RMSE {_spread(wo, 'grad_rmse')} from values "
        f"only vs {_spread(wg, 'grad_rmse')} with gradients; {paired('grad_rmse', 'sobolev_lowers_grad_rmse')}. "
        f"Held-out value RMSE {_spread(wo, 'value_rmse')} vs {_spread(wg, 'value_rmse')}; "
        f"{paired('value_rmse', 'sobolev_lowers_value_rmse')}."
    )
