"""per_sample_input_grad as a library call: method="auto", coupling refused, any input shape, outputs, Dropout.

"One backward per sample" is the definition in the methods docstring: G[i] = autograd.grad(out[i], X)[0][i]
with out = model(X) the batch's output -- for a model that couples samples, the gradient of output i of the
batch with respect to input i, the rest of the batch held fixed. ``one_backward_per_sample`` below computes it
independently of gradlab.
"""

from __future__ import annotations

import copy

import pytest
import torch

from gradlab import couples_samples, per_sample_input_grad, per_sample_input_grad_and_outputs
from gradlab.studies.input_grad.methods import METHODS, auto_method


def one_backward_per_sample(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The reference: one forward of the batch, then autograd.grad(out[i], X)[0][i] for every i."""
    model = copy.deepcopy(model)  # its BatchNorm running statistics may move; the caller's must not
    X = X.detach().clone().requires_grad_(True)
    out = model(X).reshape(X.shape[0])
    return torch.stack([torch.autograd.grad(out[i], X, retain_graph=True)[0][i] for i in range(X.shape[0])])


def mlp_with_batchnorm(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 16), torch.nn.BatchNorm1d(16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()
    return net.train()


def small_cnn(batchnorm: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(1, 4, 3, padding=1)]
    layers += [torch.nn.BatchNorm2d(4)] if batchnorm else []
    layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 1)]
    return torch.nn.Sequential(*layers).double().train()


def batch(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_batchnorm_in_training_mode_auto_equals_one_backward_per_sample_to_1e_10():
    net, X = mlp_with_batchnorm(), batch((64, 2))
    assert couples_samples(net) and auto_method(net) == "vmap"
    reference = one_backward_per_sample(net, X)
    G = per_sample_input_grad(net, X)
    assert G.shape == X.shape
    assert (G - reference).abs().max() <= 1e-10
    # the samples really interact: the sum trick (allowed on purpose) is far off
    wrong = per_sample_input_grad(net, X, "sum", allow_coupling=True)
    assert (wrong - reference).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["sum", "grad_outputs"])
def test_an_explicit_sum_on_a_coupling_model_raises_naming_the_layer(method):
    net, X = mlp_with_batchnorm(), batch((8, 2))
    expected = rf"method='{method}' is wrong for this model: layer '1' \(BatchNorm1d\)"
    with pytest.raises(ValueError, match=expected):
        per_sample_input_grad(net, X, method)
    net.eval()  # running statistics: no coupling, the sum trick is exact
    assert not couples_samples(net) and auto_method(net) == "sum"
    assert (per_sample_input_grad(net, X, method) - one_backward_per_sample(net, X)).abs().max() <= 1e-12


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_image_batch_10x1x8x8_on_a_cnn_equals_one_backward_per_sample(method):
    net, X = small_cnn(), batch((10, 1, 8, 8))
    G = per_sample_input_grad(net, X, method)
    assert G.shape == (10, 1, 8, 8)
    reference = one_backward_per_sample(net, X)
    assert reference.abs().max() > 0
    assert (G - reference).abs().max() <= 1e-12
    # no coupling: each sample on its own gives the same rows
    alone = torch.cat([one_backward_per_sample(net, X[i : i + 1]) for i in range(10)])
    assert (G - alone).abs().max() <= 1e-12


@pytest.mark.parametrize("method", ["auto", "vmap", "jacrev", "loop"])
def test_image_batch_on_a_cnn_with_batchnorm2d_in_training_mode(method):
    net, X = small_cnn(batchnorm=True), batch((10, 1, 8, 8))
    G = per_sample_input_grad(net, X, method)
    assert (G - one_backward_per_sample(net, X)).abs().max() <= 1e-10


def test_one_dimensional_inputs_and_outputs():
    class Square(torch.nn.Module):
        def forward(self, x):
            return torch.sin(x) * x

    X = batch((7,))
    for method in ["auto", *METHODS]:
        G = per_sample_input_grad(Square(), X, method)
        assert G.shape == (7,) and torch.allclose(G, torch.cos(X) * X + torch.sin(X), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_and_outputs_replaces_the_forward_of_a_training_loop(method):
    """(G, out): out equals model(X) and back-propagates to the parameters like a plain forward."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    X, y = batch((12, 3)), batch((12, 1), seed=2)
    G, out = per_sample_input_grad_and_outputs(net, X, method, create_graph=True)
    plain = net(X)
    assert out.shape == plain.shape == (12, 1)
    assert torch.allclose(out, plain, rtol=0, atol=1e-12)
    assert torch.allclose(G, one_backward_per_sample(net, X), rtol=0, atol=1e-12)
    loss = ((out - y) ** 2).mean() + (G**2).sum(dim=1).mean()
    reference_loss = ((plain - y) ** 2).mean() + (one_backward_per_sample_graph(net, X) ** 2).sum(dim=1).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    reference = torch.autograd.grad(reference_loss, list(net.parameters()))
    for a, b in zip(grads, reference, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def test_an_unknown_option_is_refused_naming_the_allowed_ones():
    net, X = torch.nn.Linear(3, 1).double(), batch((4, 3))
    with pytest.raises(TypeError, match=r"unknown option return_outputs; allowed: create_graph, .*_and_outputs"):
        per_sample_input_grad(net, X, return_outputs=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"unknown option chunk; allowed: create_graph, chunk_size, randomness"):
        per_sample_input_grad_and_outputs(net, X, chunk=2)  # type: ignore[call-arg]


def one_backward_per_sample_graph(model, X):
    X = X.detach().clone().requires_grad_(True)
    out = model(X).reshape(X.shape[0])
    rows = [torch.autograd.grad(out[i], X, retain_graph=True, create_graph=True)[0][i] for i in range(X.shape[0])]
    return torch.stack(rows)


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_outputs_without_create_graph_still_train_the_parameters(method):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).double()
    X = batch((5, 2))
    G, out = per_sample_input_grad_and_outputs(net, X, method)
    assert not G.requires_grad and out.requires_grad
    out.sum().backward()
    plain = copy.deepcopy(net)
    plain(X).sum().backward()
    for a, b in zip(net.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=0, atol=1e-12)


def test_running_statistics_move_once_when_the_call_replaces_the_forward():
    for method in ["auto", "vmap", "jacrev", "loop"]:
        net, X = mlp_with_batchnorm(), batch((16, 2))
        plain = copy.deepcopy(net)
        expected = plain(X).detach()  # one training forward: batch statistics, one running-average update
        per_sample_input_grad(net, X, method)  # no outputs: no side effect
        assert net[1].num_batches_tracked == 0 and torch.all(net[1].running_mean == 0)
        _, out = per_sample_input_grad_and_outputs(net, X, method)
        assert torch.allclose(out, expected, rtol=0, atol=1e-12), method
        assert net[1].num_batches_tracked == 1, method
        assert torch.allclose(net[1].running_mean, plain[1].running_mean, rtol=0, atol=1e-15), method
        assert torch.allclose(net[1].running_var, plain[1].running_var, rtol=0, atol=1e-15), method


def test_works_inside_torch_no_grad():
    net, X = small_cnn(), batch((4, 1, 8, 8))
    with torch.no_grad():
        G = per_sample_input_grad(net, X)
    assert (G - one_backward_per_sample(net, X)).abs().max() <= 1e-12


def dropout_net(p: float = 0.5) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32, bias=False), torch.nn.Dropout(p), torch.nn.Linear(32, 1))
    return net.double().train()


