"""The mechanism probe: after one update on a batch, did log pi(a_t|s_t) move with A_t?

Minimising sum A_t * CE_t = -sum A_t * log pi(a_t|s_t) raises log pi where A_t > 0 (better
than average) and lowers it where A_t < 0: a negative reward makes the loss *larger* the more
likely the action is, so descent makes that action less likely. The probe measures exactly
that: the Pearson correlation between the change of log pi(a_t|s_t) caused by the update and
A_t over the batch. Positive: the update reinforces the good and suppresses the bad actions.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch


def dlogp_adv_corr(logp_before: np.ndarray, logp_after: np.ndarray, adv: np.ndarray) -> float:
    """corr(log pi_after - log pi_before, A); NaN if either side is constant or non-finite."""
    d = np.asarray(logp_after, np.float64) - np.asarray(logp_before, np.float64)
    a = np.asarray(adv, np.float64)
    if d.size < 2 or not (np.isfinite(d).all() and np.isfinite(a).all()):
        return math.nan
    d, a = d - d.mean(), a - a.mean()
    denom = math.sqrt(float((d * d).sum()) * float((a * a).sum()))
    return float((d * a).sum() / denom) if denom > 0 else math.nan


def probe_step(policy: torch.nn.Module, loss_fn, batch: dict, step_length: float) -> float:
    """Correlation after one small gradient step of the variant's loss on ``batch``.

    The step has length ``step_length`` in parameter space (direction -g/|g|), small enough
    to stay in the first-order regime where dlogp = -step/|g| * J g. For ``correct`` the
    change is then step/|g| * K A with K the (positive semi-definite) Gram matrix of the
    score vectors grad log pi(a_t|s_t), so corr(dlogp, A) >= 0 by construction; for
    ``flipped`` it is exactly the negative. A copy of the policy is stepped; training is
    untouched.
    """
    pol = copy.deepcopy(policy)
    params = [q for q in pol.parameters() if q.requires_grad]
    logp = pol.log_prob(batch["obs"], batch["actions"])
    loss = loss_fn(logp)
    if not torch.isfinite(loss):
        return math.nan
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(q) if g is None else g for q, g in zip(params, grads, strict=True)]
    norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))
    if not math.isfinite(norm) or norm == 0.0:
        return math.nan
    with torch.no_grad():
        for q, g in zip(params, grads, strict=True):
            q -= step_length * g / norm
        after = pol.log_prob(batch["obs"], batch["actions"])
    return dlogp_adv_corr(logp.detach().numpy(), after.numpy(), batch["adv"].numpy())
