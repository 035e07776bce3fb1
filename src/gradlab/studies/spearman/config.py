"""Parameters of the ``spearman`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params
from gradlab.stages import Stage

MethodName = Literal["hill_climb", "hill_climb_tuned", "scipy", "pearson", "soft_rank"]
MEMORY_BUDGET_BYTES = 2 * 2**30  # per trial; two trials run side by side beside everything else


class Derivation(Params):
    """How the two lists are derived from v [n, 1] and freq_m [12, n] (see derivation.py)."""

    list1: Literal["outer_row_sum", "outer_row_sum_dense", "outer_row_norm"] = "outer_row_sum"
    list2: Literal["col_mean", "col_logsumexp"] = "col_mean"


class HillClimb(Params):
    """Perturb one entry by +-delta, keep it if spearmanr improves (or, with not_worse, does not drop)."""

    delta: float = Field(0.01, gt=0.0, le=100.0)
    accept: Literal["improve", "not_worse"] = "improve"
    max_evals: int = Field(10_000, ge=1, le=10_000_000)
    max_n: int = Field(200, ge=2, le=1_000_000)  # larger sizes are skipped (and said so)


class Scipy(Params):
    """scipy.optimize.minimize(method="Nelder-Mead", adaptive) on -spearmanr over all 13 n entries."""

    max_evals: int = Field(10_000, ge=1, le=10_000_000)
    max_n: int = Field(20, ge=2, le=100_000)

    @model_validator(mode="after")
    def _simplex_fits(self):
        dim = 13 * self.max_n
        need = 8 * dim * (dim + 1)
        if need > MEMORY_BUDGET_BYTES:
            raise ValueError(
                f"max_n = {self.max_n}: the Nelder-Mead simplex ({dim + 1} x {dim} floats) needs "
                f"{need / 2**30:.1f} GiB; allowed at most {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB (max_n <= 1000)"
            )
        return self


class Gradient(Params):
    """Gradient ascent (through Lightning). With sgd the step is lr * n * gradient of the correlation."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(1.0, gt=0.0, le=1e4)
    max_steps: int = Field(50, ge=1, le=1_000_000)
    max_n: int = Field(1_000_000, ge=2, le=1_000_000)


class SoftRankGradient(Gradient):
    """Gradient ascent on the correlation of soft ranks, smoothed by ``regularization_strength``."""

    regularization_strength: float = Field(3.0, gt=0.0, le=1e9)  # in rank positions


class SpearmanParams(Params):
    seed: int = Field(0, ge=0)
    seeds: int = Field(5, ge=1, le=100)
    sizes: list[int] = Field(default_factory=lambda: [20, 200, 2000, 20000], min_length=1)
    methods: list[MethodName] = Field(
        default_factory=lambda: ["hill_climb", "hill_climb_tuned", "scipy", "pearson", "soft_rank"], min_length=1
    )
    target: float = Field(0.99, gt=-1.0, le=1.0)  # evals / seconds to first reach spearmanr >= target
    stop_at: float = Field(1.0, gt=-1.0, le=1.0)  # every method stops once spearmanr >= stop_at
    workers: int = Field(0, ge=0, le=64)  # 0: all cores
    derivation: Derivation = Derivation()
    hill_climb: HillClimb = HillClimb()
    hill_climb_tuned: HillClimb = HillClimb(delta=1.0, accept="not_worse", max_evals=20_000, max_n=200)
    scipy: Scipy = Scipy()
    pearson: Gradient = Gradient()
    soft_rank: SoftRankGradient = SoftRankGradient()

    @model_validator(mode="after")
    def _sizes(self):
        for i, n in enumerate(self.sizes):
            if not 3 <= n <= 1_000_000:
                raise ValueError(f"sizes.{i} must be between 3 and 1000000 (got {n})")
            if self.derivation.list1 == "outer_row_sum_dense" and 8 * n * n > MEMORY_BUDGET_BYTES:
                raise ValueError(
                    f"sizes.{i} = {n}: derivation.list1 = outer_row_sum_dense forms an n x n matrix "
                    f"({8 * n * n / 2**30:.1f} GiB); allowed at most {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB "
                    "(use outer_row_sum, the same lists without the matrix)"
                )
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError("sizes must not repeat a value")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods must not repeat a name")
        if self.stop_at < self.target:
            raise ValueError(f"stop_at ({self.stop_at}) must be >= target ({self.target})")
        return self


STAGES = [
    Stage(
        name="spearman",
        question="Can PyTorch adjust matrices so that a Spearman rank correlation computed from them reaches 1?",
        params=SpearmanParams,
        run="gradlab.studies.spearman.study:run",
    )
]
