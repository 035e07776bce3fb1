"""Does each loss move the policy up the true policy gradient? (CartPole)

At a fixed policy pi_theta, two directions in parameter space are estimated from fresh episodes and compared by
their cosine:

* **grad J**, the gradient of J(theta) = E[return] (CartPole-v1's undiscounted return: the episode length, at most
  500), by REINFORCE with many episodes: the mean over episodes of sum_t (R_t - b_t) grad log pi(a_t|s_t), with
  R_t = sum_{t' >= t} r_t' the undiscounted return to go and b_t the mean of R_t over the *other* episodes still
  running at step t (leave-one-out: it never depends on the episode it multiplies, so the estimate stays unbiased).
  Its noise is measured twice: the standard error of the mean vector relative to its length
  (``rel_se`` = sqrt(trace Cov / n) / |mean|), and the cosine between the estimates of two disjoint halves of the
  episodes (``split_half_cos``: near 1 when the estimate is reliable).
* **a variant's expected update direction**: minus the gradient of its loss on one batch of
  ``episodes_per_update`` episodes (returns discounted and standardised as in training), averaged over many
  independent batches (episodes apart from grad J's). Every loss here is sum_t w_t * CE_t-like, so minus its
  gradient is sum_t w_t grad log pi(a_t|s_t) with a per-sample weight w_t (:func:`variant_weights`):
  ``correct`` A, ``flipped`` -A, ``abs`` sign(sum A*CE) A, ``pow`` A CE^(A-1), ``no_standardize`` G,
  ``baseline`` G - V(s).

Everything is NumPy in float64 on the policy's weights (one hidden ReLU layer, policy.py): the score vectors
grad log pi(a|s) of the whole rollout come in closed form (d log pi / d logits = onehot(a) - pi, back through
the layer), and per-episode sums are batched products over time. The episodes are played by
:class:`~gradlab.studies.pg.envs.CartPoleEnvs`, all at once, one forward per step for every episode.
"""

from __future__ import annotations

import math

import numpy as np

from gradlab.studies.pg.envs import CartPoleEnvs
from gradlab.studies.pg.returns import advantages, discounted_returns

GRADIENT_TAG = 0x47524144  # "GRAD": the measurement's episodes come from their own branch of the seed tree
MAX_STEPS = CartPoleEnvs.max_episode_steps
# episodes whose per-step features are held at once: 500 steps x 128 x 32 hidden x 8 bytes = 16 MB per array, under
# glibc's largest mmap threshold (32 MB), so freed temporaries are reused instead of page-faulted in again
CHUNK = 128
POW_QUANTILES = (0.5, 0.9, 0.99)
VARIANT_ORDER = ("correct", "flipped", "abs", "pow", "no_standardize", "baseline")


def numpy_params(state: dict) -> dict:
    """The policy's (or value network's) ``state_dict`` as float64 arrays: W1 [H, obs], b1 [H], W2 [out, H], b2."""
    return {k: np.asarray(state[f"net.{i}.{n}"].detach().cpu().numpy(), np.float64) for k, (i, n) in _KEYS.items()}


_KEYS = {"W1": (0, "weight"), "b1": (0, "bias"), "W2": (2, "weight"), "b2": (2, "bias")}


