"""spearman: soft_rank forward + backward vs torch.sort forward + backward (same input, same upstream gradient),
and the matrix problem's cost rule (a gradient step against an evaluation).

Target (issue 5): at most 5x torch.sort at n = 10^5. Measured twice: with torch's default
intra-op threads, and with one thread (what the stage's trial workers use).

Cost rule (issue 24): the matrix budget is a count in which an evaluation costs 1 unit and a gradient
step (an evaluation and a backward pass) 1 + ``backward_cost`` = 2. ``gradient_step_vs_evaluation_*``
is the CPU time of one gradient step over that of one evaluation (one thread, as in the trials): a
ratio near 2 means the rule matches this machine; soft_rank steps cost more (its projection).
"""

from __future__ import annotations

import torch
from harness import compare

from gradlab.studies.spearman import Derivation, init_matrices, soft_rank
from gradlab.studies.spearman import methods as M

STEPS = 100  # gradient steps (and evaluations) per timed call


def run() -> dict:
    out = {}
    default_threads = torch.get_num_threads()
    try:
        for threads in (default_threads, 1):
            torch.set_num_threads(threads)
            suffix = "" if threads == default_threads else "_1thread"
            out.update({f"{k}{suffix}": v | {"threads": threads} for k, v in _compare_all().items()})
        torch.set_num_threads(1)
        out.update(_cost_rule())
    finally:
        torch.set_num_threads(default_threads)
    return out


def _cost_rule() -> dict:
    """One gradient step vs one evaluation, per derivation and objective (matrices of the question's n = 20)."""
    out = {}
    v, freq_m = init_matrices(20, seed=0)
    for name in ("linear", "threshold_count"):
        derivation = Derivation(name)

        def evaluations(derivation=derivation):
            ref = M.Referee(derivation)
            for _ in range(STEPS):
                ref.evaluate(v, freq_m)

        for objective in ("pearson", "soft_rank"):

            def steps(derivation=derivation, objective=objective):
                ref = M.Referee(derivation, budget=2 * STEPS, stop_at=2.0)  # never stops on the target
                M.gradient_ascent(v, freq_m, ref, objective, lr=1e-4, strength=3.0)  # a tiny lr: no early stop

            key = f"gradient_step_vs_evaluation_{objective}_{name}"
            out[key] = {**compare(steps, evaluations, rounds=5), "target": "(cost rule: 2)", "threads": 1}
    return out


def _compare_all() -> dict:
    out = {}
    g = torch.Generator().manual_seed(0)
    for n in (1_000, 10_000, 100_000):
        x = torch.randn(n, generator=g).requires_grad_(True)
        upstream = torch.randn(n, generator=g)

        def soft(x=x, upstream=upstream):
            x.grad = None
            (soft_rank(x, 1.0) * upstream).sum().backward()

        def sort(x=x, upstream=upstream):
            x.grad = None
            (torch.sort(x).values * upstream).sum().backward()

        target = "(target <= 5)" if n == 100_000 else "(no target)"
        out[f"soft_rank_vs_torch_sort_fwd_bwd_n{n}"] = {**compare(soft, sort, rounds=15, warmup=2), "target": target}
    return out
