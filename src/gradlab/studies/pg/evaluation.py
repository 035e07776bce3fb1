"""Does a frozen Pong policy beat the built-in AI? Fresh games, a mean score and its 95 % interval.

``evaluate_pong(policy, p, seed, update)`` plays ``p.evaluate_games`` games of a copy of ``policy`` in
``p.evaluate_envs`` new emulators whose seeds are drawn from ``(seed, update, EVAL_TAG)``: a stream of
seeds that training never uses (training's emulators are seeded from ``(update_seed(seed, u), PONG)``;
:func:`check_disjoint` compares the two sets). Every emulator plays the same number of consecutive
games and only its first ones count, so a short game is not more likely to be counted than a long one.
Actions are sampled from the policy (``greedy=False``, the policy that was trained) or its most likely
action (``greedy=True``). The verdict of one evaluation is ``won``: the t interval of the mean score
(scores are points won minus points lost, in [-21, 21]) lies above 0.
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING

import numpy as np

from gradlab.stats import t_mean_ci
from gradlab.studies.pg.rollout import pong_stream

if TYPE_CHECKING:  # policy.py imports this module (reevaluate)
    from gradlab.studies.pg.policy import Policy

EVAL_TAG = 0x4556414C  # "EVAL": evaluation seeds come from their own branch of the seed tree


def eval_seed(seed: int, update: int) -> int:
    """The seed of the emulators that evaluate the policy after ``update`` updates of trial ``seed``."""
    return int(np.random.SeedSequence([seed, update, EVAL_TAG]).generate_state(1)[0] % 2**31)


def check_disjoint(eval_seeds, training_seeds) -> None:
    """Refuse an evaluation whose emulator seeds were also used by training (it would replay training games)."""
    shared = set(map(int, eval_seeds)) & set(map(int, training_seeds))
    if shared:
        raise RuntimeError(f"evaluation emulator seeds {sorted(shared)} were used by training")


def evaluate_pong(policy: Policy, p, seed: int, update: int, greedy: bool = False, training_seeds=()) -> dict:
    """Play ``p.evaluate_games`` fresh games of a frozen copy of ``policy``; scores and their mean with 95 % CI."""
    frozen = copy.deepcopy(policy).eval()
    n_envs = min(p.evaluate_envs, p.evaluate_games)
    per_env = math.ceil(p.evaluate_games / n_envs)
    stream = pong_stream(p, n_envs)
    start = time.perf_counter()
    try:
        stream.start(eval_seed(seed, update))
        check_disjoint(stream.env_seeds, training_seeds)
        act = frozen.act_greedy if greedy else frozen.act
        games: list[list[float]] = [[] for _ in range(n_envs)]
        frames = 0
        while any(len(g) < per_env for g in games):
            for e in stream.play(act, 1):
                if len(games[e["env"]]) < per_env:
                    games[e["env"]].append(float(e["rewards"].astype(np.float64).sum()))
                    frames += len(e["rewards"]) * stream.frames_per_step
        env_seeds = [int(s) for s in stream.env_seeds]
    finally:
        stream.close()
    scores = [s for g in games for s in g][: p.evaluate_games]  # emulator-major: its games in the order played
    mean, low, high = t_mean_ci(scores, -float(p.points_per_episode), float(p.points_per_episode))
    return {
        "update": update,
        "greedy": greedy,
        "games": len(scores),
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "won": low is not None and low > 0,
        "frames": frames,
        "seconds": time.perf_counter() - start,
        "env_seeds": env_seeds,
        "scores": scores,
    }
