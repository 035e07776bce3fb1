"""per_sample_input_grad: every method against analytic gradients, the BatchNorm case, errors, costs."""

from __future__ import annotations

import math

import pytest
import torch

from gradlab.config import ConfigError, validate_section
from gradlab.studies.input_grad import (
    METHODS,
    batch_jacobian,
    central_differences,
    couples_samples,
    per_sample_input_grad,
)
from gradlab.studies.input_grad.config import InputGradParams
from gradlab.studies.input_grad.problems import make_network, make_points, target, target_grad
from gradlab.studies.input_grad.timing import peak_bytes, timing_grid


class Analytic(torch.nn.Module):
    """h(x) = c * ||x||^2 + sin(x1) * x2: grad h = (2c x1 + cos(x1) x2, 2c x2 + sin(x1))."""

    def __init__(self, c: float = 0.7):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c, dtype=torch.float64))

    def forward(self, x):
        return (self.c * (x * x).sum(dim=1) + torch.sin(x[:, 0]) * x[:, 1]).unsqueeze(1)

    def grad(self, x):
        c = float(self.c.detach())
        return torch.stack([2 * c * x[:, 0] + torch.cos(x[:, 0]) * x[:, 1], 2 * c * x[:, 1] + torch.sin(x[:, 0])], 1)


def relu_net_grad(net: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The question's network by hand: grad = W1^T (relu'(W1 x + b1) * w2)."""
    lin1, lin2 = net[0], net[2]
    active = (x @ lin1.weight.T + lin1.bias > 0).to(x.dtype)  # [N, H]
    return (active * lin2.weight) @ lin1.weight  # [N, H] @ [H, 2]


def points(n: int = 37, seed: int = 0) -> torch.Tensor:
    return make_points(n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", METHODS)
def test_each_method_on_an_analytic_model(method):
    model, X = Analytic(), points()
    G = per_sample_input_grad(model, X, method)
    assert G.shape == X.shape and not G.requires_grad
    assert torch.allclose(G, model.grad(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_on_the_questions_network(method):
    """nn.Sequential(Linear(2,2), ReLU, Linear(2,1)), N=100, as in the question."""
    net, X = make_network(2, seed=3), points(100)
    assert torch.allclose(per_sample_input_grad(net, X, method), relu_net_grad(net, X), rtol=0, atol=1e-12)


def test_central_differences_match_the_analytic_gradient():
    model, X = Analytic(), points()
    assert (central_differences(model, X, 1e-6) - model.grad(X)).abs().max() < 1e-8


def test_a_one_dimensional_output_is_accepted_and_other_shapes_refused():
    X = points(5)
    flat = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Flatten(0)).double()
    assert per_sample_input_grad(flat, X, "vmap").shape == (5, 2)
    wide = torch.nn.Linear(2, 3).double()
    for method in METHODS:
        with pytest.raises(ValueError, match="one scalar per sample"):
            per_sample_input_grad(wide, X, method)


def test_unknown_method_names_the_allowed_ones():
    allowed = "allowed: auto, sum, grad_outputs, vmap, jacrev, loop"
    with pytest.raises(ValueError, match=f"unknown method 'autograd'; {allowed}"):
        per_sample_input_grad(Analytic(), points(3), "autograd")


def bn_network(seed: int = 0) -> torch.nn.Sequential:
    net = make_network(16, batchnorm=True, seed=seed).train()
    assert couples_samples(net)
    return net


def test_batchnorm_train_mode_sum_trick_is_the_jacobian_column_sum_not_the_diagonal():
    net, X = bn_network(), points(50)
    J = batch_jacobian(net, X)  # [N, N, d]
    idx = torch.arange(50)
    diagonal, column_sums = J[idx, idx], J.sum(dim=0)
    assert (diagonal - column_sums).abs().max() > 1e-3  # the samples really interact
    for method in ["sum", "grad_outputs"]:
        G = per_sample_input_grad(net, X, method, allow_coupling=True)
        assert torch.allclose(G, column_sums, rtol=0, atol=1e-12)
        assert (G - diagonal).abs().max() > 1e-3
    for method in ["vmap", "jacrev", "loop"]:
        assert torch.allclose(per_sample_input_grad(net, X, method), diagonal, rtol=0, atol=1e-12), method


def test_batchnorm_eval_mode_every_method_is_exact():
    net, X = bn_network(1), points(50)
    with torch.no_grad():
        net(X)  # some running statistics
    net.eval()
    assert not couples_samples(net)
    ref = per_sample_input_grad(net, X, "loop")
    J = batch_jacobian(net, X)
    off = J.clone()
    off[torch.arange(50), torch.arange(50)] = 0
    assert off.abs().max() == 0  # no coupling left
    for method in METHODS:
        assert (per_sample_input_grad(net, X, method) - ref).abs().max() <= 1e-12, method


def test_methods_leave_batchnorm_running_statistics_alone():
    net, X = bn_network(), points(20)
    bn = net[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    for method in METHODS:
        per_sample_input_grad(net, X, method, allow_coupling=True)
        per_sample_input_grad(net, X, method, create_graph=True, allow_coupling=True)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2] and bn.track_running_stats and bn.training


def test_create_graph_gives_the_same_parameter_gradients_for_every_method():
    """A gradient-matching loss (Sobolev) back-propagates to the parameters identically."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    X = points(30)
    params = [p for p in net.parameters()][:3]  # the last bias does not reach the input gradient
    results = {}
    for method in METHODS:
        G = per_sample_input_grad(net, X, method, create_graph=True)
        assert G.requires_grad
        grads = torch.autograd.grad(((G - target_grad(X)) ** 2).sum(), params)
        results[method] = torch.cat([g.flatten() for g in grads])
    assert results["sum"].abs().max() > 0
    for method, flat in results.items():
        assert torch.allclose(flat, results["loop"], rtol=0, atol=1e-12), method


