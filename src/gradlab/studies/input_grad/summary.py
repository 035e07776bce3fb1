"""summary.md of the input_grad stage: the answer in a few sentences, every number read from the results."""

from __future__ import annotations

from gradlab.studies.input_grad.config import InputGradParams


def summary(m: dict, rows: list[dict], p: InputGradParams) -> str:
    a, fd, bn, s = m["agreement"], m["fd"], m["batchnorm"], m["sobolev"]
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
    wo, wg = s["value_only"], s["with_grad"]
    r = s["grad_rmse_ratio"]
    lines += [
        f"- Sobolev training ({s['seeds']} seeds, {p.sobolev.n_train} training points, {p.sobolev.steps} Adam steps, "
        f"input gradients by `{p.sobolev.method}` with create_graph=True): held-out gradient RMSE "
        f"{wo['grad_rmse']:.3g} (95 % CI {wo['grad_rmse_ci_low']:.3g} to {wo['grad_rmse_ci_high']:.3g}) from values "
        f"only vs {wg['grad_rmse']:.3g} ({wg['grad_rmse_ci_low']:.3g} to {wg['grad_rmse_ci_high']:.3g}) with "
        f"gradients; ratio {r['with_grad_over_value_only']:.2f} (CI {r['ci_low']:.2f} to {r['ci_high']:.2f}), "
        f"lower in {r['seeds_lowered']}/{s['seeds']} seeds, paired t-test p = {r['paired_t_p']:.2g}. Held-out value "
        f"RMSE {wo['value_rmse']:.3g} ({wo['value_rmse_ci_low']:.3g} to {wo['value_rmse_ci_high']:.3g}) vs "
        f"{wg['value_rmse']:.3g} ({wg['value_rmse_ci_low']:.3g} to {wg['value_rmse_ci_high']:.3g}).",
        "",
        "Answer: for a network whose samples do not interact, `grad(pred.sum(), X)` (or `grad_outputs=ones`) is exact "
        "and costs one backward pass; it composes with `create_graph=True` for training. With BatchNorm in training "
        "mode it is wrong; use eval mode, or vmap/jacrev/loop when the coupling is intended.",
        "",
        "Figures: `figures/agreement.png`, `figures/batchnorm.png`, `figures/timing.png`, `figures/sobolev.png`.",
        "",
    ]
    return "\n".join(lines)
