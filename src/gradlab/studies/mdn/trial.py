"""The factorial grid of the mdn study and one trial of it, run in a worker process.

:func:`trial_specs` lists the grid (:func:`design`) times the seeds as frozen :class:`TrialSpec`;
:func:`run_trial` trains one of them and returns plain data (a diverged trial is a result).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import torch

from gradlab.studies.mdn.config import KEY_FACTORS, OTHER_FACTORS, Data, MdnParams, Model
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.module import MDN, MDNTrial, batch_order, fixed_weight_probe, val_nll

DTYPES = {"float32": torch.float32, "float64": torch.float64}
FACTORS = (*KEY_FACTORS, *OTHER_FACTORS)


@dataclass(frozen=True)
class TrialSpec:
    mixture: str  # the factors' levels (config.Factors)
    sigma: str
    target_shape: str
    lr: float
    optimizer: str
    grad_clip: float
    dtype: str
    batchnorm: bool
    seed: int  # the network's initialisation and the batch order
    data: Data
    data_seed: int
    model: Model
    steps: int
    batch_size: int

    def levels(self) -> dict:
        return {f: getattr(self, f) for f in FACTORS}


def level_name(factor: str, value) -> str:
    if factor == "lr":
        return f"lr{value:g}"
    if factor == "grad_clip":
        return f"clip{value:g}" if value else "noclip"
    if factor == "batchnorm":
        return "bn" if value else "nobn"
    return str(value)


def variant(levels) -> str:
    """``logits-softplus-correct-lr0.001-adam-noclip-float32-nobn``: a row's or a spec's levels, in FACTORS order."""
    levels = levels.levels() if isinstance(levels, TrialSpec) else levels
    return "-".join(level_name(f, levels[f]) for f in FACTORS)


def design(p: MdnParams) -> list[dict]:
    """The factor combinations: key factors in full x the others in full or in a half fraction.

    Half fraction: keep the combinations of the other factors whose level indices sum to an
    even number. For four two-level factors this is the 2^(4-1) design with defining relation
    I = ABCD (resolution IV): every main effect is estimable and aliased only with
    three-factor interactions; every level of every factor appears equally often.
    """
    f = p.factors
    key = list(itertools.product(*(getattr(f, n) for n in KEY_FACTORS)))
    others = list(itertools.product(*(list(enumerate(getattr(f, n))) for n in OTHER_FACTORS)))
    if p.design.fraction == "half":
        others = [c for c in others if sum(i for i, _ in c) % 2 == 0]
    rows = []
    for k in key:
        for o in others:
            rows.append(
                dict(zip(KEY_FACTORS, k, strict=True)) | dict(zip(OTHER_FACTORS, [v for _, v in o], strict=True))
            )
    return rows


def trial_specs(p: MdnParams) -> list[TrialSpec]:
    """Every configuration of the design times ``p.seeds`` seeds (seeds vary fastest)."""
    return [
        TrialSpec(
            **row,
            seed=p.seed + k,
            data=p.data,
            data_seed=p.seed,
            model=p.model,
            steps=p.train.steps,
            batch_size=p.train.batch_size,
        )
        for row in design(p)
        for k in range(p.seeds)
    ]


def build(spec: TrialSpec):
    """The data tensors, the initialised network and the batch order of a trial (all seeded)."""
    d = spec.data
    data = make_data(d.n_train, d.n_val, d.noise, d.outlier_fraction, d.outlier_scale, spec.data_seed)
    dtype = DTYPES[spec.dtype]
    x, y = torch.as_tensor(data.x_train, dtype=dtype), torch.as_tensor(data.y_train, dtype=dtype)
    xv, yv = torch.as_tensor(data.x_val, dtype=dtype), torch.as_tensor(data.y_val, dtype=dtype)
    m = spec.model
    torch.manual_seed(spec.seed)
    net = MDN(m.hidden, m.layers, m.components, spec.sigma, spec.batchnorm, m.sigma_eps).to(dtype)
    order = batch_order(len(x), spec.batch_size, spec.steps, spec.seed + 10_007)
    return net, x, y, xv, yv, order


def run_trial(spec: TrialSpec) -> dict:
    """Train one configuration through Lightning (Fabric); never raises on NaN (a diverged trial is a result)."""
    start = time.perf_counter()
    torch.manual_seed(spec.seed)
    net, x, y, xv, yv, order = build(spec)
    fixed = None
    if spec.lr == 0.0:  # which batches of one epoch are non-finite (loss or gradient) on the initial weights?
        per_epoch = min(len(x) // spec.batch_size, len(order))
        fixed = fixed_weight_probe(net, x, y, order[:per_epoch], spec.mixture, spec.target_shape)
    module = MDNTrial(net, x, y, order, spec.mixture, spec.target_shape, spec.optimizer, spec.lr)
    module.fit(spec.steps, spec.grad_clip)
    watch, losses = module.watch, module.losses
    first = watch.first
    diverged = first is not None
    weights_ok = watch.weights_nonfinite_step is None
    result = {
        "diverged": int(diverged),
        "first_nonfinite_step": first.step if first else None,
        "first_nonfinite_what": first.label if first else "",
        "weights_nonfinite": int(not weights_ok),
        "weights_nonfinite_step": watch.weights_nonfinite_step,
        "steps_run": len(losses),
        "nonfinite_loss_steps": sum(not math.isfinite(v) for v in losses),
        "val_nll": val_nll(net, xv, yv) if not diverged else None,
        "losses": losses,
    }
    if fixed is not None:
        bad = [i for i, v in enumerate(fixed) if v]
        result["drift_before_first_nonfinite"] = module.drift_at_event
        result["fixed_batches"] = len(fixed)
        result["fixed_nonfinite_batches"] = len(bad)
        result["fixed_first_nonfinite_batch"] = bad[0] if bad else None
    result["seconds"] = time.perf_counter() - start
    return result
