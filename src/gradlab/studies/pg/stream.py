"""Pong games that never wait: the emulator and the policy overlap, and no emulated step is thrown away.

``PongStream`` keeps ``num_envs`` games running in ``groups`` ale_py vector environments, each
with its own emulator thread. The trainer sends a group its actions (``send``) and, while that
group's emulator steps, receives the next group's frames (``recv``), preprocesses them and
samples their actions: emulation and the policy's forwards run at the same time on different
cores. A game that ends is reset by the emulator at once (autoreset ``SameStep``) and goes on;
:meth:`PongStream.play` returns as soon as ``k`` games have ended, in the order they ended, with
every group still stepping, so the update overlaps emulation too. The games that have not ended
carry their steps over to the next update (their first steps were sampled from the policy before
the update: a lag of at most one update per game).

Deterministic: the groups are served in a fixed order and every random number comes from
generators seeded by :meth:`start`, never from timing, so the same seed gives the same games
whatever the machine's load.
"""

from __future__ import annotations

import os
import time
from collections import deque

import numpy as np

from gradlab.studies.pg.envs import PONG_DOWN, PONG_NOOP, PONG_UP, pong_vector_env, preprocess_pong

GAME_DEFAULTS = {
    "frameskip": 4,
    "repeat_action_probability": 0.25,
    "downsample": 2,
    "points_per_episode": 21,
    "max_episode_frames": 108_000,
    "threads": 1,
}
ACTION_SETS = {"up_down": (PONG_UP, PONG_DOWN), "noop_up_down": (PONG_NOOP, PONG_UP, PONG_DOWN)}
STREAM_TAG = 0x504F4E47  # "PONG": a stream's seeds come from their own branch of the seed tree


def stream_env_seeds(seed: int, num_envs: int) -> np.ndarray:
    """The emulator seed of each game of a stream started with ``seed`` (:meth:`PongStream.start`)."""
    return np.random.SeedSequence([seed, STREAM_TAG]).generate_state(num_envs) % 2**31


def _split(n: int, parts: int) -> list[slice]:
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _thread_ids() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:  # not Linux
        return set()


def _no_wakeup_preemption(thread_ids: set[int]) -> None:
    """Schedule the emulator threads as SCHED_BATCH (Linux): a woken emulator thread then no longer preempts
    the thread that feeds them (~1 s of every 7 s was lost that way inside ``send`` on 2 cores, with 4
    emulator threads). Throughput only; best effort where the call is refused or missing."""
    for tid in thread_ids:
        try:
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
        except (AttributeError, OSError):
            return


