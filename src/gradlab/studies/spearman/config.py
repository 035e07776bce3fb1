"""Parameters of the ``spearman`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gradlab.config import Params, default_list
from gradlab.stages import Stage

DerivationName = Literal["linear", "row_max", "logsumexp", "threshold_count"]
MatrixMethod = Literal["hill_climb", "random_search", "cma", "nelder_mead", "pearson", "soft_rank"]
LtrMethod = Literal["mse", "pearson", "soft_rank", "neuralsort", "ranknet", "cma", "random_search", "nelder_mead"]
TaskName = Literal["nonlinear", "heavy_tail"]


class Asker(Params):
    """The question's literal loop (the answer's lr) and the fixed loop (the answer's lr and a scaled one)."""

    lr: float = Field(1e-3, gt=0.0, le=1e4)  # the accepted answer's learning rate
    fixed_lr: float = Field(20.0, gt=0.0, le=1e4)  # n x the answer's unit step: a correlation's gradient is ~1/n
    steps: int = Field(100, ge=1, le=100_000)  # the answer's 100 updates
    strength: float = Field(3.0, gt=0.0, le=1e9)  # soft_spearman's strength in f (rank positions)
    # the question's own climb on the entries of sm (20 x 20) and freq_m (12 x 20), step matrix.delta (stall.py):
    climb_matrices: list[Literal["sm", "freq_m", "both"]] = Field(
        default_factory=default_list("sm", "freq_m", "both"), min_length=1
    )
    climb_passes: int = Field(100, ge=1, le=100_000)  # full passes over the entries at most (a count)

    @field_validator("climb_matrices")
    @classmethod
    def _climb_matrices(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("climb_matrices must not repeat a name")
        return value


class Matrix(Params):
    """The question's matrices (v [n, 1], sm = v v^T, freq_m [12, n]), several list derivations, an equal budget
    of evaluations (counts, not seconds: methods.py)."""

    n: int = Field(20, ge=3, le=2000)  # the question's 20
    seeds: int = Field(10, ge=1, le=100)
    derivations: list[DerivationName] = Field(
        default_factory=default_list("linear", "row_max", "logsumexp", "threshold_count"), min_length=1
    )
    custom: str = ""  # "module:function" called as function(sm, freq_m) -> (list1, list2); adds derivation "custom"
    methods: list[MatrixMethod] = Field(
        default_factory=default_list("hill_climb", "random_search", "cma", "nelder_mead", "pearson", "soft_rank"),
        min_length=1,
    )
    budget: int = Field(720, ge=2, le=10**9)  # budget units of every trial: an evaluation costs 1 (methods.py)
    backward_cost: int = Field(1, ge=0, le=1000)  # units of one backward pass (a gradient step: 1 + this)
    target: float = Field(0.99, gt=-1.0, le=1.0)  # evaluations / budget units to first reach spearmanr >= target
    stop_at: float = Field(1.0, gt=-1.0, le=1.0)  # every method stops once spearmanr >= stop_at
    delta: float = Field(0.01, gt=0.0, le=100.0)  # the question's hill-climb step
    sigma: float = Field(0.1, gt=0.0, le=100.0)  # random search: N(0, sigma^2) on every entry; NM simplex edge
    cma_sigma0: float = Field(0.5, gt=0.0, le=100.0)
    lr: float = Field(1.0, gt=0.0, le=1e4)  # gradient methods: step = lr * n * gradient
    strength: float = Field(3.0, gt=0.0, le=1e9)  # soft_rank: soft_spearman strength (rank positions)

    @field_validator("custom")
    @classmethod
    def _custom(cls, value: str) -> str:
        if value:
            from gradlab.studies.spearman.derivation import check_user_function

            check_user_function(value)
        return value

    @model_validator(mode="after")
    def _checks(self):
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("methods must not repeat a name")
        if len(set(self.derivations)) != len(self.derivations):
            raise ValueError("derivations must not repeat a name")
        if self.stop_at < self.target:
            raise ValueError(f"stop_at ({self.stop_at}) must be >= target ({self.target})")
        return self


class Ltr(Params):
    """Learning to rank with held-out evaluation (see ltr.py)."""

    seeds: int = Field(10, ge=1, le=100)
    tasks: list[TaskName] = Field(default_factory=default_list("nonlinear", "heavy_tail"), min_length=1)
    methods: list[LtrMethod] = Field(
        default_factory=default_list(
            "mse",
            "pearson",
            "soft_rank",
            "neuralsort",
            "ranknet",
            "cma",
            "random_search",
            "nelder_mead",
        ),
        min_length=1,
    )
    n_train: int = Field(300, ge=10, le=100_000)
    n_test: int = Field(1000, ge=10, le=1_000_000)
    features: int = Field(8, ge=2, le=1000)
    hidden: int = Field(8, ge=1, le=1000)
    steps: int = Field(200, ge=1, le=1_000_000)  # Adam steps of every gradient method
    lr: float = Field(0.01, gt=0.0, le=10.0)
    strength: float = Field(3.0, gt=0.0, le=1e9)  # soft_rank's strength (rank positions): the headline one
    strengths: list[float] = Field(default_factory=lambda: [0.3, 1.0, 3.0, 10.0, 30.0], min_length=1)  # the sweep
    tau: float = Field(1.0, gt=0.0, le=1e9)  # neuralsort temperature (standard deviations of the scores)
    dfo_evaluations: int = Field(1700, ge=2, le=10**9)  # evaluations (forward passes) of each derivative-free trial
    sigma: float = Field(0.1, gt=0.0, le=100.0)  # random search step, CMA-ES sigma0, NM simplex edge (parameters)

    @model_validator(mode="after")
    def _checks(self):
        for name in ("methods", "tasks", "strengths"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value")
        for i, s in enumerate(self.strengths):
            if not 0 < s <= 1e9:
                raise ValueError(f"strengths.{i} must be in (0, 1e9] (got {s})")
        if "soft_rank" in self.methods and self.strength not in self.strengths:
            raise ValueError(f"strength ({self.strength}) must be one of strengths {self.strengths}")
        if "nonlinear" not in self.tasks:
            raise ValueError("tasks must include nonlinear (the headline task: metrics key ltr)")
        if "soft_rank" in self.methods and "pearson" not in self.methods:
            raise ValueError("soft_rank is compared with pearson: methods must include pearson")
        return self


class SpearmanParams(Params):
    seed: int = Field(0, ge=0)
    workers: int = Field(0, ge=0, le=64)  # 0: all cores
    asker: Asker = Asker()
    matrix: Matrix = Matrix()
    ltr: Ltr = Ltr()


STAGES = [
    Stage(
        name="spearman",
        question="Can PyTorch adjust matrices so that a Spearman rank correlation computed from them reaches 1?",
        params=SpearmanParams,
        run="gradlab.studies.spearman.study:run",
        answer=(
            "ltr.*.heldout_spearman_mean",
            "ltr.paired.soft_rank_vs_pearson.diff_mean",
            "ltr.paired.soft_rank_vs_pearson.p_exact",
            "climb.threshold_count.sm.tie_ceiling_mean",
            "asker.fixed.answer_lr.final_spearman",
        ),
        headline=(
            "asker.literal_loop_raised",
            "asker.fixed.*.final_spearman",
            "stall.seeds_certified_stalled",
            "stall.hill_climb_accepted_moves_total",
            "stall.linear_seeds_without_improving_move",
            "climb.*.*.final_spearman_mean",
            "climb.*.*.tie_ceiling_mean",
            "climb.*.*.flags.*",
            "climb_overall.flags.*",
            "ties.*.best_ceiling",
            "matrix.*.*.tie_ceiling_mean",
            "matrix.*.*.seeds_at_tie_ceiling",
            "matrix.*.*.final_spearman_mean",
            "matrix.*.cma.final_spearman_ci_low",
            "matrix.*.cma.final_spearman_ci_high",
            "ltr.*.heldout_spearman_mean",
            "ltr.*.heldout_spearman_ci_low",
            "ltr.*.heldout_spearman_ci_high",
            "ltr.paired.soft_rank_vs_pearson.diff_mean",
            "ltr.paired.soft_rank_vs_pearson.diff_ci_low",
            "ltr.paired.soft_rank_vs_pearson.diff_ci_high",
            "ltr.paired.soft_rank_vs_pearson.p_exact",
            "ltr.paired.soft_rank_vs_pearson.p_min",
            "ltr.paired.soft_rank_vs_pearson.flags.soft_rank_better",
            "ltr.flags.winner_is_*",
            "ltr_heavy_tail.*.heldout_spearman_mean",
            "ltr_heavy_tail.paired.soft_rank_vs_pearson.diff_mean",
            "ltr_heavy_tail.paired.soft_rank_vs_pearson.diff_ci_low",
            "ltr_heavy_tail.paired.soft_rank_vs_pearson.diff_ci_high",
            "ltr_heavy_tail.paired.soft_rank_vs_pearson.p_exact",
            "ltr_heavy_tail.paired.soft_rank_vs_pearson.p_min",
            "ltr_heavy_tail.paired.soft_rank_vs_pearson.flags.soft_rank_better",
            "ltr_heavy_tail.flags.winner_is_*",
            "heldout_reproduced",
        ),
    )
]
