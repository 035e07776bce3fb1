"""Discounted returns (reset at each point, as in pg-pong) and their standardisation."""

from __future__ import annotations

import numpy as np


def discounted_returns(rewards: np.ndarray, gamma: float, reset_at_reward: bool = False) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1} within one episode.

    With ``reset_at_reward`` (Pong) the running sum restarts wherever a reward is non-zero,
    i.e. at the end of each point: an action is credited only with the point it belongs to,
    exactly as ``discount_rewards`` of Karpathy's pg-pong.py. ``rewards``: one episode, shape ``[T]``
    (an array, a list or a CPU tensor); ``gamma`` in [0, 1].
    """
    if hasattr(rewards, "detach"):  # a torch tensor
        rewards = rewards.detach().cpu().numpy()
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(
            f"discounted_returns: rewards must be one episode of shape [T], got shape {r.shape}; for a batch of "
            "episodes call it per episode: [discounted_returns(r, gamma) for r in episodes]"
        )
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"discounted_returns: gamma must be a discount factor in [0, 1] (e.g. 0.99), got {gamma!r}")
    out = np.empty_like(r)
    running = 0.0
    for t in range(r.size - 1, -1, -1):
        if reset_at_reward and r[t] != 0:
            running = 0.0
        running = running * gamma + r[t]
        out[t] = running
    return out


def standardize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / std over all entries; all zeros when x is constant."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean()
    std = centred.std()
    return centred / std if std > eps else np.zeros_like(centred)


def advantages(returns: list[np.ndarray], per: str) -> np.ndarray:
    """Standardised returns of a batch of episodes: over the whole batch, or each episode on its own."""
    if per == "batch":
        return standardize(np.concatenate(returns))
    if per == "episode":
        return np.concatenate([standardize(g) for g in returns])
    raise ValueError(f"standardize_per must be 'batch' or 'episode' (got {per!r})")
