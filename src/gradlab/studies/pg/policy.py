"""The policy (and the baseline's value network): one hidden ReLU layer, as in pg-pong.py."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(obs_dim: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))


class Policy(nn.Module):
    """logits = W2 relu(W1 s + b1) + b2 over the discrete actions."""

    def __init__(self, obs_dim: int, hidden: int, n_actions: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of the given actions (= minus the cross-entropy with the action as label)."""
        return torch.log_softmax(self(obs), dim=-1).gather(1, actions.long().unsqueeze(1)).squeeze(1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample one action per row with a numpy generator (seeded per update: exact resume).

        Two ``addmm`` calls instead of the module's forward: for a few rows per step the module
        calls cost more than the arithmetic, and the per-step forward shares the cores with the
        emulator. Sampling is inverse-CDF on the unnormalised softmax (one uniform per row).
        """
        first, last = self.net[0], self.net[2]
        h = torch.addmm(first.bias, torch.from_numpy(obs).float(), first.weight.t()).relu_()
        logits = torch.addmm(last.bias, h, last.weight.t()).numpy()
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cum = np.cumsum(p, axis=1)
        u = rng.random(p.shape[0]) * cum[:, -1]
        return (u[:, None] > cum[:, :-1]).sum(axis=1)


class Value(nn.Module):
    """V(s), the learned baseline of the ``baseline`` variant (same shape as the policy, one output)."""

    def __init__(self, obs_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)
