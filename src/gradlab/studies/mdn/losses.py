"""The mixture-density negative log-likelihood, stable and naive.

An MDN head emits, for each row of a batch, K mixture logits, K means and K raw
scales. Two ways of turning them into a per-sample NLL:

* ``logits`` (stable): log-softmax of the logits plus each component's Normal
  log-density, reduced with logsumexp -- nothing leaves log space, so a target far
  from every component gives a large but finite NLL.
* ``probs`` (the recipe of many blog posts): softmax probabilities times Normal
  densities ``exp(-z^2/2) / (sigma sqrt(2 pi))``, summed, then ``-log``. A density
  underflows to exactly 0 once ``|z| > ~14.4`` in float32 (``~38.6`` in float64);
  when that happens to every component of a row, ``log(0) = -inf`` and the
  gradient ``-1/0 * 0`` is NaN.

And two ways of pairing targets with mixtures:

* ``correct``: y of shape [B] against the batch of B mixtures -> [B].
* ``broadcast``: y of shape [B, 1] (what ``MixtureSameFamily.log_prob`` receives when a
  [B, 1] target is passed untransposed) broadcasts against the [B, K] batch to a
  [B, B, K] tensor: every target is scored against every row's mixture, a B x B
  log-likelihood whose mean is a different (wrong) objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
SIGMA_KINDS = ("exp", "softplus", "elu1", "relu")
Recorder = Callable[[str, torch.Tensor], None]


def sigma_from(raw: torch.Tensor, kind: str, eps: float = 1e-6) -> torch.Tensor:
    """Scales from the raw head outputs: ``exp``, ``softplus``, ``elu1`` (ELU + 1 + eps) or ``relu``."""
    if kind == "exp":
        return torch.exp(raw)
    if kind == "softplus":
        return F.softplus(raw) + eps
    if kind == "elu1":
        return F.elu(raw) + 1.0 + eps
    if kind == "relu":
        return F.relu(raw)
    raise ValueError(f"unknown sigma kind {kind!r}; allowed: {', '.join(SIGMA_KINDS)}")


def _noop(name: str, tensor: torch.Tensor) -> None:
    return None


def nll(logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Stable per-sample NLL of ``y`` [B] under the mixtures (logits, mu, sigma each [B, K]) -> [B].

    Equals ``-MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma)).log_prob(y)``.
    """
    return -_mixture_logdensity_logits(logits, mu, sigma, y.unsqueeze(-1), _noop)


def _mixture_logdensity_logits(logits, mu, sigma, y, record: Recorder) -> torch.Tensor:
    z = (y - mu) / sigma
    component = -0.5 * z * z - torch.log(sigma) - LOG_SQRT_2PI
    record("component_logdensity", component)
    out = torch.logsumexp(torch.log_softmax(logits, dim=-1) + component, dim=-1)
    record("mixture_logdensity", out)
    return out


def _mixture_logdensity_probs(logits, mu, sigma, y, record: Recorder) -> torch.Tensor:
    alpha = torch.softmax(logits, dim=-1)
    z = (y - mu) / sigma
    density = torch.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi))
    record("component_density", density)
    out = torch.log(torch.sum(alpha * density, dim=-1))
    record("mixture_logdensity", out)
    return out


def mixture_loss(
    logits: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    y: torch.Tensor,
    mixture: str = "logits",
    target_shape: str = "correct",
    record: Recorder | None = None,
) -> torch.Tensor:
    """Mean NLL for one of the four formulations; ``record(name, tensor)`` sees the intermediates in order."""
    record = record or _noop
    if target_shape == "correct":
        target = y.reshape(-1, 1)  # [B, 1] against [B, K]: row i scores y_i
    elif target_shape == "broadcast":
        target = y.reshape(-1, 1, 1)  # [B, 1, 1] against [B, K] -> [B, B, K]: every y against every row
    else:
        raise ValueError(f"unknown target_shape {target_shape!r}; allowed: correct, broadcast")
    if mixture == "logits":
        logdensity = _mixture_logdensity_logits(logits, mu, sigma, target, record)
    elif mixture == "probs":
        logdensity = _mixture_logdensity_probs(logits, mu, sigma, target, record)
    else:
        raise ValueError(f"unknown mixture {mixture!r}; allowed: logits, probs")
    loss = -logdensity.mean()
    record("loss", loss)
    return loss
