"""mdn: one trial trained through Lightning vs the same trial in a plain PyTorch loop.

Both sides build the same data, network and batch order, run the same per-step work
(forward with the non-finite watch, loss, backward, gradient and weight checks, Adam
step) and must produce identical losses. The ratio is Lightning's per-step overhead
relative to the step: it shrinks as the batch (the work per step) grows.
"""

from __future__ import annotations

import torch
from harness import compare

from gradlab.forensics import NonFiniteWatch
from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.losses import mixture_loss
from gradlab.studies.mdn.module import MDNTrial, make_optimizer
from gradlab.studies.mdn.trial import build
from gradlab.training import make_trainer


def default_spec(batch_size: int | None = None) -> dict:
    """The stable trial of the default grid (logits, softplus, correct, Adam lr 1e-3, float32)."""
    p = MdnParams()
    return {
        "data": p.data.model_dump() | {"seed": p.seed},
        "model": p.model.model_dump(),
        "batch_size": batch_size or p.train.batch_size,
        "steps": p.train.steps,
        "mixture": "logits",
        "sigma": "softplus",
        "target_shape": "correct",
        "lr": 0.001,
        "optimizer": "adam",
        "grad_clip": 0.0,
        "dtype": "float32",
        "batchnorm": False,
        "seed": 0,
    }


def lightning_trial(spec: dict) -> list[float]:
    net, x, y, _, _, order = build(spec)
    module = MDNTrial(net, x, y, order, spec["mixture"], spec["target_shape"], spec["optimizer"], spec["lr"])
    make_trainer(max_steps=spec["steps"]).fit(module)
    return module.losses


def plain_trial(spec: dict) -> list[float]:
    net, x, y, _, _, order = build(spec)
    opt = make_optimizer(spec["optimizer"], net.parameters(), spec["lr"])
    watch, losses = NonFiniteWatch(net), []
    for step, idx in enumerate(order):
        watch.begin(step)
        logits, mu, sigma = net(x[idx])
        loss = mixture_loss(logits, mu, sigma, y[idx], spec["mixture"], spec["target_shape"], watch.record)
        watch.check_loss(loss)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        watch.check_grads(net)
        opt.step()
        if not watch.check_weights(net):
            break
    return losses


def run() -> dict:
    torch.set_num_threads(1)  # as in the stage's workers
    out = {}
    for batch in (None, 512, 2048):
        spec = default_spec(batch)
        same = lightning_trial(spec) == plain_trial(spec)
        r = compare(lambda spec=spec: lightning_trial(spec), lambda spec=spec: plain_trial(spec), rounds=5)
        r["overhead_ms_per_step"] = 1000 * (r["subject_s"] - r["reference_s"]) / spec["steps"]
        r["identical_losses"] = same
        name = "default_trial" if batch is None else f"batch{batch}"
        r["target"] = "<= 1.15" if batch is None else "(same trial, larger batch)"
        out[f"lightning_vs_plain_{name}_b{spec['batch_size']}_{spec['steps']}_steps"] = r
    # the fixed part: building a Trainer and entering fit, measured on one-step trials
    one = default_spec() | {"steps": 1}
    r = compare(lambda: lightning_trial(one), lambda: plain_trial(one), rounds=5)
    r["startup_overhead_ms"] = 1000 * (r["subject_s"] - r["reference_s"])
    r["target"] = "(start-up only)"
    out["lightning_vs_plain_one_step"] = r
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