def test_dropout_with_vmap_needs_a_randomness_and_names_the_layer():
    net, X = dropout_net(), batch((6, 3))
    with pytest.raises(ValueError, match=r"random layer '1' \(Dropout\).*randomness='different'"):
        per_sample_input_grad(net, X, "vmap")
    with pytest.raises(ValueError, match=r"jacrev.*'1' \(Dropout\)"):
        per_sample_input_grad(net, X, "jacrev")
    with pytest.raises(ValueError, match="unknown randomness 'sometimes'; allowed: error, different, same"):
        per_sample_input_grad(net, X, "vmap", randomness="sometimes")


def test_random_numbers_drawn_in_the_models_own_code_are_explained_too():
    class FunctionalDropout(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 1).double()

        def forward(self, x):
            return self.lin(torch.nn.functional.dropout(x, 0.5, training=True))

    X = batch((6, 3))
    with pytest.raises(ValueError, match="draws random numbers inside torch.func.vmap.*randomness='different'"):
        per_sample_input_grad(FunctionalDropout(), X, "vmap")
    assert per_sample_input_grad(FunctionalDropout(), X, "vmap", randomness="different").shape == (6, 3)


@pytest.mark.parametrize("method,randomness", [("vmap", "different"), ("vmap", "same"), ("auto", "error")])
def test_dropout_gradients_and_outputs_come_from_the_same_masks(method, randomness):
    """Linear(no bias) -> Dropout -> Linear is linear in x per mask: out[i] - b = G[i] . x[i] exactly."""
    net, X = dropout_net(), batch((40, 3))
    torch.manual_seed(1)
    G, out = per_sample_input_grad_and_outputs(net, X, method, randomness=randomness)
    bias = net[2].bias.detach()
    assert torch.allclose((out.reshape(-1) - bias), (G * X).sum(dim=1), rtol=0, atol=1e-12)
    distinct = torch.unique(torch.round(G / G.abs().max(), decimals=8), dim=0).shape[0]
    if randomness == "same":  # one mask: every row the same linear map
        assert distinct == 1
    else:  # a mask per sample
        assert distinct > 30


