"""One trial of the spearman study: plain data in (a frozen spec), plain data out (run on worker processes).

* :class:`MatrixSpec`: one optimiser on the question's matrices, one list derivation, one seed, under
  the equal budget of evaluations (methods.py).
* :class:`LtrSpec`: one training objective (or derivative-free optimiser) on one learning-to-rank
  task and seed, scored by scipy's spearmanr on held-out data (ltr.py).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import numpy as np
import torch

from gradlab.studies.spearman import ltr, methods
from gradlab.studies.spearman.config import Ltr, Matrix
from gradlab.studies.spearman.derivation import Derivation, init_matrices


@dataclass(frozen=True)
class MatrixSpec:
    derivation: str  # a rule of derivation.py, or "custom"
    method: str
    seed: int
    params: Matrix


@dataclass(frozen=True)
class LtrSpec:
    task: str
    method: str
    seed: int
    knob: float  # soft_rank: strength; neuralsort: tau; else 0
    label: str  # the method's name in the results (soft_rank_s0p3 for a sweep point)
    params: Ltr


def _one_blas_thread():
    """numpy's BLAS on one thread: two BLAS threads per trial on a shared 2-core machine made CMA-ES's
    260 x 260 eigendecomposition 25x slower (0.8 s instead of 0.03 s, measured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: leave BLAS as it is
        return contextlib.nullcontext()
    return threadpool_limits(1)


def run_trial(spec: MatrixSpec | LtrSpec) -> dict:
    torch.set_num_threads(1)
    if spec.method == "cma":
        import cma  # noqa: F401 - imported before the trial's CPU clock starts (seconds on a cold disk)
    with _one_blas_thread():
        return run_matrix(spec) if isinstance(spec, MatrixSpec) else run_ltr(spec)


def run_matrix(spec: MatrixSpec) -> dict:
    p = spec.params
    derivation = Derivation(spec.derivation, custom=p.custom if spec.derivation == "custom" else "")
    v, freq_m = init_matrices(p.n, spec.seed)
    referee = methods.Referee(
        derivation, target=p.target, budget=p.budget, backward_cost=p.backward_cost, stop_at=p.stop_at
    )
    start, wall_start = time.process_time(), time.perf_counter()  # recorded only, never a budget
    m = spec.method
    if m == "hill_climb":
        out = methods.hill_climb(v, freq_m, referee, p.delta, spec.seed)
    elif m == "random_search":
        out = methods.random_search(v, freq_m, referee, p.sigma, spec.seed)
    elif m == "cma":
        out = methods.cma_es(v, freq_m, referee, p.cma_sigma0, spec.seed)
    elif m == "nelder_mead":
        out = methods.nelder_mead(v, freq_m, referee, p.sigma)
    else:
        out = methods.gradient_ascent(v, freq_m, referee, m, p.lr, p.strength)
    seconds, wall = time.process_time() - start, time.perf_counter() - wall_start
    v2, f2, accepted = out
    final = methods.spearman(*derivation(v2, f2))
    return {
        "derivation": spec.derivation,
        "method": m,
        "seed": spec.seed,
        "initial_spearman": referee.rhos[0],
        "final_spearman": final,
        "evaluations": referee.evals,
        # a gradient step derives the lists twice (once judged, once through the surrogate for backward)
        "forward": referee.evals + referee.backward,
        "backward": referee.backward,
        "units": referee.units,
        "seconds": seconds,  # CPU seconds of the trial (one thread): matrix_runs.csv only
        "wall_seconds": wall,
        "evals_to_target": referee.evals_to_target,
        "units_to_target": referee.units_to_target,
        "accepted": accepted if m in ("hill_climb", "random_search") else None,
        "curve": np.asarray(referee.curve(methods.anytime_grid(p.budget)), dtype=np.float64),
        "v": v2.numpy(),
        "freq_m": f2.numpy(),
    }


def run_ltr(spec: LtrSpec) -> dict:
    p = spec.params
    data = ltr.make_data(spec.task, spec.seed, p.n_train, p.n_test, p.features)
    theta0 = ltr.init_params(p.features, p.hidden, spec.seed)
    start, wall_start = time.process_time(), time.perf_counter()
    if spec.method in ltr.GRADIENT:
        grid = methods.anytime_grid(p.steps)
        theta, fwd, bwd, by_step = ltr.train_gradient(
            spec.method, data, theta0, p.hidden, p.steps, p.lr, spec.knob, record=grid
        )
        curve = [by_step[g] for g in grid]  # training spearmanr after g Adam steps
    else:
        grid = methods.anytime_grid(p.dfo_evaluations)
        theta, fwd, bwd, history = ltr.train_derivative_free(
            spec.method, data, theta0, p.hidden, p.dfo_evaluations, spec.seed, p.sigma
        )
        curve = methods.best_so_far(range(1, len(history) + 1), history, grid)  # best training spearmanr
    seconds, wall = time.process_time() - start, time.perf_counter() - wall_start
    with torch.no_grad():
        pred = ltr.forward(theta, data.x_test, p.hidden).numpy()
        pred_train = ltr.forward(theta, data.x_train, p.hidden)
    return {
        "task": spec.task,
        "method": spec.method,
        "label": spec.label,
        "knob": spec.knob,
        "seed": spec.seed,
        "heldout_spearman": methods.spearman(pred, data.y_test.numpy()),
        "train_spearman": methods.spearman(pred_train, data.y_train),
        "oracle_spearman": methods.spearman(data.z_test, data.y_test),
        "forward": fwd,
        "backward": bwd,
        "seconds": seconds,  # CPU seconds of the trial (one thread): ltr_runs.csv only, never a budget
        "wall_seconds": wall,
        "curve": np.asarray(curve, dtype=np.float64),
        "pred": pred.astype(np.float64),
        "target": data.y_test.numpy().astype(np.float64),
    }
