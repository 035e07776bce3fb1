"""Batch normalisation: the one common layer that couples the samples of a batch.

In training mode (or with ``track_running_stats=False``) ``BatchNorm`` normalises
every sample with the mean and variance of the *batch*, so the output of sample
``i`` depends on every input ``x_j`` of the batch. The network is then no longer
"one function applied N times", and the sum trick ``grad(pred.sum(), X)`` returns
the column sums ``sum_j dh(x_j)/dx_i`` of the batch Jacobian instead of its
diagonal blocks ``dh(x_i)/dx_i``.

This module answers two small questions for :mod:`.methods`:

* :func:`couples_samples` -- does a model contain such a layer right now?
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


def couples_samples(model: torch.nn.Module) -> bool:
    """True when some layer of ``model`` mixes the samples of a batch (BatchNorm on batch statistics)."""
    return any(uses_batch_statistics(m) for m in model.modules())


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
