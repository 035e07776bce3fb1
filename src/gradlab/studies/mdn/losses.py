"""The mixture-density negative log-likelihood: the asker's path, torch's, a hand-written one, and a safe one.

An MDN head emits, for each row of a batch, K mixture logits, K means and K raw scales.
The formulations of the per-sample NLL (``mixture_loss(..., mixture=...)``):

* ``logits`` (stable): ``log_softmax(logits)`` plus each component's Normal log-density,
  reduced with ``logsumexp`` -- equal to
  ``-MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma)).log_prob(y)``.
* ``probs_log`` (the asker's path, ported literally): the network outputs ``alpha =
  softmax(logits)`` and the loss is TFP's ``MixtureSameFamily(Categorical(probs=alpha),
  Normal(mu, sigma)).log_prob(y)``. TFP turns ``probs`` into logits with ``tf.math.log(probs)``
  (no clamp; tensorflow_probability 0.25.0, ``distributions/categorical.py`` lines 373-375,
  ``_logits_parameter_no_checks``) and then takes ``log_softmax`` of them and ``logsumexp``
  (``distributions/mixture_same_family.py`` lines 342-350). Once one weight underflows to
  exactly 0 in float32 (logits ~104 apart), ``log(0) = -inf`` leaves the loss finite, but the
  backward pass divides the responsibility 0 by the weight 0: the gradient is NaN.
* ``probs_torch``: ``torch.distributions.Categorical(probs=alpha)``, which clamps the
  probabilities to ``[eps, 1 - eps]`` before the log -- finite where TFP is not, so a PyTorch
  port of the asker's code silently differs from the asker's code.
* ``density`` (a hand-written probability-space mixture, not the asker's): softmax weights
  times Normal densities ``exp(-z^2/2) / (sigma sqrt(2 pi))``, summed, then ``-log``; it
  underflows to ``log 0`` for a target ~14.4 scales (float32) from every component.

``nll`` is the public, safe per-sample NLL: shapes checked (a ``[B, 1]`` target against
``[B, K]`` parameters is refused, not broadcast to ``[B, B]``), a non-positive or NaN scale
refused, and ``probs=`` accepted with an exactly-zero weight handled without a NaN gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
SIGMA_KINDS = ("exp", "softplus", "elu1", "relu")
MIXTURES = ("logits", "probs_log", "probs_torch", "density")
Recorder = Callable[[str, torch.Tensor], None]


def sigma_from(raw: torch.Tensor, kind: str = "softplus", eps: float = 1e-6) -> torch.Tensor:
    """Scales from the raw head outputs: ``exp``, ``softplus`` (+ eps), ``elu1`` (ELU + 1 + eps) or ``relu``.

    ``softplus`` and ``elu1`` are bounded away from 0 by ``eps``; ``exp`` underflows to 0 for a raw
    output below about -104 (float32) and ``relu`` is exactly 0 for every negative raw output.
    """
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


def _safe_log(probs: torch.Tensor) -> torch.Tensor:
    """``log(probs)`` with ``-inf`` where a probability is exactly 0, and a gradient of 0 (not NaN) there.

    The inner ``where`` keeps ``log`` away from 0, so its backward never computes ``0 / 0``.
    """
    positive = probs > 0
    return torch.where(positive, torch.log(torch.where(positive, probs, torch.ones_like(probs))), -math.inf)


def nll(
    logits: torch.Tensor | None = None,
    mu: torch.Tensor | None = None,
    sigma: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    *,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample NLL of targets ``y`` [B] under B mixtures of K Normals -> [B]. Safe by construction.

    Pass the mixing weights as ``logits`` ([B, K], any real numbers; preferred) or as ``probs``
    ([B, K], non-negative, e.g. a softmax output; normalised like TFP does). With ``logits`` it equals
    ``-MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma)).log_prob(y)``. With ``probs``, a
    weight of exactly 0 contributes ``log 0 = -inf`` to the mixture and a gradient of 0 -- TFP's
    ``Categorical(probs=)`` gives a NaN gradient there, torch's clamps the weight to ``eps``.

    Raises ``ValueError`` for a target whose shape is not the batch shape (a ``[B, 1]`` target would
    broadcast against ``[B, K]`` parameters to a ``[B, B]`` loss that scores every target against every
    row), for parameters of different shapes, for both or neither of ``logits``/``probs``, for a
    negative probability, and for a scale that is not strictly positive (0, negative or NaN: the
    density is ``0/0`` there); make scales with :func:`sigma_from` (``softplus`` or ``elu1``).
    """
    if (logits is None) == (probs is None):
        raise ValueError("pass exactly one of logits= or probs= (the mixing weights)")
    if mu is None or sigma is None or y is None:
        raise ValueError("nll needs mu, sigma and y")
    weights = logits if logits is not None else probs
    name = "logits" if logits is not None else "probs"
    if weights.dim() < 1 or weights.shape != mu.shape or weights.shape != sigma.shape:
        raise ValueError(
            f"{name}, mu and sigma must have the same shape [B, K]; got {name} {tuple(weights.shape)}, "
            f"mu {tuple(mu.shape)}, sigma {tuple(sigma.shape)}"
        )
    batch = tuple(mu.shape[:-1])
    if tuple(y.shape) != batch:
        raise ValueError(
            f"y has shape {tuple(y.shape)} but the mixtures have batch shape {batch} (parameters "
            f"{tuple(mu.shape)}): y must be {batch}, one target per row. A [B, 1] target would broadcast "
            f"against [B, K] parameters to a [B, B] log-likelihood that scores every target against every "
            f"row's mixture (the broadcast trap); pass y.reshape({', '.join(map(str, batch)) or ''}) or y.squeeze(-1)"
        )
    bad = ~(sigma > 0)
    if bool(bad.any()):
        raise ValueError(
            f"sigma must be strictly positive and finite; {int(bad.sum())} of {sigma.numel()} scales are 0, "
            f"negative or NaN (min {float(sigma.detach().nan_to_num(nan=-math.inf).min()):.3g}): the Normal "
            f"log-density is 0/0 there. Make scales with sigma_from(raw, 'softplus') or 'elu1'"
        )
    if probs is not None:
        if bool((probs < 0).any()) or bool(probs.isnan().any()):
            raise ValueError("probs must be non-negative numbers (a softmax output), found a negative or NaN one")
        logits = _safe_log(probs)
    return -_mixture_logdensity_logits(logits, mu, sigma, y.unsqueeze(-1), _noop)


