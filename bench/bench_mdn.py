"""mdn: one trial trained through Lightning vs the same trial in a plain PyTorch loop.

Both sides build the same data, network and batch order, run the same module's per-step
work (forward with the non-finite watch, loss, backward, gradient and weight checks, Adam
step) and must produce identical losses. The study trains with Lightning Fabric
(``MDNTrial.fit``); the same module under ``pl.Trainer`` is measured too, for the
record: its per-step hooks are what made the study switch. The ratio is Lightning's
per-step overhead relative to the step: it shrinks as the batch (the work per step) grows.
"""

from __future__ import annotations

import dataclasses

import torch
from harness import compare

from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.module import MDNTrial, make_optimizer
from gradlab.studies.mdn.trial import TrialSpec, build, trial_specs
from gradlab.training import fit


def default_spec(batch_size: int | None = None) -> TrialSpec:
    """The first trial of the default stable block (logits, softplus, Adam), optionally with another batch size."""
    spec = next(s for s in trial_specs(MdnParams()) if s.block == "stable" and s.mixture == "logits")
    return dataclasses.replace(spec, batch_size=batch_size) if batch_size else spec


def _module(spec: TrialSpec) -> MDNTrial:
    net, x, y, _, _, order = build(spec)
    return MDNTrial(net, x, y, order, spec.mixture, "correct", spec.optimizer, spec.lr, spec.loss_clip)


def lightning_trial(spec: TrialSpec) -> list[float]:
    """The study's path: Lightning Fabric drives the LightningModule."""
    module = _module(spec)
    module.fit(spec.steps)
    return module.losses


def trainer_trial(spec: TrialSpec) -> list[float]:
    """The same module under ``pl.Trainer`` (not the study's path; for the record)."""
    module = _module(spec)
    fit(module, spec.steps)
    return module.losses


def plain_trial(spec: TrialSpec) -> list[float]:
    """The same module's per-step work (loss, watch, checks) in a plain PyTorch loop, no Lightning."""
    module = _module(spec)
    opt = make_optimizer(spec.optimizer, module.net.parameters(), spec.lr)
    for step in range(min(spec.steps, len(module.order))):
        loss = module.training_step(step, step)
        opt.zero_grad()
        loss.backward()
        module.on_before_optimizer_step(opt)
        opt.step()
        ok = module.watch.check_weights(module.net)
        module._after_check()
        if not ok:
            break
    return module.losses


def run() -> dict:
    torch.set_num_threads(1)  # as in the stage's workers
    out = {}
    for batch in (None, 512, 2048):
        spec = default_spec(batch)
        name = "default_trial" if batch is None else f"batch{batch}"
        for side, trial in (("lightning", lightning_trial), ("trainer", trainer_trial)):
            same = trial(spec) == plain_trial(spec)
            r = compare(lambda spec=spec, trial=trial: trial(spec), lambda spec=spec: plain_trial(spec), rounds=5)
            r["overhead_ms_per_step"] = 1000 * (r["subject_s"] - r["reference_s"]) / spec.steps
            r["identical_losses"] = same
            if side == "lightning":
                r["target"] = "<= 1.15" if batch is None else "(same trial, larger batch)"
            else:
                r["target"] = "(pl.Trainer, not the study's path: for the record)"
            out[f"{side}_vs_plain_{name}_b{spec.batch_size}_{spec.steps}_steps"] = r
    # the fixed part: setting up Fabric / a Trainer and entering the loop, measured on one-step trials
    one = dataclasses.replace(default_spec(), steps=1)
    for side, trial in (("lightning", lightning_trial), ("trainer", trainer_trial)):
        r = compare(lambda trial=trial: trial(one), lambda: plain_trial(one), rounds=5)
        r["startup_overhead_ms"] = 1000 * (r["subject_s"] - r["reference_s"])
        r["target"] = "(start-up only)"
        out[f"{side}_vs_plain_one_step"] = r
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
