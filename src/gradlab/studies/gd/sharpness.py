"""Sharpness: the top eigenvalue of the loss Hessian by power iteration on Hessian-vector products."""

from __future__ import annotations

from collections.abc import Callable

import torch


def top_hessian_eigenvalue(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], iters: int = 20, seed: int = 0
) -> float:
    """Largest-magnitude eigenvalue of d2 loss / d params2 (power iteration, HVPs by double backward)."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    norm = torch.sqrt(sum((x * x).sum() for x in v))
    v = [x / norm for x in v]
    eig = 0.0
    for _ in range(iters):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eig = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
        norm = torch.sqrt(sum((x * x).sum() for x in hv))
        if norm == 0:
            return 0.0
        v = [x / norm for x in hv]
    return eig
