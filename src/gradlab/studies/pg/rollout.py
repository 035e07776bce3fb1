"""Episodes played by the current policy, and the training batch made of them: one interface, two collectors.

``make_collector(kind, p)`` returns the collector of a stage's environment; the trainer only calls
``collect(policy, seed, update, episodes) -> [{"obs", "actions", "rewards"}, ...]`` and reads ``obs_dim``,
``n_actions``, ``frames_per_step`` and ``reset_at_reward``:

- :class:`Lockstep` (CartPole, and Pong with ``rollout: episodes``): one complete episode per environment, all
  stepped together, fresh for every update; environment resets and action sampling come from (seed, update).
- :class:`Stream` (Pong's default, stream.py): games never wait for each other or for the update; a game in
  progress at an update carries on into the next batch. Its games are seeded once, from the (seed, update) at
  which it starts (a new trial, or a resumed one: its games start over).

Both keep ``env_seeds_used``, every emulator seed training started (evaluations must not reuse one).
envs.py and stream.py know nothing of this module.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradlab.studies.pg.envs import CartPoleEnvs, PongEnvs
from gradlab.studies.pg.returns import advantages, discounted_returns
from gradlab.studies.pg.stream import PongStream

if TYPE_CHECKING:
    from gradlab.studies.pg.policy import Policy


def update_seed(seed: int, update: int) -> int:
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0] % 2**31)


def collect_episodes(policy: Policy, envs, env_seed: int, rng: np.random.Generator) -> list[dict]:
    """One complete episode per environment, all stepped together; finished ones are masked.

    The per-step forwards run on one torch thread: for a (8 x 1600) batch two intra-op threads
    are ~10x slower than one (thread wake-ups), and the other core runs the emulator or a trial.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _collect(policy, envs, env_seed, rng)
    finally:
        torch.set_num_threads(threads)


def _collect(policy: Policy, envs, env_seed: int, rng: np.random.Generator) -> list[dict]:
    obs = envs.reset(env_seed)
    alive = np.ones(envs.num_envs, dtype=bool)
    O, A, R, M = [], [], [], []
    while alive.any():
        act = policy.act(obs, rng)
        nxt, reward, done = envs.step(act)
        O.append(obs)
        A.append(act)
        R.append(reward)
        M.append(alive.copy())
        alive &= ~done
        obs = nxt
    O, A, R, M = np.stack(O, 1), np.stack(A, 1), np.stack(R, 1), np.stack(M, 1)
    lengths = M.sum(axis=1)
    return [{"obs": O[i, :n], "actions": A[i, :n], "rewards": R[i, :n]} for i, n in enumerate(lengths)]


def evaluate(policy: Policy, episodes: int, seed: int) -> float:
    """Mean return of ``episodes`` CartPole episodes of ``policy`` (sampled actions), environment and action
    seeds fixed by ``seed`` (so two policies are compared on the same starts)."""
    envs = CartPoleEnvs(episodes)
    try:
        played = collect_episodes(policy, envs, seed + 777, np.random.default_rng([seed, 777]))
    finally:
        envs.close()
    return float(np.mean([float(e["rewards"].astype(np.float64).sum()) for e in played]))


def emulator(p) -> dict:
    """The stage's emulator settings, as both Pong collectors (PongStream, PongEnvs) take them."""
    return {
        "frameskip": p.frameskip,
        "repeat_action_probability": p.repeat_action_probability,
        "downsample": p.downsample,
        "points_per_episode": p.points_per_episode,
        "max_episode_frames": p.max_episode_frames,
        "threads": p.env_threads,
    }


def pong_stream(p, num_envs: int) -> PongStream:
    """``num_envs`` Pong games of the stage's emulator settings and action set, as a stream (stream.py)."""
    return PongStream(num_envs, groups=p.env_groups, actions=p.actions, **emulator(p))


class Lockstep:
    """``envs`` (envs.py: CartPoleEnvs or PongEnvs) played one complete episode each per update."""

    def __init__(self, envs):
        self.envs = envs
        self.obs_dim, self.n_actions = envs.obs_dim, envs.n_actions
        self.frames_per_step, self.reset_at_reward = envs.frames_per_step, envs.reset_at_reward
        self.env_seeds_used: list[int] = []  # not recorded: lockstep Pong is never evaluated (evaluation.py)

    def collect(self, policy: Policy, seed: int, update: int, episodes: int) -> list[dict]:
        """One episode per environment (``episodes`` is their number, fixed when they were made)."""
        return collect_episodes(policy, self.envs, update_seed(seed, update), np.random.default_rng([seed, update, 1]))

    def close(self) -> None:
        self.envs.close()


class Stream:
    """A :class:`~gradlab.studies.pg.stream.PongStream`, started on the first collection."""

    def __init__(self, stream: PongStream):
        self.stream = stream
        self.obs_dim, self.n_actions = stream.obs_dim, stream.n_actions
        self.frames_per_step, self.reset_at_reward = stream.frames_per_step, stream.reset_at_reward
        self.env_seeds_used: list[int] = []

    def collect(self, policy: Policy, seed: int, update: int, episodes: int) -> list[dict]:
        """The next ``episodes`` games to end, in the order they ended (each also has ``ended_at``, its end time)."""
        if not self.stream.started:  # a new trial, or a resumed one (its games start over)
            self.stream.start(update_seed(seed, update))
            self.env_seeds_used += [int(s) for s in self.stream.env_seeds]
        return self.stream.play(policy.act, episodes)

    def close(self) -> None:
        self.stream.close()


def make_collector(kind: str, p) -> Lockstep | Stream:
    """The collector of ``kind`` ("cartpole" or "pong", with ``p.rollout``) for ``p.episodes_per_update`` games."""
    if kind == "cartpole":
        return Lockstep(CartPoleEnvs(p.episodes_per_update))
    if kind == "pong":
        if p.rollout == "episodes":
            return Lockstep(PongEnvs(p.episodes_per_update, **emulator(p)))
        return Stream(pong_stream(p, p.episodes_per_update))
    raise ValueError(f"unknown environment {kind!r}; allowed: cartpole, pong")


def observations(obs: np.ndarray) -> torch.Tensor:
    """The batch's observations as float rows. Pong's (int8 frame differences, ~0.5 % non-zero) become a
    sparse CSR tensor: ``nn.Linear`` takes it as it is, and the update's forward and backward through the
    first layer are ~7x cheaper than dense (the same sums, in another order)."""
    if obs.dtype != np.int8:
        return torch.from_numpy(obs).float()
    flat = np.flatnonzero(obs)
    rows, cols = np.divmod(flat, obs.shape[1])
    crow = np.zeros(obs.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=obs.shape[0]), out=crow[1:])
    values = obs.ravel()[flat].astype(np.float32)
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(cols), torch.from_numpy(values), size=obs.shape
        )


def make_batch(episodes: list[dict], gamma: float, reset_at_reward: bool, standardize_per: str) -> dict:
    """The update's tensors: observations, actions, discounted returns and advantages of ``episodes``."""
    returns = [discounted_returns(e["rewards"], gamma, reset_at_reward) for e in episodes]
    return {
        "obs": observations(np.concatenate([e["obs"] for e in episodes])),
        "actions": torch.from_numpy(np.concatenate([e["actions"] for e in episodes])).long(),
        "returns": torch.from_numpy(np.concatenate(returns)).float(),
        "adv": torch.from_numpy(advantages(returns, standardize_per)).float(),
    }
