"""CartPole-v1 and ALE/Pong-v5, each as a batch of environments stepped together.

Both expose the same interface to the trainer: ``reset(seed) -> obs``, ``step(actions) ->
(obs, reward, done)`` on numpy arrays of ``num_envs`` rows, ``obs_dim``, ``n_actions``,
``frames_per_step`` and ``reset_at_reward`` (whether discounted returns restart at every
non-zero reward, i.e. at each Pong point). A leaf: the collectors that play them are in rollout.py.
"""

from __future__ import annotations

import math

import numpy as np

PONG_NOOP, PONG_UP, PONG_DOWN = 0, 2, 3  # ALE minimal action set of Pong: RIGHT moves the paddle up, LEFT down
PONG_BACKGROUND_RED = (144, 109)  # red channel of the two background colours, erased by pg-pong.py
PONG_BACKGROUND_GRAY = (87, 107)  # the same two colours in ALE's grayscale (checked equal in the tests)


def preprocess_pong_rgb(frames: np.ndarray) -> np.ndarray:
    """The classic pg-pong.py recipe on RGB frames (n, 210, 160, 3) -> binary (n, 80, 80) int8.

    Crop rows 35..194 (the playing field), keep every other pixel, take the red channel,
    erase the two background colours, set everything else (paddles, ball) to 1.
    """
    x = frames[:, 35:195:2, ::2, 0]
    return ((x != PONG_BACKGROUND_RED[0]) & (x != PONG_BACKGROUND_RED[1])).astype(np.int8)


def preprocess_pong(frames: np.ndarray, downsample: int = 1) -> np.ndarray:
    """The same recipe on ALE grayscale frames (n, 210, 160) -> (n, (80/downsample)^2) int8.

    Grayscale frames are a third of the RGB bytes, and the background test is two comparisons.
    With ``downsample=2`` the 80x80 image is 2x2 max-pooled to 40x40 (the 1-pixel-wide ball
    survives, the network's input is 4x smaller); the pooled pixel (i, j) covers rows
    35 + 4i, 37 + 4i and columns 4j, 4j + 2 of the frame, so the pooling is an OR of four
    strided views (no 80x80 intermediate).
    """
    n = frames.shape[0]
    if downsample == 1:
        views = [frames[:, 35:195:2, ::2]]
    else:
        views = [frames[:, r:195:4, c::4] for r in (35, 37) for c in (0, 2)]
    out = None
    for x in views:
        keep = (x != PONG_BACKGROUND_GRAY[0]) & (x != PONG_BACKGROUND_GRAY[1])
        out = keep if out is None else out | keep
    return out.view(np.int8).reshape(n, -1)


def pong_vector_env(
    num_envs: int,
    threads: int,
    frameskip: int,
    repeat_action_probability: float,
    max_episode_frames: int,
    autoreset_mode: str = "NextStep",
):
    """``num_envs`` ALE Pong games with Pong-v5 dynamics and full-size grayscale frames, no other preprocessing."""
    import ale_py

    return ale_py.AtariVectorEnv(
        "pong",
        num_envs=num_envs,
        num_threads=threads,
        img_height=210,
        img_width=160,
        grayscale=True,
        stack_num=1,
        frameskip=frameskip,
        maxpool=False,
        noop_max=0,
        use_fire_reset=False,
        reward_clipping=False,
        episodic_life=False,
        repeat_action_probability=repeat_action_probability,
        max_num_frames_per_episode=max_episode_frames,
        autoreset_mode=autoreset_mode,
    )


class CartPoleEnvs:
    """CartPole-v1 (episodes truncated at 500 steps) for ``num_envs`` environments stepped together, in NumPy.

    The dynamics, thresholds, float64 state, float32 observations and reset draws are those of gymnasium's
    ``CartPoleVectorEnv`` (``gym.make_vec("CartPole-v1", vectorization_mode="vector_entry_point")``; checked
    bit for bit in the tests) without its per-call checks and autoreset: an environment that is done keeps
    being stepped (its rows are masked by the caller) and is only reset by the next ``reset(seed)``. Same
    observations, rewards and ends as gymnasium's for every step before an environment's end, at a fraction
    of the cost per step (the rollout is most of a CartPole trial's time).
    """

    obs_dim, n_actions, frames_per_step, reset_at_reward = 4, 2, 1, False
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    max_episode_steps = 500

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.state = None

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)  # = gymnasium.utils.seeding.np_random(seed)
        self.state = rng.uniform(low=-0.05, high=0.05, size=(4, self.num_envs))
        self.steps = np.zeros(self.num_envs, dtype=np.int32)
        return self.state.T.astype(np.float32)

    def step(self, actions: np.ndarray):
        x, x_dot, theta, theta_dot = self.state
        force = np.where(np.asarray(actions) > 0, self.force_mag, -self.force_mag)  # = sign(a - 0.5) * force_mag
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        state = np.empty_like(self.state)
        np.add(x, self.tau * x_dot, out=state[0])
        np.add(x_dot, self.tau * xacc, out=state[1])
        np.add(theta, self.tau * theta_dot, out=state[2])
        np.add(theta_dot, self.tau * thetaacc, out=state[3])
        self.state = state
        self.steps += 1
        # |x| > threshold is (x < -threshold) | (x > threshold), NaN included
        done = (np.abs(state[0]) > self.x_threshold) | (np.abs(state[2]) > self.theta_threshold_radians)
        done |= self.steps >= self.max_episode_steps
        return state.T.astype(np.float32), np.ones(self.num_envs, dtype=np.float32), done

    def close(self) -> None:
        pass


class PongEnvs:
    """``num_envs`` Pong games in ale_py's C++ vector environment, observed as frame differences.

    Variant: ALE/Pong-v5 dynamics (``frameskip`` frames per action, sticky actions with
    ``repeat_action_probability``), full-size grayscale frames (no max-pooling over frames,
    no noop starts, no fire reset, rewards unclipped), two actions UP/DOWN. An episode ends when the
    game ends or after ``points_per_episode`` points. The observation is the difference of
    consecutive preprocessed frames (zeros on the first step), as in pg-pong.py.
    """

    n_actions, reset_at_reward = 2, True

    def __init__(
        self,
        num_envs: int,
        frameskip: int = 4,
        repeat_action_probability: float = 0.25,
        downsample: int = 2,
        points_per_episode: int = 21,
        max_episode_frames: int = 108_000,
        threads: int = 0,
    ):
        self.num_envs, self.downsample, self.points_per_episode = num_envs, downsample, points_per_episode
        self.frames_per_step = frameskip
        self.obs_dim = (80 // downsample) ** 2
        self.env = pong_vector_env(num_envs, threads, frameskip, repeat_action_probability, max_episode_frames)
        self.actions = np.array([PONG_UP, PONG_DOWN])

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        return preprocess_pong(obs.reshape(self.num_envs, 210, 160), self.downsample)

    def reset(self, seed: int) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        self.prev = self._frames(obs)
        self.points = np.zeros(self.num_envs, dtype=np.int64)
        return np.zeros_like(self.prev)

    def step(self, actions: np.ndarray):
        obs, reward, term, trunc, _ = self.env.step(self.actions[actions])
        cur = self._frames(obs)
        diff = cur - self.prev
        self.prev = cur
        self.points += reward != 0
        done = term | trunc | (self.points >= self.points_per_episode)
        return diff, reward.astype(np.float32), done

    def close(self) -> None:
        self.env.close()
