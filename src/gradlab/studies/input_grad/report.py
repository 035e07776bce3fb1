"""Report section: input_grad."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.section import Section
from gradlab.stats import verdict_word


def _signed(v: int) -> str:
    return f"{v:+d}" if v else "0"


def _spread(q: Quotes, s: str, key: str, fmt: str = ".3g") -> str:
    """``mean (95 % CI low to high)`` from 10 seeds up; fewer: ``mean (per seed: a, b, ...)``, each quoted."""
    if q.raw(s, f"{key}_ci_low") is None:
        n = len(q.raw(s, f"{key}_per_seed"))
        return f"{q(s, key, fmt)} (per seed: {', '.join(q(s, f'{key}_per_seed.{i}', fmt) for i in range(n))})"
    return f"{q(s, key, fmt)} (95 % CI {q(s, f'{key}_ci_low', fmt)} to {q(s, f'{key}_ci_high', fmt)})"


def _paired(q: Quotes, s: str, key: str, flag: str) -> str:
    """The exact paired test of one held-out RMSE, its smallest attainable p and the verdict from its flag."""
    r = f"sobolev.{key}_ratio"
    v = int(q.raw(s, f"flags.{flag}"))
    return (
        f"lower with gradients in {q(s, f'{r}.seeds_lowered', 'd')} of {q(s, 'sobolev.seeds', 'd')} seeds, exact "
        f"sign-flip test over the paired seeds p = {q(s, f'{r}.sign_flip_p', '.3g')} (the smallest p these seeds "
        f"allow: {q(s, f'{r}.sign_flip_p_min', '.3g')}): "
        f"lowered by the gradient term: {verdict_word(v, 'yes', 'no, raised')} (`flags.{flag}` = {_signed(v)})"
        + _floor(q, s, r)
    )


def _floor(q: Quotes, s: str, r: str) -> str:
    """Where the seeds cannot reach p < 0.05 at all: say so, with the seed count the test needs (quoted)."""
    if q.raw(s, f"{r}.sign_flip_reachable"):
        return ""
    return (
        f": {q(s, 'sobolev.seeds', 'd')} seeds cannot reach p < 0.05 (smallest attainable p "
        f"{q(s, f'{r}.sign_flip_p_min', '.3g')}; this test needs at least {q(s, 'sobolev.seeds_needed', 'd')})"
    )


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
        f"Sobolev training ({q(s, 'sobolev.seeds', 'd')} seeds, each seed's data and initialisation shared by both "
        f"variants): held-out gradient RMSE {_spread(q, s, 'sobolev.value_only.grad_rmse')} from values only vs "
        f"{_spread(q, s, 'sobolev.with_grad.grad_rmse')} with gradients, "
        f"{_paired(q, s, 'grad_rmse', 'sobolev_lowers_grad_rmse')}; held-out value RMSE "
        f"{_spread(q, s, 'sobolev.value_only.value_rmse')} vs {_spread(q, s, 'sobolev.with_grad.value_rmse')}, "
        f"{_paired(q, s, 'value_rmse', 'sobolev_lowers_value_rmse')}.",
    ]
    evidence.append(
        "Cost: wall-clock time and peak allocator memory per call, against N, are in `timings.csv` and "
        "`figures/timing.png`; they depend on the machine and its load, so they are not quoted here."
    )
    sobolev = {
        1: "lowered the held-out gradient error",
        -1: "raised the held-out gradient error",
        0: "left it inconclusive whether the held-out gradient error is lower",
    }
    answer = (
        "Differentiate `pred.sum()` (or pass `grad_outputs=ones`): when samples do not interact, output i depends "
        "only on input i, so the gradient of the sum is exactly the per-sample gradient (all methods agree to "
        f"{q(s, 'agreement.sum.max_abs_diff', '.2g')}). It is wrong when samples interact: with BatchNorm in "
        f"training mode it is off by up to {q(s, 'batchnorm.train_sum_trick_max_abs_diff', '.3g')}; use "
        "`torch.func.vmap(grad(...))` over per-sample lanes, or eval mode; `gradlab.per_sample_input_grad(model, X)` "
        "makes that choice itself and refuses the sum on a coupling model. Inside training, fitting the gradients "
        f"too (Sobolev) {sobolev[int(q.raw(s, 'flags.sobolev_lowers_grad_rmse'))]}: "
        f"{q(s, 'sobolev.value_only.grad_rmse', '.3g')} -> {q(s, 'sobolev.with_grad.grad_rmse', '.3g')} (mean over "
        f"{q(s, 'sobolev.seeds', 'd')} paired seeds, exact sign-flip p = "
        f"{q(s, 'sobolev.grad_rmse_ratio.sign_flip_p', '.3g')})."
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
