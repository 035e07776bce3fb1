"""One trial of the spearman study: one method on one list length n from one seed.

A :class:`TrialSpec` is frozen data and :func:`run_trial` returns plain data (the final matrices as
numpy arrays): the study runs the trials on worker processes (gradlab.parallel.map_trials).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from gradlab.studies.spearman.analysis import best_so_far
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.derivation import Derivation, init_matrices
from gradlab.studies.spearman.methods import Referee, hill_climb, nelder_mead, spearman

GRADIENT = ("pearson", "soft_rank")


@dataclass(frozen=True)
class TrialSpec:
    method: str  # hill_climb, hill_climb_tuned, scipy, pearson or soft_rank
    n: int
    seed: int
    params: SpearmanParams  # the stage's parameters (the method's own section among them)


def skip_reason(p: SpearmanParams, method: str, n: int) -> str | None:
    limit = getattr(p, method).max_n
    if n <= limit:
        return None
    why = {
        "hill_climb": "one entry per evaluation: the budget cannot reorder this many entries",
        "hill_climb_tuned": "one entry per evaluation: the budget cannot reorder this many entries",
        "scipy": f"the Nelder-Mead simplex holds {13 * n + 1} x {13 * n} floats "
        f"({8 * 13 * n * (13 * n + 1) / 2**30:.2g} GiB) and each iteration costs O((13 n)^2) operations",
    }.get(method, "beyond max_n")
    return f"n > {method}.max_n = {limit}: {why}"


def run_trial(spec: TrialSpec) -> dict:
    """One method on one (n, seed): plain data in, plain data out (runs in a worker process)."""
    torch.set_num_threads(1)
    method, n, seed, p = spec.method, spec.n, spec.seed, spec.params
    derivation = Derivation(p.derivation.list1, p.derivation.list2)
    v, freq_m = init_matrices(n, seed)
    referee = Referee(derivation, target=p.target)
    surrogate: list[float] = []
    start = time.perf_counter()
    if method in ("hill_climb", "hill_climb_tuned"):
        h = getattr(p, method)
        v, freq_m = hill_climb(v, freq_m, referee, h.max_evals, h.delta, h.accept, seed, p.stop_at)
    elif method == "scipy":
        v, freq_m = nelder_mead(v, freq_m, referee, p.scipy.max_evals, p.stop_at)
    else:
        from gradlab.studies.spearman.module import CorrelationAscent

        g = getattr(p, method)
        strength = g.regularization_strength if method == "soft_rank" else 1.0  # pearson has none
        module = CorrelationAscent(v, freq_m, derivation, referee, method, g.lr, strength, p.stop_at, g.optimizer)
        v, freq_m = module.fit(g.max_steps)
        surrogate = module.surrogate
    seconds = time.perf_counter() - start
    with torch.no_grad():
        list1, list2 = derivation(v, freq_m)
    evals, best = best_so_far(referee.rhos)
    return {
        "method": method,
        "n": n,
        "seed": seed,
        "final_spearman": spearman(list1, list2),
        "evaluations": referee.evals,
        "seconds": seconds,
        "evals_to_099": referee.evals_to_target,
        "seconds_to_099": referee.seconds_to_target,
        "initial_spearman": referee.rhos[0],
        "best_evals": evals,
        "best_spearman": best,
        "rhos": referee.rhos if method in GRADIENT else [],
        "surrogate": surrogate,
        "v": v.numpy(),
        "freq_m": freq_m.numpy(),
        "list1": list1.numpy(),
        "list2": list2.numpy(),
    }
