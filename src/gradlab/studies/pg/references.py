"""Reference policies, played as a trial of the stage: uniform random actions (and, on CartPole, always the same
action). They set the scale a learning curve is read against; the analysis gets their returns and plays nothing.

The reference trial runs through the trial engine like the training trials (its child run ``reference__seed<k>``
carries the returns), with its own random stream: seed ``seed`` for the actions, ``seed + 12345`` for the
environments, so its games are the same whichever trials run beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradlab.studies.pg.config import PGParams
from gradlab.trials import Child

GAMES = 100  # games (episodes) per reference policy
ENV_SEED_OFFSET = 12345  # the reference's environments: seeds apart from every training trial's


@dataclass(frozen=True)
class ReferenceSpec:
    kind: str  # "cartpole" or "pong"
    params: PGParams
    seed: int
    games: int = GAMES


def child_of(spec: ReferenceSpec) -> Child:
    return Child("reference", spec.seed, {"games": spec.games})


def run_reference(spec: ReferenceSpec) -> dict[str, list[float]]:
    """The return of every game of each reference policy: ``{policy: [return, ...]}``."""
    if spec.kind == "cartpole":
        return _cartpole(spec.seed, spec.games)
    return {"random": _pong_random(spec.params, spec.seed, spec.games)}


def log_reference(run, spec: ReferenceSpec, returns: dict[str, list[float]]) -> None:
    run.log_metrics({f"reference/{name}_return_mean": float(np.mean(r)) for name, r in returns.items()})


def _pong_random(p: PGParams, seed: int, games: int) -> list[float]:
    """Pong: uniform random actions (same emulator settings and actions as the trials)."""
    from gradlab.studies.pg.rollout import pong_stream

    env = pong_stream(p, 16)
    env.start(seed + ENV_SEED_OFFSET)
    episodes = env.play(lambda obs, rng: rng.integers(0, env.n_actions, obs.shape[0]), games)
    env.close()
    return [float(e["rewards"].sum()) for e in episodes]


def _cartpole(seed: int, episodes: int) -> dict[str, list[float]]:
    """CartPole-v1: always push left (the shortest episodes) and uniform random actions."""
    from gradlab.studies.pg.envs import CartPoleEnvs

    env = CartPoleEnvs(episodes)
    out = {}
    for name, policy in {
        "always_left": lambda obs, rng: np.zeros(len(obs), dtype=np.int64),
        "random": lambda obs, rng: rng.integers(0, 2, len(obs)),
    }.items():
        rng = np.random.default_rng(seed)
        obs, alive, total = env.reset(seed + ENV_SEED_OFFSET), np.ones(episodes, bool), np.zeros(episodes)
        while alive.any():
            obs, r, done = env.step(policy(obs, rng))
            total += r * alive
            alive &= ~done
        out[name] = [float(x) for x in total]
    env.close()
    return out
