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

    def act(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sample one action per row with a numpy generator (seeded per update: exact resume).

        Pong's observations (int8 frame differences, about 10 of 1600 pixels non-zero) take a sparse
        first layer in NumPy: only the weights of the pixels that changed in some row (contiguous rows
        of a transposed copy, so the emulator threads do not evict them), a ~4x cheaper forward on the
        thread that also feeds the emulator. Other observations (CartPole's floats) take two
        products in NumPy on the same cached transposed weights: for a few rows per step a torch call costs more than
        the arithmetic. Sampling is
        inverse-CDF on the unnormalised softmax (one uniform per row).
        """
        logits = self._logits(obs)  # NumPy on detached copies of the weights: no autograd, no torch.no_grad needed
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cum = p.cumsum(axis=1)
        u = rng.random(p.shape[0]) * cum[:, -1]
        return (u[:, None] > cum[:, :-1]).sum(axis=1)

    @torch.no_grad()
    def act_greedy(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The most likely action per row (the first one on a tie); ``rng`` is not used."""
        return self._logits(obs).argmax(axis=1)

    def _logits(self, obs: np.ndarray) -> np.ndarray:
        w1t, b1, w2t, b2 = self._weights()
        if obs.dtype == np.int8:  # Pong: only the rows of the pixels that changed in some observation
            cols = np.flatnonzero(obs.any(axis=0))
            h = obs[:, cols].astype(np.float32) @ w1t[cols]
        else:  # CartPole's few float rows
            h = np.asarray(obs, dtype=np.float32) @ w1t
        h += b1
        np.maximum(h, 0, out=h)
        logits = h @ w2t
        logits += b2
        return logits

    def _weights(self) -> tuple[np.ndarray, ...]:
        """Both layers as contiguous NumPy copies (weights transposed), renewed when a parameter changed in place
        (an optimiser step or ``load_state_dict`` bumps its version; a copied module has new storage)."""
        params = self.__dict__.get("_params")
        if params is None:
            params = self._params = (self.net[0].weight, self.net[0].bias, self.net[2].weight, self.net[2].bias)
        key = [q._version for q in params]
        key.append(params[0].data_ptr())
        if self.__dict__.get("_weights_key") != key:
            w1, b1, w2, b2 = (q.detach().numpy() for q in params)
            self._weights_cache = (w1.T.copy(), b1.copy(), w2.T.copy(), b2.copy())
            self._weights_key = key
        return self._weights_cache


class Value(nn.Module):
    """V(s), the learned baseline of the ``baseline`` variant (same shape as the policy, one output)."""

    def __init__(self, obs_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


def load_logged(run_id: str, which: str = "policy", tracking_uri: str | None = None) -> tuple[Policy, dict]:
    """A trial's logged policy (``policy``: the final one; ``winner``: the first that won its evaluation) and its
    ``model.json`` (shape, parameters, the evaluation it had), from the trial's MLflow child run."""
    import json

    from gradlab.tracking import download_artifacts

    folder = download_artifacts(run_id, "model", tracking_uri)
    meta = json.loads((folder / "model.json").read_text())
    path = folder / f"{which}.pt"
    if not path.exists():
        have = sorted(p.stem for p in folder.glob("*.pt"))
        raise FileNotFoundError(f"run {run_id} logged no {which!r} policy; it has: {', '.join(have)}")
    policy = Policy(meta["obs_dim"], meta["hidden"], meta["n_actions"])
    policy.load_state_dict(torch.load(path, weights_only=True))
    return policy, meta


def reevaluate(run_id: str, which: str = "policy", tracking_uri: str | None = None) -> tuple[dict, dict]:
    """Play the logged policy's evaluation again (Pong: the same fresh games, the same sampled actions): the new
    evaluation and the logged one, which it reproduces exactly."""
    from gradlab.studies.pg.config import PongWinParams
    from gradlab.studies.pg.evaluation import evaluate_pong

    policy, meta = load_logged(run_id, which, tracking_uri)
    logged = meta["evaluations"].get(which)
    if logged is None:
        raise ValueError(f"run {run_id}: its {which!r} policy had no evaluation to reproduce")
    p = PongWinParams.model_validate(meta["params"], strict=False)
    return evaluate_pong(policy, p, meta["seed"], logged["update"]), logged
