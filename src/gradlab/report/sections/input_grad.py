"""Report section: input_grad."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


def _ci(q: Quotes, stage: str, key: str) -> str:
    """``low to high``, or "n/a" when the run had one seed (no interval)."""
    if q.raw(stage, f"{key}_ci_low") is None:
        return "n/a"
    return f"{q(stage, f'{key}_ci_low', '.3g')} to {q(stage, f'{key}_ci_high', '.3g')}"


def input_grad(q: Quotes) -> Section:
    s = "input_grad"
    evidence = [
        f"`{m}` vs one backward per sample (float64): max abs difference {q(s, f'agreement.{m}.max_abs_diff', '.2g')}."
        for m in q.metrics(s)["agreement"]
        if m != "loop"
    ]
    evidence += [
        f"Central finite differences: max abs difference {q(s, 'fd.max_abs_diff', '.2g')}.",
        f"BatchNorm in training mode: the sum trick is off by up to "
        f"{q(s, 'batchnorm.train_sum_trick_max_abs_diff', '.3g')} (true gradients reach "
        f"{q(s, 'batchnorm.train_true_grad_max_abs', '.3g')}); it equals the column sums of the batch Jacobian to "
        f"{q(s, 'batchnorm.train_sum_trick_vs_jacobian_column_sums_max_abs_diff', '.2g')}, i.e. "
        "it returns sum_j dh(x_j)/dx_i. vmap over per-sample lanes gets the true gradient to "
        f"{q(s, 'batchnorm.train_vmap_max_abs_diff', '.2g')}.",
        f"BatchNorm in eval mode: the sum trick is off by {q(s, 'batchnorm.eval_sum_trick_max_abs_diff', '.2g')}.",
        f'The library call `gradlab.per_sample_input_grad(model, X)` (method "auto") picks '
        f"`{q(s, 'batchnorm.train_auto_method', 's')}` for the BatchNorm network in training mode and matches one "
        f'backward per sample to {q(s, "batchnorm.train_auto_max_abs_diff", ".2g")}; an explicit `method="sum"` '
        f"on it refused: {q(s, 'batchnorm.train_sum_refused', 's')}.",
        f'Image batches of shape {q(s, "image.shape", "s")} on a small CNN: "auto" matches one backward per '
        f"sample to {q(s, 'image.cnn.auto_max_abs_diff', '.2g')}; with BatchNorm2d in training mode to "
        f"{q(s, 'image.cnn_batchnorm.auto_max_abs_diff', '.2g')}, where the sum trick is off by "
        f"{q(s, 'image.cnn_batchnorm.sum_trick_max_abs_diff', '.3g')}.",
        f"Sobolev training ({q(s, 'sobolev.seeds', 'd')} seeds): held-out gradient RMSE "
        f"{q(s, 'sobolev.value_only.grad_rmse', '.3g')} (95 % CI {_ci(q, s, 'sobolev.value_only.grad_rmse')}) "
        f"from values only vs {q(s, 'sobolev.with_grad.grad_rmse', '.3g')} "
        f"({_ci(q, s, 'sobolev.with_grad.grad_rmse')}) with gradients; exact sign-flip test over the paired "
        f"seeds p = {q(s, 'sobolev.grad_rmse_ratio.sign_flip_p', '.2g')} (the smallest p these seeds allow: "
        f"{q(s, 'sobolev.grad_rmse_ratio.sign_flip_p_min', '.2g')}), paired t-test p = "
        f"{q(s, 'sobolev.grad_rmse_ratio.paired_t_p', '.2g')}; held-out value RMSE "
        f"{q(s, 'sobolev.value_only.value_rmse', '.3g')} vs {q(s, 'sobolev.with_grad.value_rmse', '.3g')}.",
    ]
    answer = (
        "Differentiate `pred.sum()` (or pass `grad_outputs=ones`): when samples do not interact, output i depends "
        "only on input i, so the gradient of the sum is exactly the per-sample gradient (all methods agree to "
        f"{q(s, 'agreement.sum.max_abs_diff', '.2g')}). It is wrong when samples interact: with BatchNorm in "
        f"training mode it is off by up to {q(s, 'batchnorm.train_sum_trick_max_abs_diff', '.3g')}; use "
        "`torch.func.vmap(grad(...))` over per-sample lanes, or eval mode; `gradlab.per_sample_input_grad(model, X)` "
        "makes that choice itself and refuses the sum on a coupling model. Inside training, fitting the gradients "
        f"too (Sobolev) {'lowered' if q.raw(s, 'sobolev.sobolev_lowers_grad_rmse') else 'did not lower'} the "
        f"held-out gradient error: {q(s, 'sobolev.value_only.grad_rmse', '.3g')} -> "
        f"{q(s, 'sobolev.with_grad.grad_rmse', '.3g')}."
    )
    return Section(
        stage=s,
        title="Per-sample gradients of a network with respect to its inputs",
        question="How do I get the gradient of a network's output with respect to each input of a batch, "
        "inside a training loop?",
        answer=answer,
        evidence=evidence,
        figures=["figures/batchnorm.png", "figures/timing.png", "figures/sobolev.png"],
        caveats=[
            "`loop` and `jacrev` are capped at large N (their cost grows like N^2 in time or memory); "
            "see results/input_grad/timings.csv.",
            "Timings and peak memory (torch allocator, via the profiler) are in timings.csv, not in metrics.json, "
            "and vary with machine load.",
        ],
    )
