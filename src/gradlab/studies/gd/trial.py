"""One training run of the gd study: an update rule at one step size on one problem, from one seed.

A :class:`TrialSpec` is plain, frozen data; :func:`run_trial` rebuilds the problem from it
(every problem is made from its own seeded generator) and returns plain data, so a trial can
run anywhere: in the stage's process, a worker, a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradlab.studies.gd.config import Mlp, Quadratic, Sharpness
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
