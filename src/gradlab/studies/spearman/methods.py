"""Ways to push spearmanr(list1, list2) towards 1 on the matrix problem, all under the same budget.

Accounting (the same for every method): one *evaluation* (a forward pass) is one call of the list
derivation ``(v, freq_m) -> (list1, list2)``, judged once by ``scipy.stats.spearmanr`` (the
referee); the initial matrices are evaluation 1. A *backward pass* is one ``.backward()`` through
the derivation and the surrogate (gradient methods only). Every method stops at whichever comes
first: ``seconds`` of time (the equal-time budget), ``max_evals`` evaluations, or spearmanr >=
``stop_at``. The seconds include the referee's calls for every method.

The budget is measured on the trial's own CPU clock (``time.process_time``): a trial runs on one
thread (torch and BLAS limited to one), so on an idle core its CPU time is its wall-clock time,
and on a machine shared with other jobs every method still gets the same amount of computing
instead of whatever the other jobs leave it. Wall seconds are recorded beside it.

* ``hill_climb`` (the question's plan): perturb one entry of v or freq_m by +-delta, keep the change
  if spearmanr improved, else undo it. One proposal = one evaluation.
* ``random_search``: perturb *every* entry by N(0, sigma^2), keep the point if spearmanr does not
  drop ((1+1) random search). One proposal = one evaluation.
* ``cma``: CMA-ES (``cma`` package, Hansen) on -spearmanr over the 13 n entries, sigma0 = 0.5.
* ``nelder_mead``: ``scipy.optimize.minimize(method="Nelder-Mead", adaptive=True)`` on -spearmanr,
  initial simplex of edge sigma (the random-search step), restarted when it converges.
* ``pearson`` / ``soft_rank``: gradient ascent on the Pearson correlation of the lists, or on
  :func:`soft_spearman` of them; plain steps ``lr * n * gradient`` (a correlation's per-entry
  gradient scales like 1/n). One step = one evaluation + one backward pass.
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
from gradlab.studies.spearman.softrank import pearson, soft_spearman


def spearman(list1, list2) -> float:
    """The referee: ``scipy.stats.spearmanr``; NaN (a constant list) counts as -1."""
    a = list1.detach().cpu().numpy() if isinstance(list1, torch.Tensor) else np.asarray(list1)
    b = list2.detach().cpu().numpy() if isinstance(list2, torch.Tensor) else np.asarray(list2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = float(stats.spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else -1.0


class _Stop(Exception):
    """The budget is spent (or the target reached): unwinds out of an optimiser's loop."""


@dataclass
class Referee:
    """Counts evaluations and backward passes, judges each evaluation with spearmanr, enforces the budget."""

    derivation: Derivation
    target: float = 0.99
    seconds_budget: float = math.inf
    max_evals: int = 10**9
    stop_at: float = 1.0
    evals: int = 0
    backward: int = 0
    rhos: list[float] = field(default_factory=list)
    evals_to_target: int | None = None
    seconds_to_target: float | None = None
    best: float = -math.inf

    def __post_init__(self):
        self.restart_clock()

    def restart_clock(self) -> None:
        self.start = time.process_time()
        self.wall_start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """CPU seconds of this process since the clock started (the budget's clock)."""
        return time.process_time() - self.start

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.wall_start

    @property
    def spent(self) -> bool:
        """True once the budget is used up or the target for stopping is reached."""
        return self.evals >= self.max_evals or self.elapsed >= self.seconds_budget or self.best >= self.stop_at

    def judge(self, list1, list2) -> float:
        """Record one evaluation whose lists the caller has just derived."""
        self.evals += 1
        rho = spearman(list1, list2)
        self.rhos.append(rho)
        self.best = max(self.best, rho)
        if self.evals_to_target is None and rho >= self.target:
            self.evals_to_target, self.seconds_to_target = self.evals, self.elapsed
        return rho

    @torch.no_grad()
    def evaluate(self, v: torch.Tensor, freq_m: torch.Tensor) -> float:
        """Derive the lists from (v, freq_m) and judge them: one evaluation."""
        return self.judge(*self.derivation(v, freq_m))


