"""One training run of the gd study: an update rule at one step size on one problem, from one seed.

A :class:`TrialSpec` is plain, frozen data; :func:`run_trial` rebuilds the problem from it
(every problem is made from its own seeded generator) and returns plain data, so a trial can
run anywhere: in the stage's process, a worker, a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gradlab.numerics import torch_threads
from gradlab.stats import finite_or_none
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


def _build(spec: TrialSpec) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The trial's model at its start, and its data ``(X, y)`` (each from its own seeded generator)."""
    net: torch.nn.Module  # a linear model (the quadratic) or the ReLU network
    if isinstance(spec.problem, Quadratic):
        q = spec.problem
        problem = make_quadratic(q.n, q.d, q.condition_number, q.noise, spec.data_seed)
        net = torch.nn.Linear(q.d, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            net.weight.copy_(problem.w0.unsqueeze(0))
        return net, problem.X, problem.y.unsqueeze(1)
    x, y = make_mlp_data(spec.problem.n, spec.data_seed)
    return make_mlp(spec.problem.hidden, spec.seed), x, y


def dataset(spec: TrialSpec) -> tuple[str, str, torch.Tensor, torch.Tensor]:
    """The trial's training data as ``(name, the call that makes it, X, y)``, for its run's Datasets."""
    _, x, y = _build(spec)
    q = spec.problem
    if isinstance(q, Quadratic):
        call = f"make_quadratic(n={q.n}, d={q.d}, condition_number={q.condition_number}, noise={q.noise}"
        return "gd_quadratic", f"gradlab.studies.gd.problems.{call}, seed={spec.data_seed})", x, y
    return "gd_mlp", f"gradlab.studies.gd.problems.make_mlp_data(n={q.n}, seed={spec.data_seed})", x, y


def run_trial(spec: TrialSpec) -> dict:
    """``losses``: before each step and after the last; ``sharpness_steps`` / ``sharpness`` when probed; ``state``:
    the trained model's state dict (logged to the child run: :func:`load_logged`)."""
    net, x, y = _build(spec)
    s = spec.sharpness
    probe = SharpnessProbe(s.every, s.power_iters, seed=spec.seed) if s else None
    module = FullBatchRegression(net, x, y, spec.rule, spec.lr, seed=spec.seed)
    losses = module.fit(spec.steps, callbacks=[probe] if probe else [])
    return {
        "losses": losses,
        "sharpness_steps": probe.steps if probe else [],
        "sharpness": probe.values if probe else [],
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
    }


def spec_json(spec: TrialSpec) -> dict[str, Any]:
    """``spec`` as plain data (``model.json``); :func:`spec_from_json` reads it back."""
    kind = "quadratic" if isinstance(spec.problem, Quadratic) else "mlp"
    plain = {k: getattr(spec, k) for k in ("rule", "lr", "steps", "seed", "data_seed")}
    sharpness = spec.sharpness.model_dump() if spec.sharpness else None
    return plain | {"problem": {"kind": kind, **spec.problem.model_dump()}, "sharpness": sharpness}


def spec_from_json(data: dict[str, Any]) -> TrialSpec:
    problem = dict(data["problem"])
    kind = problem.pop("kind")
    sharpness = Sharpness(**data["sharpness"]) if data["sharpness"] else None
    rest = {k: v for k, v in data.items() if k not in ("problem", "sharpness")}
    made = Quadratic(**problem) if kind == "quadratic" else Mlp(**problem)
    return TrialSpec(**rest, problem=made, sharpness=sharpness)


def final_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The full-batch loss mean((net(X) - y)^2), as the trial's last ``losses`` entry computes it."""
    with torch.no_grad(), torch_threads(1):
        return float(FullBatchRegression(net, x, y, "gradient", 0.0).full_loss())


def _logged(run_id: str, tracking_uri: str | None) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, dict]:
    """A logged trial rebuilt once: its model with the logged weights, its data ``(X, y)``, its ``model.json``."""
    from gradlab.models import load_model

    state, meta = load_model(run_id, tracking_uri)
    net, x, y = _build(spec_from_json(meta["spec"]))
    net.load_state_dict(state)
    return net, x, y, meta


def load_logged(run_id: str, tracking_uri: str | None = None) -> tuple[torch.nn.Module, dict]:
    """A trial's trained model, from its MLflow child run, and its ``model.json`` (the spec and the logged loss)."""
    net, _, _, meta = _logged(run_id, tracking_uri)
    return net, meta


def reevaluate(run_id: str, tracking_uri: str | None = None) -> tuple[dict, dict]:
    """The logged model's final loss on the trial's own data, computed again, and the logged one: equal (None where
    the run diverged: not finite)."""
    net, x, y, meta = _logged(run_id, tracking_uri)
    return {"final_loss": finite_or_none(final_loss(net, x, y))}, meta["evaluation"]


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