def forward(p: dict, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pre-activations of the hidden layer, outputs) of the one-hidden-layer network ``p`` on ``obs`` [..., d]."""
    z = obs @ p["W1"].T + p["b1"]
    return z, np.maximum(z, 0.0) @ p["W2"].T + p["b2"]


def play(policy, episodes: int, seed: int) -> dict:
    """``episodes`` CartPole episodes of ``policy`` (a :class:`~gradlab.studies.pg.policy.Policy`; sampled actions)
    played together; ``obs`` [T, N, 4] float32, ``actions`` [T, N], ``alive`` [T, N] (step t belongs to episode n),
    ``lengths`` [N] (= returns). Environment and action seeds come from ``seed``."""
    envs = CartPoleEnvs(episodes)
    rng = np.random.default_rng([seed, 1])
    obs = envs.reset(seed)
    O = np.zeros((MAX_STEPS, episodes, 4), np.float32)
    A = np.zeros((MAX_STEPS, episodes), np.int64)
    alive = np.zeros((MAX_STEPS, episodes), bool)
    running = np.ones(episodes, bool)
    t = 0
    while running.any() and t < MAX_STEPS:
        act = policy.act(obs, rng)
        O[t], A[t], alive[t] = obs, act, running
        obs, _, done = envs.step(act)
        running &= ~done
        t += 1
    return {"obs": O[:t], "actions": A[:t], "alive": alive[:t], "lengths": alive[:t].sum(0)}


def log_probs(p: dict, obs: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log pi(a|s) of the actions taken, entropy of pi(.|s)), float64, shape of ``actions`` [T, N] (in chunks of
    :data:`CHUNK` episodes)."""
    logp, ent = np.empty(actions.shape), np.empty(actions.shape)
    for lo in range(0, actions.shape[1], CHUNK):
        _, logits = forward(p, obs[:, lo : lo + CHUNK].astype(np.float64))
        logz = logits.max(-1, keepdims=True)
        logz = logz + np.log(np.exp(logits - logz).sum(-1, keepdims=True))
        logpi = logits - logz
        ent[:, lo : lo + CHUNK] = -(np.exp(logpi) * logpi).sum(-1)
        logp[:, lo : lo + CHUNK] = np.take_along_axis(logpi, actions[:, lo : lo + CHUNK, None], -1)[..., 0]
    return logp, ent


def values_of(p: dict, obs: np.ndarray) -> np.ndarray:
    """V(s) of the value network ``p`` on ``obs`` [T, N, d] -> [T, N] (in chunks of :data:`CHUNK` episodes)."""
    out = np.empty(obs.shape[:2])
    for lo in range(0, obs.shape[1], CHUNK):
        out[:, lo : lo + CHUNK] = forward(p, obs[:, lo : lo + CHUNK].astype(np.float64))[1][..., 0]
    return out