def _component_logdensity(mu, sigma, y) -> torch.Tensor:
    z = (y - mu) / sigma
    return -0.5 * z * z - torch.log(sigma) - LOG_SQRT_2PI  # TFP's Normal._log_prob, term for term


def _mixture_logdensity_logits(logits, mu, sigma, y, record: Recorder) -> torch.Tensor:
    component = _component_logdensity(mu, sigma, y)
    record("component_logdensity", component)
    out = torch.logsumexp(torch.log_softmax(logits, dim=-1) + component, dim=-1)
    record("mixture_logdensity", out)
    return out


def _mixture_logdensity_probs_log(logits, mu, sigma, y, record: Recorder) -> torch.Tensor:
    """The asker's code, op for op: alpha = softmax output; TFP: log(probs), log_softmax, + log_prob, logsumexp."""
    alpha = torch.softmax(logits, dim=-1)
    record("mixing_weights", alpha)
    log_alpha = torch.log(alpha)  # Categorical(probs=alpha).logits_parameter(): tf.math.log(probs), no clamp
    component = _component_logdensity(mu, sigma, y)
    record("component_logdensity", component)
    out = torch.logsumexp(component + torch.log_softmax(log_alpha, dim=-1), dim=-1)
    record("mixture_logdensity", out)
    return out


def _mixture_logdensity_probs_torch(logits, mu, sigma, y, record: Recorder) -> torch.Tensor:
    """The same softmax output through torch.distributions' own Categorical(probs=) (clamps to [eps, 1 - eps])."""
    from torch.distributions import Categorical, MixtureSameFamily, Normal

    alpha = torch.softmax(logits, dim=-1)
    record("mixing_weights", alpha)
    mix = Categorical(probs=alpha, validate_args=False)
    dist = MixtureSameFamily(mix, Normal(mu, sigma, validate_args=False), validate_args=False)
    out = dist.log_prob(y.squeeze(-1))  # [B] (correct) or [B, 1] -> [B, B] (broadcast)
    record("mixture_logdensity", out)
    return out


def _mixture_logdensity_density(logits, mu, sigma, y, record: Recorder) -> torch.Tensor:
    alpha = torch.softmax(logits, dim=-1)
    z = (y - mu) / sigma
    density = torch.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi))
    record("component_density", density)
    out = torch.log(torch.sum(alpha * density, dim=-1))
    record("mixture_logdensity", out)
    return out


_FORMULATIONS = {
    "logits": _mixture_logdensity_logits,
    "probs_log": _mixture_logdensity_probs_log,
    "probs_torch": _mixture_logdensity_probs_torch,
    "density": _mixture_logdensity_density,
}


def mixture_loss(
    logits: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    y: torch.Tensor,
    mixture: str = "logits",
    target_shape: str = "correct",
    record: Recorder | None = None,
    loss_clip: float = 0.0,
) -> torch.Tensor:
    """Mean NLL of one formulation; ``record(name, tensor)`` sees the intermediates in computation order.

    ``target_shape="broadcast"`` reproduces the [B, 1] mistake ([B, B, K], every target against every row).
    ``loss_clip > 0`` clamps each sample's NLL into ``[-loss_clip, loss_clip]`` before the mean (the asker's
    "clipping the loss function"; a clamped sample passes no gradient).
    """
    record = record or _noop
    if target_shape == "correct":
        target = y.reshape(-1, 1)  # [B, 1] against [B, K]: row i scores y_i
    elif target_shape == "broadcast":
        target = y.reshape(-1, 1, 1)  # [B, 1, 1] against [B, K] -> [B, B, K]: every y against every row
    else:
        raise ValueError(f"unknown target_shape {target_shape!r}; allowed: correct, broadcast")
    if mixture not in _FORMULATIONS:
        raise ValueError(f"unknown mixture {mixture!r}; allowed: {', '.join(MIXTURES)}")
    per_sample = -_FORMULATIONS[mixture](logits, mu, sigma, target, record)
    if loss_clip:
        per_sample = per_sample.clamp(-loss_clip, loss_clip)
    loss = per_sample.mean()
    record("loss", loss)
    return loss
