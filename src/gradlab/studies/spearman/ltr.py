"""Learning to rank with held-out evaluation: a task where the rank objective can matter.

Data (seeded, one draw per seed): features x in R^d, half of them skewed (Exponential(1) - 1), half
uniform (unit variance), so least squares does not recover the ranking direction for free (it
would for Gaussian features and a single-index target). A latent score z = x . w / ||w|| with w ~
N(0, I). Targets, monotone in z but not linear:

* ``nonlinear``: y = exp(2 z) + 0.5 eps, eps ~ N(0, 1) (a strongly convex link plus noise);
* ``heavy_tail``: y = z + 0.5 t, t ~ Student-t with 1 degree of freedom (Cauchy: outliers).

Model: an MLP d -> hidden (tanh) -> 1 with parameters in one flat vector (so the derivative-free
optimisers see the same model). Every method starts from the same initialisation and data for a
seed (paired comparisons). Gradient methods: Adam on the whole training set for ``steps`` steps,
one forward and one backward pass per step. Objectives (minimised):

* ``mse``: mean squared error to the standardised targets;
* ``pearson``: -pearson(f, y);
* ``soft_rank``: -soft_spearman(f, y, strength) (this project's soft ranks, strength in rank positions);
* ``neuralsort``: -pearson(neuralsort_rank(f, tau), rank(y));
* ``ranknet``: the pairwise logistic loss.

Derivative-free (on the training spearmanr itself, the quantity to maximise): ``cma``,
``random_search`` ((1+1), all parameters perturbed, step sigma), ``nelder_mead`` (initial simplex of
edge sigma); each gets ``dfo_evaluations`` evaluations (a forward pass over the training set and a
spearmanr each), a count, so that the result does not depend on the machine's speed. The score of
every method: scipy's spearmanr on the held-out set.

Anytime curves: the derivative-free methods record the best training spearmanr so far after each
evaluation; the gradient methods, for reference, the training spearmanr after chosen step counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize
from scipy.stats import rankdata

from gradlab.studies.spearman.methods import _Stop, simplex, spearman
from gradlab.studies.spearman.ranking import neuralsort_rank, ranknet_loss
from gradlab.studies.spearman.softrank import pearson, soft_spearman

TASKS = ("nonlinear", "heavy_tail")
GRADIENT = ("mse", "pearson", "soft_rank", "neuralsort", "ranknet")
DERIVATIVE_FREE = ("cma", "random_search", "nelder_mead")


@dataclass(frozen=True)
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    z_test: torch.Tensor  # the noiseless latent score: the oracle ranking


def make_data(task: str, seed: int, n_train: int, n_test: int, features: int) -> Data:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    rng = np.random.default_rng([seed, TASKS.index(task)])
    half = features // 2
    w = rng.standard_normal(features)
    w /= np.linalg.norm(w)

    def draw(m):
        x = np.concatenate(
            [rng.exponential(1.0, (m, half)) - 1.0, rng.uniform(-math.sqrt(3), math.sqrt(3), (m, features - half))],
            axis=1,
        )
        z = x @ w
        if task == "nonlinear":
            y = np.exp(2.0 * z) + 0.5 * rng.standard_normal(m)
        else:
            y = z + 0.5 * rng.standard_t(1.0, m)
        return x, y, z

    xa, ya, _ = draw(n_train)
    xb, yb, zb = draw(n_test)
    t = torch.from_numpy
    return Data(t(xa), t(ya), t(xb), t(yb), t(zb))


def n_params(features: int, hidden: int) -> int:
    return features * hidden + hidden + hidden + 1


def init_params(features: int, hidden: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(10_000 + seed)
    w1 = torch.randn(features * hidden, generator=g, dtype=torch.float64) / math.sqrt(features)
    w2 = torch.randn(hidden, generator=g, dtype=torch.float64) / math.sqrt(hidden)
    return torch.cat([w1, torch.zeros(hidden, dtype=torch.float64), w2, torch.zeros(1, dtype=torch.float64)])


def forward(theta: torch.Tensor, x: torch.Tensor, hidden: int) -> torch.Tensor:
    """The MLP's scores for rows of x, parameters read from the flat vector theta."""
    d = x.shape[1]
    w1 = theta[: d * hidden].view(d, hidden)
    b1 = theta[d * hidden : d * hidden + hidden]
    w2 = theta[d * hidden + hidden : d * hidden + 2 * hidden]
    b2 = theta[-1]
    return torch.tanh(x @ w1 + b1) @ w2 + b2