def test_arguments_are_checked_with_the_shape_received_and_expected():
    net = torch.nn.Linear(2, 1).double()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        per_sample_input_grad(lambda x: x, batch((3, 2)))
    with pytest.raises(TypeError, match=r"X must be a torch.Tensor of shape \[N, \*\], got list"):
        per_sample_input_grad(net, [[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"X must be a batch of shape \[N, \*\] with N >= 1, got shape \(\)"):
        per_sample_input_grad(net, torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"with N >= 1, got shape \(0, 2\)"):
        per_sample_input_grad(net, torch.zeros(0, 2))
    with pytest.raises(ValueError, match=r"floating-point tensor \[N, \*\], got dtype torch.int64 with shape \(3, 2\)"):
        per_sample_input_grad(net, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_size must be None or an integer >= 1, got 0"):
        per_sample_input_grad(net, batch((3, 2)), "vmap", chunk_size=0)
    wide = torch.nn.Linear(2, 3).double()
    for method in ["auto", *METHODS]:
        with pytest.raises(ValueError, match=r"shape \[N\] or \[N, 1\] with N = (4|1); got shape \((4|1), 3\)"):
            per_sample_input_grad(wide, batch((4, 2)), method)


def test_couples_samples_checks_its_argument():
    with pytest.raises(TypeError, match="couples_samples: model must be a torch.nn.Module, got str"):
        couples_samples("net")


def test_auto_chunks_a_large_coupled_batch_and_stays_exact(monkeypatch):
    import gradlab.studies.input_grad.methods as methods

    monkeypatch.setattr(methods, "AUTO_CHUNK_ELEMENTS", 200)  # 30 x 30 x 2 = 1800 elements: chunks of 3 rows
    net, X = mlp_with_batchnorm(), batch((30, 2))
    assert (per_sample_input_grad(net, X) - one_backward_per_sample(net, X)).abs().max() <= 1e-10


def test_the_run_time_coupling_probe_shares_masks_and_leaves_the_callers_randomness_alone():
    """The probe's two forwards draw the same Dropout masks (so Dropout alone is not coupling), a batch-mixing
    model is still caught under Dropout, and the caller's CPU generator is where it was (nothing consumed)."""
    from gradlab.studies.input_grad.methods import mixes_samples

    class Centred(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = dropout_net()

        def forward(self, x):
            return self.net(x - x.mean(0))

    X, plain, centred = batch((8, 3)), dropout_net(), Centred()  # (dropout_net seeds the generator itself)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert not mixes_samples(plain, X)
    assert torch.equal(torch.get_rng_state(), state)
    assert mixes_samples(centred, X)
    assert torch.equal(torch.get_rng_state(), state)
