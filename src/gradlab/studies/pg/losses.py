"""The six losses of the ablation. Same network, data and optimiser; only this function changes.

``logp`` is log pi(a_t|s_t) of the actions taken (so the cross-entropy CE_t = -logp),
``adv`` the standardised discounted returns A_t, ``returns`` the raw discounted returns G_t,
``values`` V(s_t) of the learned baseline (variant ``baseline`` only). All sums run over the
time steps of the batch, as ``reduce_sum`` in the question.
"""

from __future__ import annotations

import torch

VARIANTS = ["correct", "flipped", "abs", "pow", "no_standardize", "baseline"]


def policy_loss(
    variant: str,
    logp: torch.Tensor,
    adv: torch.Tensor,
    returns: torch.Tensor,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    ce = -logp
    if variant == "correct":  # sum A * CE: minimising it raises log pi where A > 0, lowers it where A < 0
        return (adv * ce).sum()
    if variant == "flipped":  # the sign error: raises log pi of the actions that led to bad outcomes
        return -(adv * ce).sum()
    if variant == "abs":  # "the optimiser minimises |loss|": the sign of the step depends on the batch
        return (adv * ce).sum().abs()
    if variant == "pow":  # the questioner's sum CE^A: d/dCE = A * CE^(A-1), large where CE is small
        return ce.pow(adv).sum()
    if variant == "no_standardize":  # discounted, not standardised (CartPole: every G > 0)
        return (returns * ce).sum()
    if variant == "baseline":  # (G - V) * CE plus the value regression
        if values is None:
            raise ValueError("variant 'baseline' needs values")
        return ((returns - values.detach()) * ce).sum()
    raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(VARIANTS)}")


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """0.5 * sum (V - G)^2, the baseline's regression target."""
    return 0.5 * (values - returns).pow(2).sum()
