"""Parameters of the ``mdn`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params, default_list
from gradlab.stages import Stage

Mixture = Literal["probs_log", "probs_torch", "logits", "density"]
Remedy = Literal["sgd", "grad_clip", "loss_clip", "batchnorm", "y_shift"]  # the asker's tries, each alone
REMEDIES: tuple[Remedy, ...] = ("sgd", "grad_clip", "loss_clip", "batchnorm", "y_shift")


def _unique(name: str, values: list) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated levels: {values}")


class Data(Params):
    """Bishop's inverse problem, x and y scaled to [0, 1] (clean unless a trial asks for a corruption)."""

    n_train: int = Field(4096, ge=16, le=10_000_000)
    n_val: int = Field(1024, ge=1, le=10_000_000)
    noise: float = Field(0.05, ge=0.0, le=10.0)
    outlier_fraction: float = Field(0.0005, ge=0.0, le=0.5)  # the ``outliers`` condition only
    outlier_scale: float = Field(20.0, ge=0.0, le=1e6)
    nonfinite_fraction: float = Field(0.0005, ge=0.0, le=0.5)  # lr-0 ``nonfinite`` input only: rows with x = NaN
    y_scale: float = Field(10.0, gt=0.0, le=1e6)  # the ``y_shift`` remedy: y -> y_scale * y + y_shift
    y_shift: float = Field(10.0, ge=-1e6, le=1e6)


class Model(Params):
    hidden: int = Field(64, ge=1, le=4096)
    layers: int = Field(2, ge=1, le=8)
    components: int = Field(5, ge=1, le=256)
    sigma: Literal["exp", "softplus", "elu1", "relu"] = "softplus"  # the asker's is unknown: an assumption
    sigma_eps: float = Field(1e-6, ge=0.0, le=1.0)  # added to softplus and elu1 (ELU + 1 + eps)


class Lr0(Params):
    """lr = 0 trials: the mechanisms that fit "my inputs are correct" (every list is crossed in full)."""

    steps: int = Field(32, ge=1, le=1_000_000)
    mixtures: list[Mixture] = Field(default_factory=default_list("probs_log"), min_length=1)
    inputs: list[Literal["clean", "nonfinite"]] = Field(
        default_factory=default_list("clean", "nonfinite"), min_length=1
    )
    batchnorm: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)
    optimizers: list[Literal["sgd", "adam"]] = Field(default_factory=default_list("sgd", "adam"), min_length=1)
    sigma: list[Literal["exp", "softplus", "elu1", "relu"]] = Field(
        default_factory=default_list("softplus", "relu"), min_length=1
    )

    @model_validator(mode="after")
    def _levels(self):
        for name in ("mixtures", "inputs", "batchnorm", "optimizers", "sigma"):
            _unique(name, getattr(self, name))
        return self


