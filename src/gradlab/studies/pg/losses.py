"""The six losses of the ablation. Same network, data and optimiser; only this function changes.

Inputs, one entry per time step t of the batch (all 1-D, shape ``[T]``):

- ``logp``: log pi(a_t|s_t) of the actions taken, with its graph (so the cross-entropy CE_t = -logp_t);
- ``adv``: the standardised discounted returns A_t (variants ``correct``, ``flipped``, ``abs``, ``pow``);
- ``returns``: the raw discounted returns G_t (variants ``no_standardize`` and ``baseline`` only);
- ``values``: V(s_t) of the learned baseline (variant ``baseline`` only; detached here: the policy loss
  never trains the baseline).

All sums run over the time steps of the batch, as ``reduce_sum`` in the question. ``adv``, ``returns``
and ``values`` may be tensors or arrays; they are used as constants.
"""

from __future__ import annotations

import torch

from gradlab.arguments import require_float_tensor

VARIANTS = ["correct", "flipped", "abs", "pow", "no_standardize", "baseline"]
NEEDS = {  # the inputs each variant reads besides logp
    "correct": ("adv",),
    "flipped": ("adv",),
    "abs": ("adv",),
    "pow": ("adv",),
    "no_standardize": ("returns",),
    "baseline": ("returns", "values"),
}


def _per_step(name: str, x, logp: torch.Tensor, variant: str) -> torch.Tensor:
    if x is None:
        raise ValueError(f"policy_loss: variant {variant!r} needs {name} (shape [{logp.shape[0]}]), got None")
    x = torch.as_tensor(x).to(dtype=logp.dtype, device=logp.device)
    if x.shape != logp.shape:
        raise ValueError(
            f"policy_loss: {name} must have the shape of logp, [{logp.shape[0]}] (one value per time step); "
            f"got {tuple(x.shape)}"
        )
    return x.detach()


def policy_loss(
    variant: str,
    logp: torch.Tensor,
    adv: torch.Tensor | None = None,
    returns: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """The variant's loss (a scalar) from log pi(a_t|s_t) of the actions taken; see the module docstring.

    ``correct``: sum A*CE (minimising it raises log pi where A > 0 and lowers it where A < 0);
    ``flipped``: -sum A*CE; ``abs``: |sum A*CE|; ``pow``: sum CE^A; ``no_standardize``: sum G*CE;
    ``baseline``: sum (G - V)*CE. Only the inputs a variant reads are required (``NEEDS``).
    """
    if variant not in NEEDS:
        raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    logp = require_float_tensor(logp, "logp", "policy_loss")
    if logp.dim() != 1:
        raise ValueError(f"policy_loss: logp must be a 1-D tensor [T] of log pi(a_t|s_t); got {tuple(logp.shape)}")
    d = logp.detach()
    if d.numel() and bool((d > 0).any()) and bool(((d >= 0) & (d <= 1)).all()):
        raise ValueError(
            "policy_loss: logp must be log-probabilities (<= 0), got values in [0, 1] -- probabilities? pass "
            "torch.log_softmax(logits, -1) of the actions taken (or torch.log(probs))"
        )
    given = {"adv": adv, "returns": returns, "values": values}
    x = {name: _per_step(name, given[name], logp, variant) for name in NEEDS[variant]}
    ce = -logp
    if variant == "correct":  # sum A * CE: minimising it raises log pi where A > 0, lowers it where A < 0
        return (x["adv"] * ce).sum()
    if variant == "flipped":  # the sign error: raises log pi of the actions that led to bad outcomes
        return -(x["adv"] * ce).sum()
    if variant == "abs":  # "the optimiser minimises |loss|": the sign of the step depends on the batch
        return (x["adv"] * ce).sum().abs()
    if variant == "pow":  # the questioner's sum CE^A: d/dCE = A * CE^(A-1), large where CE is small
        return ce.pow(x["adv"]).sum()
    if variant == "no_standardize":  # discounted, not standardised (CartPole: every G > 0)
        return (x["returns"] * ce).sum()
    return ((x["returns"] - x["values"]) * ce).sum()  # baseline: (G - V) * CE; the value regression is apart


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """0.5 * sum (V - G)^2, the baseline's regression target."""
    return 0.5 * (values - returns).pow(2).sum()
