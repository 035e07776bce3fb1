"""One LightningModule trains every variant on both environments (manual optimisation).

Each training step is one update: the module collects ``episodes_per_update`` complete
episodes with the *current* policy (one per parallel environment), computes the discounted
and standardised returns, applies the variant's loss, takes one optimiser step and runs the
mechanism probe on that batch. The dataset only yields update indices, so Lightning's
prefetching never collects data with a stale policy.

Every random number of update ``u`` comes from (seed, u): environment resets and action
sampling. Training state at an update boundary is therefore just the networks, the
optimiser and the logs, which :meth:`Reinforce.state` saves (torch tensors and plain
containers, loadable with ``torch.load(weights_only=True)``), so a resumed trial ends
exactly where an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from gradlab.studies.pg.envs import make_envs
from gradlab.studies.pg.losses import policy_loss, value_loss
from gradlab.studies.pg.policy import Policy, Value
from gradlab.studies.pg.probe import dlogp_adv_corr, probe_step
from gradlab.studies.pg.returns import advantages, discounted_returns


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


def make_batch(episodes: list[dict], gamma: float, reset_at_reward: bool, standardize_per: str) -> dict:
    returns = [discounted_returns(e["rewards"], gamma, reset_at_reward) for e in episodes]
    return {
        "obs": torch.from_numpy(np.concatenate([e["obs"] for e in episodes])).float(),
        "actions": torch.from_numpy(np.concatenate([e["actions"] for e in episodes])).long(),
        "returns": torch.from_numpy(np.concatenate(returns)).float(),
        "adv": torch.from_numpy(advantages(returns, standardize_per)).float(),
    }


class _Updates(IterableDataset):
    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))


def make_optimizer(o, params):
    if o.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=o.lr, alpha=o.decay, eps=o.eps)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=(0.9, o.decay), eps=o.eps)
    return torch.optim.SGD(params, lr=o.lr)


class Reinforce(pl.LightningModule):
    def __init__(self, p, kind: str, variant: str, seed: int, checkpoint: Path | None = None):
        super().__init__()
        self.p, self.kind, self.variant, self.seed, self.checkpoint = p, kind, variant, seed, checkpoint
        self.automatic_optimization = False
        self.envs = make_envs(kind, p)
        torch.manual_seed(seed)  # the same initial policy for every variant of a seed
        self.policy = Policy(self.envs.obs_dim, p.hidden, self.envs.n_actions)
        self.value = Value(self.envs.obs_dim, p.hidden) if variant == "baseline" else None
        self.next_update = 0
        self.diverged_at = -1
        self.fixed_probe = math.nan
        self.episodes: dict[str, list] = {"update": [], "return": [], "length": [], "frames": []}
        self.updates: dict[str, list] = {"loss": [], "probe": [], "grad_norm": [], "batch_steps": []}
        self.seconds = 0.0

    # data -------------------------------------------------------------------
    def train_dataloader(self):
        return DataLoader(_Updates(self.next_update, self.p.updates), batch_size=None)

    def configure_optimizers(self):
        self._opt = make_optimizer(self.p.optimizer, self.parameters())
        if self._opt_state is not None:
            self._opt.load_state_dict(self._opt_state)
        return self._opt

    def collect(self, update: int) -> dict:
        episodes = collect_episodes(
            self.policy, self.envs, update_seed(self.seed, update), np.random.default_rng([self.seed, update, 1])
        )
        for e in episodes:
            self.episodes["update"].append(update)
            self.episodes["return"].append(float(e["rewards"].sum()))
            self.episodes["length"].append(len(e["rewards"]))
            self.episodes["frames"].append(len(e["rewards"]) * self.envs.frames_per_step)
        return make_batch(episodes, self.p.gamma, self.envs.reset_at_reward, self.p.standardize_per)

    # one update ---------------------------------------------------------------
    def losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logp = self.policy.log_prob(batch["obs"], batch["actions"])
        values = self.value(batch["obs"]) if self.value is not None else None
        loss = policy_loss(self.variant, logp, batch["adv"], batch["returns"], values)
        if values is not None:
            loss = loss + self.p.value_coef * value_loss(values, batch["returns"])
        return loss, logp

    def policy_loss_fn(self, batch: dict):
        values = self.value(batch["obs"]).detach() if self.value is not None else None
        return lambda logp: policy_loss(self.variant, logp, batch["adv"], batch["returns"], values)

    def training_step(self, update, batch_idx):
        update = int(update)
        start = time.perf_counter()
        batch = self.collect(update)
        opt = self.optimizers()
        if update == 0:  # the mechanism probe on the first batch (the same batch for every variant of a seed)
            self.fixed_probe = probe_step(self.policy, self.policy_loss_fn(batch), batch, self.p.probe_step)
        loss, logp = self.losses(batch)
        opt.zero_grad()
        finite = bool(torch.isfinite(loss))
        grad_norm = math.nan
        if finite:
            self.manual_backward(loss)
            grads = [q.grad for q in self.parameters() if q.grad is not None]
            grad_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            finite = math.isfinite(grad_norm)
        probe = math.nan
        if finite:
            opt.step()
            with torch.no_grad():
                after = self.policy.log_prob(batch["obs"], batch["actions"])
            probe = dlogp_adv_corr(logp.detach().numpy(), after.numpy(), batch["adv"].numpy())
        else:  # recorded and pruned: the trial stops here, its episodes so far are kept
            self.diverged_at = update
            self.trainer.should_stop = True
        self.updates["loss"].append(float(loss.detach()) if torch.isfinite(loss) else math.nan)
        self.updates["probe"].append(probe)
        self.updates["grad_norm"].append(grad_norm)
        self.updates["batch_steps"].append(int(batch["actions"].numel()))
        self.next_update = update + 1
        self.seconds += time.perf_counter() - start
        every = self.p.checkpoint_every
        if self.checkpoint is not None and every and (self.next_update % every == 0 or not finite):
            self.save_checkpoint()

    def fit(self) -> None:
        from gradlab.training import make_trainer

        if self.next_update < self.p.updates and self.diverged_at < 0:
            make_trainer(max_epochs=1).fit(self)
        if self.checkpoint is not None and self.p.checkpoint_every:
            self.save_checkpoint()

    # checkpoints --------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.next_update >= self.p.updates or self.diverged_at >= 0

    def state(self) -> dict:
        return {
            "key": {"kind": self.kind, "variant": self.variant, "seed": self.seed},
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict() if self.value is not None else {},
            "optimizer": self._opt.state_dict() if self._opt is not None else (self._opt_state or {}),
            "next_update": self.next_update,
            "diverged_at": self.diverged_at,
            "fixed_probe": self.fixed_probe,
            "finished": self.finished,
            "episodes": self.episodes,
            "updates": self.updates,
            "seconds": self.seconds,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }

    def save_checkpoint(self) -> None:
        path = Path(self.checkpoint)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def load_checkpoint(self) -> bool:
        """Continue from ``self.checkpoint`` if it holds this trial; True if loaded."""
        if self.checkpoint is None or not Path(self.checkpoint).exists():
            return False
        s = torch.load(self.checkpoint, weights_only=True)
        if s["key"] != {"kind": self.kind, "variant": self.variant, "seed": self.seed}:
            return False
        self.policy.load_state_dict(s["policy"])
        if self.value is not None:
            self.value.load_state_dict(s["value"])
        self._opt_state = s["optimizer"]
        self.next_update, self.diverged_at, self.fixed_probe = s["next_update"], s["diverged_at"], s["fixed_probe"]
        self.episodes, self.updates, self.seconds = s["episodes"], s["updates"], s["seconds"]
        torch.set_rng_state(s["torch_rng"])
        random.setstate(s["python_rng"])
        return True

    _opt: torch.optim.Optimizer | None = None
    _opt_state: dict | None = None


@dataclass(frozen=True)
class Trial:
    kind: str
    params: object
    variant: str
    seed: int
    checkpoint: str | None = None
    resume: bool = False


def train_trial(t: Trial) -> dict:
    """Train one (variant, seed); runs in a worker process; returns plain data only."""
    cpu0 = time.process_time()
    # small per-step forwards are 10x slower with 2 intra-op threads than with 1 (thread wake-ups);
    # the cores are used by parallel trials and the emulator's threads instead
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    module = Reinforce(t.params, t.kind, t.variant, t.seed, Path(t.checkpoint) if t.checkpoint else None)
    resumed_at = module.next_update if (t.resume and module.load_checkpoint()) else None
    try:
        module.fit()
    finally:
        module.envs.close()
        torch.set_num_threads(threads)
    return {
        "variant": t.variant,
        "seed": t.seed,
        "episodes": module.episodes,
        "updates": module.updates,
        "diverged_at": module.diverged_at,
        "fixed_probe": module.fixed_probe,
        "resumed_at": resumed_at,
        "seconds": module.seconds,
        "cpu_seconds": time.process_time() - cpu0,
    }
