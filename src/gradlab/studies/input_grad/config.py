"""Parameters of the ``input_grad`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params
from gradlab.stages import Stage

MethodName = Literal["sum", "grad_outputs", "vmap", "jacrev", "loop"]
ALL_METHODS: list[MethodName] = ["sum", "grad_outputs", "vmap", "jacrev", "loop"]
MEMORY_BUDGET_BYTES = 4 * 2**30  # refuse timing grids whose largest call could not fit beside everything else
D = 2  # input dimension of the question's network (R^2 -> R)


class Model(Params):
    """The question's network, nn.Sequential(Linear(2,H), ReLU, Linear(H,1)), in float64.

    The BatchNorm variant inserts BatchNorm1d(H) after the first layer (its affine
    parameters drawn around 1 and 0 so the default model is not a special case).
    """

    hidden: int = Field(32, ge=1, le=4096)
    activation: Literal["relu", "tanh"] = "relu"


class Check(Params):
    """Agreement of the methods, finite differences and the BatchNorm case on one batch."""

    n: int = Field(100, ge=2, le=2000)  # jacrev builds the [N, N, d] Jacobian
    fd_eps: float = Field(1e-6, gt=0.0, le=0.1)
    rel_tol: float = Field(1e-10, gt=0.0, le=1.0)  # methods agree: max |diff| / max |loop| <= rel_tol
    fd_tol: float = Field(1e-6, gt=0.0, le=1.0)  # finite differences agree: max |diff| <= fd_tol


class Timing(Params):
    """Time and peak memory of each method vs N (float32, the default model without BatchNorm)."""

    ns: list[int] = Field(default_factory=lambda: [10, 100, 1000, 10_000, 100_000], min_length=1)
    methods: list[MethodName] = Field(default_factory=lambda: list(ALL_METHODS), min_length=1)
    loop_max_n: int = Field(1000, ge=1)  # loop and jacrev are O(N^2): larger N is recorded as capped
    jacrev_max_n: int = Field(1000, ge=1)
    min_seconds: float = Field(0.2, gt=0.0, le=60.0)  # repeat a call until this much time is measured...
    max_repeats: int = Field(5, ge=1, le=100)  # ...or this many repeats
    memory: bool = True  # profile the peak allocator bytes of each call (one extra call)

    @model_validator(mode="after")
    def _grid(self):
        for i, n in enumerate(self.ns):
            if n < 1 or n > 10_000_000:
                raise ValueError(f"ns.{i} must be between 1 and 10000000 (got {n})")
        if list(self.ns) != sorted(set(self.ns)):
            raise ValueError(f"ns must be strictly increasing (got {self.ns})")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat (got {self.methods})")
        return self


class Sobolev(Params):
    """Fit h to sin(pi x1) cos(pi x2): values only vs values + input gradients, several seeds."""

    # paired seeds (both variants share each seed's data and initialisation); the exact sign-flip test's smallest
    # p is 2 / 2^seeds (5 seeds: 0.0625, never below 0.05), and intervals need 10 (gradlab.stats.MIN_CI_N)
    seeds: int = Field(10, ge=1, le=100)
    n_train: int = Field(64, ge=2, le=100_000)
    n_test: int = Field(2048, ge=1, le=1_000_000)
    hidden: int = Field(64, ge=1, le=1024)
    steps: int = Field(1500, ge=1, le=1_000_000)
    lr: float = Field(0.005, gt=0.0, le=10.0)
    grad_weight: float = Field(1.0, gt=0.0, le=1e6)
    method: MethodName = "sum"  # how the training loss gets the per-sample input gradients
    eval_every: int = Field(100, ge=1)
    workers: int = Field(0, ge=0, le=64)  # processes for the trials; 0 = one per core


class InputGradParams(Params):
    model: Model = Model()
    check: Check = Check()
    timing: Timing = Timing()
    sobolev: Sobolev = Sobolev()
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _fits_in_memory(self):
        h, t = self.model.hidden, self.timing
        biggest = max(t.ns)
        need = 4 * biggest * (h + D + 1) * 4  # float32 activations, their gradients and the input gradient
        if need > MEMORY_BUDGET_BYTES:
            raise ValueError(
                f"timing.ns up to {biggest} with model.hidden = {h} needs about {need / 2**30:.1f} GiB; "
                f"allowed at most {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB"
            )
        if "jacrev" in t.methods:
            n = min(t.jacrev_max_n, biggest)
            need = 4 * n * n * (h + D) * 2  # the vmapped backward holds [N, N, H] and the [N, N, d] Jacobian
            if need > MEMORY_BUDGET_BYTES:
                raise ValueError(
                    f"timing.jacrev_max_n = {t.jacrev_max_n} needs about {need / 2**30:.1f} GiB for the "
                    f"[N, N, hidden] backward; allowed at most {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB"
                )
        return self


STAGES = [
    Stage(
        name="input_grad",
        question="How do I get the gradient of a network's output with respect to each input of a batch?",
        params=InputGradParams,
        run="gradlab.studies.input_grad.study:run",
        answer=(
            "agreement.*.max_rel_diff",
            "fd.max_abs_diff",
            "batchnorm.train_sum_trick_max_rel_diff",
            "sobolev.*.grad_rmse",
            "sobolev.*.value_rmse",
            "sobolev.grad_rmse_ratio.sign_flip_p",
        ),
        headline=(
            "agreement.*.max_rel_diff",
            "agreement.*.passed",
            "fd.max_abs_diff",
            "fd.passed",
            "batchnorm.train_sum_trick_max_abs_diff",
            "batchnorm.train_sum_trick_max_rel_diff",
            "batchnorm.train_auto_max_abs_diff",
            "batchnorm.train_vmap_max_abs_diff",
            "batchnorm.train_jacrev_max_abs_diff",
            "batchnorm.eval_sum_trick_max_abs_diff",
            "batchnorm.train_sum_trick_wrong",
            "batchnorm.train_sum_refused",
            "batchnorm.eval_sum_trick_exact",
            "batchnorm.exact_methods_agree",
            "image.*.auto_max_abs_diff",
            "image.cnn_batchnorm.sum_trick_max_abs_diff",
            "image.passed",
            "sobolev.*.grad_rmse",
            "sobolev.*.grad_rmse_ci_*",
            "sobolev.*.value_rmse",
            "sobolev.*.value_rmse_ci_*",
            "sobolev.grad_rmse_ratio.with_grad_over_value_only",
            "sobolev.*_rmse_ratio.sign_flip_p",
            "sobolev.*_rmse_ratio.sign_flip_p_min",
            "flags.*",
        ),
    )
]
