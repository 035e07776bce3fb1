"""The fixed-point / first-order answer: what one step of each rule does to the loss.

A step ``w -> w - lr * d`` changes the loss by (Taylor; exact for least squares, whose Hessian H is constant)

    dL(lr) = L(w - lr d) - L(w) = -lr g.d + (lr^2 / 2) d^T H d,        g = grad L(w).

* ``gradient`` (d = g): the first-order term is -lr ||g||^2 <= 0, so a small enough step always goes
  downhill, and at a minimum g = 0, so the minimum is a *fixed point*: the rule stops there.
* ``scalar`` (d = 1, the question's ``w - step``): the first-order term -lr sum(g) has either sign, so from
  many points even the smallest step goes uphill; at the minimum the step is still lr * sqrt(d) long and
  dL = (lr^2 / 2) 1^T H 1 > 0: the rule cannot stay at the minimum. ``w0 - t * 1`` moves along one line
  whatever t is, so the best loss it can reach is the minimum of a parabola in t (:func:`scalar_line`).
* ``sign`` (d = sign g): goes downhill from every point for small lr (first-order term -lr ||g||_1), but its
  step never shrinks, so it stalls at a loss set by lr (:func:`sign_stall`).
* ``random`` (a unit direction drawn without looking at the loss): downhill for about half the points.

Everything here works on :class:`~gradlab.studies.gd.problems.QuadraticProblem` in float64 and evaluates the
real loss of the stepped weights (the Taylor form is only used as the first-order prediction beside it).
Many weight vectors are handled at once as the rows of a matrix ``W``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize

from gradlab.studies.gd.problems import QuadraticProblem

RULE_NAMES = ("gradient", "scalar", "sign", "random")


def losses(problem: QuadraticProblem, W: torch.Tensor) -> torch.Tensor:
    """L(w) = (1/n)||Xw - y||^2 for each row w of ``W`` (N, d)."""
    r = W @ problem.X.T - problem.y
    return (r * r).mean(dim=1)


def gradients(problem: QuadraticProblem, W: torch.Tensor) -> torch.Tensor:
    """grad L(w) = (2/n) X^T (Xw - y) for each row of ``W``."""
    return (2.0 / problem.n) * (W @ problem.X.T - problem.y) @ problem.X


def directions(rule: str, G: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The direction d each rule subtracts (times lr), for each row of gradients ``G``.

    The same directions as :func:`gradlab.studies.gd.rules.make_rule`'s optimisers take for one parameter
    vector (the random rule: a unit vector, drawn here from ``generator``).
    """
    if rule == "gradient":
        return G.clone()
    if rule == "scalar":
        return torch.ones_like(G)
    if rule == "sign":
        return torch.sign(G)
    if rule == "random":
        u = torch.randn(G.shape, generator=generator, dtype=G.dtype)
        return u / u.norm(dim=1, keepdim=True)
    raise ValueError(f"unknown rule {rule!r}; allowed: {', '.join(RULE_NAMES)}")


