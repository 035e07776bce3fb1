"""Parameters of the ``mdn`` stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gradlab.config import Params
from gradlab.stages import Stage

MEMORY_BUDGET_BYTES = 4 * 2**30  # the B x B x K broadcast must fit beside everything else, per worker
KEY_FACTORS = ("mixture", "sigma", "target_shape", "lr")  # crossed in full
OTHER_FACTORS = ("optimizer", "grad_clip", "dtype", "batchnorm")  # full or half fraction


def _unique(name: str, values: list) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated levels: {values}")


class Data(Params):
    """Bishop's inverse problem, x and y scaled to [0, 1]; a few training targets corrupted."""

    n_train: int = Field(4096, ge=16, le=10_000_000)
    n_val: int = Field(1024, ge=1, le=10_000_000)
    noise: float = Field(0.05, ge=0.0, le=10.0)
    outlier_fraction: float = Field(0.0005, ge=0.0, le=0.5)
    outlier_scale: float = Field(20.0, ge=0.0, le=1e6)


class Model(Params):
    hidden: int = Field(64, ge=1, le=4096)
    layers: int = Field(2, ge=1, le=8)
    components: int = Field(5, ge=1, le=256)
    sigma_eps: float = Field(1e-6, ge=0.0, le=1.0)  # added to softplus and elu1 (ELU + 1 + eps)


class Train(Params):
    batch_size: int = Field(128, ge=2, le=1_000_000)
    steps: int = Field(150, ge=1, le=1_000_000)


class Factors(Params):
    """Each a list of levels; the trial grid crosses them (see ``design``)."""

    mixture: list[Literal["logits", "probs"]] = Field(default_factory=lambda: ["logits", "probs"], min_length=1)
    sigma: list[Literal["exp", "softplus", "elu1", "relu"]] = Field(
        default_factory=lambda: ["exp", "softplus", "elu1", "relu"], min_length=1
    )
    target_shape: list[Literal["correct", "broadcast"]] = Field(
        default_factory=lambda: ["correct", "broadcast"], min_length=1
    )
    lr: list[float] = Field(default_factory=lambda: [0.0, 0.001, 0.01], min_length=1)
    optimizer: list[Literal["sgd", "adam"]] = Field(default_factory=lambda: ["sgd", "adam"], min_length=1)
    grad_clip: list[float] = Field(default_factory=lambda: [0.0, 1.0], min_length=1)  # 0 = no clipping
    dtype: list[Literal["float32", "float64"]] = Field(default_factory=lambda: ["float32", "float64"], min_length=1)
    batchnorm: list[bool] = Field(default_factory=lambda: [False, True], min_length=1)

    @model_validator(mode="after")
    def _levels(self):
        for name in (*KEY_FACTORS, *OTHER_FACTORS):
            _unique(name, getattr(self, name))
        for i, lr in enumerate(self.lr):
            if not 0.0 <= lr <= 10.0:
                raise ValueError(f"lr.{i} must be in [0, 10] (got {lr})")
        for i, c in enumerate(self.grad_clip):
            if not 0.0 <= c <= 1e6:
                raise ValueError(f"grad_clip.{i} must be 0 (no clipping) or a positive norm (got {c})")
        return self


class Design(Params):
    """``half``: the other factors (optimizer, grad_clip, dtype, batchnorm) in a half fraction."""

    fraction: Literal["full", "half"] = "half"


class MdnParams(Params):
    seed: int = Field(0, ge=0)
    seeds: int = Field(2, ge=1, le=100)
    workers: int = Field(0, ge=0, le=256)  # 0 = one per available core
    chunks: int = Field(4, ge=1, le=64)  # rounds of trials; each round is logged while the next one trains
    data: Data = Data()
    model: Model = Model()
    train: Train = Train()
    factors: Factors = Factors()
    design: Design = Design()

    @model_validator(mode="after")
    def _fits(self):
        if self.train.batch_size > self.data.n_train:
            raise ValueError(
                f"train.batch_size ({self.train.batch_size}) must be at most data.n_train ({self.data.n_train})"
            )
        if "broadcast" in self.factors.target_shape:
            b, k = self.train.batch_size, self.model.components
            need = 8 * b * b * k * 12  # ~12 live [B, B, K] float64 tensors in forward + backward
            if need > MEMORY_BUDGET_BYTES:
                raise ValueError(
                    f"train.batch_size {b} with target_shape broadcast needs about {need / 2**30:.1f} GiB "
                    f"per trial (B x B x K); allowed at most {MEMORY_BUDGET_BYTES / 2**30:.0f} GiB"
                )
        return self


STAGES = [
    Stage(
        name="mdn",
        question="Why does a mixture-density network's NLL turn NaN after a varying number of steps, even at lr 0?",
        params=MdnParams,
        run="gradlab.studies.mdn.study:run",
    )
]
