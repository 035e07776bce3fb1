"""The mdn study's science: the safe NLL against torch.distributions, the asker's path, the formulations, the design."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from gradlab.config import ConfigError, validate_section
from gradlab.studies.mdn import nll, sigma_from
from gradlab.studies.mdn.config import REMEDIES, MdnParams
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.losses import mixture_loss
from gradlab.studies.mdn.referee import REFERENCE, referee, underflow_gap
from gradlab.studies.mdn.trial import trial_specs, variant


def reference(logits, mu, sigma, y):
    return -MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma)).log_prob(y)


@pytest.mark.parametrize("b,k", [(1, 1), (7, 3), (64, 10)])
def test_nll_matches_torch_distributions_float64(b, k):
    g = torch.Generator().manual_seed(b * 100 + k)
    for _ in range(5):
        logits = 3 * torch.randn(b, k, generator=g, dtype=torch.float64)
        mu = 2 * torch.randn(b, k, generator=g, dtype=torch.float64)
        sigma = torch.exp(torch.randn(b, k, generator=g, dtype=torch.float64))
        y = 3 * torch.randn(b, generator=g, dtype=torch.float64)
        got, want = nll(logits, mu, sigma, y), reference(logits, mu, sigma, y)
        assert got.shape == (b,)
        assert torch.allclose(got, want, rtol=0, atol=1e-6), (got - want).abs().max()


def test_nll_gradients_match_reference():
    g = torch.Generator().manual_seed(1)
    args = [torch.randn(8, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    args[2] = args[2].exp()
    y = torch.randn(8, generator=g, dtype=torch.float64)
    a = [t.clone().requires_grad_() for t in args]
    b = [t.clone().requires_grad_() for t in args]
    nll(*a, y).sum().backward()
    reference(*b, y).sum().backward()
    for ta, tb in zip(a, b, strict=True):
        assert torch.allclose(ta.grad, tb.grad, atol=1e-9)


@pytest.mark.parametrize("dtype,z", [(torch.float32, 15.0), (torch.float64, 40.0)])
def test_stable_is_finite_where_probs_underflows(dtype, z):
    """A target z standard deviations from every component: the probability-space density is exactly 0."""
    logits = torch.zeros(1, 2, dtype=dtype)
    mu = torch.zeros(1, 2, dtype=dtype)
    sigma = torch.ones(1, 2, dtype=dtype)
    y = torch.tensor([z], dtype=dtype, requires_grad=True)
    stable = nll(logits, mu, sigma, y)
    assert torch.isfinite(stable).all() and math.isclose(
        float(stable.detach()), 0.5 * z * z + 0.5 * math.log(2 * math.pi), rel_tol=1e-6
    )
    naive = mixture_loss(logits, mu, sigma, y, "density", "correct")
    assert math.isinf(float(naive))
    naive.backward()
    assert torch.isnan(y.grad).all()  # d(-log s)/ds = -inf times ds/dy = 0: NaN
    # one standard deviation less and both agree
    y2 = torch.tensor([z - 2.0], dtype=dtype)
    assert torch.allclose(mixture_loss(logits, mu, sigma, y2, "density"), nll(logits, mu, sigma, y2).mean(), rtol=1e-4)


def test_formulations_agree_on_benign_inputs_and_broadcast_is_b_by_b():
    g = torch.Generator().manual_seed(0)
    b, k = 6, 3
    logits, mu = torch.randn(b, k, generator=g), torch.rand(b, k, generator=g)
    sigma = 0.5 + torch.rand(b, k, generator=g)
    y = torch.rand(b, generator=g)
    stable = mixture_loss(logits, mu, sigma, y, "logits", "correct")
    assert torch.allclose(stable, nll(logits, mu, sigma, y).mean())
    for mixture in ("density", "probs_log", "probs_torch"):
        assert torch.allclose(mixture_loss(logits, mu, sigma, y, mixture, "correct"), stable, atol=1e-6), mixture
    dist = MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma))
    # a [B, 1] target scores every y against every row's mixture: a B x B log-likelihood ...
    bb = dist.log_prob(y.reshape(b, 1))
    assert bb.shape == (b, b)
    assert torch.allclose(mixture_loss(logits, mu, sigma, y, "logits", "broadcast"), -bb.mean(), atol=1e-6)
    # ... and its transpose [1, B] pairs row i with y_i again
    assert torch.allclose(-dist.log_prob(y.reshape(b, 1).t()).mean(), stable, atol=1e-6)


def test_sigma_activations():
    raw = torch.tensor([-200.0, -30.0, 0.0, 3.0])
    assert (sigma_from(raw, "relu")[:3] == 0).all()
    assert sigma_from(raw, "exp")[0] == 0  # exp(-200) underflows in float32
    for kind in ("softplus", "elu1"):
        assert (sigma_from(raw, kind, 1e-6) > 0).all()
    assert torch.allclose(sigma_from(raw, "elu1", 0.0)[2:], torch.tensor([1.0, 4.0]))
    # a zero scale makes the component log-density 0/0 -> NaN in either formulation
    recorded = {}
    loss = mixture_loss(
        torch.zeros(1, 1),
        torch.zeros(1, 1),
        torch.zeros(1, 1),
        torch.tensor([0.5]),
        record=lambda n, t: recorded.setdefault(n, t),
    )
    assert torch.isnan(loss) and torch.isnan(recorded["component_logdensity"]).all()
    with pytest.raises(ValueError):
        sigma_from(raw, "tanh")


def test_data_scaled_and_outliers():
    d = make_data(1000, 200, 0.05, 0.004, 20.0, seed=3)
    clean = torch.ones(1000, dtype=torch.bool)
    clean[d.outlier_index] = False
    assert len(d.outlier_index) == 4
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert (d.y_train[clean.numpy()] >= 0).all() and (d.y_train[clean.numpy()] <= 1).all()
    assert (abs(d.y_train[d.outlier_index] - 0.5) > 9).all()
    assert (d.y_val >= -0.01).all() and (d.y_val <= 1.01).all()
    again = make_data(1000, 200, 0.05, 0.004, 20.0, seed=3)
    assert (again.y_train == d.y_train).all()
    nan = make_data(1000, 200, 0.05, 0.0, 20.0, seed=3, nonfinite_fraction=0.002)
    assert len(nan.nonfinite_index) == 2 and torch.isnan(torch.as_tensor(nan.x_train)).sum() == 2
    clean = make_data(1000, 200, 0.05, 0.0, 20.0, seed=3)
    keep = torch.ones(1000, dtype=torch.bool)
    keep[nan.nonfinite_index] = False
    assert (nan.x_train[keep.numpy()] == clean.x_train[keep.numpy()]).all()  # the other rows are untouched


def test_trial_blocks_and_names():
    p = MdnParams()
    specs = trial_specs(p)
    a = p.asker
    asker = [s for s in specs if s.block == "asker"]
    # baseline probs_log at every lr, compare_mixtures / each remedy alone / outliers at remedy_lr, one long trial,
    # and the constructed saturated head for every mixture
    per_seed = len(a.lr) + len(a.compare_mixtures) + len(REMEDIES) + 1 + (1 + len(a.compare_mixtures))  # saturated
    assert len(asker) == per_seed * a.seeds + 1
    assert {s.head_bias0 for s in asker if s.condition == "saturated"} == {a.saturated_bias}
    assert all(s.head_bias0 == 0 for s in asker if s.condition != "saturated")
    (long,) = [s for s in asker if s.condition == "long"]
    assert long.steps == a.long_steps and long.mixture == "probs_log" and long.lr == a.remedy_lr
    assert all(not s.outliers for s in asker if s.condition != "outliers")  # clean data by default
    assert {s.mixture for s in asker if s.condition not in ("baseline", "saturated")} == {"probs_log"}
    lr0 = [s for s in specs if s.block == "lr0"]
    z = a.lr0
    assert len(lr0) == len(z.mixtures) * len(z.inputs) * len(z.batchnorm) * len(z.optimizers) * len(z.sigma) * a.seeds
    assert all(s.lr == 0.0 for s in lr0)
    stable = [s for s in specs if s.block == "stable"]
    assert len(stable) == 2 * p.stable.seeds >= 20 and {s.components for s in stable} == {p.stable.components, 1}
    names = {(variant(s), s.seed) for s in specs}
    assert len(names) == len(specs)


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"bogus": 1}, "mdn.bogus"),
        ({"asker": {"lr": [0.0]}}, "mdn.asker"),
        ({"asker": {"lr0": {"sigma": ["tanh"]}}}, "mdn.asker.lr0.sigma.0"),
        ({"asker": {"compare_mixtures": ["probs_log"]}}, "mdn.asker"),
        ({"asker": {"batch_size": 8192}}, "mdn"),
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        validate_section("mdn", MdnParams, raw)
    assert err.value.key == key


# --- the public nll: shapes, scales, probs ------------------------------------------------------


def test_nll_refuses_a_b_by_1_target_naming_the_shapes_and_the_trap():
    logits, mu, sigma = torch.zeros(8, 3), torch.rand(8, 3), torch.ones(8, 3)
    with pytest.raises(ValueError) as err:
        nll(logits, mu, sigma, torch.rand(8, 1))
    msg = str(err.value)
    assert "(8, 1)" in msg and "(8,)" in msg and "(8, 3)" in msg and "[B, B]" in msg and "broadcast" in msg
    with pytest.raises(ValueError):
        nll(logits, mu, sigma, torch.rand(1, 8))  # the transposed target is refused too
    with pytest.raises(ValueError):
        nll(logits, mu[:, :2], sigma, torch.rand(8))  # parameters of different shapes
    assert nll(logits, mu, sigma, torch.rand(8)).shape == (8,)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_nll_refuses_a_scale_that_is_not_positive(bad):
    sigma = torch.ones(4, 2)
    sigma[1, 0] = bad
    with pytest.raises(ValueError, match="sigma must be strictly positive"):
        nll(torch.zeros(4, 2), torch.zeros(4, 2), sigma, torch.zeros(4))


def test_nll_takes_logits_or_probs_not_both():
    mu, sigma, y = torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2)
    with pytest.raises(ValueError, match="exactly one"):
        nll(torch.zeros(2, 2), mu, sigma, y, probs=torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="exactly one"):
        nll(None, mu, sigma, y)
    with pytest.raises(ValueError, match="non-negative"):
        nll(mu=mu, sigma=sigma, y=y, probs=torch.tensor([[1.5, -0.5], [0.5, 0.5]]))


def test_nll_probs_equals_logits_and_survives_an_exact_zero():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(16, 4, generator=g, dtype=torch.float64)
    mu, y = torch.rand(16, 4, generator=g, dtype=torch.float64), torch.rand(16, generator=g, dtype=torch.float64)
    sigma = 0.05 + torch.rand(16, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(nll(probs=torch.softmax(logits, -1), mu=mu, sigma=sigma, y=y), nll(logits, mu, sigma, y))
    # an exact zero weight (float32 softmax of logits ~110 apart): finite loss, finite gradient
    lg = torch.tensor([[0.0, 110.0, 5.0]], requires_grad=True)
    probs = torch.softmax(lg, -1)
    assert int((probs == 0).sum()) == 2
    loss = nll(probs=probs, mu=torch.tensor([[0.2, 0.5, 0.8]]), sigma=torch.full((1, 3), 0.1), y=torch.tensor([0.45]))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(lg.grad).all()


def test_sigma_from_is_exported_and_bounded():
    import gradlab.studies.mdn as mdn

    assert "sigma_from" in mdn.__all__ and mdn.sigma_from is sigma_from
    assert (sigma_from(torch.tensor([-50.0, 0.0])) > 0).all()  # softplus + eps by default


# --- the asker's path: independent of the study's code ---------------------------------------------


def test_independent_underflowed_weight_probs_log_nan_grad_logits_finite():
    """Written from the TFP source, not from the study: Categorical(probs=alpha).logits_parameter() is
    tf.math.log(alpha); MixtureSameFamily.log_prob is logsumexp(Normal.log_prob + log_softmax(logits))."""
    logits = torch.tensor([[0.0, 110.0, 5.0], [0.3, -0.2, 0.1]], requires_grad=True)
    mu = torch.tensor([[0.2, 0.5, 0.8], [0.1, 0.4, 0.9]])
    sigma = torch.full((2, 3), 0.1)
    y = torch.tensor([0.45, 0.5])
    alpha = torch.softmax(logits, dim=-1)
    assert bool((alpha[0] == 0).any()) and not bool((alpha[1] == 0).any())  # one weight underflowed, float32
    normal = -0.5 * ((y[:, None] - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    tfp_like = -torch.logsumexp(normal + torch.log_softmax(torch.log(alpha), -1), -1).mean()
    (g_tfp,) = torch.autograd.grad(tfp_like, logits)
    assert math.isfinite(float(tfp_like)) and bool(torch.isnan(g_tfp[0]).all())  # finite loss, NaN gradient
    assert bool(torch.isfinite(g_tfp[1]).all())  # the other row is unaffected
    via_logits = -torch.logsumexp(normal + torch.log_softmax(logits, -1), -1).mean()
    (g_logits,) = torch.autograd.grad(via_logits, logits)
    assert math.isfinite(float(via_logits)) and bool(torch.isfinite(g_logits).all())
    assert abs(float(via_logits) - float(tfp_like)) < 1e-5
    # the study's formulations say the same
    for mixture, nan in (("probs_log", True), ("logits", False), ("probs_torch", False)):
        lg = logits.detach().clone().requires_grad_()
        loss = mixture_loss(lg, mu, sigma, y, mixture)
        (g,) = torch.autograd.grad(loss, lg)
        assert math.isfinite(float(loss)) and bool(torch.isnan(g).any()) == nan, mixture
    assert 103.0 < underflow_gap() < 105.0


def test_port_agrees_with_the_recorded_tfp_output():
    """tfp_referee/tfp_reference.json: the asker's literal TF code's loss and gradients (NaN included)."""
    assert REFERENCE.exists()
    r = referee()
    assert r["available"] and r["port_agrees"]
    assert r["underflow"]["tf_grad_nan"] == 1 and r["underflow"]["probs_log"]["grad_nan"] == 1
    assert r["benign"]["tf_grad_nan"] == 0 and r["benign"]["probs_log"]["agrees_with_tfp"]
    # torch's own Categorical(probs=) clamps: finite gradient, a different loss than TFP's
    assert r["underflow"]["probs_torch"]["grad_nan"] == 0 and not r["underflow"]["probs_torch"]["agrees_with_tfp"]