def split(x: np.ndarray, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat vector of 13 n entries -> (v [n, 1], freq_m [12, n]) sharing its memory."""
    t = torch.from_numpy(x)
    return t[:n].view(n, 1), t[n:].view(ROWS, n)


def flat(v: torch.Tensor, freq_m: torch.Tensor) -> np.ndarray:
    return np.concatenate([v.detach().reshape(-1).numpy(), freq_m.detach().reshape(-1).numpy()]).astype(np.float64)


def hill_climb(v, freq_m, referee: Referee, delta: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Perturb one random entry by +-delta; keep it if spearmanr improves. Returns (v, freq_m, accepted moves)."""
    n = v.shape[0]
    x = flat(v, freq_m)
    tv, tf = split(x, n)
    rng = np.random.default_rng(seed)
    rho = referee.evaluate(tv, tf)
    accepted = 0
    while not referee.spent:
        i = int(rng.integers(x.size))
        step = delta if rng.random() < 0.5 else -delta
        x[i] += step
        new = referee.evaluate(tv, tf)
        if new > rho:
            rho, accepted = new, accepted + 1
        else:
            x[i] -= step
    return tv.clone(), tf.clone(), accepted


def random_search(v, freq_m, referee: Referee, sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(1+1) random search: perturb every entry by N(0, sigma^2); keep the point unless spearmanr drops."""
    n = v.shape[0]
    x = flat(v, freq_m)
    rng = np.random.default_rng(seed)
    rho = referee.evaluate(*split(x, n))
    accepted = 0
    while not referee.spent:
        y = x + sigma * rng.standard_normal(x.size)
        new = referee.evaluate(*split(y, n))
        if new >= rho:
            x, rho, accepted = y, new, accepted + 1
    tv, tf = split(x, n)
    return tv.clone(), tf.clone(), accepted


def _minimise(objective_of_x, x0: np.ndarray, referee: Referee, run) -> np.ndarray:
    """Run an optimiser on -spearmanr, stopping it when the referee's budget is spent; the best point seen."""
    best = {"rho": -math.inf, "x": x0.copy()}

    def objective(x: np.ndarray) -> float:
        if referee.spent:
            raise _Stop
        x = np.array(x, dtype=np.float64)
        rho = objective_of_x(x)
        if rho > best["rho"]:
            best.update(rho=rho, x=x)
        return -rho

    try:
        run(objective)
    except _Stop:
        pass
    return best["x"]


def simplex(x0: np.ndarray, step: float) -> np.ndarray:
    """The initial simplex x0, x0 + step e_1, ..., x0 + step e_d (scipy's default steps 5 % of each entry,
    too small to cross a neighbour, so Nelder-Mead would start on a plateau of spearmanr)."""
    return np.vstack([x0, x0 + step * np.eye(x0.size)])


def nelder_mead(v, freq_m, referee: Referee, step: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """scipy's Nelder-Mead (adaptive parameters for high dimensions) on -spearmanr from a simplex of edge
    ``step``, restarted around the best point when it converges early; the best point seen."""
    n = v.shape[0]

    def run(objective):
        x0 = flat(v, freq_m)
        while True:
            res = optimize.minimize(
                objective,
                x0,
                method="Nelder-Mead",
                options={"maxfev": 10**9, "maxiter": 10**9, "adaptive": True, "initial_simplex": simplex(x0, step)},
            )
            x0 = np.asarray(res.x, dtype=np.float64)

    x = _minimise(lambda x: referee.evaluate(*split(x, n)), flat(v, freq_m), referee, run)
    tv, tf = split(x, n)
    return tv.clone(), tf.clone(), 0


def cma_es(v, freq_m, referee: Referee, sigma0: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CMA-ES (the ``cma`` package) on -spearmanr, restarted from its mean if it stops early; the best point seen."""
    import cma

    n = v.shape[0]

    def run(objective):
        x0, restart = flat(v, freq_m), 0
        while True:  # CMA-ES stops itself on flat fitness (a plateau of ranks): restart with a fresh seed
            opts = {"seed": seed * 1000 + restart + 1, "verbose": -9, "maxfevals": 10**9, "tolflatfitness": 10**9}
            es = cma.CMAEvolutionStrategy(x0, sigma0, opts)
            while not es.stop():
                xs = es.ask()
                es.tell(xs, [objective(x) for x in xs])
            x0, restart = np.asarray(es.result.xfavorite, dtype=np.float64), restart + 1

    x = _minimise(lambda x: referee.evaluate(*split(x, n)), flat(v, freq_m), referee, run)
    tv, tf = split(x, n)
    return tv.clone(), tf.clone(), 0


def gradient_ascent(
    v, freq_m, referee: Referee, objective: str, lr: float, strength: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Plain gradient ascent on ``pearson`` or ``soft_rank`` (soft_spearman) of the smooth lists; one
    evaluation (judged on the referee's lists) and one backward pass per step."""
    smooth = Derivation(referee.derivation.name, smooth=True, custom=referee.derivation.custom)
    v = v.clone().requires_grad_(True)
    freq_m = freq_m.clone().requires_grad_(True)
    step = lr * v.shape[0]
    steps = 0
    while True:
        with torch.no_grad():
            referee.evaluate(v, freq_m)
        if referee.spent:
            break
        list1, list2 = smooth(v, freq_m)
        corr = pearson(list1, list2) if objective == "pearson" else soft_spearman(list1, list2, strength)
        grads = torch.autograd.grad(corr, (v, freq_m), allow_unused=True)
        referee.backward += 1
        with torch.no_grad():
            for t, g in zip((v, freq_m), grads, strict=True):
                if g is not None:
                    t += step * g
        steps += 1
    return v.detach().clone(), freq_m.detach().clone(), steps