class PongStream:
    """``num_envs`` Pong games in ``groups`` pipelined vector environments (see the module docstring).

    The observation is the classic pg-pong one: the difference of consecutive preprocessed frames,
    zeros on a game's first step. An episode ends when the game ends, after ``points_per_episode``
    points, or after ``max_episode_frames`` frames. ``actions`` names the action set (ALE ids).
    """

    reset_at_reward = True

    def __init__(self, num_envs: int, groups: int = 2, actions: str = "up_down", **game):
        """``game``: ``frameskip`` (4), ``repeat_action_probability`` (0.25), ``downsample`` (2),
        ``points_per_episode`` (21), ``max_episode_frames`` (108000), ``threads`` per group (1)."""
        g = {**GAME_DEFAULTS, **game}
        frameskip, repeat_action_probability = g["frameskip"], g["repeat_action_probability"]
        downsample, points_per_episode = g["downsample"], g["points_per_episode"]
        max_episode_frames, threads = g["max_episode_frames"], g["threads"]
        self.num_envs, self.downsample, self.points_per_episode = num_envs, downsample, points_per_episode
        self.frames_per_step = frameskip
        self.obs_dim = (80 // downsample) ** 2
        self.action_ids = np.array(ACTION_SETS[actions], dtype=np.int64)
        self.n_actions = len(self.action_ids)
        self.slices = _split(num_envs, max(1, min(groups, num_envs)))
        before = _thread_ids()
        self.envs = [
            pong_vector_env(
                s.stop - s.start, threads, frameskip, repeat_action_probability, max_episode_frames, "SameStep"
            )
            for s in self.slices
        ]
        _no_wakeup_preemption(_thread_ids() - before)
        self.strength = [np.ones(s.stop - s.start, dtype=np.float32) for s in self.slices]  # paddle strength
        self.started = False

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        return preprocess_pong(obs.reshape(-1, 210, 160), self.downsample)

    def start(self, seed: int) -> None:
        """Reset every game (seeds drawn from ``seed``) and forget any game in progress."""
        root = np.random.SeedSequence([seed, STREAM_TAG])
        env_seeds = stream_env_seeds(seed, self.num_envs)
        self.env_seeds = env_seeds  # each game's emulator seed (evaluation.check_disjoint compares them)
        self.rng = np.random.default_rng(root.spawn(1)[0])
        self.prev, self.obs = [], []
        for env, s in zip(self.envs, self.slices, strict=True):
            obs, _ = env.reset(seed=env_seeds[s].astype(np.int64))
            self.prev.append(self._frames(obs))
            self.obs.append(np.zeros_like(self.prev[-1]))
        self.steps = [([], [], []) for _ in range(self.num_envs)]  # per game: observations, actions, rewards
        self.points = np.zeros(self.num_envs, dtype=np.int64)
        self.in_flight = [False] * len(self.envs)
        self.next_group = 0
        self.finished: deque[dict] = deque()
        self.started = True

    def play(self, act, k: int) -> list[dict]:
        """Step the games until ``k`` episodes have ended; return those ``k`` (obs, actions, rewards).

        ``act(obs, rng) -> action indices`` is called once per group step with the group's
        observations (int8, ``[n, obs_dim]``) and this stream's generator.
        """
        while len(self.finished) < k:
            g = self.next_group
            self.next_group = (g + 1) % len(self.envs)
            if self.in_flight[g]:
                self._receive(g)
            obs = self.obs[g]
            a = act(obs, self.rng)
            for j, i in enumerate(range(self.slices[g].start, self.slices[g].stop)):
                o, acts, _ = self.steps[i]
                o.append(obs[j])
                acts.append(a[j])
            # the flag first: Ctrl-C surfaces right after a C call returns, so set after send it could be missed
            self.in_flight[g] = True
            self.envs[g].ale.send(self.action_ids[a], self.strength[g])  # AtariVectorEnv.send minus its checks
        return [self.finished.popleft() for _ in range(k)]

    def _receive(self, g: int) -> None:
        self.in_flight[g] = False  # before recv: a KeyboardInterrupt raised as it returns must not leave it set
        raw, reward, term, trunc, _ = self.envs[g].ale.recv()
        cur = self._frames(raw)
        diff = cur - self.prev[g]
        first = self.slices[g].start
        self.points[self.slices[g]] += reward != 0
        by_points = self.points[self.slices[g]] >= self.points_per_episode
        ended = term | trunc | by_points
        for j, r in enumerate(reward):
            self.steps[first + j][2].append(float(r))
        for j in np.flatnonzero(ended):
            i = first + j
            o, acts, rew = self.steps[i]
            self.finished.append(
                {
                    "obs": np.stack(o),
                    "actions": np.asarray(acts, dtype=np.int64),
                    "rewards": np.asarray(rew, dtype=np.float32),
                    "ended_at": time.perf_counter(),
                    "env": i,  # the emulator that played it
                }
            )
            self.steps[i] = ([], [], [])
            self.points[i] = 0
        manual = by_points & ~(term | trunc)  # ended by our point limit: the emulator did not reset it
        if manual.any():  # unseeded: the game's own generator (seeded by start) goes on; a seeded reset reloads the ROM
            raw, _ = self.envs[g].reset(options={"reset_mask": manual})
            cur[manual] = self._frames(raw)[manual]
        diff[ended] = 0  # a new game's first observation: no previous frame
        self.prev[g] = cur
        self.obs[g] = diff

    def close(self) -> None:
        """Collect each group's step still in flight, then close. ``in_flight`` is exact even when a
        KeyboardInterrupt arrived mid-play: a second ``recv`` of a step already received blocks forever."""
        for g, env in enumerate(self.envs):
            if self.started and self.in_flight[g]:
                env.recv()
            env.close()
