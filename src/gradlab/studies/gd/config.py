"""Parameters of the ``gd`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params, default_list
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
    """The four update rules, each run on the quadratic at the same step size.

    The step size is either absolute (``lr``, the question's ``step``, e.g. 0.01) or relative to the
    problem (``lr_times_lambda_max``: lr = value / lambda_max); set at most one. Neither: 1 / lambda_max.
    """

    names: list[RuleName] = Field(default_factory=default_list("gradient", "scalar", "sign", "random"), min_length=1)
    lr: float | None = Field(None, gt=0.0, le=1000.0)
    lr_times_lambda_max: float | None = Field(None, gt=0.0, le=100.0)
    steps: int = Field(1000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _one_step_size(self):
        if self.lr is not None and self.lr_times_lambda_max is not None:
            raise ValueError(
                f"lr ({self.lr:g}) and lr_times_lambda_max ({self.lr_times_lambda_max:g}) are exclusive; "
                "set one of them and leave the other null"
            )
        return self

    def step_size(self, lambda_max: float) -> float:
        """The rules' lr on a problem whose Hessian has top eigenvalue ``lambda_max``."""
        if self.lr is not None:
            return self.lr
        return (1.0 if self.lr_times_lambda_max is None else self.lr_times_lambda_max) / lambda_max

    def describe(self) -> str:
        if self.lr is not None:
            return f"lr = {self.lr:g} (absolute)"
        return f"lr = {1.0 if self.lr_times_lambda_max is None else self.lr_times_lambda_max:g} / lambda_max"


def _positive_list(values: list[float], name: str) -> None:
    for i, v in enumerate(values):
        if v <= 0:
            raise ValueError(f"{name}.{i} must be > 0 (got {v})")


class OneStep(Params):
    """One step of each rule from many points of the quadratic: the first-order / fixed-point answer.

    Start points are drawn like w0 (w ~ N(0, I)), and near the minimum (w* + near_radius * N(0, I)). The
    descent fractions are measured at each lr of ``lr_times_lambda_max`` (/ lambda_max); the smallest one
    is the "small step" of the headline. Sign descent runs ``sign_steps`` steps at each lr of
    ``sign_lr_times_lambda_max`` (/ lambda_max) to measure where it stalls.
    """

    starts: int = Field(2000, ge=1, le=1_000_000)
    lr_times_lambda_max: list[float] = Field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 2.5], min_length=1)
    lr_points: int = Field(61, ge=2, le=10_000)  # dL against lr from w0: a log grid from 1e-4 to 10 (/ lambda_max)
    near_radius: float = Field(0.01, gt=0.0, le=1e3)
    sign_lr_times_lambda_max: list[float] = Field(
        default_factory=lambda: [0.003, 0.01, 0.03, 0.1, 0.3, 1.0], min_length=2
    )
    sign_steps: int = Field(4000, ge=4, le=1_000_000)

    @model_validator(mode="after")
    def _positive(self):
        _positive_list(self.lr_times_lambda_max, "lr_times_lambda_max")
        _positive_list(self.sign_lr_times_lambda_max, "sign_lr_times_lambda_max")
        return self


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
    """Top Hessian eigenvalue during full-batch GD on the MLP (edge of stability), ``seeds`` inits per lr.

    Edge of stability at an lr, per seed: the median of sharpness * lr / 2 over the last ``tail`` probes lies
    in [eos_low, eos_high]. Catapult, per seed: the sharpness at step 0 is above 2/lr, the loss rises above
    its starting value, and the run still ends below its starting loss with the sharpness at most
    eos_high x 2/lr (Lewkowycz et al. 2020).
    """

    lrs: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.4])
    steps: int = Field(1500, ge=1, le=1_000_000)
    every: int = Field(25, ge=1)
    power_iters: int = Field(20, ge=1, le=1000)
    tail: int = Field(10, ge=1, le=100_000)
    eos_low: float = Field(0.9, gt=0.0, le=1.0)
    eos_high: float = Field(1.1, ge=1.0, le=10.0)

    @model_validator(mode="after")
    def _positive(self):
        _positive_list(self.lrs, "lrs")
        return self


