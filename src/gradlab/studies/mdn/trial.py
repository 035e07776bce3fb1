"""One trial of the factorial grid, run in a worker process: plain dict in, plain dict out."""

from __future__ import annotations

import math
import time

import torch

from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.module import MDN, MDNTrial, batch_order, fixed_weight_probe, val_nll

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build(spec: dict):
    """The data tensors, the initialised network and the batch order of a trial (all seeded)."""
    d = spec["data"]
    data = make_data(d["n_train"], d["n_val"], d["noise"], d["outlier_fraction"], d["outlier_scale"], d["seed"])
    dtype = DTYPES[spec["dtype"]]
    x, y = torch.as_tensor(data.x_train, dtype=dtype), torch.as_tensor(data.y_train, dtype=dtype)
    xv, yv = torch.as_tensor(data.x_val, dtype=dtype), torch.as_tensor(data.y_val, dtype=dtype)
    m = spec["model"]
    torch.manual_seed(spec["seed"])
    net = MDN(m["hidden"], m["layers"], m["components"], spec["sigma"], spec["batchnorm"], m["sigma_eps"]).to(dtype)
    order = batch_order(len(x), spec["batch_size"], spec["steps"], spec["seed"] + 10_007)
    return net, x, y, xv, yv, order


def run_trial(spec: dict) -> dict:
    """Train one configuration through Lightning (Fabric); never raises on NaN (a diverged trial is a result)."""
    start = time.perf_counter()
    torch.manual_seed(spec["seed"])
    net, x, y, xv, yv, order = build(spec)
    fixed = None
    if spec["lr"] == 0.0:  # which batches of one epoch are non-finite (loss or gradient) on the initial weights?
        per_epoch = min(len(x) // spec["batch_size"], len(order))
        fixed = fixed_weight_probe(net, x, y, order[:per_epoch], spec["mixture"], spec["target_shape"])
    module = MDNTrial(net, x, y, order, spec["mixture"], spec["target_shape"], spec["optimizer"], spec["lr"])
    module.fit(spec["steps"], spec["grad_clip"])
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