def episode_grads(p: dict, roll: dict, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each weighting w [T, N] (zero where no episode runs): per episode n the vector
    sum_t w[t, n] grad_theta log pi(a_t|s_t), flattened in ``Policy.parameters()`` order -> [N, P]."""
    obs, actions = roll["obs"].astype(np.float64), roll["actions"]
    T, N = actions.shape
    out = {name: [] for name in weights}
    for lo in range(0, N, CHUNK):
        s = obs[:, lo : lo + CHUNK]
        z, logits = forward(p, s)
        h = np.maximum(z, 0.0)
        pi = np.exp(logits - logits.max(-1, keepdims=True))
        pi /= pi.sum(-1, keepdims=True)
        e = (actions[:, lo : lo + CHUNK, None] == np.arange(pi.shape[-1])) - pi  # d log pi(a|s) / d logits
        active = z > 0
        # [n, T, .] views for per-episode products over time
        hn, sn = h.transpose(1, 0, 2), s.transpose(1, 0, 2)
        for name, w in weights.items():
            we = e * w[:, lo : lo + CHUNK, None]  # [T, n, out]
            delta = (we @ p["W2"]) * active  # [T, n, H]
            wen, dn = we.transpose(1, 2, 0), delta.transpose(1, 2, 0)  # [n, out, T], [n, H, T]
            gW1 = dn @ sn  # [n, H, obs]
            gW2 = wen @ hn  # [n, out, H]
            n = s.shape[1]
            out[name].append(
                np.concatenate(
                    [gW1.reshape(n, -1), dn.sum(-1), gW2.reshape(n, -1), wen.sum(-1)],
                    axis=1,
                )
            )
    return {name: np.concatenate(v, axis=0) for name, v in out.items()}


def reward_to_go_weights(alive: np.ndarray) -> np.ndarray:
    """R_t - b_t for CartPole's reward 1 per step: R_t = length - t, b_t the leave-one-out mean of R_t over the
    other episodes still running at t (0 where none is); zero where the episode has ended."""
    lengths = alive.sum(0)
    t = np.arange(alive.shape[0])[:, None]
    R = np.where(alive, lengths[None, :] - t, 0).astype(np.float64)
    total, count = R.sum(1, keepdims=True), alive.sum(1, keepdims=True)
    others = np.maximum(count - 1, 1)
    b = np.where(count > 1, (total - R) / others, 0.0)
    return np.where(alive, R - b, 0.0)


def mean_and_noise(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Mean of the rows and its standard error relative to its length, sqrt(trace Cov / n) / |mean|."""
    n = vectors.shape[0]
    mean = vectors.mean(0)
    se = math.sqrt(float(vectors.var(0, ddof=1).sum()) / n) if n > 1 else math.nan
    norm = float(np.linalg.norm(mean))
    return mean, se / norm if norm > 0 else math.nan


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 and math.isfinite(na * nb) else math.nan


def variant_weights(
    roll: dict, logp: np.ndarray, batch: int, gamma: float, standardize_per: str, values: np.ndarray | None
) -> tuple[dict[str, np.ndarray], dict]:
    """Per-sample weights w [T, N] of every variant (minus the loss's gradient = sum w grad log pi) on episodes
    grouped in consecutive batches of ``batch``; and the quantities behind them (per batch: the sign of sum A*CE;
    per sample: A and pow's factor CE^(A-1))."""
    alive = roll["alive"]
    T, N = alive.shape
    lengths = roll["lengths"]
    A = np.zeros((T, N))
    G = np.zeros((T, N))
    for b0 in range(0, N, batch):
        rets = [discounted_returns(np.ones(int(lengths[n])), gamma) for n in range(b0, min(N, b0 + batch))]
        adv = advantages(rets, standardize_per)
        k = 0
        for j, g in enumerate(rets):
            n = b0 + j
            G[: g.size, n], A[: g.size, n] = g, adv[k : k + g.size]
            k += g.size
    ce = np.where(alive, -logp, 1.0)
    sums = np.add.reduceat((A * ce).sum(0), np.arange(0, N, batch))  # sum A*CE per batch
    sign = np.repeat(np.sign(sums), batch)[:N]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        factor = np.where(alive, ce ** (A - 1.0), 0.0)  # pow's CE^(A-1)
    w = {
        "correct": A,
        "flipped": -A,
        "abs": A * sign[None, :],
        "pow": np.where(alive, A * factor, 0.0),
        "no_standardize": G,
    }
    if values is not None:
        w["baseline"] = np.where(alive, G - values, 0.0)
    return w, {"A": A, "factor": factor, "sum_adv_ce": sums}


def measure(policy, value, p, seed: int, update: int, variants) -> dict:
    """The cosine of each variant's expected update direction with grad J at one policy (see the module docstring).

    ``policy``: a :class:`~gradlab.studies.pg.policy.Policy`; ``value``: the baseline's
    :class:`~gradlab.studies.pg.policy.Value` or None (then ``baseline`` is not measured); ``p``: the stage's
    parameters (``gradient_episodes`` episodes for grad J, ``gradient_batches`` batches of
    ``episodes_per_update`` for the variants, ``gamma``, ``standardize_per``); ``update``: the checkpoint (it
    seeds the episodes with ``seed``).
    """
    params = numpy_params(policy.state_dict())
    # grad J
    roll = play(policy, p.gradient_episodes, hash_seed(seed, update, 0))
    logp, ent = log_probs(params, roll["obs"], roll["actions"])
    alive = roll["alive"]
    g = episode_grads(params, roll, {"J": reward_to_go_weights(alive)})["J"]
    grad_j, rel_se = mean_and_noise(g)
    half = g.shape[0] // 2
    out = {
        "update": update,
        "episodes": int(g.shape[0]),
        "return_mean": float(roll["lengths"].mean()),
        "entropy": float(ent[alive].mean()),
        "grad_j_norm": float(np.linalg.norm(grad_j)),
        "grad_j_rel_se": rel_se,
        "grad_j_split_half_cos": cosine(g[:half].mean(0), g[half:].mean(0)),
    }
    # the variants, on batches of their own
    B = p.episodes_per_update
    broll = play(policy, p.gradient_batches * B, hash_seed(seed, update, 1))
    blogp, _ = log_probs(params, broll["obs"], broll["actions"])
    vals = None
    if value is not None:
        vals = values_of(numpy_params(value.state_dict()), broll["obs"])
    weights, parts = variant_weights(broll, blogp, B, p.gamma, p.standardize_per, vals)
    wanted = {v: weights[v] for v in variants if v in weights and v not in ("flipped", "abs")}
    wanted["correct"] = weights["correct"]  # flipped and abs are +-correct per batch
    per_ep = episode_grads(params, broll, wanted)
    K = p.gradient_batches
    per_batch = {v: x.reshape(K, B, -1).sum(1) for v, x in per_ep.items()}
    sign = np.sign(parts["sum_adv_ce"])
    per_batch["flipped"] = -per_batch["correct"]
    per_batch["abs"] = per_batch["correct"] * sign[:, None]
    cos, noise = {}, {}
    for v in variants:
        if v not in per_batch:
            continue
        finite = np.isfinite(per_batch[v]).all(1)
        d, noise[v] = mean_and_noise(per_batch[v][finite]) if finite.any() else (np.full(g.shape[1], np.nan), math.nan)
        cos[v] = cosine(d, grad_j)
        if v == "pow":
            out["pow_finite_batches"] = float(finite.mean())
    out["cos"], out["direction_rel_se"] = cos, noise
    if "abs" in variants:
        for name, keep in (("sum_negative", sign < 0), ("sum_positive", sign > 0)):
            out[f"abs_cos_{name}"] = cosine(per_batch["abs"][keep].mean(0), grad_j) if keep.any() else math.nan
        out["sum_negative_batch_fraction"] = float((sign < 0).mean())
    if "pow" in variants:
        out.update(pow_weight_stats(parts["A"], parts["factor"], broll["alive"]))
    return out


def pow_weight_stats(A: np.ndarray, factor: np.ndarray, alive: np.ndarray) -> dict:
    """pow's per-sample factor CE^(A-1) (its weight is A times it) for A > 0 and A < 0: quantiles, and the share
    of sum |A CE^(A-1)| carried by the samples with A < 0 (``correct``'s share, sum |A| over A < 0, beside it)."""
    out = {}
    for name, keep in (("adv_pos", alive & (A > 0)), ("adv_neg", alive & (A < 0))):
        f = factor[keep]
        f = f[np.isfinite(f)]
        for q in POW_QUANTILES:
            out[f"pow_factor_{name}_q{round(q * 100)}"] = float(np.quantile(f, q)) if f.size else math.nan
    w = np.abs(A * factor)[alive]
    a = A[alive]
    ok = np.isfinite(w)
    total = float(w[ok].sum())
    out["pow_weight_share_adv_neg"] = float(w[ok & (a < 0)].sum()) / total if total > 0 else math.nan
    total_a = float(np.abs(a).sum())
    out["correct_weight_share_adv_neg"] = float(np.abs(a[a < 0]).sum()) / total_a if total_a > 0 else math.nan
    return out


def hash_seed(seed: int, update: int, part: int) -> int:
    """The seed of one set of measurement episodes: (trial seed, checkpoint, grad J or batches)."""
    return int(np.random.SeedSequence([seed, update, part, GRADIENT_TAG]).generate_state(1)[0] % 2**31)