class MlpThreshold(Params):
    """The network's divergence learning rate per initialisation, against 2/lambda0 and 4/lambda0.

    Per seed: lambda0, the top Hessian eigenvalue at initialisation (``power_iters`` steps of power iteration),
    and the smallest learning rate at which ``mlp.steps`` steps of full-batch gradient descent diverge (final
    loss above initial, or non-finite: the grid's definition), bisected in log space from the bracket
    [``lo``, ``hi``] (each end checked first, moved by a factor of two if it is on the wrong side) until
    hi/lo - 1 < ``rel_tol``. ``seeds``: the first that many of the network's seeds (null: all of them).
    """

    lo: float = Field(0.3, gt=0.0)
    hi: float = Field(1.0, gt=0.0)
    rel_tol: float = Field(0.02, gt=0.0, lt=1.0)
    power_iters: int = Field(100, ge=1, le=10_000)
    seeds: int | None = Field(None, ge=1, le=100)

    @model_validator(mode="after")
    def _ordered(self):
        if self.lo >= self.hi:
            raise ValueError(f"lo ({self.lo}) must be smaller than hi ({self.hi})")
        return self


class GDParams(Params):
    seed: int = Field(0, ge=0)
    seeds: int = Field(3, ge=1, le=100)
    quadratic: Quadratic = Quadratic()
    threshold: Threshold = Threshold()
    rules: Rules = Rules()
    one_step: OneStep = OneStep()
    lr_grid: LrGrid = LrGrid()
    mlp: Mlp = Mlp()
    sharpness: Sharpness = Sharpness()
    mlp_threshold: MlpThreshold = MlpThreshold()


STAGES = [
    Stage(
        name="gd",
        question="Why does gradient descent subtract step*gradient, not step? Which learning rates diverge?",
        params=GDParams,
        run="gradlab.studies.gd.study:run",
        answer=(
            "first_order.*.descent_fraction",
            "fixed_point.gradient.delta_loss",
            "mlp.best_lr",
            "mlp_threshold.lr_mean",
            "mlp_threshold.lambda0_mean",
            "mlp_threshold.ratio_classic_mean",
            "mlp_threshold.ratio_catapult_mean",
            "sign_stall.stall_slope",
        ),
        headline=(
            "first_order.*.descent_fraction",
            "first_order.*.descent_fraction_limit",
            "first_order.*.near_optimum_fraction",
            "fixed_point.*.delta_loss",
            "fixed_point.*.stays",
            "scalar_line.best_loss",
            "scalar_line.best_t",
            "scalar_line.line_search_loss",
            "scalar_line.optimum_loss",
            "sign_stall.stall_slope",
            "sign_stall.*.stall_excess",
            "sign_stall.*.stalled",
            "quadratic.lr_crit_theory",
            "quadratic.lr_crit_empirical",
            "rules.*.final_loss",
            "rules.*.diverged",
            "mlp.best_lr",
            "mlp.best_final_loss_mean",
            "mlp.grid.*.diverged",
            "mlp.grid.*.diverged_seeds",
            "mlp_best_vs_next.permutation_p",
            "mlp_best_vs_next.best_lower",
            "sharpness.*.eos",
            "sharpness.*.eos_seeds",
            "sharpness.*.catapult",
            "sharpness.*.catapult_seeds",
            "sharpness.*.rose_to_band",
            "sharpness.*.diverged_seeds",
            "sharpness.*.settled_ratio_mean",
            "mlp_threshold.lambda0_mean",
            "mlp_threshold.lr_mean",
            "mlp_threshold.ratio_classic_mean",
            "mlp_threshold.ratio_catapult_mean",
            "mlp_threshold.flags.*",
        ),
    )
]
