"""pg: Pong training throughput, measured in one run as ratios (both sides in the same run, rounds alternating).

The subject is the trainer as the win preset runs it (presets/pg_pong_win.yaml: 8 games in 2 pipelined
groups with 2 emulator threads each, 40x40 input, 200 hidden units, 8 games per update, one trial on
the whole machine). Frames are those of finished games, over the wall-clock time of training (rollout
and updates).

(a) Training frames/s / the same environments stepped alone: the same ``PongStream`` (same games,
    groups, threads, preprocessing) playing the same number of games with uniform random actions and
    nothing else. Target >= 0.8.
(b) Training frames/s / the classic single-environment loop of pg-pong.py in NumPy with the same
    network (one game at a time, a NumPy forward per step, backward and RMSProp at the end of each
    game), run for half as many frames. Target >= 2.0.
Learning per game (stream vs lockstep) is bench_pg_learning.py.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from gradlab.settings import machine_cores
from gradlab.studies.pg.config import PongWinParams
from gradlab.studies.pg.envs import preprocess_pong
from gradlab.studies.pg.loop import Training
from gradlab.studies.pg.returns import discounted_returns, standardize
from gradlab.studies.pg.stream import PongStream

ROUNDS = 3
UPDATES = 12  # 96 games per round
P = PongWinParams(updates=UPDATES, final_episodes=8, stop_at_mean=None)
THREADS = machine_cores()


def train_once(p=P, seed: int = 0) -> dict:
    """Real training through Lightning, as a trial of the preset runs it."""
    torch.set_num_threads(1)
    trial = Training(p, "pong", "correct", seed)
    module = trial.module
    module.update_threads = THREADS
    start = time.perf_counter()
    try:
        trial.fit()
    finally:
        trial.close()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": sum(module.episodes["frames"]), "games": len(module.episodes["frames"])}


def env_alone(games: int, seed: int = 1) -> dict:
    """The same stream playing ``games`` games with uniform random actions, no model."""
    env = PongStream(
        P.episodes_per_update,
        groups=P.env_groups,
        frameskip=P.frameskip,
        repeat_action_probability=P.repeat_action_probability,
        downsample=P.downsample,
        threads=P.env_threads,
    )
    env.start(seed)
    start = time.perf_counter()
    episodes = env.play(lambda obs, rng: rng.integers(0, 2, obs.shape[0]), games)
    seconds = time.perf_counter() - start
    env.close()
    return {"seconds": seconds, "frames": sum(len(e["rewards"]) for e in episodes) * P.frameskip}


def numpy_pg_pong(max_steps: int, seed: int = 0) -> dict:
    """pg-pong.py's loop: one env, NumPy forward per step, backward and RMSProp at the end of each game."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make(
        "ALE/Pong-v5",
        obs_type="grayscale",
        frameskip=P.frameskip,
        repeat_action_probability=P.repeat_action_probability,
    )
    rng = np.random.default_rng(seed)
    D, H = (80 // P.downsample) ** 2, P.hidden
    model = {"W1": rng.normal(size=(H, D)) / np.sqrt(D), "W2": rng.normal(size=(2, H)) / np.sqrt(H)}
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    start, steps, frames = time.perf_counter(), 0, 0
    while steps < max_steps:
        obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
        prev = preprocess_pong(obs[None], P.downsample)[0].astype(np.float64)
        xs, hs, dlogits, rewards = [], [], [], []
        done = False
        while not done:
            cur = preprocess_pong(obs[None], P.downsample)[0].astype(np.float64)
            x, prev = cur - prev, cur
            h = np.maximum(model["W1"] @ x, 0)
            logits = model["W2"] @ h
            p = np.exp(logits - logits.max())
            p /= p.sum()
            a = int(rng.random() > p[0])
            obs, r, term, trunc, _ = env.step(2 + a)
            g = p.copy()
            g[a] -= 1  # d CE / d logits
            xs.append(x), hs.append(h), dlogits.append(g), rewards.append(r)
            steps += 1
            done = term or trunc
        adv = standardize(discounted_returns(np.array(rewards), P.gamma, True))[:, None]
        X, Hs, G = np.array(xs), np.array(hs), np.array(dlogits) * adv
        dW2 = G.T @ Hs
        dh = G @ model["W2"]
        dh[Hs <= 0] = 0
        grads = {"W1": dh.T @ X, "W2": dW2}
        for k in model:
            cache[k] = 0.99 * cache[k] + 0.01 * grads[k] ** 2
            model[k] -= 1e-3 * grads[k] / (np.sqrt(cache[k]) + 1e-5)
        frames += len(rewards) * P.frameskip
    seconds = time.perf_counter() - start
    env.close()
    return {"seconds": seconds, "frames": frames}


def run() -> dict:
    ours, alone, ref = [], [], []
    for _ in range(ROUNDS):
        t = train_once()
        ours.append(t["frames"] / t["seconds"])
        a = env_alone(t["games"])
        alone.append(a["frames"] / a["seconds"])
        n = numpy_pg_pong(max_steps=t["frames"] // P.frameskip // 2)
        ref.append(n["frames"] / n["seconds"])
    med = statistics.median
    out = {
        "pong_train_vs_env_alone": {
            "ratio": med(ours) / med(alone),
            "subject_frames_per_s": med(ours),
            "reference_frames_per_s": med(alone),
            "what": "training frames/s / the same PongStream stepped alone with random actions (same games)",
            "rounds": ROUNDS,
            "target": ">= 0.8",
        },
        "pong_train_vs_numpy_single_env": {
            "ratio": med(ours) / med(ref),
            "subject_frames_per_s": med(ours),
            "reference_frames_per_s": med(ref),
            "what": "training frames/s / pg-pong.py's single-environment NumPy loop, same network",
            "rounds": ROUNDS,
            "target": ">= 2.0",
        },
    }
    return out