def optimum(problem: QuadraticProblem) -> tuple[torch.Tensor, float]:
    """The least-squares solution w* and its loss L(w*) (the lowest loss any rule could reach)."""
    # gelsd: the CPU default gelsy returns different last bits from one call to the next (measured)
    w = torch.linalg.lstsq(problem.X, problem.y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    return w, float(losses(problem, w.unsqueeze(0))[0])


def step_delta(problem: QuadraticProblem, W: torch.Tensor, D: torch.Tensor, lr: float) -> torch.Tensor:
    """The real change of the loss, L(w - lr d) - L(w), row by row."""
    return losses(problem, W - lr * D) - losses(problem, W)


def descent_lr_max(problem: QuadraticProblem, g: torch.Tensor, d: torch.Tensor) -> float:
    """The largest lr for which one step along -d lowers the loss: 2 g.d / d^T H d (0 when g.d <= 0)."""
    slope, curvature = float(g @ d), float(d @ problem.hessian() @ d)
    return 2.0 * slope / curvature if slope > 0 and curvature > 0 else (math.inf if slope > 0 else 0.0)


def delta_loss_vs_lr(problem: QuadraticProblem, w: torch.Tensor, lrs, rules, seed: int = 0) -> tuple[list, dict]:
    """dL against lr for one step of each rule from the point ``w``.

    Returns rows ``{rule, lr, delta_loss, first_order}`` (first_order = -lr g.d) and per rule: the closed-form
    ``descent_lr_max``, the largest grid lr that went downhill, the lowest dL on the grid and its lr, and the
    relative gap between dL and its first-order prediction at the smallest lr.
    """
    g = gradients(problem, w.unsqueeze(0))
    gen = torch.Generator().manual_seed(seed)
    lrs_t = torch.as_tensor(list(lrs), dtype=torch.float64)
    rows, summary = [], {}
    for rule in rules:
        d = directions(rule, g, gen)  # one direction per rule: the curve is the loss along one line
        W = w.unsqueeze(0) - lrs_t.unsqueeze(1) * d
        delta = (losses(problem, W) - losses(problem, w.unsqueeze(0))).tolist()
        first = (-lrs_t * float(g[0] @ d[0])).tolist()
        rows += [
            {"rule": rule, "lr": float(lr), "delta_loss": dl, "first_order": f}
            for lr, dl, f in zip(lrs_t.tolist(), delta, first, strict=True)
        ]
        down = [lr for lr, dl in zip(lrs_t.tolist(), delta, strict=True) if dl < 0]
        best = int(np.argmin(delta))
        summary[rule] = {
            "slope": float(g[0] @ d[0]),  # g.d: the rule goes downhill for small lr iff > 0
            "descent_lr_max": descent_lr_max(problem, g[0], d[0]),
            "descent_lr_max_on_grid": max(down) if down else 0.0,
            "best_delta_loss": float(delta[best]),
            "best_lr": float(lrs_t[best]),
            "first_order_rel_error_small_lr": abs(delta[0] - first[0]) / abs(delta[0]) if delta[0] != 0 else 0.0,
        }
    return rows, summary


def descent_fractions(problem: QuadraticProblem, W: torch.Tensor, lrs, rules, seed: int = 0) -> dict:
    """Over the start points (rows of ``W``): for each rule, the fraction at which one step goes downhill.

    ``limit``: the lr -> 0 limit, the fraction with g.d > 0 (the first-order term is negative);
    ``by_lr``: for each lr in order, the number of points with L(w - lr d) < L(w) on the real loss.
    """
    G = gradients(problem, W)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for rule in rules:
        D = directions(rule, G, gen)
        slope = (G * D).sum(dim=1)
        out[rule] = {
            "starts": int(W.shape[0]),
            "limit": float((slope > 0).double().mean()),
            "by_lr": [int((step_delta(problem, W, D, lr) < 0).sum()) for lr in lrs],
        }
    return out


def gd_trajectory(problem: QuadraticProblem, w0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """The iterates w_0 .. w_steps of gradient descent at ``lr`` (rows)."""
    W = torch.empty(steps + 1, w0.numel(), dtype=torch.float64)
    W[0] = w0
    for k in range(steps):
        W[k + 1] = W[k] - lr * gradients(problem, W[k : k + 1])[0]
    return W


def along_run(problem: QuadraticProblem, W: torch.Tensor, lr: float, rules, seed: int = 0) -> tuple[list, dict]:
    """From every iterate of a training run (rows of ``W``), one step of each rule at ``lr``.

    As the run approaches the minimum, g -> 0: the gradient rule's dL -> 0 (the minimum is its fixed point),
    while ``scalar``'s dL -> (lr^2/2) 1^T H 1 > 0. Returns rows ``{step, rule, loss, delta_loss}`` and per
    rule the fraction of iterates from which its step goes downhill, and dL at the last iterate.
    """
    G = gradients(problem, W)
    L = losses(problem, W)
    gen = torch.Generator().manual_seed(seed)
    rows, summary = [], {}
    for rule in rules:
        D = directions(rule, G, gen)
        delta = step_delta(problem, W, D, lr)
        rows += [
            {"step": k, "rule": rule, "loss": float(L[k]), "delta_loss": float(v)} for k, v in enumerate(delta.tolist())
        ]
        summary[rule] = {
            "iterates": int(W.shape[0]),
            "descent_fraction": float((delta < 0).double().mean()),
            "delta_loss_last": float(delta[-1]),
            "loss_last": float(L[-1]),
        }
    return rows, summary


def fixed_point(problem: QuadraticProblem, lr: float, rules, seed: int = 0) -> dict:
    """One step of each rule from the minimum w*: how far it moves and what it does to the loss.

    At the minimum the gradient is zero. The gradient computed at the least-squares solution is rounding
    noise (~1e-16) whose signs change from one machine or library call to the next, so the rules read the
    exact gradient, 0 (``torch.sign(0) = 0``: sign descent does not move either); the computed noise is
    reported as ``gradient_norm_at_computed_optimum``.
    """
    w_star, _ = optimum(problem)
    W = w_star.unsqueeze(0)
    noise = float(gradients(problem, W).norm())
    G = torch.zeros_like(W)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for rule in rules:
        D = directions(rule, G, gen)
        out[rule] = {
            "step_norm": float((lr * D).norm()),
            "delta_loss": float(step_delta(problem, W, D, lr)[0]),
            "gradient_norm_at_computed_optimum": noise,
        }
    return out


def scalar_line(problem: QuadraticProblem, w0: torch.Tensor) -> dict:
    """The best loss reachable by ``w0 - t * 1`` for any real t: closed form, checked by a line search.

    L(w0 - t 1) = L0 - t s + (t^2/2) c with s = 1.g(w0), c = 1^T H 1, so t* = s / c and
    L(t*) = L0 - s^2 / (2c). The line search (Brent, scipy) minimises the real loss over t.
    """
    ones = torch.ones_like(w0)
    g = gradients(problem, w0.unsqueeze(0))[0]
    s, c = float(ones @ g), float(ones @ problem.hessian() @ ones)
    loss0 = float(losses(problem, w0.unsqueeze(0))[0])
    t_star = s / c
    best = loss0 - s * s / (2 * c)

    def along(t: float) -> float:
        return float(losses(problem, (w0 - t * ones).unsqueeze(0))[0])

    found = optimize.minimize_scalar(along, bracket=(-1.0, 1.0), method="brent", options={"xtol": 1e-12})
    _, opt_loss = optimum(problem)
    return {
        "initial_loss": loss0,
        "best_t": t_star,
        "best_loss": best,
        "line_search_t": float(found.x),
        "line_search_loss": float(found.fun),
        "line_search_rel_gap": abs(float(found.fun) - best) / best,
        "optimum_loss": opt_loss,
        "best_over_optimum": best / opt_loss if opt_loss > 0 else math.inf,
    }


def sign_stall(
    problem: QuadraticProblem, w0: torch.Tensor, lrs, steps: int, tail: float = 0.25
) -> tuple[list[dict], np.ndarray]:
    """Sign descent ``w <- w - lr sign(g)`` from ``w0`` at each lr (all lrs at once): its stall level.

    The step never shrinks, so the loss stops falling at a level set by lr. Per lr: the mean excess loss
    L - L(w*) over the last ``tail`` of the steps (``stall_excess``), the same over the ``tail`` before it
    (``previous_excess``: equal when the run has stalled), and the lowest excess of the run. Also returns
    the loss curves (lrs x steps + 1).
    """
    _, opt_loss = optimum(problem)
    lr_t = torch.as_tensor(list(lrs), dtype=torch.float64).unsqueeze(1)
    W = w0.unsqueeze(0).repeat(lr_t.shape[0], 1)
    curves = torch.empty(lr_t.shape[0], steps + 1, dtype=torch.float64)
    for k in range(steps):
        curves[:, k] = losses(problem, W)
        W = W - lr_t * torch.sign(gradients(problem, W))
    curves[:, steps] = losses(problem, W)
    excess = (curves - opt_loss).numpy()
    k = max(1, int(tail * steps))
    rows = [
        {
            "lr": float(lr),
            "stall_excess": float(e[-k:].mean()),
            "previous_excess": float(e[-2 * k : -k].mean()),
            "min_excess": float(e.min()),
            "stall_loss": float(curves[i, -k:].mean()),
        }
        for i, (lr, e) in enumerate(zip(lr_t[:, 0].tolist(), excess, strict=True))
    ]
    return rows, curves.numpy()


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (NaN with fewer than two positive points)."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y, strict=True) if a > 0 and b > 0]
    if len(pts) < 2:
        return math.nan
    xs, ys = np.array(pts).T
    return float(np.polyfit(xs, ys, 1)[0])