def loss_fn(method: str, pred: torch.Tensor, y: torch.Tensor, y_std: torch.Tensor, y_rank: torch.Tensor, knob: float):
    if method == "mse":
        return ((pred - y_std) ** 2).mean()
    if method == "pearson":
        return -pearson(pred, y)
    if method == "soft_rank":
        return -soft_spearman(pred, y, knob)
    if method == "neuralsort":
        return -pearson(neuralsort_rank(pred, knob), y_rank)
    if method == "ranknet":
        return ranknet_loss(pred, y)
    raise ValueError(f"unknown method {method!r}")


def train_gradient(
    method: str,
    data: Data,
    theta0: torch.Tensor,
    hidden: int,
    steps: int,
    lr: float,
    knob: float,
    record: Sequence[int] = (),
):
    """Adam for ``steps`` full-batch steps; returns (theta, forward passes, backward passes, curve).

    ``curve`` maps each step count in ``record`` (0..steps) to the training spearmanr of the parameters
    after that many steps, read from the forward pass the training computes anyway (the last one needs
    one more forward pass, not counted): recording does not change the training."""
    y = data.y_train
    y_std = (y - y.mean()) / y.std()
    y_rank = torch.from_numpy(rankdata(y.numpy())).to(y.dtype)
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    wanted, curve = set(record), {}
    for i in range(steps):
        opt.zero_grad()
        pred = forward(theta, data.x_train, hidden)
        if i in wanted:
            curve[i] = spearman(pred.detach(), y)
        loss = loss_fn(method, pred, y, y_std, y_rank, knob)
        loss.backward()
        opt.step()
    if steps in wanted:
        with torch.no_grad():
            curve[steps] = spearman(forward(theta, data.x_train, hidden), y)
    return theta.detach(), steps, steps, curve


def train_derivative_free(
    method: str, data: Data, theta0: torch.Tensor, hidden: int, evaluations: int, seed: int, sigma: float
):
    """Maximise the training spearmanr with ``evaluations`` evaluations; returns (the best point seen,
    evaluations, backward passes (0), the best training spearmanr so far after each evaluation)."""
    x0 = theta0.numpy().astype(np.float64)
    state = {"evals": 0, "best": -math.inf, "x": x0.copy()}
    history: list[float] = []

    def objective(x) -> float:
        if state["evals"] >= evaluations:
            raise _Stop
        x = np.array(x, dtype=np.float64)
        with torch.no_grad():
            rho = spearman(forward(torch.from_numpy(x), data.x_train, hidden), data.y_train)
        state["evals"] += 1
        if rho > state["best"]:
            state.update(best=rho, x=x)
        history.append(state["best"])
        return -rho

    try:
        if method == "cma":
            import cma

            x, restart = x0, 0
            objective(x0)  # evaluation 1 is the initial point, as for the other methods
            while True:
                opts = {"seed": seed * 1000 + restart + 1, "verbose": -9, "maxfevals": 10**9, "tolflatfitness": 10**9}
                es = cma.CMAEvolutionStrategy(x, sigma, opts)
                while not es.stop():
                    xs = es.ask()
                    es.tell(xs, [objective(c) for c in xs])
                x, restart = np.asarray(es.result.xfavorite, dtype=np.float64), restart + 1
        elif method == "random_search":
            rng = np.random.default_rng(seed)
            x, fx = x0, objective(x0)
            while True:
                y = x + sigma * rng.standard_normal(x.size)
                fy = objective(y)
                if fy <= fx:
                    x, fx = y, fy
        elif method == "nelder_mead":
            while True:  # restart around the best point if it converges before the budget
                x = state["x"]
                optimize.minimize(
                    objective,
                    x,
                    method="Nelder-Mead",
                    options={"maxfev": 10**9, "maxiter": 10**9, "adaptive": True, "initial_simplex": simplex(x, sigma)},
                )
        else:
            raise ValueError(f"unknown method {method!r}")
    except _Stop:
        pass
    return torch.from_numpy(state["x"]), state["evals"], 0, history
