"""The mdn study's science: the stable NLL against torch.distributions, the naive formulations, the design."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, Normal

from gradlab.config import ConfigError, validate_section
from gradlab.studies.mdn import nll
from gradlab.studies.mdn.config import OTHER_FACTORS, MdnParams
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.losses import mixture_loss, sigma_from
from gradlab.studies.mdn.trial import design, trial_specs, variant


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
        float(stable), 0.5 * z * z + 0.5 * math.log(2 * math.pi), rel_tol=1e-6
    )
    naive = mixture_loss(logits, mu, sigma, y, "probs", "correct")
    assert math.isinf(float(naive))
    naive.backward()
    assert torch.isnan(y.grad).all()  # d(-log s)/ds = -inf times ds/dy = 0: NaN
    # one standard deviation less and both agree
    y2 = torch.tensor([z - 2.0], dtype=dtype)
    assert torch.allclose(mixture_loss(logits, mu, sigma, y2, "probs"), nll(logits, mu, sigma, y2).mean(), rtol=1e-4)


def test_formulations_agree_on_benign_inputs_and_broadcast_is_b_by_b():
    g = torch.Generator().manual_seed(0)
    b, k = 6, 3
    logits, mu = torch.randn(b, k, generator=g), torch.rand(b, k, generator=g)
    sigma = 0.5 + torch.rand(b, k, generator=g)
    y = torch.rand(b, generator=g)
    stable = mixture_loss(logits, mu, sigma, y, "logits", "correct")
    assert torch.allclose(stable, nll(logits, mu, sigma, y).mean())
    assert torch.allclose(mixture_loss(logits, mu, sigma, y, "probs", "correct"), stable, atol=1e-6)
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


def test_half_fraction_is_balanced_and_names_every_factor():
    p = MdnParams()
    rows = design(p)
    assert len(rows) == 2 * 4 * 2 * 3 * 8
    others = {tuple(r[f] for f in OTHER_FACTORS) for r in rows}
    assert len(others) == 8  # half of 2^4
    for f in OTHER_FACTORS:  # every level equally often, and every pair of levels of two factors too
        for g in OTHER_FACTORS:
            if f < g:
                pairs = [(o[OTHER_FACTORS.index(f)], o[OTHER_FACTORS.index(g)]) for o in others]
                assert len(set(pairs)) == 4 and all(pairs.count(x) == 2 for x in set(pairs))
    full = MdnParams.model_validate({"design": {"fraction": "full"}})
    assert len(design(full)) == 2 * len(rows)
    specs = trial_specs(p)
    assert len(specs) == len(rows) * p.seeds
    names = {(variant(s), s.seed) for s in specs}
    assert len(names) == len(specs)
    assert variant(specs[0]).count("-") == 7


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"bogus": 1}, "mdn.bogus"),
        ({"factors": {"lr": [-0.1]}}, "mdn.factors"),
        ({"factors": {"sigma": ["tanh"]}}, "mdn.factors.sigma.0"),
        ({"factors": {"dtype": ["float32", "float32"]}}, "mdn.factors"),
        ({"train": {"batch_size": 8192}}, "mdn"),
        ({"data": {"n_train": 100000}, "train": {"batch_size": 8192}}, "mdn"),
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ConfigError) as err:
        validate_section("mdn", MdnParams, raw)
    assert err.value.key == key
