"""Find the smallest learning rate at which a training run diverges (doubling, then bisection)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gradlab.studies.gd.problems import QuadraticProblem
from gradlab.studies.gd.rules import GradientDescent


def find_lr_threshold(
    diverges: Callable[[float], bool], start: float, rel_tol: float = 1e-3, max_doublings: int = 60
) -> tuple[float, int]:
    """Return (threshold, number of probes).

    ``diverges(lr)`` must be monotone: False below the threshold, True above.
    The bracket [lo, hi] is grown from ``start`` by factors of two, then halved
    until (hi - lo) / hi < rel_tol; the midpoint is returned. ``start`` must be a positive finite
    learning rate (a guess; the bracket doubles or halves from it) and ``0 < rel_tol < 1``.
    """
    if not callable(diverges):
        raise TypeError(f"find_lr_threshold: diverges must be a function lr -> bool, got {type(diverges).__name__}")
    if isinstance(start, bool) or not isinstance(start, int | float) or not (math.isfinite(start) and start > 0):
        raise ValueError(
            f"find_lr_threshold: start must be a positive learning rate (a first guess such as 1e-3; the bracket "
            f"doubles or halves from it), got {start!r}"
        )
    if not 0 < rel_tol < 1:
        raise ValueError(f"find_lr_threshold: rel_tol must be in (0, 1), got {rel_tol!r}")
    probes = 0
    lo, hi = 0.0, start
    while True:
        probes += 1
        if diverges(hi):
            break
        lo, hi = hi, hi * 2
        if probes > max_doublings:
            raise RuntimeError(f"no divergence up to lr={hi:g}")
    if lo == 0.0:  # shrink until a stable lr is found
        lo = hi / 2
        while True:
            probes += 1
            if not diverges(lo):
                break
            hi, lo = lo, lo / 2
            if probes > 2 * max_doublings:
                raise RuntimeError(f"diverges even at lr={lo:g}")
    while (hi - lo) / hi >= rel_tol:
        mid = 0.5 * (lo + hi)
        probes += 1
        if diverges(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi), probes


def quadratic_diverges(problem: QuadraticProblem, lr: float, steps: int) -> bool:
    """Does plain gradient descent at ``lr`` end above its starting loss (or non-finite)?"""
    final = quadratic_final_loss(problem, lr, steps)
    return not (final < float(problem.loss(problem.w0)))


def quadratic_final_loss(problem: QuadraticProblem, lr: float, steps: int) -> float:
    w = problem.w0.clone().requires_grad_(True)
    opt = GradientDescent([w], lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = problem.loss(w)
        if not torch.isfinite(loss):
            return math.inf
        loss.backward()
        opt.step()
    value = float(problem.loss(w.detach()))
    return value if math.isfinite(value) else math.inf


QUADRATIC_LR_FRACTIONS = [0.25, 0.5, 0.9, 0.98, 1.02, 1.1, 1.5]  # of 2/lambda_max


def quadratic_lr_sweep(problem: QuadraticProblem, lr_theory: float, steps: int) -> list[dict]:
    """Final loss of gradient descent at step sizes around the theoretical threshold ``lr_theory``."""
    return [
        {"lr": f * lr_theory, "lr_over_crit": f, "final_loss": quadratic_final_loss(problem, f * lr_theory, steps)}
        for f in QUADRATIC_LR_FRACTIONS
    ]


def bisect_log(
    diverges: Callable[[float], bool], lo: float, hi: float, rel_tol: float = 0.02, max_expand: int = 20
) -> dict:
    """The divergence learning rate between a training ``lo`` and a diverging ``hi``, bisected in log space.

    Both ends are probed first; an end on the wrong side moves by a factor of two (``lo`` down, ``hi`` up)
    until it holds, at most ``max_expand`` times. Then the geometric midpoint is probed until
    ``hi / lo - 1 < rel_tol``. Returns ``lr`` (the geometric midpoint of the final bracket), ``lo`` (the
    largest lr seen to train), ``hi`` (the smallest seen to diverge), ``probes`` and every probe as
    ``(lr, diverged)`` in order. ``diverges`` is assumed monotone in lr (each probe is one training run).
    """
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bisect_log: need 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    if not 0 < rel_tol < 1:
        raise ValueError(f"bisect_log: rel_tol must be in (0, 1), got {rel_tol!r}")
    seen: list[tuple[float, bool]] = []

    def probe(lr: float) -> bool:
        d = bool(diverges(lr))
        seen.append((lr, d))
        return d

    for _ in range(max_expand + 1):
        if not probe(lo):
            break
        lo, hi = lo / 2, lo
    else:
        raise RuntimeError(f"bisect_log: diverges even at lr={lo:g}")
    for _ in range(max_expand + 1):
        if probe(hi):
            break
        lo, hi = hi, hi * 2
    else:
        raise RuntimeError(f"bisect_log: no divergence up to lr={hi:g}")
    while hi / lo - 1 >= rel_tol:
        mid = math.sqrt(lo * hi)
        if probe(mid):
            hi = mid
        else:
            lo = mid
    return {"lr": math.sqrt(lo * hi), "lo": lo, "hi": hi, "probes": len(seen), "trace": seen}


def mlp_gd_losses(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int, seed: int = 0):
    """Full-batch gradient descent on mean((net(x) - y)^2) in a plain loop: the losses before each step and after
    the last, float for float those of the stage's Lightning trials (``run_trial``; a test checks it), without
    the trainer's per-step overhead. Stops after the first non-finite loss, as the trials do."""
    from gradlab.studies.gd.rules import make_rule

    opt = make_rule("gradient", net.parameters(), lr, seed=seed)
    losses: list[float] = []
    for _ in range(steps):
        opt.zero_grad()
        r = net(x) - y
        loss = (r * r).mean()
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value):
            break
        loss.backward()
        opt.step()
    with torch.no_grad():
        r = net(x) - y
        losses.append(float((r * r).mean()))
    return losses
