"""One trial of the input_grad study: Sobolev training of one network from one seed, one variant.

The agreement, BatchNorm and timing checks run once in the stage's process (study.py); the
training runs, several seeds of two variants, are these trials, run on worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gradlab.numerics import torch_threads
from gradlab.studies.input_grad.module import SobolevRegression, rmse
from gradlab.studies.input_grad.problems import make_points, make_smooth_mlp, target, target_grad

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


def points(t: TrialSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The trial's training and held-out points (its own generator: the same in any process)."""
    g = torch.Generator().manual_seed(10_000 + t.seed)
    return make_points(t.n_train, g), make_points(t.n_test, g)


def dataset(t: TrialSpec) -> tuple[str, str, torch.Tensor, torch.Tensor]:
    """The trial's training data as ``(name, the call that makes it, X, [f(X), grad f(X)])``, for its run's Datasets."""
    X, _ = points(t)
    g = f"torch.Generator().manual_seed({10_000 + t.seed})"
    source = f"gradlab.studies.input_grad.problems.make_points({t.n_train}, {g}) (its first draw)"
    return "input_grad_points", source, X, torch.cat([target(X).unsqueeze(1), target_grad(X)], dim=1)


def run_trial(t: TrialSpec) -> dict:
    """One Sobolev trial (picklable, runs in a worker): train, return curves, held-out RMSEs and the network."""
    with torch_threads(1):  # the same arithmetic in a worker and in-process: deterministic
        X, X_test = points(t)
        module = SobolevRegression(
            make_smooth_mlp(t.hidden, t.seed), X, X_test, t.grad_weight, t.lr, t.method, t.eval_every
        )
        module.fit(t.steps)
        value, gradient = rmse(module.net, X_test, "sum")
        train_value, train_gradient = rmse(module.net, X, "sum")
    return {
        "state": {k: v.detach().clone() for k, v in module.net.state_dict().items()},
        "losses": module.losses,
        "eval_steps": module.eval_steps,
        "eval_value_rmse": module.eval_value_rmse,
        "eval_grad_rmse": module.eval_grad_rmse,
        "value_rmse": value,
        "grad_rmse": gradient,
        "train_value_rmse": train_value,
        "train_grad_rmse": train_gradient,
    }


def load_logged(run_id: str, tracking_uri: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A Sobolev trial's trained network, from its MLflow child run, and its ``model.json`` (the trial's spec and
    the held-out RMSEs it logged)."""
    from gradlab.models import load_model

    state, meta = load_model(run_id, tracking_uri)
    spec = meta["spec"]
    net = make_smooth_mlp(spec["hidden"], spec["seed"])
    net.load_state_dict(state)
    return net, meta


def reevaluate(run_id: str, tracking_uri: str | None = None) -> tuple[dict, dict]:
    """The logged network's held-out RMSEs computed again (the trial's own test points) and the logged ones: equal."""
    net, meta = load_logged(run_id, tracking_uri)
    _, X_test = points(TrialSpec(**meta["spec"]))
    with torch_threads(1):  # as in run_trial
        value, gradient = rmse(net, X_test, "sum")
    return {"value_rmse": value, "grad_rmse": gradient}, meta["evaluation"]