def test_target_gradient_is_the_derivative_of_the_target():
    X = points(20).requires_grad_(True)
    (G,) = torch.autograd.grad(target(X).sum(), X)
    assert torch.allclose(G, target_grad(X.detach()), atol=1e-12)


def test_peak_bytes_sees_a_known_allocation():
    peak = peak_bytes(lambda: torch.empty(1_000_000, dtype=torch.float32).fill_(1.0))
    assert 4_000_000 <= peak < 4_100_000


def test_timing_grid_records_caps_with_an_extrapolation():
    net = make_network(4, seed=0).float()
    rows = timing_grid(
        net, lambda n: torch.rand(n, 2), ["sum", "loop"], [4, 8, 16], {"loop": 8}, min_seconds=0.0, max_repeats=1
    )
    by = {(r["method"], r["n"]): r for r in rows}
    assert {m for m, _ in by} == {"reference_backward", "sum", "loop"}
    assert by[("loop", 16)]["status"] == "capped" and math.isnan(by[("loop", 16)]["seconds"])
    assert by[("loop", 16)]["extrapolated_seconds"] == pytest.approx(4 * by[("loop", 8)]["cpu_seconds"])
    assert by[("sum", 16)]["status"] == "ok" and by[("sum", 16)]["peak_bytes"] > 0


def test_config_refuses_a_jacrev_grid_that_cannot_fit():
    with pytest.raises(ConfigError, match="jacrev_max_n = 100000 needs about"):
        validate_section("input_grad", InputGradParams, {"timing": {"jacrev_max_n": 100_000}})
    with pytest.raises(ConfigError, match="ns must be strictly increasing"):
        validate_section("input_grad", InputGradParams, {"timing": {"ns": [100, 10]}})
    with pytest.raises(ConfigError, match="input_grad.sobolev.method: must be one of"):
        validate_section("input_grad", InputGradParams, {"sobolev": {"method": "autograd"}})
