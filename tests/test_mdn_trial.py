"""One mdn trial through Lightning: the watch finds the planted outlier batch, lr = 0 poisons the weights."""

from __future__ import annotations

import math

from gradlab.studies.mdn.config import Data, Model
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.module import batch_order
from gradlab.studies.mdn.trial import TrialSpec, run_trial

DATA = {"n_train": 512, "n_val": 128, "noise": 0.05, "outlier_fraction": 0.002, "outlier_scale": 20.0}


def spec(**kw) -> TrialSpec:
    s = {
        "data": Data(**DATA),
        "data_seed": 0,
        "model": Model(hidden=16, layers=2, components=3, sigma_eps=1e-6),
        "batch_size": 32,
        "steps": 40,
        "mixture": "logits",
        "sigma": "softplus",
        "target_shape": "correct",
        "lr": 0.0,
        "optimizer": "adam",
        "grad_clip": 0.0,
        "dtype": "float32",
        "batchnorm": False,
        "seed": 1,
    }
    return TrialSpec(**(s | kw))


def first_outlier_batch(s: TrialSpec) -> int:
    """The first step whose batch holds an outlier target (known from the data and the batch order)."""
    d = make_data(**DATA, seed=s.data_seed)
    order = batch_order(DATA["n_train"], s.batch_size, s.steps, s.seed + 10_007)
    hits = [i for i, rows in enumerate(order) if set(rows.tolist()) & set(d.outlier_index.tolist())]
    return hits[0]


def test_probs_at_lr0_fails_on_the_outlier_batch_and_the_weights_turn_nan():
    s = spec(mixture="probs")
    expected = first_outlier_batch(s)
    r = run_trial(s)
    assert r["diverged"] == 1
    assert r["first_nonfinite_step"] == expected
    assert r["first_nonfinite_what"] == "mixture_logdensity"  # log(0): the density underflowed
    assert r["fixed_first_nonfinite_batch"] == expected  # already non-finite on the fixed initial weights
    assert 0 < r["fixed_nonfinite_batches"] < r["fixed_batches"]  # only the batches holding an outlier
    assert r["drift_before_first_nonfinite"] == 0.0  # lr 0: the weights had not moved before
    assert r["weights_nonfinite"] == 1 and r["weights_nonfinite_step"] == expected  # NaN gradient x 0
    assert r["steps_run"] == expected + 1 and r["val_nll"] is None
    assert all(math.isfinite(v) for v in r["losses"][:expected])


def test_stable_formulation_survives_the_same_batches():
    for lr, opt in [(0.0, "adam"), (0.01, "adam"), (0.01, "sgd")]:
        r = run_trial(spec(lr=lr, optimizer=opt))
        assert r["diverged"] == 0 and r["weights_nonfinite"] == 0, (lr, opt, r["first_nonfinite_what"])
        assert math.isfinite(r["val_nll"]) and r["steps_run"] == 40


def test_relu_scale_is_nan_at_the_first_step_at_lr0():
    r = run_trial(spec(sigma="relu", batchnorm=True))
    assert (r["first_nonfinite_step"], r["first_nonfinite_what"]) == (0, "component_logdensity")
    assert r["weights_nonfinite_step"] == 0 and r["fixed_nonfinite_batches"] == r["fixed_batches"]


def test_float64_moves_the_underflow_threshold():
    r32 = run_trial(spec(mixture="probs", dtype="float32", steps=20))
    r64 = run_trial(spec(mixture="probs", dtype="float64", steps=20))
    assert r32["diverged"] == 1  # an outlier's exp(-z^2/2) underflows to 0 in float32 ...
    assert r64["diverged"] == 0  # ... but not in float64 (|z| <= ~30 at init)


def test_trial_is_deterministic():
    a, b = run_trial(spec(lr=0.01, batchnorm=True, steps=15)), run_trial(spec(lr=0.01, batchnorm=True, steps=15))
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def _train(s: TrialSpec, driver: str):
    from gradlab.studies.mdn.module import MDNTrial
    from gradlab.studies.mdn.trial import build
    from gradlab.training import fit

    net, x, y, _, _, order = build(s)
    module = MDNTrial(net, x, y, order, s.mixture, s.target_shape, s.optimizer, s.lr)
    if driver == "fabric":
        module.fit(s.steps, s.grad_clip)
    else:
        fit(module, s.steps, gradient_clip_val=s.grad_clip or None, gradient_clip_algorithm="norm")
    w = module.watch
    weights = [p.detach().clone() for p in net.parameters()]
    return module.losses, w.first, w.weights_nonfinite_step, weights


def test_fabric_loop_is_the_trainer_loop():
    """The study trains with Fabric; the Trainer, running the module's hooks, must give the same trial."""
    cases = [
        spec(lr=0.01, steps=25),  # stable, learning
        spec(lr=0.05, optimizer="sgd", grad_clip=0.5, batchnorm=True, steps=25),  # clipping by norm
        spec(mixture="probs", lr=0.01, grad_clip=1.0),  # diverges on the outlier batch, clipped NaN gradient
        spec(mixture="probs", dtype="float64", lr=0.01, steps=20),
    ]
    for s in cases:
        fab, tr = _train(s, "fabric"), _train(s, "trainer")
        assert fab[:3] == tr[:3], s
        assert all(_same(a, b) for a, b in zip(fab[3], tr[3], strict=True)), s
    assert _train(cases[2], "fabric")[1] is not None  # the diverging case does diverge


def _same(a, b) -> bool:
    return a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())
