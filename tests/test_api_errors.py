"""No silent wrong answers in the public API: the askers' own calls, and the cryptic errors, get one clear line.

Each case below used to return finite nonsense or fail deep inside torch/numpy ("'ndarray' object has no
attribute 'dim'", an error in ``sqrt``, a raw autograd error); now it raises an error that names the argument and
says what to pass instead -- or it is handled correctly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradlab

# --- gradlab.nll ---------------------------------------------------------------------------------------------


def _mixture(seed: int = 0, b: int = 6, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    logits, mu = torch.randn(b, k, generator=g), torch.randn(b, k, generator=g)
    sigma, y = torch.rand(b, k, generator=g) + 0.5, torch.randn(b, generator=g)
    return logits, mu, sigma, y


def test_nll_refuses_the_askers_argument_order():
    logits, mu, sigma, y = _mixture()
    alpha = torch.softmax(logits, -1)
    with pytest.raises(ValueError, match=r"asker's order nll\(mu, sigma, alpha, y\).*probs=alpha"):
        gradlab.nll(mu, sigma, alpha, y)  # used to return a finite, wrong NLL
    right = gradlab.nll(probs=alpha, mu=mu, sigma=sigma, y=y)
    assert torch.allclose(right, gradlab.nll(logits, mu, sigma, y), atol=1e-5)


@pytest.mark.parametrize("name", ["mu", "y"])
def test_nll_refuses_non_finite_means_and_targets(name):
    logits, mu, sigma, y = _mixture()
    bad = {"mu": mu, "y": y}[name].clone()
    bad.view(-1)[2] = float("nan")
    args = {"logits": logits, "mu": mu, "sigma": sigma, "y": y, name: bad}
    with pytest.raises(ValueError, match=rf"nll: {name} has 1 non-finite value"):
        gradlab.nll(**args)


def test_nll_refuses_numpy_arrays_with_the_fix():
    logits, mu, sigma, y = _mixture()
    with pytest.raises(TypeError, match=r"nll: y must be a torch.Tensor, got numpy.ndarray; pass torch.as_tensor"):
        gradlab.nll(logits, mu, sigma, y.numpy())


# --- per_sample_input_grad: coupling in the model's own code ----------------------------------------------------


class Center(nn.Module):
    def forward(self, x):
        return x - x.mean(0)  # mixes the samples of the batch


def _centering_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), Center(), nn.Tanh(), nn.Linear(8, 1))


def test_per_sample_input_grad_detects_coupling_at_run_time():
    model, X = _centering_model(), torch.randn(12, 3)
    Xr = X.clone().requires_grad_(True)
    out = model(Xr)[:, 0]
    exact = torch.stack([torch.autograd.grad(out[i], Xr, retain_graph=True)[0][i] for i in range(12)])
    assert torch.allclose(gradlab.per_sample_input_grad(model, X), exact, atol=1e-6)  # auto falls back to loop
    for method in ("sum", "grad_outputs", "vmap"):
        with pytest.raises(ValueError, match=rf"method='{method}' is wrong for this model: changing one sample"):
            gradlab.per_sample_input_grad(model, X, method=method)
    summed = gradlab.per_sample_input_grad(model, X, method="sum", allow_coupling=True)
    assert not torch.allclose(summed, exact, atol=1e-3)  # the column sums, asked for explicitly


def test_per_sample_input_grad_probe_leaves_independent_models_and_dropout_alone():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, 1))
    X = torch.randn(10, 3)
    from gradlab.studies.input_grad.methods import mixes_samples

    assert not mixes_samples(model, X) and mixes_samples(_centering_model(), X)
    model.eval()
    G = gradlab.per_sample_input_grad(model, X, method="sum")
    assert G.shape == X.shape


# --- gd: top_hessian_eigenvalue, find_lr_threshold -------------------------------------------------------------


def test_top_hessian_eigenvalue_takes_model_parameters_and_a_linear_loss():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    X, y = torch.randn(20, 3), torch.randn(20, 1)

    def loss_fn():
        return ((model(X) - y) ** 2).mean()

    from_generator = gradlab.top_hessian_eigenvalue(loss_fn, model.parameters())
    assert from_generator == pytest.approx(gradlab.top_hessian_eigenvalue(loss_fn, list(model.parameters())))
    assert from_generator > 0
    assert gradlab.top_hessian_eigenvalue(lambda: model(X).sum(), model.parameters()) == 0.0  # linear: H = 0


def test_top_hessian_eigenvalue_refuses_a_per_sample_loss_and_no_params():
    model = nn.Linear(3, 1)
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"loss must be a scalar, got shape \(5, 1\).*loss.sum\(\) or loss.mean\(\)"):
        gradlab.top_hessian_eigenvalue(lambda: model(X) ** 2, model.parameters())
    with pytest.raises(ValueError, match="params is empty"):
        gradlab.top_hessian_eigenvalue(lambda: model(X).sum(), [])


@pytest.mark.parametrize("start", [0, 0.0, -1e-3, float("nan")])
def test_find_lr_threshold_refuses_a_start_that_is_not_a_positive_lr(start):
    with pytest.raises(ValueError, match="start must be a positive learning rate"):
        gradlab.find_lr_threshold(lambda lr: lr > 0.5, start)


# --- spearman ---------------------------------------------------------------------------------------------------


def test_soft_spearman_refuses_integers_and_arrays_with_the_fix():
    with pytest.raises(TypeError, match=r"soft_spearman: a must be a floating-point tensor, got torch.int64; pass a"):
        gradlab.soft_spearman(torch.arange(5), torch.randn(5))
    with pytest.raises(TypeError, match=r"soft_spearman: b must be a torch.Tensor, got numpy.ndarray"):
        gradlab.soft_spearman(torch.randn(5), np.arange(5.0))
    with pytest.raises(TypeError, match=r"soft_rank: x must be a torch.Tensor, got list"):
        gradlab.soft_rank([3.0, 1.0, 2.0])


# --- pg ---------------------------------------------------------------------------------------------------------


def test_discounted_returns_refuses_a_batch_and_a_gamma_outside_0_1():
    with pytest.raises(ValueError, match=r"one episode of shape \[T\], got shape \(2, 3\).*per episode"):
        gradlab.discounted_returns(np.zeros((2, 3)), 0.99)
    for gamma in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"gamma must be a discount factor in \[0, 1\]"):
            gradlab.discounted_returns(np.array([0.0, 1.0]), gamma)
    assert gradlab.discounted_returns(torch.tensor([0.0, 0.0, 1.0]), 0.5).tolist() == [0.25, 0.5, 1.0]


def test_policy_loss_refuses_probabilities_and_arrays():
    probs = torch.softmax(torch.randn(6, 3), -1)[:, 0]
    with pytest.raises(ValueError, match=r"logp must be log-probabilities.*probabilities\? pass torch.log_softmax"):
        gradlab.policy_loss("correct", probs, torch.randn(6))
    with pytest.raises(TypeError, match=r"policy_loss: logp must be a torch.Tensor, got numpy.ndarray"):
        gradlab.policy_loss("correct", np.log(np.full(6, 0.5)), torch.randn(6))


def _batch(t: int = 8):
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randn(t, 4, generator=g),
        "actions": torch.randint(0, 2, (t,), generator=g),
        "adv": torch.randn(t, generator=g),
    }


def test_probes_refuse_a_softmax_policy_a_per_step_loss_and_numpy_obs():
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 2), nn.Softmax(dim=-1))
    with pytest.raises(ValueError, match=r"rows are probabilities.*ends in a softmax. Drop the nn.Softmax"):
        gradlab.probe_step(policy, "correct", _batch())
    logits_policy = nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"loss\(logp\): the loss must be a scalar, got shape \(8,\)"):
        gradlab.probe_update(logits_policy, lambda logp: -logp, _batch())
    with pytest.raises(ValueError, match=r"the loss must be a scalar"):
        gradlab.fixed_batch_descent(logits_policy, lambda logp: -logp, _batch(), steps=2)
    batch = _batch()
    batch["obs"] = batch["obs"].numpy()
    with pytest.raises(TypeError, match=r"batch\['obs'\] must be a torch.Tensor, got numpy.ndarray"):
        gradlab.probe_update(logits_policy, "correct", batch)
    moves = gradlab.logp_moves(np.zeros(3), np.array([-1.0, 0.0, 1.0]), np.array([-1.0, 0.5, 2.0]))
    assert moves["adv_neg_logp_down_fraction"] == 1.0


# --- the package without the pipeline extra -----------------------------------------------------------------


def test_help_gradlab_says_which_modules_need_the_pipeline_extra():
    doc = gradlab.__doc__
    assert "PACKAGE CONTENTS" in doc and "gradlab[pipeline]" in doc and "nan_doctor" in doc
    import pydoc

    text = pydoc.render_doc(gradlab)
    assert "need" in text and "pipeline" in text and "nan_doctor" in text
