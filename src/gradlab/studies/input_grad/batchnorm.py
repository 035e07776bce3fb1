"""Batch normalisation: the one common layer that couples the samples of a batch.

In training mode (or with ``track_running_stats=False``) ``BatchNorm`` normalises
every sample with the mean and variance of the *batch*, so the output of sample
``i`` depends on every input ``x_j`` of the batch. The network is then no longer
"one function applied N times", and the sum trick ``grad(pred.sum(), X)`` returns
the column sums ``sum_j dh(x_j)/dx_i`` of the batch Jacobian instead of its
diagonal blocks ``dh(x_i)/dx_i``.

This module answers small questions for :mod:`.methods`:

* :func:`couples_samples` -- does a model contain such a layer right now?
  :func:`coupling_layers` names them. Only BatchNorm is recognised: a model that mixes
  samples in its own code (``x - x.mean(0)``, attention across the batch) is not detected.
* :func:`random_layers` -- the Dropout layers that draw a fresh mask in this forward
  (``torch.func.vmap`` needs to be told how to draw them).
* :func:`no_running_stat_updates` -- run a forward without changing the running
  statistics (so computing input gradients has no side effect on the model, and
  ``torch.func`` transforms do not meet an in-place buffer update).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def uses_batch_statistics(module: torch.nn.Module) -> bool:
    """Does this BatchNorm layer normalise with the statistics of the current batch?"""
    return isinstance(module, _BatchNorm) and (
        module.training or (module.running_mean is None and module.running_var is None)
    )


def _check_module(model: object, function: str) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{function}: model must be a torch.nn.Module, got {type(model).__name__}")


def _describe(name: str, module: torch.nn.Module) -> str:
    return f"'{name or '<model>'}' ({type(module).__name__})"


def coupling_layers(model: torch.nn.Module) -> list[str]:
    """Names of the layers that mix the samples of a batch right now, as ``"'1' (BatchNorm1d)"``."""
    _check_module(model, "coupling_layers")
    return [_describe(name, m) for name, m in model.named_modules() if uses_batch_statistics(m)]


def couples_samples(model: torch.nn.Module) -> bool:
    """True when some layer of ``model`` mixes the samples of a batch right now.

    That is a BatchNorm layer (any ``_BatchNorm``: 1d/2d/3d, SyncBatchNorm, lazy) that normalises
    with the statistics of the current batch: in training mode, or with ``track_running_stats=False``.
    Then output ``i`` depends on every input of the batch, and ``grad(model(X).sum(), X)`` is not the
    per-sample gradient. After ``model.eval()`` (running statistics) it returns False.
    """
    _check_module(model, "couples_samples")
    return any(uses_batch_statistics(m) for m in model.modules())


def random_layers(model: torch.nn.Module) -> list[str]:
    """Names of the Dropout layers that are active (training mode, p > 0), as ``"'2' (Dropout)"``."""
    return [
        _describe(name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.training and m.p > 0
    ]


@contextmanager
def no_running_stat_updates(model: torch.nn.Module) -> Iterator[None]:
    """Forward passes inside leave ``running_mean``/``running_var``/``num_batches_tracked`` untouched.

    A BatchNorm layer in training mode with ``track_running_stats=False`` normalises
    with the batch statistics exactly as before, it only skips the running-average
    update. The flag is restored on exit.
    """
    changed = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]
    for m in changed:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True
