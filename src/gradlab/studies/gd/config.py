"""Parameters of the ``gd`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params
from gradlab.stages import Stage

RuleName = Literal["gradient", "scalar", "sign", "random"]
MEMORY_BUDGET_BYTES = 8 * 2**30  # refuse problems that could not fit beside everything else


class Quadratic(Params):
    """Least squares L(w) = (1/n)||Xw - y||^2 on synthetic data."""

    n: int = Field(200, ge=2, le=10_000_000)
    d: int = Field(20, ge=1, le=100_000)
    condition_number: float = Field(100.0, ge=1.0, le=1e8)
    noise: float = Field(0.01, ge=0.0, le=1e3)

    @model_validator(mode="after")
    def _fits_in_memory(self):
        need, budget = 8 * (self.n * self.d + self.d * self.d) * 3 / 2**30, MEMORY_BUDGET_BYTES / 2**30
        if need > budget:
            raise ValueError(f"n*d = {self.n}*{self.d} needs about {need:.1f} GiB; allowed at most {budget:.0f} GiB")
        return self


class Threshold(Params):
    """Empirical divergence threshold of gradient descent on the quadratic."""

    steps: int = Field(2000, ge=10, le=1_000_000)
    rel_tol: float = Field(1e-3, gt=0.0, le=0.5)


class Rules(Params):
    """The four update rules, each run on the quadratic at the same step size."""

    names: list[RuleName] = Field(default_factory=lambda: ["gradient", "scalar", "sign", "random"], min_length=1)
    lr_times_lambda_max: float = Field(1.0, gt=0.0, le=100.0)
    steps: int = Field(1000, ge=1, le=1_000_000)


class LrGrid(Params):
    min: float = Field(1e-3, gt=0.0)
    max: float = Field(10.0, gt=0.0)
    num: int = Field(9, ge=2, le=200)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be smaller than max ({self.max})")
        return self


class Mlp(Params):
    """nn.Sequential(Linear(2,H), ReLU, Linear(H,1)) fitted to sin(pi x1) cos(pi x2) by full-batch GD."""

    hidden: int = Field(32, ge=1, le=4096)
    n: int = Field(256, ge=2, le=1_000_000)
    steps: int = Field(600, ge=1, le=1_000_000)
    target_loss: float = Field(0.05, gt=0.0)


class Sharpness(Params):
    """Top Hessian eigenvalue during full-batch GD on the MLP (edge of stability)."""

    lrs: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.4])
    steps: int = Field(1500, ge=1, le=1_000_000)
    every: int = Field(25, ge=1)
    power_iters: int = Field(20, ge=1, le=1000)

    @model_validator(mode="after")
    def _positive(self):
        for i, lr in enumerate(self.lrs):
            if lr <= 0:
                raise ValueError(f"lrs.{i} must be > 0 (got {lr})")
        return self


class GDParams(Params):
    seed: int = Field(0, ge=0)
    seeds: int = Field(3, ge=1, le=100)
    quadratic: Quadratic = Quadratic()
    threshold: Threshold = Threshold()
    rules: Rules = Rules()
    lr_grid: LrGrid = LrGrid()
    mlp: Mlp = Mlp()
    sharpness: Sharpness = Sharpness()


STAGES = [
    Stage(
        name="gd",
        question="Why does gradient descent subtract step*gradient, not step? Which learning rates diverge?",
        params=GDParams,
        run="gradlab.studies.gd.study:run",
    )
]
