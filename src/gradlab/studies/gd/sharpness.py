"""Sharpness: the top eigenvalue of the loss Hessian by power iteration on Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from gradlab.arguments import require_scalar_loss


def _params(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(params, torch.Tensor):
        params = [params]
    params = list(params)  # model.parameters() is a generator: read it once
    if not params:
        raise ValueError("top_hessian_eigenvalue: params is empty; pass list(model.parameters()) or [w]")
    bad = [type(p).__name__ for p in params if not isinstance(p, torch.Tensor) or not p.requires_grad]
    if bad:
        raise ValueError(
            f"top_hessian_eigenvalue: params must be tensors that require grad (model.parameters()); got {bad[0]}"
        )
    return params


def top_hessian_eigenvalue(
    loss_fn: Callable[[], torch.Tensor], params: Iterable[torch.Tensor], iters: int = 20, seed: int = 0
) -> float:
    """Largest-magnitude eigenvalue of d2 loss / d params2 (power iteration, HVPs by double backward).

    ``params``: a list of tensors or ``model.parameters()`` (read once). ``loss_fn()`` must return a scalar. A
    loss linear (or constant) in ``params`` has a zero Hessian: the result is 0.0.
    """
    params = _params(params)
    loss = require_scalar_loss(loss_fn(), "top_hessian_eigenvalue: loss_fn()")
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    live = [k for k, gr in enumerate(grads) if gr is not None and gr.requires_grad]
    if not live:  # the gradient does not depend on the parameters: the Hessian is 0
        return 0.0
    grads = [grads[k] for k in live]
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    eig = 0.0
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=[v[k] for k in live], retain_graph=True, allow_unused=True)
        hv = [torch.zeros_like(p) if h is None else h for p, h in zip(params, hv, strict=True)]
        eig = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
        norm = torch.sqrt(sum((x * x).sum() for x in hv))
        if norm == 0:
            return 0.0
        v = [x / norm for x in hv]
    return eig
