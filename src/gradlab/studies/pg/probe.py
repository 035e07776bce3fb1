"""The mechanism probe: after one update on a batch, which way did log pi(a_t|s_t) move, given A_t?

Minimising sum A_t * CE_t = -sum A_t * log pi(a_t|s_t) raises log pi where A_t > 0 (better
than average) and lowers it where A_t < 0: a negative reward makes the loss *larger* the more
likely the action is, so descent makes that action less likely. The probe measures exactly
that, on any policy:

- ``adv_neg_logp_down_fraction``: of the samples with A_t < 0, the fraction whose log pi went down;
- ``adv_pos_logp_up_fraction``: of the samples with A_t > 0, the fraction whose log pi went up;
- ``corr``: the Pearson correlation between the change of log pi and A_t. To first order a step
  -eta g of ``correct`` changes log pi by eta K A (K the Gram matrix of the score vectors), and
  ``flipped``'s by exactly minus that, so this correlation is mirror-symmetric by construction;
  the two fractions say how many samples moved the right way.

The batch is a dict of tensors, one row per time step t (``T`` rows):

- ``obs``: ``[T, *obs_shape]`` the states s_t, as the policy takes them;
- ``actions``: ``[T]`` integer actions a_t;
- ``adv``: ``[T]`` the advantages A_t (the standardised returns here);
- ``returns``: ``[T]`` the raw discounted returns G_t (only for a loss that reads them);
- ``values``: ``[T]`` V(s_t) (only for the ``baseline`` loss).

The policy is any ``nn.Module`` whose ``policy(obs)`` returns logits ``[T, n_actions]`` (a plain
``nn.Sequential`` works), or anything else with a ``log_prob_fn(policy, obs, actions) -> [T]``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch

from gradlab.arguments import require_scalar_loss, require_tensor, rows_look_like_probabilities

LogProbFn = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
ArrayLike = np.ndarray | torch.Tensor | list[float]
# a variant name of policy_loss ("correct", "flipped", ...) or a callable log pi [T] -> scalar loss
LossSpec = str | Callable[[torch.Tensor], torch.Tensor]


def _array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, np.float64).reshape(-1)


def logits_log_prob(policy: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a_t|s_t) = log_softmax(policy(obs))[t, a_t] for a policy that returns logits ``[T, n_actions]``."""
    logits = policy(obs)
    if rows_look_like_probabilities(logits):
        raise ValueError(
            "policy(obs) must return logits [T, n_actions], but its rows are probabilities (in [0, 1], summing "
            "to 1): the policy ends in a softmax. Drop the nn.Softmax (the probe takes log_softmax itself) or "
            "pass log_prob_fn=lambda policy, obs, actions: torch.log(policy(obs)).gather(1, actions[:, None])[:, 0]"
        )
    actions = torch.as_tensor(actions)
    if logits.dim() != 2 or logits.shape[0] != actions.shape[0]:
        raise ValueError(
            f"policy(obs) must return logits [T, n_actions] with T = {actions.shape[0]} (the number of actions); "
            f"got {tuple(logits.shape)}. Pass log_prob_fn(policy, obs, actions) for another kind of policy"
        )
    a = actions.long()
    if a.numel() and (int(a.min()) < 0 or int(a.max()) >= logits.shape[1]):
        raise ValueError(f"actions must be in [0, {logits.shape[1]}) (the policy's {logits.shape[1]} logits)")
    return torch.log_softmax(logits, dim=-1).gather(1, a.unsqueeze(1)).squeeze(1)