class Asker(Params):
    """The asker's conditions: clean data, long training, each tried remedy alone, lr 0 (``lr0``).

    Trials at lr > 0, each x ``seeds``: the ``baseline`` (Adam, no clipping, no BatchNorm, y as is,
    clean data) with ``probs_log`` at every ``lr`` and the ``compare_mixtures`` at ``remedy_lr``; each of ``remedies``
    alone on top of it, and ``outliers`` (the baseline with corrupted training targets) when
    ``outliers`` is true, with ``probs_log`` at ``remedy_lr``; one ``long`` baseline trial of
    ``long_steps`` steps (seed 0, ``remedy_lr``) to follow the logit gap further; and, apart from the
    asker's conditions, ``saturated`` (a head that starts with one weight exactly 0) for every mixture.
    """

    seeds: int = Field(5, ge=1, le=100)
    steps: int = Field(400, ge=1, le=1_000_000)
    batch_size: int = Field(128, ge=2, le=1_000_000)
    lr: list[float] = Field(default_factory=lambda: [0.001, 0.01], min_length=1)  # the baseline, probs_log
    remedy_lr: float = Field(0.01, gt=0.0, le=10.0)  # compare_mixtures, the remedies, outliers, the long trial
    long_steps: int = Field(3000, ge=0, le=10_000_000)  # one longer baseline trial (seed 0, remedy_lr); 0 = none
    compare_mixtures: list[Mixture] = Field(default_factory=default_list("probs_torch", "logits"))
    remedies: list[Remedy] = Field(default_factory=lambda: list(REMEDIES))
    outliers: bool = True
    # the ``saturated`` condition (not the asker's setup; the mechanism, labelled): the head's bias for
    # component 0 starts at this value, so that its softmax weight is exactly 0 in float32 for every row
    # (below about -104); probs_log and compare_mixtures at remedy_lr. 0 = no such condition
    saturated_bias: float = Field(-150.0, ge=-1e4, le=0.0)
    grad_clip: float = Field(1.0, gt=0.0, le=1e6)  # max gradient norm of the grad_clip remedy
    loss_clip: float = Field(10.0, gt=0.0, le=1e6)  # per-sample NLL clamped into [-c, c] (loss_clip remedy)
    lr0: Lr0 = Lr0()

    @model_validator(mode="after")
    def _levels(self):
        _unique("lr", self.lr)
        _unique("compare_mixtures", self.compare_mixtures)
        _unique("remedies", self.remedies)
        if "probs_log" in self.compare_mixtures:
            raise ValueError("compare_mixtures must not list probs_log (it runs in every condition)")
        for i, lr in enumerate(self.lr):
            if not 0.0 < lr <= 10.0:
                raise ValueError(f"lr.{i} must be in (0, 10] (lr 0 runs in asker.lr0; got {lr})")
        return self


class Stable(Params):
    """The stable loss shown to learn: logits + softplus MDN vs a single Gaussian, to convergence."""

    seeds: int = Field(10, ge=1, le=100)
    steps: int = Field(600, ge=1, le=1_000_000)
    batch_size: int = Field(256, ge=2, le=1_000_000)
    lr: float = Field(0.003, gt=0.0, le=10.0)
    components: int = Field(5, ge=2, le=256)


class MdnParams(Params):
    seed: int = Field(0, ge=0)
    workers: int = Field(0, ge=0, le=256)  # 0 = one per available core
    data: Data = Data()
    model: Model = Model()
    asker: Asker = Asker()
    stable: Stable = Stable()

    @model_validator(mode="after")
    def _fits(self):
        for name, b in (("asker.batch_size", self.asker.batch_size), ("stable.batch_size", self.stable.batch_size)):
            if b > self.data.n_train:
                raise ValueError(f"{name} ({b}) must be at most data.n_train ({self.data.n_train})")
        return self


class MdnSearchParams(Params):
    """The asker's symptom searched for where it could occur (issue 27.4; a preset, not part of `dvc repro`): the
    asker's loss (``probs_log``: TFP's ``Categorical(probs=softmax)``, i.e. log of the softmax weights) with Adam on
    clean data in [0, 1], every combination of the lists below x ``seeds``, each trial ``steps`` steps long."""

    seed: int = Field(0, ge=0)  # data seed; trial k uses init and batch-order seed seed + k
    seeds: int = Field(2, ge=1, le=100)
    steps: int = Field(20_000, ge=1, le=10_000_000)
    batch_size: int = Field(128, ge=2, le=1_000_000)
    datasets: list[Literal["bishop", "separated"]] = Field(
        default_factory=default_list("bishop", "separated"), min_length=1
    )
    components: list[int] = Field(default_factory=lambda: [3, 10, 20], min_length=1)
    sigma: list[Literal["exp", "softplus", "elu1"]] = Field(
        default_factory=default_list("exp", "elu1", "softplus"), min_length=1
    )
    lr: list[float] = Field(default_factory=lambda: [0.001, 0.01], min_length=1)
    # TF on CPU flushes denormal floats to 0; torch.set_flush_denormal(True) does the same here, so a mixing weight
    # below float32's smallest normal (1.2e-38, a logit gap of ~87) is 0 as in the asker's TensorFlow
    flush_denormal: bool = True
    noise: dict[str, float] = Field(default_factory=lambda: {"bishop": 0.05, "separated": 0.005})
    n_train: int = Field(4096, ge=16, le=10_000_000)
    n_val: int = Field(1024, ge=1, le=10_000_000)
    hidden: int = Field(64, ge=1, le=4096)
    layers: int = Field(2, ge=1, le=8)
    sigma_eps: float = Field(1e-6, ge=0.0, le=1.0)
    curve_points: int = Field(200, ge=2, le=100_000)  # points per trial of the per-step curves (curves.csv)
    workers: int = Field(0, ge=0, le=256)  # 0 = one per available core

    @model_validator(mode="after")
    def _levels(self):
        for name in ("datasets", "components", "sigma", "lr"):
            _unique(name, getattr(self, name))
        for i, k in enumerate(self.components):
            if not 1 <= k <= 256:
                raise ValueError(f"components.{i} must be in [1, 256] (got {k})")
        for i, lr in enumerate(self.lr):
            if not 0.0 < lr <= 10.0:
                raise ValueError(f"lr.{i} must be in (0, 10] (got {lr})")
        missing = [d for d in self.datasets if d not in self.noise]
        if missing:
            raise ValueError(f"noise has no level for datasets {missing}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must be at most n_train ({self.n_train})")
        return self


