"""One trial of the input_grad study: Sobolev training of one network from one seed, one variant.

The agreement, BatchNorm and timing checks run once in the stage's process (study.py); the
training runs, several seeds of two variants, are these trials, run on worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradlab.studies.input_grad.module import SobolevRegression, rmse
from gradlab.studies.input_grad.problems import make_points, make_smooth_mlp

VARIANTS = {"value_only": 0.0, "with_grad": None}  # None: params.sobolev.grad_weight


@dataclass(frozen=True)
class TrialSpec:
    variant: str  # value_only or with_grad
    seed: int
    grad_weight: float  # weight of the input-gradient term of the loss (0: values only)
    n_train: int
    n_test: int
    hidden: int
    steps: int
    lr: float
    method: str  # the per-sample input gradient method used in the loss
    eval_every: int


def run_trial(t: TrialSpec) -> dict:
    """One Sobolev trial (picklable, runs in a worker): train, return curves and held-out RMSEs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic in a worker and in-process: deterministic
    try:
        g = torch.Generator().manual_seed(10_000 + t.seed)
        X, X_test = make_points(t.n_train, g), make_points(t.n_test, g)
        module = SobolevRegression(
            make_smooth_mlp(t.hidden, t.seed), X, X_test, t.grad_weight, t.lr, t.method, t.eval_every
        )
        module.fit(t.steps)
        value, gradient = rmse(module.net, X_test, "sum")
        train_value, train_gradient = rmse(module.net, X, "sum")
    finally:
        torch.set_num_threads(threads)
    return {
        "losses": module.losses,
        "eval_steps": module.eval_steps,
        "eval_value_rmse": module.eval_value_rmse,
        "eval_grad_rmse": module.eval_grad_rmse,
        "value_rmse": value,
        "grad_rmse": gradient,
        "train_value_rmse": train_value,
        "train_grad_rmse": train_gradient,
    }