def check_batch(batch: dict, needs: tuple[str, ...] = ("obs", "actions", "adv")) -> int:
    """The number of time steps T of ``batch``; ValueError naming the key whose shape is wrong."""
    if not isinstance(batch, dict):
        raise TypeError(f"batch must be a dict with obs [T, ...], actions [T], adv [T]; got {type(batch).__name__}")
    if "obs" in batch:
        require_tensor(batch["obs"], "batch['obs']", "the policy probe")
    for key in needs:
        if key not in batch:
            raise ValueError(
                f"batch needs the key {key!r}; keys are obs [T, ...], actions [T], adv [T] "
                "(returns [T] and values [T] for the losses that read them)"
            )
    t = len(batch["actions"])
    actions = torch.as_tensor(batch["actions"])
    if actions.dim() != 1 or actions.dtype.is_floating_point:
        raise ValueError(
            f"batch['actions'] must be a 1-D integer tensor [T]; got {tuple(actions.shape)} {actions.dtype}"
        )
    if len(batch["obs"]) != t:
        raise ValueError(f"batch['obs'] must have T = {t} rows (one per action); got {tuple(batch['obs'].shape)}")
    for key in ("adv", "returns", "values"):
        if key in batch and batch[key] is not None and tuple(torch.as_tensor(batch[key]).shape) != (t,):
            raise ValueError(f"batch[{key!r}] must have shape [{t}]; got {tuple(torch.as_tensor(batch[key]).shape)}")
    return t


def dlogp_adv_corr(logp_before: ArrayLike, logp_after: ArrayLike, adv: ArrayLike) -> float:
    """corr(log pi_after - log pi_before, A) over the samples (arrays or tensors, shape ``[T]``).

    NaN if either side is constant or non-finite. Independent of the policy: it reads log pi only.
    """
    d = _array(logp_after) - _array(logp_before)
    a = _array(adv)
    if d.shape != a.shape:
        raise ValueError(f"dlogp_adv_corr: adv must have the shape of logp, {d.shape}; got {a.shape}")
    if d.size < 2 or not (np.isfinite(d).all() and np.isfinite(a).all()):
        return math.nan
    d, a = d - d.mean(), a - a.mean()
    denom = math.sqrt(float((d * d).sum()) * float((a * a).sum()))
    return float((d * a).sum() / denom) if denom > 0 else math.nan


def logp_moves(logp_before: ArrayLike, logp_after: ArrayLike, adv: ArrayLike) -> dict:
    """Which way log pi(a_t|s_t) moved, by the sign of A_t (arrays or tensors, shape ``[T]``).

    ``adv_neg_logp_down_fraction``: of the samples with A < 0, the fraction whose log pi decreased;
    ``adv_pos_logp_up_fraction``: of those with A > 0, the fraction whose log pi increased (NaN when a
    side has no sample); ``adv_weighted_right_fraction``: the same with each sample weighted by |A_t| (what a
    small step of ``correct`` raises: sum A_t dlogp_t >= 0 to first order); ``n_adv_neg``, ``n_adv_pos``;
    ``corr`` as :func:`dlogp_adv_corr`.
    """
    d = _array(logp_after) - _array(logp_before)
    a = _array(adv)
    neg, pos = a < 0, a > 0
    weight = np.abs(a).sum()
    right = (neg & (d < 0)) | (pos & (d > 0))
    return {
        "adv_weighted_right_fraction": float(np.abs(a)[right].sum() / weight) if weight > 0 else math.nan,
        "adv_neg_logp_down_fraction": float((d[neg] < 0).mean()) if neg.any() else math.nan,
        "adv_pos_logp_up_fraction": float((d[pos] > 0).mean()) if pos.any() else math.nan,
        "n_adv_neg": int(neg.sum()),
        "n_adv_pos": int(pos.sum()),
        "corr": dlogp_adv_corr(logp_before, logp_after, adv),
    }


def as_loss_fn(loss: LossSpec, batch: dict) -> Callable[[torch.Tensor], torch.Tensor]:
    """``loss``: a variant name of :func:`~gradlab.studies.pg.losses.policy_loss` or a callable logp -> scalar."""
    if callable(loss):
        return lambda logp: require_scalar_loss(loss(logp), "loss(logp)")
    from gradlab.studies.pg.losses import NEEDS, policy_loss

    if loss not in NEEDS:
        raise ValueError(f"loss must be a callable logp -> scalar or one of {', '.join(NEEDS)}; got {loss!r}")
    check_batch(batch, ("obs", "actions", *NEEDS[loss]))
    return lambda logp: policy_loss(loss, logp, batch.get("adv"), batch.get("returns"), batch.get("values"))


