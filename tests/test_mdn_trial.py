"""One mdn trial through Lightning: the first non-finite value, its step and cause; lr 0; BatchNorm; Fabric."""

from __future__ import annotations

import dataclasses
import math

import torch

from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.module import MDNTrial, batch_order
from gradlab.studies.mdn.trial import TrialSpec, build, run_trial, trial_specs

TINY = {
    "data": {"n_train": 512, "n_val": 128, "outlier_fraction": 0.002, "nonfinite_fraction": 0.002},
    "model": {"hidden": 16, "layers": 2, "components": 3},
    "asker": {"seeds": 1, "steps": 40, "batch_size": 32},
}


def spec(**kw) -> TrialSpec:
    base = next(s for s in trial_specs(MdnParams.model_validate(TINY)) if s.block == "asker")
    return dataclasses.replace(base, **kw)


def first_nan_batch(s: TrialSpec) -> int:
    """The first step whose batch holds a row with x = NaN (known from the data and the batch order)."""
    d = make_data(s.n_train, s.n_val, s.noise, 0.0, s.outlier_scale, s.data_seed, s.nonfinite_fraction)
    order = batch_order(s.n_train, s.batch_size, s.steps, s.seed + 10_007)
    hits = [i for i, rows in enumerate(order) if set(rows.tolist()) & set(d.nonfinite_index.tolist())]
    return hits[0]


def test_nonfinite_input_at_lr0_fails_on_its_batch_and_the_weights_turn_nan():
    for opt in ("adam", "sgd"):
        s = spec(block="lr0", condition="nonfinite", lr=0.0, nonfinite=True, optimizer=opt)
        expected = first_nan_batch(s)
        r = run_trial(s)
        assert r["diverged"] == 1 and r["cause"] == "nonfinite_input", r["cause"]
        assert r["first_nonfinite_step"] == expected
        assert r["first_nonfinite_what"].startswith("activation:")  # the first layer's output
        assert r["fixed_first_nonfinite_batch"] == expected and 0 < r["fixed_nonfinite_batches"] < r["fixed_batches"]
        assert r["drift_before_first_nonfinite"] == 0.0  # lr 0: the weights had not moved before
        assert r["weights_nonfinite"] == 1 and r["weights_nonfinite_step"] == expected  # NaN gradient x 0 = NaN
        assert all(math.isfinite(v) for v in r["losses"][:expected])


def test_clean_inputs_at_lr0_stay_finite_and_batchnorm_moves_at_lr0():
    plain = run_trial(spec(block="lr0", condition="clean", lr=0.0))
    bn = run_trial(spec(block="lr0", condition="clean", lr=0.0, batchnorm=True))
    for r in (plain, bn):
        assert r["diverged"] == 0 and r["val_nll"] is not None
    assert plain["val_nll"] == plain["val_nll_start"]  # nothing moves at lr 0 ...
    assert bn["val_nll"] != bn["val_nll_start"]  # ... except BatchNorm's running statistics
    poisoned = run_trial(spec(block="lr0", condition="nonfinite", lr=0.0, nonfinite=True, batchnorm=True))
    assert poisoned["running_stats_nonfinite"] == 1 and poisoned["cause"] == "nonfinite_input"


def test_relu_scale_is_nan_at_the_first_step_at_lr0():
    r = run_trial(spec(block="lr0", sigma="relu", lr=0.0, batchnorm=True))
    assert (r["first_nonfinite_step"], r["first_nonfinite_what"], r["cause"]) == (
        0,
        "component_logdensity",
        "zero_scale",
    )
    assert r["weights_nonfinite_step"] == 0 and r["fixed_nonfinite_batches"] == r["fixed_batches"]


def test_an_underflowed_weight_in_training_is_classified_finite_loss_nan_grad():
    """Saturate the head by hand (one logit 120 below the others): the asker's path, finite loss, NaN gradient."""
    s = spec(lr=0.01)
    for mixture, nan in (("probs_log", True), ("logits", False), ("probs_torch", False)):
        net, x, y, _, _, order = build(s)
        with torch.no_grad():
            net.head.bias[0] = -120.0  # component 0's logit: exp(-120) = 0 in float32
        module = MDNTrial(net, x, y, order, mixture, "correct", "adam", 0.01)
        module.fit(3)
        assert bool(module.weight_zero[0])
        if nan:
            assert module.losses[0] == module.losses[0] and math.isfinite(module.losses[0])  # finite loss at step 0
            assert module.watch.first.step == 0 and module.watch.first.what == "grad"
            assert module.cause == "log_of_underflowed_weight" and module.event_loss_finite
        else:
            assert module.watch.first is None, (mixture, module.watch.first)


def test_stable_formulation_survives_and_learns_a_little():
    for lr, opt in [(0.0, "adam"), (0.01, "adam"), (0.01, "sgd")]:
        r = run_trial(spec(mixture="logits", lr=lr, optimizer=opt))
        assert r["diverged"] == 0 and r["weights_nonfinite"] == 0, (lr, opt, r["first_nonfinite_what"])
        assert math.isfinite(r["val_nll"]) and r["steps_run"] == 40


def test_y_shift_reports_nll_in_the_original_units():
    a = run_trial(spec(lr=0.0, block="lr0"))
    b = run_trial(spec(lr=0.0, block="lr0", y_transform=True))
    assert a["val_nll"] != b["val_nll"] and math.isfinite(b["val_nll"])  # same net, other targets


def test_trial_is_deterministic():
    a, b = run_trial(spec(lr=0.01, batchnorm=True, steps=15)), run_trial(spec(lr=0.01, batchnorm=True, steps=15))
    a.pop("seconds"), b.pop("seconds")
    sa, sb = a.pop("state"), b.pop("state")
    assert a == b and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _train(s: TrialSpec, driver: str):
    from gradlab.training import fit

    net, x, y, _, _, order = build(s)
    module = MDNTrial(net, x, y, order, s.mixture, "correct", s.optimizer, s.lr, s.loss_clip)
    if driver == "fabric":
        module.fit(s.steps, s.grad_clip)
    else:
        fit(module, s.steps, gradient_clip_val=s.grad_clip or None, gradient_clip_algorithm="norm")
    w = module.watch
    weights = [p.detach().clone() for p in net.parameters()]
    return module.losses, w.first, w.weights_nonfinite_step, module.cause, weights


def test_fabric_loop_is_the_trainer_loop():
    """The study trains with Fabric; the Trainer, running the module's hooks, must give the same trial."""
    cases = [
        spec(lr=0.01, steps=25),  # the asker's path, learning
        spec(lr=0.05, optimizer="sgd", grad_clip=0.5, batchnorm=True, steps=25),  # clipping by norm
        spec(lr=0.01, loss_clip=1.0, steps=20),
        spec(block="lr0", lr=0.0, nonfinite=True, grad_clip=1.0),  # NaN on the bad batch, clipped NaN gradient
    ]
    for s in cases:
        fab, tr = _train(s, "fabric"), _train(s, "trainer")
        assert str(fab[:4]) == str(tr[:4]), s  # str: NaN losses compare equal
        assert all(_same(a, b) for a, b in zip(fab[4], tr[4], strict=True)), s
    assert _train(cases[3], "fabric")[1] is not None  # the diverging case does diverge


def _same(a, b) -> bool:
    return a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())
