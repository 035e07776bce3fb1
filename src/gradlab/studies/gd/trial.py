"""One training run of the gd study: an update rule at one step size on one problem, from one seed.

A :class:`TrialSpec` is plain, frozen data; :func:`run_trial` rebuilds the problem from it
(every problem is made from its own seeded generator) and returns plain data, so a trial can
run anywhere: in the stage's process, a worker, a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradlab.studies.gd.config import Mlp, MlpThreshold, Quadratic, Sharpness
from gradlab.studies.gd.module import FullBatchRegression, SharpnessProbe
from gradlab.studies.gd.problems import make_mlp, make_mlp_data, make_quadratic


@dataclass(frozen=True)
class TrialSpec:
    rule: str  # gradient, scalar, sign or random
    lr: float
    steps: int
    seed: int  # the network's initialisation; the random rule's draws
    problem: Quadratic | Mlp  # least squares (a linear model from w0) or the ReLU network
    data_seed: int
    sharpness: Sharpness | None = None  # probe the top Hessian eigenvalue every sharpness.every steps


def run_trial(spec: TrialSpec) -> dict:
    """``losses``: before each step and after the last; ``sharpness_steps`` / ``sharpness`` when probed."""
    net: torch.nn.Module  # a linear model (the quadratic) or the ReLU network
    if isinstance(spec.problem, Quadratic):
        q = spec.problem
        problem = make_quadratic(q.n, q.d, q.condition_number, q.noise, spec.data_seed)
        net = torch.nn.Linear(q.d, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            net.weight.copy_(problem.w0.unsqueeze(0))
        x, y = problem.X, problem.y.unsqueeze(1)
    else:
        x, y = make_mlp_data(spec.problem.n, spec.data_seed)
        net = make_mlp(spec.problem.hidden, spec.seed)
    s = spec.sharpness
    probe = SharpnessProbe(s.every, s.power_iters, seed=spec.seed) if s else None
    module = FullBatchRegression(net, x, y, spec.rule, spec.lr, seed=spec.seed)
    losses = module.fit(spec.steps, callbacks=[probe] if probe else [])
    return {
        "losses": losses,
        "sharpness_steps": probe.steps if probe else [],
        "sharpness": probe.values if probe else [],
    }


@dataclass(frozen=True)
class ThresholdSpec:
    """One network initialisation: its sharpness at initialisation and its divergence lr by bisection."""

    seed: int
    problem: Mlp
    data_seed: int
    threshold: MlpThreshold


def run_threshold(spec: ThresholdSpec) -> dict:
    """``lambda0`` (top Hessian eigenvalue at initialisation) and the bisection of :func:`bisect_log`, where a
    probe diverged by the stage's definition (:func:`analysis.diverged` of ``mlp.steps`` steps of gradient descent
    from this initialisation, trained as the grid's trials are)."""
    from gradlab.studies.gd.analysis import diverged
    from gradlab.studies.gd.sharpness import top_hessian_eigenvalue
    from gradlab.studies.gd.threshold import bisect_log, mlp_gd_losses

    t, m = spec.threshold, spec.problem
    x, y = make_mlp_data(m.n, spec.data_seed)
    net = make_mlp(m.hidden, spec.seed)

    def loss():
        r = net(x) - y
        return (r * r).mean()

    lambda0 = top_hessian_eigenvalue(loss, list(net.parameters()), t.power_iters, spec.seed)
    found = bisect_log(
        lambda lr: diverged(mlp_gd_losses(make_mlp(m.hidden, spec.seed), x, y, lr, m.steps, spec.seed)),
        t.lo,
        t.hi,
        t.rel_tol,
    )
    return {"lambda0": lambda0, **found}


def run_any(spec: TrialSpec | ThresholdSpec) -> dict:
    """The stage's worker function: a training trial or a threshold bisection (one pool runs both)."""
    return run_threshold(spec) if isinstance(spec, ThresholdSpec) else run_trial(spec)
