"""The trials of the mdn study and one trial of it, run in a worker process.

Three blocks (``TrialSpec.block``):

* ``asker`` -- the asker's conditions at lr > 0: clean data in [0, 1], long training, the asker's
  loss (``probs_log``) under the baseline and under each remedy they tried, alone; torch's
  ``probs_torch`` and the ``logits`` path beside it on the baseline and outlier conditions.
* ``lr0`` -- learning rate 0: clean or non-finite inputs, BatchNorm or not, SGD or Adam, a scale
  that can or cannot be 0.
* ``stable`` -- the stable loss (logits, softplus) with K components against a single Gaussian
  (K = 1), trained to convergence, to show it learns.

:func:`trial_specs` lists them as frozen :class:`TrialSpec`; :func:`run_trial` trains one and returns
plain data (a diverged trial is a result, never an exception).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from gradlab.numerics import torch_threads
from gradlab.stats import finite_or_none
from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.module import MDN, MDNTrial, batch_order, fixed_weight_probe, val_nll

BASELINE = {"optimizer": "adam", "grad_clip": 0.0, "loss_clip": 0.0, "batchnorm": False, "y_transform": False}
FIELDS = (
    "block",
    "condition",
    "mixture",
    "sigma",
    "lr",
    "optimizer",
    "grad_clip",
    "loss_clip",
    "batchnorm",
    "y_transform",
    "outliers",
    "nonfinite",
    "components",
)


@dataclass(frozen=True)
class TrialSpec:
    block: str  # asker | lr0 | stable
    condition: str  # baseline, a remedy (sgd, grad_clip, loss_clip, batchnorm, y_shift), outliers; lr0/stable: a label
    mixture: str
    sigma: str
    lr: float
    optimizer: str
    grad_clip: float
    loss_clip: float
    batchnorm: bool
    y_transform: bool
    outliers: bool
    nonfinite: bool
    components: int
    seed: int  # the network's initialisation and the batch order
    data_seed: int
    steps: int
    batch_size: int
    n_train: int
    n_val: int
    noise: float
    outlier_fraction: float
    outlier_scale: float
    nonfinite_fraction: float
    y_scale: float
    y_shift: float
    hidden: int
    layers: int
    sigma_eps: float
    density_grid: bool = False  # return the fitted p(y | x) on a grid (the stable block)
    head_bias0: float = 0.0  # the saturated condition: the initial bias of component 0's logit (0 = as initialised)
    dataset: str = "bishop"  # data.DATASETS (mdn_search: also "separated")
    flush_denormal: bool = False  # mdn_search: denormal floats flushed to 0 while the trial runs, as TF on CPU

    def levels(self) -> dict:
        return {f: getattr(self, f) for f in FIELDS}


def cost(spec: TrialSpec) -> float:
    """Rough relative cost, to start the slow trials first (both cores stay busy to the end)."""
    if spec.sigma == "relu" and spec.lr == 0.0:
        return 1.0  # NaN weights at step 0: stops at once
    return spec.steps * (spec.batch_size + 200)


def variant(spec: TrialSpec) -> str:
    """``asker-baseline-probs_log-lr0.01``, ``lr0-nonfinite-bn-adam-relu-probs_log``, ``stable-k5``."""
    if spec.block == "asker":
        return f"asker-{spec.condition}-{spec.mixture}-lr{spec.lr:g}"
    if spec.block == "lr0":
        bn = "bn" if spec.batchnorm else "nobn"
        inputs = "nonfinite" if spec.nonfinite else "clean"
        return f"lr0-{inputs}-{bn}-{spec.optimizer}-{spec.sigma}-{spec.mixture}"
    return f"stable-k{spec.components}"


def _spec(p: MdnParams, seed: int, **kw) -> TrialSpec:
    d, m = p.data, p.model
    base = {
        "sigma": m.sigma,
        "outliers": False,
        "nonfinite": False,
        "components": m.components,
        "seed": seed,
        "data_seed": p.seed,
        "n_train": d.n_train,
        "n_val": d.n_val,
        "noise": d.noise,
        "outlier_fraction": d.outlier_fraction,
        "outlier_scale": d.outlier_scale,
        "nonfinite_fraction": d.nonfinite_fraction,
        "y_scale": d.y_scale,
        "y_shift": d.y_shift,
        "hidden": m.hidden,
        "layers": m.layers,
        "sigma_eps": m.sigma_eps,
    }
    return TrialSpec(**(base | kw))


def asker_conditions(p: MdnParams) -> list[tuple[str, dict]]:
    """(name, settings) of the lr > 0 conditions: baseline, each remedy alone, outliers (not the long trial)."""
    a = p.asker
    remedy = {
        "sgd": {"optimizer": "sgd"},
        "grad_clip": {"grad_clip": a.grad_clip},
        "loss_clip": {"loss_clip": a.loss_clip},
        "batchnorm": {"batchnorm": True},
        "y_shift": {"y_transform": True},
    }
    out = [("baseline", dict(BASELINE))]
    out += [(r, BASELINE | remedy[r]) for r in a.remedies]
    if a.outliers:
        out.append(("outliers", BASELINE | {"outliers": True}))
    return out


def trial_specs(p: MdnParams) -> list[TrialSpec]:
    """Every trial of the three blocks (seeds vary fastest)."""
    a, specs = p.asker, []
    for name, settings in asker_conditions(p):
        if name == "baseline":
            cells = [("probs_log", lr) for lr in a.lr] + [(m, a.remedy_lr) for m in a.compare_mixtures]
        else:
            cells = [("probs_log", a.remedy_lr)]
        for mixture, lr in cells:
            for k in range(a.seeds):
                specs.append(
                    _spec(
                        p,
                        p.seed + k,
                        block="asker",
                        condition=name,
                        mixture=mixture,
                        lr=lr,
                        steps=a.steps,
                        batch_size=a.batch_size,
                        **settings,
                    )
                )
    if a.saturated_bias:
        for mixture in ["probs_log", *a.compare_mixtures]:
            for k in range(a.seeds):
                specs.append(
                    _spec(
                        p,
                        p.seed + k,
                        block="asker",
                        condition="saturated",
                        mixture=mixture,
                        lr=a.remedy_lr,
                        steps=a.steps,
                        batch_size=a.batch_size,
                        head_bias0=a.saturated_bias,
                        **BASELINE,
                    )
                )
    if a.long_steps:
        specs.append(
            _spec(
                p,
                p.seed,
                block="asker",
                condition="long",
                mixture="probs_log",
                lr=a.remedy_lr,
                steps=a.long_steps,
                batch_size=a.batch_size,
                **BASELINE,
            )
        )
    z = a.lr0
    for inputs in z.inputs:
        for bn in z.batchnorm:
            for opt in z.optimizers:
                for sigma in z.sigma:
                    for mixture in z.mixtures:
                        for k in range(a.seeds):
                            specs.append(
                                _spec(
                                    p,
                                    p.seed + k,
                                    block="lr0",
                                    condition=inputs,
                                    mixture=mixture,
                                    sigma=sigma,
                                    lr=0.0,
                                    optimizer=opt,
                                    grad_clip=0.0,
                                    loss_clip=0.0,
                                    batchnorm=bn,
                                    y_transform=False,
                                    nonfinite=inputs == "nonfinite",
                                    steps=z.steps,
                                    batch_size=a.batch_size,
                                )
                            )
    s = p.stable
    for components in (s.components, 1):
        for k in range(s.seeds):
            specs.append(
                _spec(
                    p,
                    p.seed + k,
                    block="stable",
                    condition=f"k{components}",
                    mixture="logits",
                    sigma="softplus",
                    lr=s.lr,
                    optimizer="adam",
                    grad_clip=0.0,
                    loss_clip=0.0,
                    batchnorm=False,
                    y_transform=False,
                    components=components,
                    steps=s.steps,
                    batch_size=s.batch_size,
                    density_grid=True,
                )
            )
    return specs


def _data(spec: TrialSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The trial's training and validation data ``x, y, x_val, y_val`` (float32; from ``spec.data_seed``)."""
    data = make_data(
        spec.n_train,
        spec.n_val,
        spec.noise,
        spec.outlier_fraction if spec.outliers else 0.0,
        spec.outlier_scale,
        spec.data_seed,
        spec.nonfinite_fraction if spec.nonfinite else 0.0,
        spec.dataset,
    )
    y, yv = data.y_train, data.y_val
    if spec.y_transform:  # "multiplying the y's and adding an integer"
        y, yv = spec.y_scale * y + spec.y_shift, spec.y_scale * yv + spec.y_shift
    x, y = torch.as_tensor(data.x_train, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    xv, yv = torch.as_tensor(data.x_val, dtype=torch.float32), torch.as_tensor(yv, dtype=torch.float32)
    return x, y, xv, yv


def dataset(spec: TrialSpec) -> tuple[str, str, torch.Tensor, torch.Tensor]:
    """The trial's training data as ``(name, the call that makes it, x, y)``, for its run's Datasets."""
    x, y, _, _ = _data(spec)
    kinds = [
        k
        for k, on in [("outliers", spec.outliers), ("nonfinite", spec.nonfinite), ("rescaled", spec.y_transform)]
        if on
    ]
    name = "_".join(["mdn", spec.dataset, *kinds])
    outliers, nonfinite = (
        spec.outlier_fraction if spec.outliers else 0.0,
        spec.nonfinite_fraction if spec.nonfinite else 0.0,
    )
    call = (
        f"make_data({spec.n_train}, {spec.n_val}, {spec.noise}, {outliers}, {spec.outlier_scale}, {spec.data_seed}, "
        f"{nonfinite}, {spec.dataset!r}).x_train, .y_train"
    )
    scaled = f" (y * {spec.y_scale} + {spec.y_shift})" if spec.y_transform else ""
    return name, f"gradlab.studies.mdn.data.{call}{scaled}", x, y


def build(spec: TrialSpec):
    """The data tensors, the initialised network and the batch order of a trial (all seeded)."""
    x, y, xv, yv = _data(spec)
    torch.manual_seed(spec.seed)
    net = MDN(spec.hidden, spec.layers, spec.components, spec.sigma, spec.batchnorm, spec.sigma_eps)
    if spec.head_bias0:
        with torch.no_grad():
            net.head.bias[0] = spec.head_bias0  # component 0's logit: its softmax weight underflows to 0
    order = batch_order(len(x), spec.batch_size, spec.steps, spec.seed + 10_007)
    return net, x, y, xv, yv, order


def _curve(values: torch.Tensor, points: int = 100) -> list[tuple[int, float]]:
    """(step, running maximum) at about ``points`` steps: how the largest logit gap grows with training."""
    if not len(values):
        return []
    running = torch.cummax(values, 0).values
    idx = sorted({int(i) for i in torch.linspace(0, len(values) - 1, min(points, len(values))).round()})
    return [(i, float(running[i])) for i in idx]


@torch.no_grad()
def density_grid(net: MDN, n: int = 81) -> dict:
    """The fitted conditional density p(y | x) on an n x n grid of [0, 1]^2 (y in the data's units)."""
    net.eval()
    xs = torch.linspace(0.0, 1.0, n)
    ys = torch.linspace(-0.1, 1.1, n)
    logits, mu, sigma = net(xs)
    comp = -0.5 * ((ys[None, :, None] - mu[:, None, :]) / sigma[:, None, :]) ** 2 - torch.log(sigma[:, None, :])
    logp = torch.logsumexp(torch.log_softmax(logits, -1)[:, None, :] + comp, -1) - 0.5 * math.log(2 * math.pi)
    return {"x": xs.tolist(), "y": ys.tolist(), "density": logp.exp().T.tolist()}  # density[y_index][x_index]


def run_trial(spec: TrialSpec) -> dict:
    """Train one trial through Lightning (Fabric); never raises on NaN (a diverged trial is a result)."""
    start = time.perf_counter()
    torch.manual_seed(spec.seed)
    net, x, y, xv, yv, order = build(spec)
    log_scale = math.log(spec.y_scale) if spec.y_transform else 0.0  # NLL in the original units of y
    fixed = None
    val_start = None
    if spec.lr == 0.0:  # which batches of one epoch are non-finite (loss or gradient) on the initial weights?
        per_epoch = min(len(x) // spec.batch_size, len(order))
        fixed = fixed_weight_probe(net, x, y, order[:per_epoch], spec.mixture)
        val_start = val_nll(net, xv, yv) - log_scale
    module = MDNTrial(net, x, y, order, spec.mixture, "correct", spec.optimizer, spec.lr, spec.loss_clip)
    module.fit(spec.steps, spec.grad_clip)
    watch, losses = module.watch, module.losses
    first = watch.first
    steps_run = len(losses)
    zero = module.weight_zero[:steps_run]
    zero_steps = zero.nonzero().flatten().tolist()
    running = [b for n, b in net.named_buffers() if "running" in n]
    weights_ok = watch.weights_nonfinite_step is None
    val = val_nll(net, xv, yv) - log_scale if weights_ok else math.nan
    result = {
        "diverged": int(first is not None),
        "first_nonfinite_step": first.step if first else None,
        "first_nonfinite_what": first.label if first else "",
        "cause": module.cause or "",
        "event_loss_finite": None if first is None else int(bool(module.event_loss_finite)),
        "finite_loss_nan_grad": int(first is not None and bool(module.event_loss_finite) and first.what == "grad"),
        "weights_nonfinite": int(not weights_ok),
        "weights_nonfinite_step": watch.weights_nonfinite_step,
        "running_stats_nonfinite": int(bool(running) and not all(bool(torch.isfinite(b).all()) for b in running)),
        "steps_run": steps_run,
        "nonfinite_loss_steps": sum(not math.isfinite(v) for v in losses),
        "zero_weight_steps": len(zero_steps),
        "first_zero_weight_step": zero_steps[0] if zero_steps else None,
        "max_logit_gap": float(module.logit_gap[:steps_run].max()) if steps_run else None,
        "logit_gap_curve": _curve(module.logit_gap[:steps_run]),
        "val_nll": finite_or_none(val),
        "val_nonfinite": int(not math.isfinite(val)),
        "losses": losses,
        "state": {k: v.detach().clone() for k, v in net.state_dict().items()},  # to MLflow (study.log_trial)
    }
    if fixed is not None:
        bad = [i for i, v in enumerate(fixed) if v]
        result["val_nll_start"] = finite_or_none(val_start)
        result["drift_before_first_nonfinite"] = module.drift_at_event
        result["fixed_batches"] = len(fixed)
        result["fixed_nonfinite_batches"] = len(bad)
        result["fixed_first_nonfinite_batch"] = bad[0] if bad else None
    if spec.density_grid and weights_ok:
        result["density_grid"] = density_grid(net)
        result["train_x"] = np.asarray(x[:400]).tolist()
        result["train_y"] = np.asarray(y[:400]).tolist()
    result["seconds"] = time.perf_counter() - start
    return result


def _logged(run_id: str, tracking_uri: str | None):
    """A logged trial rebuilt: its spec, ``build(spec)`` with the logged weights loaded, and its ``model.json``."""
    from gradlab.models import load_model

    state, meta = load_model(run_id, tracking_uri)
    spec = TrialSpec(**meta["spec"])
    built = build(spec)
    built[0].load_state_dict(state)
    return spec, built, meta


def load_logged(run_id: str, tracking_uri: str | None = None) -> tuple[MDN, dict]:
    """A trial's trained network, from its MLflow child run, and its ``model.json`` (the trial's spec and the
    validation NLL it logged)."""
    _, built, meta = _logged(run_id, tracking_uri)
    return built[0], meta


def reevaluate(run_id: str, tracking_uri: str | None = None) -> tuple[dict, dict]:
    """The logged network's validation NLL computed again (the trial's own validation data, one torch thread as
    in the trial) and the logged one: equal (None where it was not finite)."""
    spec, (net, _, _, xv, yv, _), meta = _logged(run_id, tracking_uri)
    log_scale = math.log(spec.y_scale) if spec.y_transform else 0.0
    with torch_threads(1):
        val = val_nll(net, xv, yv) - log_scale
    return {"val_nll": finite_or_none(val)}, meta["evaluation"]
