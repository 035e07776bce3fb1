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
from typing import Any

import numpy as np
import torch

from gradlab.numerics import torch_threads
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
    final = _matrix_spearman(spec, v2, f2)
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
        "state": {"theta": theta.detach().clone()},
    }


def _matrix_spearman(spec: MatrixSpec, v: torch.Tensor, freq_m: torch.Tensor) -> float:
    """The referee's spearmanr of the lists derived from the matrices ``v`` and ``freq_m``."""
    custom = spec.params.custom if spec.derivation == "custom" else ""
    return methods.spearman(*Derivation(spec.derivation, custom=custom)(v, freq_m))


def _heldout_spearman(spec: LtrSpec, theta: torch.Tensor) -> float:
    """spearmanr of the network's scores and the targets on the task's held-out rows (the trial's own data)."""
    p = spec.params
    data = ltr.make_data(spec.task, spec.seed, p.n_train, p.n_test, p.features)
    with torch.no_grad():
        return methods.spearman(ltr.forward(theta, data.x_test, p.hidden).numpy(), data.y_test.numpy())


def dataset(spec: LtrSpec) -> tuple[str, str, torch.Tensor, torch.Tensor]:
    """A learning-to-rank trial's training data as ``(name, the call that makes it, x, y)``, for its run's Datasets."""
    p = spec.params
    data = ltr.make_data(spec.task, spec.seed, p.n_train, p.n_test, p.features)
    call = f"make_data({spec.task!r}, seed={spec.seed}, n_train={p.n_train}, n_test={p.n_test}, features={p.features})"
    return f"spearman_ltr_{spec.task}", f"gradlab.studies.spearman.ltr.{call}", data.x_train, data.y_train


def trained_state(spec: MatrixSpec | LtrSpec, r: dict) -> dict[str, torch.Tensor]:
    """What a trial trained, as tensors: the matrices ``v``, ``freq_m`` (a matrix trial), or ``theta`` (learning to
    rank: the network's flat parameters; taken out of ``r``, which the stage does not need it in)."""
    if isinstance(spec, MatrixSpec):
        return {"v": torch.from_numpy(r["v"]), "freq_m": torch.from_numpy(r["freq_m"])}
    return r.pop("state")


def evaluation(spec: MatrixSpec | LtrSpec, r: dict) -> dict[str, float]:
    """The logged score that :func:`reevaluate` computes again from the trained state."""
    key = "final_spearman" if isinstance(spec, MatrixSpec) else "heldout_spearman"
    return {key: r[key]}


def spec_json(spec: MatrixSpec | LtrSpec) -> dict[str, Any]:
    """``spec`` as plain data (``model.json``); :func:`spec_from_json` reads it back."""
    kind = "matrix" if isinstance(spec, MatrixSpec) else "ltr"
    plain = {k: v for k, v in vars(spec).items() if k != "params"}
    return plain | {"kind": kind, "params": spec.params.model_dump()}


def spec_from_json(data: dict[str, Any]) -> MatrixSpec | LtrSpec:
    rest = {k: v for k, v in data.items() if k not in ("kind", "params")}
    if data["kind"] == "matrix":
        return MatrixSpec(**rest, params=Matrix(**data["params"]))
    return LtrSpec(**rest, params=Ltr(**data["params"]))


def load_logged(run_id: str, tracking_uri: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """A trial's trained state (``v``/``freq_m`` or ``theta``), from its MLflow child run, and its ``model.json``."""
    from gradlab.models import load_model

    return load_model(run_id, tracking_uri)


def reevaluate(run_id: str, tracking_uri: str | None = None) -> tuple[dict, dict]:
    """The logged state's score computed again (the trial's derivation, or its task's held-out data) and the logged
    one: equal."""
    state, meta = load_logged(run_id, tracking_uri)
    spec = spec_from_json(meta["spec"])
    with _one_blas_thread(), torch_threads(1):
        if isinstance(spec, MatrixSpec):
            return {"final_spearman": _matrix_spearman(spec, state["v"], state["freq_m"])}, meta["evaluation"]
        return {"heldout_spearman": _heldout_spearman(spec, state["theta"])}, meta["evaluation"]
