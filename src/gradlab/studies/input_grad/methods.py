"""Per-sample gradients of a network's output with respect to its inputs.

``per_sample_input_grad(model, X, method)`` returns ``G`` of shape ``[N, d]`` with
``G[i] = d h(x_i) / d x_i`` for a model ``h`` that maps a batch ``X [N, d]`` to one
scalar per sample (output ``[N]`` or ``[N, 1]``). Five ways to get it:

``sum``           ``autograd.grad(pred.sum(), X)``. Because ``d(sum_j h(x_j))/dx_i = sum_j dh(x_j)/dx_i``
                  and ``h(x_j)`` does not depend on ``x_i`` for ``j != i`` *when the samples do not
                  interact*, this is exact -- one backward pass for the whole batch.
``grad_outputs``  ``autograd.grad(pred, X, grad_outputs=ones)``: the same vector-Jacobian product
                  written differently (``pred.sum()`` seeds the backward with ones too).
``vmap``          ``torch.func.vmap(torch.func.grad(h_single))``: the per-sample function, vectorised.
                  With BatchNorm on batch statistics it differentiates ``h_i`` with respect to row
                  ``i`` of the batch, the other rows held fixed (exact, but O(N^2) work).
``jacrev``        the full batch Jacobian ``[N, N, d]`` by ``torch.func.jacrev``, then its diagonal
                  blocks ``J[i, i]``. Exact whatever the model; O(N^2 d) memory.
``loop``          one forward, then one backward per sample: ``grad(pred[i], X)[i]``. Exact whatever the
                  model; O(N) backward passes of a batch of N, i.e. O(N^2) work.

All methods are free of side effects: BatchNorm running statistics are not updated.
``create_graph=True`` keeps the graph so that a loss built from the gradients can be
back-propagated to the parameters (Sobolev / gradient-penalty training).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, grad, jacrev, vmap

from gradlab.studies.input_grad.batchnorm import couples_samples, no_running_stat_updates

METHODS = ("sum", "grad_outputs", "vmap", "jacrev", "loop")


def per_sample_input_grad(
    model: torch.nn.Module,
    X: torch.Tensor,
    method: str,
    *,
    create_graph: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``[N, d]`` tensor whose row ``i`` is ``d model(X)[i] / d X[i]`` (see the module docstring).

    ``chunk_size`` (vmap, jacrev only) bounds how many samples / Jacobian rows are
    vectorised at once, trading speed for memory. Unknown ``method`` -> ValueError.
    """
    if method not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if X.dim() != 2:
        raise ValueError(f"X must be a batch of vectors [N, d], got shape {tuple(X.shape)}")
    with no_running_stat_updates(model):
        return _IMPLEMENTATIONS[method](model, X, create_graph, chunk_size)


def _scalar_per_sample(pred: torch.Tensor, n: int) -> torch.Tensor:
    if pred.numel() != n:
        raise ValueError(f"the model must return one scalar per sample; got output shape {tuple(pred.shape)} for N={n}")
    return pred.reshape(n)


def _input(X: torch.Tensor) -> torch.Tensor:
    """X itself when it already takes part in a graph, else a leaf copy that requires grad."""
    return X if X.requires_grad else X.detach().requires_grad_(True)


def _sum(model, X, create_graph, chunk_size):
    Xg = _input(X)
    pred = _scalar_per_sample(model(Xg), X.shape[0])
    (g,) = torch.autograd.grad(pred.sum(), Xg, create_graph=create_graph)
    return g


def _grad_outputs(model, X, create_graph, chunk_size):
    Xg = _input(X)
    pred = model(Xg)
    _scalar_per_sample(pred, X.shape[0])
    (g,) = torch.autograd.grad(pred, Xg, grad_outputs=torch.ones_like(pred), create_graph=create_graph)
    return g


def _loop(model, X, create_graph, chunk_size):
    Xg = _input(X)
    n = X.shape[0]
    pred = _scalar_per_sample(model(Xg), n)
    if create_graph:  # rows keep their graph; clone() so no row keeps its pass's whole [N, d] gradient alive
        rows = []
        for i in range(n):
            (g,) = torch.autograd.grad(pred[i], Xg, retain_graph=True, create_graph=True)
            rows.append(g[i].clone())
        return torch.stack(rows)
    out = torch.empty_like(X)  # written in place: N tiny row tensors fragment the heap (RSS grew ~0.2 MB/row)
    for i in range(n):
        (g,) = torch.autograd.grad(pred[i], Xg, retain_graph=True)
        out[i] = g[i]
    return out


def _state(model: torch.nn.Module, create_graph: bool) -> dict[str, torch.Tensor]:
    """Parameters and buffers for ``functional_call``; detached unless the caller wants a graph."""
    state = dict(model.named_parameters())
    if not create_graph:
        state = {k: v.detach() for k, v in state.items()}
    state.update(dict(model.named_buffers()))
    return state


def _batch_function(model, state, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda Xb: _scalar_per_sample(functional_call(model, state, (Xb,)), n)


def _vmap(model, X, create_graph, chunk_size):
    n = X.shape[0]
    state = _state(model, create_graph)
    X = X if create_graph else X.detach()
    if not couples_samples(model):

        def h(x: torch.Tensor) -> torch.Tensor:  # one sample [d] -> scalar
            return _scalar_per_sample(functional_call(model, state, (x.unsqueeze(0),)), 1).reshape(())

        return vmap(grad(h), chunk_size=chunk_size)(X)

    # The samples interact: h_i is a function of the whole batch. Differentiate h_i with respect
    # to row i, every other row held at its value: X_i(x) = X + e_i (x - x_i)^T equals X at x = x_i.
    batch = _batch_function(model, state, n)

    def h_i(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        Xi = X + e.unsqueeze(1) * (x.unsqueeze(0) - X)
        return batch(Xi) @ e

    eye = torch.eye(n, dtype=X.dtype, device=X.device)
    return vmap(grad(h_i), chunk_size=chunk_size)(X, eye)


def _jacrev(model, X, create_graph, chunk_size):
    n = X.shape[0]
    state = _state(model, create_graph)
    X = X if create_graph else X.detach()
    J = jacrev(_batch_function(model, state, n), chunk_size=chunk_size)(X)  # [N, N, d]: dh_i / dx_j
    idx = torch.arange(n, device=X.device)
    return J[idx, idx]


_IMPLEMENTATIONS = {
    "sum": _sum,
    "grad_outputs": _grad_outputs,
    "vmap": _vmap,
    "jacrev": _jacrev,
    "loop": _loop,
}


def batch_jacobian(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The full batch Jacobian ``J[i, j] = d h(x_i) / d x_j`` (shape [N, N, d]), no side effects."""
    with no_running_stat_updates(model):
        return jacrev(_batch_function(model, _state(model, False), X.shape[0]))(X.detach())


def central_differences(model: torch.nn.Module, X: torch.Tensor, eps: float) -> torch.Tensor:
    """``[N, d]``: (h(x_i + eps e_k) - h(x_i - eps e_k)) / (2 eps), each sample moved on its own.

    Moving every sample of the batch at once is only valid without cross-sample
    coupling; this is meant for such models (checked).
    """
    if couples_samples(model):
        raise ValueError("central_differences needs a model without cross-sample coupling (BatchNorm in eval mode)")
    n, d = X.shape
    out = torch.empty_like(X)
    with torch.no_grad():
        for k in range(d):
            step = torch.zeros_like(X)
            step[:, k] = eps
            out[:, k] = (model(X + step).reshape(n) - model(X - step).reshape(n)) / (2 * eps)
    return out