STAGES = [
    Stage(
        name="mdn",
        question="Why does a mixture-density network's NLL turn NaN after a varying number of steps, even at lr 0?",
        params=MdnParams,
        run="gradlab.studies.mdn.study:run",
        answer=(
            "asker.trials",
            "asker.nan_trials",
            "asker.zero_weight_trials",
            "asker.max_logit_gap",
            "asker.lr0.trials",
            "asker.lr0.nan_trials",
            "causes.*",
            "stable.val_nll_mean",
            "stable.single_gaussian_val_nll_mean",
            "stable.vs_single_gaussian.sign_flip_p",
        ),
        headline=(
            "asker.trials",
            "asker.nan_trials",
            "asker.finite_loss_nan_grad_trials",
            "asker.nan_trials_with_cause",
            "asker.zero_weight_trials",
            "asker.max_logit_gap",
            "asker.by_lr.*.nan_trials",
            "asker.by_condition.*.nan_trials",
            "asker.lr0.trials",
            "asker.lr0.nan_trials",
            "asker.lr0.nan_trials_with_cause",
            "asker.lr0.clean_nonzero_scale_nan_trials",
            "asker.lr0.nonfinite_input_nan_trials",
            "asker.lr0.zero_scale_nan_trials",
            "asker.lr0.bn_val_changed_trials",
            "compare.*.nan_trials",
            "compare.saturated.*.finite_loss_nan_grad_trials",
            "causes.*",
            "referee.port_agrees",
            "referee.underflow.tf_grad_nan",
            "referee.underflow.*.grad_nan",
            "referee.underflow.*.loss_abs_diff",
            "independent.passes",
            "independent.underflow_gap",
            "independent.*.loss_finite",
            "independent.*.grad_nan",
            "compare.*.paired_p_vs_probs_log",
            "stable.val_nll_mean",
            "stable.val_nll_ci_*",
            "stable.single_gaussian_val_nll_mean",
            "stable.single_gaussian_val_nll_ci_*",
            "stable.marginal_val_nll",
            "stable.vs_single_gaussian.diff_mean",
            "stable.vs_single_gaussian.diff_ci_*",
            "stable.vs_single_gaussian.sign_flip_p",
            "stable.vs_marginal.sign_flip_p",
            "stable.vs_uniform.sign_flip_p",
            "stable.nonfinite_events",
            "flags.*",
        ),
    ),
    Stage(
        name="mdn_search",
        question="Where does the asker's MDN NaN occur: a mixing weight underflowing to 0 under log(probs), or else?",
        params=MdnSearchParams,
        run="gradlab.studies.mdn.search:run",
        answer=(
            "trials",
            "nan_trials",
            "zero_weight_trials",
            "outcomes.*.trials",
            "max_logit_gap",
            "min_scale",
            "gap_over_*_threshold_trials",
            "thresholds.*",
        ),
        preset=True,
    ),
]
