"""The four update rules of the question, as ``torch.optim.Optimizer`` subclasses.

Each takes a step ``w <- w - lr * direction``; only the direction differs:

* ``gradient``: the gradient of the loss (gradient descent);
* ``scalar``:   a tensor of ones, i.e. ``w - lr`` (broadcasting makes this legal code);
* ``sign``:     the sign of the gradient (signSGD);
* ``random``:   a random unit direction drawn independently of the loss.

Only ``gradient`` (and ``sign``) use the loss at all; ``scalar`` and ``random``
move the same way whatever the loss is, so they cannot guarantee descent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch


class _Rule(torch.optim.Optimizer):
    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        super().__init__(params, {"lr": lr})

    def directions(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p, direction in zip(params, self.directions(params), strict=True):
                p.add_(direction, alpha=-group["lr"])
        return loss


class GradientDescent(_Rule):
    """w <- w - lr * grad f(w)."""

    def directions(self, params):
        return [p.grad for p in params]


class ScalarStep(_Rule):
    """w <- w - lr: subtract the step itself, ignoring the loss."""

    def directions(self, params):
        return [torch.ones_like(p) for p in params]


class SignDescent(_Rule):
    """w <- w - lr * sign(grad f(w))."""

    def directions(self, params):
        return [torch.sign(p.grad) for p in params]


class RandomDirection(_Rule):
    """w <- w - lr * u, u uniform on the unit sphere of all parameters jointly."""

    def __init__(self, params, lr: float, seed: int = 0):
        super().__init__(params, lr)
        self.generator = torch.Generator().manual_seed(seed)

    def directions(self, params):
        draws = [torch.randn(p.shape, generator=self.generator, dtype=p.dtype) for p in params]
        norm = torch.sqrt(cast(torch.Tensor, sum((u * u).sum() for u in draws)))  # sum starts from int 0
        return [u / norm for u in draws]


RULES: dict[str, type[_Rule]] = {
    "gradient": GradientDescent,
    "scalar": ScalarStep,
    "sign": SignDescent,
    "random": RandomDirection,
}


def make_rule(name: str, params: Iterable[torch.Tensor] | Iterable[dict], lr: float, seed: int = 0) -> _Rule:
    """An optimizer that steps ``w <- w - lr * direction`` with the direction of rule ``name``.

    ``name``: ``"gradient"`` (gradient descent), ``"scalar"`` (``w - lr``: the question's idea),
    ``"sign"`` (``w - lr * sign(grad)``) or ``"random"`` (a random unit direction, drawn from ``seed``).
    ``params``: what ``torch.optim`` optimizers take (``model.parameters()`` or parameter groups).
    Use it like any optimizer: ``loss.backward(); opt.step(); opt.zero_grad()``. Only ``gradient``
    has every minimum as a fixed point (the gradient vanishes there); ``scalar`` never stops moving.
    """
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; allowed: {', '.join(RULES)}")
    if name == "random":
        return RandomDirection(params, lr, seed=seed)
    return RULES[name](params, lr)
