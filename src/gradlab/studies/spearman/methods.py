"""The four ways to push spearmanr(list1, list2) towards 1, and the referee that counts their evaluations.

Accounting (the same for every method): one *evaluation* is one call of the list derivation
``(v, freq_m) -> (list1, list2)``, and every evaluation is judged once by
``scipy.stats.spearmanr`` (the referee). The initial matrices are evaluation 1.

* ``hill_climb`` (the question's plan): perturb one entry of v or freq_m by +-delta, evaluate,
  keep the change if spearmanr improved (``accept: improve``) or did not get worse
  (``accept: not_worse``), else undo it. One proposal = one evaluation.
* ``scipy``: ``scipy.optimize.minimize(method="Nelder-Mead")`` on -spearmanr over all 13 n
  entries. One call of the objective = one evaluation (``nfev``).
* ``pearson`` / ``soft_rank``: gradient ascent (Adam, through Lightning, see module.py) on the
  Pearson correlation of the lists, or of their soft ranks. One step = one forward evaluation
  (its backward pass is not counted as an evaluation; it costs about one more forward, and
  the seconds columns include it). One last evaluation judges the final matrices.

Wall seconds include the referee's spearmanr calls for every method (for hill_climb and
scipy they *are* the objective; for the gradient methods they only monitor).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import optimize, stats

from gradlab.studies.spearman.derivation import ROWS, Derivation


def spearman(list1, list2) -> float:
    """The referee: ``scipy.stats.spearmanr``; NaN (a constant list) counts as -1."""
    a = list1.detach().cpu().numpy() if isinstance(list1, torch.Tensor) else np.asarray(list1)
    b = list2.detach().cpu().numpy() if isinstance(list2, torch.Tensor) else np.asarray(list2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = float(stats.spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else -1.0


@dataclass
class Referee:
    """Counts evaluations, judges each one with spearmanr, remembers when rho first reached ``target``."""

    derivation: Derivation
    target: float = 0.99
    evals: int = 0
    rhos: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    evals_to_target: int | None = None
    seconds_to_target: float | None = None

    def __post_init__(self):
        self.start = time.perf_counter()

    def restart_clock(self) -> None:
        self.start = time.perf_counter()

    def judge(self, list1, list2) -> float:
        """Record one evaluation whose lists the caller has just derived."""
        self.evals += 1
        rho = spearman(list1, list2)
        elapsed = time.perf_counter() - self.start
        self.rhos.append(rho)
        self.seconds.append(elapsed)
        if self.evals_to_target is None and rho >= self.target:
            self.evals_to_target, self.seconds_to_target = self.evals, elapsed
        return rho

    @torch.no_grad()
    def evaluate(self, v: torch.Tensor, freq_m: torch.Tensor) -> float:
        """Derive the lists from (v, freq_m) and judge them: one evaluation."""
        return self.judge(*self.derivation(v, freq_m))

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def _split(x: np.ndarray, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat vector of 13 n entries -> (v [n, 1], freq_m [12, n]) sharing its memory."""
    t = torch.from_numpy(x)
    return t[:n].view(n, 1), t[n:].view(ROWS, n)


def _flat(v: torch.Tensor, freq_m: torch.Tensor) -> np.ndarray:
    return np.concatenate([v.detach().reshape(-1).numpy(), freq_m.detach().reshape(-1).numpy()]).astype(np.float64)


def hill_climb(
    v: torch.Tensor,
    freq_m: torch.Tensor,
    referee: Referee,
    max_evals: int,
    delta: float,
    accept: str,
    seed: int,
    stop_at: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturb one random entry by +-delta; keep it if spearmanr improves (or does not drop)."""
    n = v.shape[0]
    x = _flat(v, freq_m)
    tv, tf = _split(x, n)
    rng = np.random.default_rng(seed)
    rho = referee.evaluate(tv, tf)
    while referee.evals < max_evals and rho < stop_at:
        i = int(rng.integers(x.size))
        step = delta if rng.random() < 0.5 else -delta
        x[i] += step
        new = referee.evaluate(tv, tf)
        if new > rho or (accept == "not_worse" and new == rho):
            rho = new
        else:
            x[i] -= step
    return tv.clone(), tf.clone()


class _Stop(Exception):
    pass


def nelder_mead(
    v: torch.Tensor, freq_m: torch.Tensor, referee: Referee, max_evals: int, stop_at: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """scipy's Nelder-Mead (adaptive parameters for high dimensions) on -spearmanr; returns the best point seen."""
    n = v.shape[0]
    best = {"rho": -math.inf, "x": _flat(v, freq_m)}

    def objective(x: np.ndarray) -> float:
        if referee.evals >= max_evals:
            raise _Stop
        tv, tf = _split(np.array(x, dtype=np.float64), n)
        rho = referee.evaluate(tv, tf)
        if rho > best["rho"]:
            best.update(rho=rho, x=np.array(x, dtype=np.float64))
        if rho >= stop_at:
            raise _Stop
        return -rho

    try:
        optimize.minimize(
            objective,
            best["x"].copy(),
            method="Nelder-Mead",
            options={"maxfev": max_evals, "adaptive": True, "xatol": 0.0, "fatol": 0.0},
        )
    except _Stop:
        pass
    tv, tf = _split(best["x"], n)
    return tv.clone(), tf.clone()
