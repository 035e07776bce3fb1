"""The public library API in gradlab/__init__.py: light to import, every name there, typed, documented, and
refusing wrong shapes with a message that names the argument, the shape received and the shape expected."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch

import gradlab

PUBLIC = [
    "make_rule",
    "find_lr_threshold",
    "top_hessian_eigenvalue",
    "per_sample_input_grad",
    "per_sample_input_grad_and_outputs",
    "couples_samples",
    "nll",
    "sigma_from",
    "NonFiniteWatch",
    "nan_doctor",
    "NanDoctor",
    "NonFiniteError",
    "NonFiniteReport",
    "diagnose",
    "diagnose_script",
    "nan_causes",
    "soft_rank",
    "soft_spearman",
    "rank_scale",
    "discounted_returns",
    "standardize",
    "policy_loss",
    "probe_step",
    "dlogp_adv_corr",
    "probe_update",
    "logp_moves",
    "fixed_batch_descent",
]
HEAVY = ["mlflow", "dvc", "pytorch_lightning", "lightning", "gymnasium", "ray", "pandas", "matplotlib", "typer"]


def test_all_names_are_listed_and_discoverable():
    assert sorted(gradlab.__all__) == sorted(PUBLIC)
    assert set(PUBLIC) <= set(dir(gradlab))
    with pytest.raises(AttributeError, match="module 'gradlab' has no attribute 'per_sample_grad'"):
        gradlab.per_sample_grad  # noqa: B018


def test_import_is_light_and_every_name_imports_only_torch_numpy_scipy():
    code = f"""
import sys
import gradlab
assert "torch" not in sys.modules, "import gradlab imported torch"
for name in gradlab.__all__:
    getattr(gradlab, name)
heavy = [m for m in {HEAVY!r} if m in sys.modules]
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_is_documented_and_typed(name):
    obj = getattr(gradlab, name)
    assert (inspect.getdoc(obj) or "").strip(), f"gradlab.{name} has no docstring"
    function = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(function)
    untyped = [
        p.name
        for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.annotation is p.empty
    ]
    assert not untyped, f"gradlab.{name}: parameters without a type annotation: {untyped}"
    if not inspect.isclass(obj):
        assert sig.return_annotation is not sig.empty, f"gradlab.{name} has no return annotation"


# --- wrong shapes: the error names the argument, the shape received and the shape expected ------------------


def test_per_sample_input_grad_refuses_a_vector_output():
    with pytest.raises(ValueError, match=r"model\(X\).*\[N\] or \[N, 1\].*N = 6; got shape \(6, 3\)"):
        gradlab.per_sample_input_grad(torch.nn.Linear(4, 3), torch.randn(6, 4))


def test_nll_is_gradlab_mixture_nll_nll_with_the_studys_signature():
    import inspect
    import pickle

    from gradlab.studies.mdn.losses import nll as study_nll

    assert (gradlab.nll.__module__, gradlab.nll.__qualname__) == ("gradlab.mixture_nll", "nll")
    assert pickle.loads(pickle.dumps(gradlab.nll)) is gradlab.nll  # workers started by spawn can take it
    assert inspect.signature(gradlab.nll) == inspect.signature(study_nll)
    with pytest.raises(TypeError, match=r"^nll: got an unexpected keyword argument 'alpha'; it takes \(logits"):
        gradlab.nll(alpha=torch.ones(2, 3))


def test_nll_refuses_or_handles_a_column_target():
    """y of shape [B, 1] against [B, K] mixtures used to broadcast to a [B, B] matrix (wrong, silently)."""
    B, K = 5, 3
    g = torch.Generator().manual_seed(0)
    logits, mu = torch.randn(B, K, generator=g), torch.randn(B, K, generator=g)
    sigma, y = torch.rand(B, K, generator=g) + 0.5, torch.randn(B, generator=g)
    try:
        column = gradlab.nll(logits, mu, sigma, y.reshape(B, 1))
    except ValueError as err:
        assert "y" in str(err) and "(5, 1)" in str(err) and "(5,)" in str(err), str(err)
    else:
        assert column.shape == (B,) and torch.allclose(column, gradlab.nll(logits, mu, sigma, y))


def test_soft_spearman_refuses_different_lengths():
    with pytest.raises(ValueError, match=r"\(5,\).*\(6,\)"):
        gradlab.soft_spearman(torch.randn(5), torch.randn(6), 1.0)


def test_policy_loss_refuses_advantages_of_another_length():
    with pytest.raises(ValueError, match=r"adv.*\[5\].*\(6,\)"):
        gradlab.policy_loss("correct", -torch.rand(5, generator=torch.Generator().manual_seed(0)), torch.randn(6))


# --- the tools on a user's own tensors ------------------------------------------------------------------------


def test_nll_equals_the_mixture_log_prob_of_torch_distributions():
    D = torch.distributions
    g = torch.Generator().manual_seed(1)
    logits, mu = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    raw, y = torch.randn(8, 4, generator=g), torch.randn(8, generator=g)
    sigma = gradlab.sigma_from(raw, "softplus")
    mix = D.MixtureSameFamily(D.Categorical(logits=logits), D.Normal(mu, sigma))
    assert torch.allclose(gradlab.nll(logits, mu, sigma, y), -mix.log_prob(y), atol=1e-5)


def test_soft_spearman_approaches_scipy_spearman_and_has_a_gradient():
    from scipy.stats import spearmanr

    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    a.requires_grad_(True)
    rho = gradlab.soft_spearman(a, b, 1e-3)
    assert float(rho.detach()) == pytest.approx(spearmanr(a.detach().numpy(), b.numpy()).statistic, abs=1e-6)
    gradlab.soft_spearman(a, b, 1.0).backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0


def test_policy_loss_correct_is_advantage_times_cross_entropy():
    logp = torch.log_softmax(torch.randn(7, 3), -1)[:, 0].requires_grad_(True)
    adv = gradlab.standardize(gradlab.discounted_returns(np.array([0, 0, 0, 0, 0, 0, 1.0]), 0.99))
    loss = gradlab.policy_loss("correct", logp, torch.as_tensor(adv))
    assert torch.allclose(loss, (torch.as_tensor(adv, dtype=logp.dtype) * -logp).sum())
