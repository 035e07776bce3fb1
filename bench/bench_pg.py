"""pg: Pong training throughput, measured in one run as ratios (same machine, same moment).

1. Training frames/s of the gradlab trainer (8 Pong games in ale_py's vector environment,
   one Lightning update of 8 complete games) vs a single-environment NumPy loop in the style
   of Karpathy's pg-pong.py with the same network (40x40 input, 64 hidden, 2 actions) and the
   same preprocessing, RMSProp update at the end of each game. Target >= 1.5.
2. Glue overhead: (time of stepping the environments alone + time of the model's forwards,
   backward, optimiser step and probe alone, on the same batches) / training time. Target >= 0.85.
3. Fraction of the raw vectorised stepping rate (same 8 environments, random actions, no
   model) that training reaches.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch

from gradlab.studies.pg.config import PongParams
from gradlab.studies.pg.envs import PongEnvs, preprocess_pong
from gradlab.studies.pg.module import Reinforce, update_seed
from gradlab.studies.pg.probe import probe_step
from gradlab.studies.pg.returns import discounted_returns, standardize

ROUNDS = 3
P = PongParams(episodes_per_update=8, updates=1, final_episodes=1, env_threads=2, hidden=64, downsample=2)


def train_once() -> dict:
    """One real update through Lightning; records what the policy saw and did, step by step."""
    module = Reinforce(P, "pong", "correct", seed=0)
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    act = module.policy.act

    def recording_act(obs, rng):
        a = act(obs, rng)
        steps.append((obs, a))
        return a

    module.policy.act = recording_act
    start = time.perf_counter()
    module.fit()
    seconds = time.perf_counter() - start
    module.envs.close()
    frames = sum(module.episodes["frames"])
    return {"seconds": seconds, "frames": frames, "steps": steps, "module": module}


def env_alone(steps) -> float:
    """Replay the recorded actions: the same games, the same number of vector steps."""
    env = PongEnvs(P.episodes_per_update, downsample=P.downsample, threads=P.env_threads)
    start = time.perf_counter()
    env.reset(update_seed(0, 0))
    for _, a in steps:
        env.step(a)
    seconds = time.perf_counter() - start
    env.close()
    return seconds


def model_alone(run: dict) -> float:
    """The per-step action forwards, then the update's probe, forward, backward, step and re-forward."""
    module = Reinforce(P, "pong", "correct", seed=0)
    module.envs.close()
    opt = torch.optim.RMSprop(module.parameters(), lr=1e-3, alpha=0.99, eps=1e-5)
    rng = np.random.default_rng(0)
    obs = np.concatenate([o for o, a in run["steps"]])[: sum(run["module"].episodes["length"])]
    actions = np.concatenate([a for o, a in run["steps"]])[: obs.shape[0]]
    batch = {
        "obs": torch.from_numpy(obs).float(),
        "actions": torch.from_numpy(actions).long(),
        "returns": torch.zeros(obs.shape[0]),
        "adv": torch.from_numpy(standardize(rng.normal(size=obs.shape[0]))).float(),
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    for o, _ in run["steps"]:
        module.policy.act(o, rng)
    probe_step(module.policy, module.policy_loss_fn(batch), batch, 1e-3)
    loss, _ = module.losses(batch)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        module.policy.log_prob(batch["obs"], batch["actions"])
    seconds = time.perf_counter() - start
    torch.set_num_threads(threads)
    return seconds


def raw_rate(n_steps: int) -> float:
    """Vector steps of the bare ale_py environment (same settings) per second, x 8 envs = env steps/s."""
    env = PongEnvs(P.episodes_per_update, downsample=P.downsample, threads=P.env_threads)
    env.reset(1)
    rng = np.random.default_rng(0)
    actions = env.actions[rng.integers(0, 2, (n_steps, P.episodes_per_update))]
    start = time.perf_counter()
    for a in actions:
        env.env.step(a)
    seconds = time.perf_counter() - start
    env.close()
    return n_steps * P.episodes_per_update / seconds


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
    torch.set_num_threads(2)
    ours, ref, glue, frac = [], [], [], []
    for _ in range(ROUNDS):
        t = train_once()
        ours.append(t["frames"] / t["seconds"])
        n = numpy_pg_pong(max_steps=t["frames"] // P.frameskip // 2)
        ref.append(n["frames"] / n["seconds"])
        glue.append((env_alone(t["steps"]) + model_alone(t)) / t["seconds"])
        emulated = len(t["steps"]) * P.episodes_per_update / t["seconds"]  # env steps/s incl. finished games
        frac.append(emulated / raw_rate(len(t["steps"])))
    med = statistics.median
    return {
        "pong_train_vs_numpy_single_env": {
            "ratio": med(ours) / med(ref),
            "subject_frames_per_s": med(ours),
            "reference_frames_per_s": med(ref),
            "rounds": ROUNDS,
            "target": ">= 1.5",
        },
        "pong_glue_overhead": {
            "ratio": med(glue),
            "what": "(env stepping alone + model compute alone) / training time",
            "rounds": ROUNDS,
            "target": ">= 0.85",
        },
        "pong_train_fraction_of_raw_vector_rate": {
            "ratio": med(frac),
            "what": "env steps/s emulated during training / raw AtariVectorEnv steps/s (8 envs, 2 threads)",
            "rounds": ROUNDS,
            "target": "(report)",
        },
    }