def probe_update(
    policy: torch.nn.Module,
    loss: LossSpec,
    batch: dict,
    step_length: float = 1e-3,
    log_prob_fn: LogProbFn | None = None,
) -> dict:
    """One gradient step of ``loss`` of length ``step_length`` in parameter space (direction -g/|g|) on a
    copy of ``policy``, then :func:`logp_moves` (the two fractions, the counts, the correlation) on ``batch``.

    ``loss`` is a variant name (``"correct"``, ``"flipped"``, ...) or a callable taking log pi(a_t|s_t)
    ``[T]`` (with its graph) and returning a scalar. ``policy`` is untouched. All values NaN when the loss
    or its gradient is not finite or the gradient is zero.
    """
    check_batch(batch)
    lp = log_prob_fn or logits_log_prob
    fn = as_loss_fn(loss, batch)
    pol = copy.deepcopy(policy)
    params = [q for q in pol.parameters() if q.requires_grad]
    logp = lp(pol, batch["obs"], batch["actions"])
    value = fn(logp)
    nan = dict.fromkeys(
        ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction", "adv_weighted_right_fraction", "corr"), math.nan
    )
    if not torch.isfinite(value):
        return nan
    grads = torch.autograd.grad(value, params, allow_unused=True)
    grads = [torch.zeros_like(q) if g is None else g for q, g in zip(params, grads, strict=True)]
    norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))
    if not math.isfinite(norm) or norm == 0.0:
        return nan
    with torch.no_grad():
        for q, g in zip(params, grads, strict=True):
            q -= step_length * g / norm
        after = lp(pol, batch["obs"], batch["actions"])
    return logp_moves(logp, after, batch["adv"])


def probe_step(
    policy: torch.nn.Module,
    loss: LossSpec,
    batch: dict,
    step_length: float = 1e-3,
    log_prob_fn: LogProbFn | None = None,
) -> float:
    """corr(change of log pi(a_t|s_t), A_t) after one small gradient step of ``loss`` (see :func:`probe_update`,
    which also returns the fractions of samples that moved the right way).

    The step has length ``step_length`` in parameter space (direction -g/|g|), small enough to stay in the
    first-order regime where dlogp = -step/|g| * J g. For ``correct`` the change is then step/|g| * K A with
    K the (positive semi-definite) Gram matrix of the score vectors grad log pi(a_t|s_t), so the correlation
    is >= 0 by construction; for ``flipped`` it is exactly the negative.
    """
    return probe_update(policy, loss, batch, step_length, log_prob_fn)["corr"]


def fixed_batch_descent(
    policy: torch.nn.Module,
    loss: LossSpec,
    batch: dict,
    steps: int,
    optimizer: Callable[[list], torch.optim.Optimizer] | None = None,
    log_prob_fn: LogProbFn | None = None,
) -> tuple[list[float], torch.nn.Module]:
    """``steps`` optimiser steps of ``loss`` on one fixed ``batch``, on a copy of ``policy``.

    Returns the loss before each step and after the last (``steps + 1`` values) and the stepped copy.
    ``optimizer(params)`` builds the optimiser (default: RMSProp lr 1e-3, alpha 0.99, the question's).
    The loss has no floor: for ``correct`` it keeps falling below zero as log pi of the actions with
    A < 0 goes to -inf.
    """
    check_batch(batch)
    lp = log_prob_fn or logits_log_prob
    fn = as_loss_fn(loss, batch)
    pol = copy.deepcopy(policy)
    params = [q for q in pol.parameters() if q.requires_grad]
    opt = optimizer(params) if optimizer is not None else torch.optim.RMSprop(params, lr=1e-3, alpha=0.99)
    losses = []
    for _ in range(steps):
        value = fn(lp(pol, batch["obs"], batch["actions"]))
        losses.append(float(value.detach()))
        if not torch.isfinite(value):
            return losses, pol
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        losses.append(float(fn(lp(pol, batch["obs"], batch["actions"]))))
    return losses, pol
