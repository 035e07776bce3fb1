"""Argument checks for the public API: one-line errors that say what was passed and what to pass instead.

The library functions take torch tensors (the policy-gradient return helpers take arrays); a NumPy array or a
list used to fail deep inside with "'ndarray' object has no attribute 'dim'", an integer tensor inside
``torch.quantile``. These helpers name the argument, what it was and the call that fixes it.
"""

from __future__ import annotations

import torch


def require_tensor(value: object, name: str, where: str) -> torch.Tensor:
    """``value`` itself when it is a tensor; a TypeError naming ``name`` and the fix otherwise."""
    if isinstance(value, torch.Tensor):
        return value
    kind = type(value).__module__.split(".")[0] + "." + type(value).__name__
    raise TypeError(
        f"{where}: {name} must be a torch.Tensor, got {kind.removeprefix('builtins.')}; "
        f"pass torch.as_tensor({name}, dtype=torch.float32)"
    )


def require_float_tensor(value: object, name: str, where: str) -> torch.Tensor:
    """A floating-point tensor; a TypeError for anything else (integers: say ``.float()``)."""
    t = require_tensor(value, name, where)
    if not t.is_floating_point():
        raise TypeError(f"{where}: {name} must be a floating-point tensor, got {t.dtype}; pass {name}.float()")
    return t


def require_scalar_loss(value: object, where: str) -> torch.Tensor:
    """A 0-dim (or one-element) tensor loss; a ValueError for a per-sample ``[T]`` loss."""
    t = require_tensor(value, "the loss", where)
    if t.numel() != 1:
        raise ValueError(
            f"{where}: the loss must be a scalar, got shape {tuple(t.shape)} (one value per sample?); "
            "return loss.sum() or loss.mean()"
        )
    return t.reshape(())


def rows_look_like_probabilities(x: torch.Tensor, tol: float = 1e-4) -> bool:
    """Every entry in [0, 1] and every row (last dimension, at least 2 entries) summing to 1."""
    if x.dim() < 1 or x.shape[-1] < 2 or x.numel() == 0 or not x.is_floating_point():
        return False
    d = x.detach()
    if not bool(torch.isfinite(d).all()) or bool((d < 0).any()) or bool((d > 1).any()):
        return False
    return bool(((d.sum(-1) - 1).abs() <= tol).all())
