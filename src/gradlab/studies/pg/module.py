"""One LightningModule trains every variant on both environments (manual optimisation).

Each training step is one update: the module collects ``episodes_per_update`` complete
episodes with the *current* policy from its collector (rollout.py, whatever the environment),
computes the discounted and standardised returns, applies the variant's loss, takes one optimiser
step and runs the mechanism probe on that batch, and keeps what the update did (its records:
``episodes``, ``updates``, the probe, ``diverged_at``). The dataset only yields update indices, so
Lightning's prefetching never collects data with a stale policy.

The model, its losses and its optimiser only: the Trainer, the stop rules and the checkpoints are the
trial's training loop (loop.py).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytorch_lightning as pl
import torch

from gradlab.studies.pg.losses import policy_loss, value_loss
from gradlab.studies.pg.policy import Policy, Value
from gradlab.studies.pg.probe import fixed_batch_descent, logp_moves, probe_update
from gradlab.studies.pg.rollout import evaluate, make_batch

FRACTION_KEYS = ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction")
UPDATE_KEYS = (
    "loss",  # the variant's loss value before the update
    "probe",  # corr(change of log pi, A) of the real update
    "grad_norm",
    "batch_steps",
    "batch_return",  # mean return of the episodes collected for this update
    "sum_adv_ce",  # sum A * CE of the batch (the `correct` loss value; its sign is the one `abs` takes off)
    "adv_neg_logp_down_fraction",  # of the samples with A < 0, the fraction whose log pi went down
    "adv_pos_logp_up_fraction",  # of the samples with A > 0, the fraction whose log pi went up
    "adv_weighted_right_fraction",  # the same two fractions together, each sample weighted by |A|
    "share_likely_adv_neg",  # share of sum |dL/dlogp_t| carried by samples with A < 0 and pi(a|s) > 0.5
    "likely_adv_neg_samples",  # fraction of the samples with A < 0 and pi(a|s) > 0.5
)


def make_optimizer(o, params):
    """The variant's optimiser from its parameters (``gradlab.training.make_optimizer`` refuses unknown names)."""
    from gradlab.training import make_optimizer as build

    options = {
        "rmsprop": {"alpha": o.decay, "eps": o.eps},
        "adam": {"betas": (0.9, o.decay), "eps": o.eps},
    }.get(o.name, {})
    return build(o.name, params, o.lr, **options)


class Reinforce(pl.LightningModule):
    """The variant's policy (and the baseline's value network), its loss and optimiser; ``collector``
    (rollout.make_collector) plays the episodes of each update."""

    def __init__(self, p, kind: str, variant: str, seed: int, collector):
        super().__init__()
        self.p, self.kind, self.variant, self.seed = p, kind, variant, seed
        self.automatic_optimization = False
        self.collector = collector
        torch.manual_seed(seed)  # the same initial policy for every variant of a seed
        self.policy = Policy(self.collector.obs_dim, p.hidden, self.collector.n_actions)
        self.value = Value(self.collector.obs_dim, p.hidden) if variant == "baseline" else None
        self.next_update = 0
        self.diverged_at = -1
        self.fixed_probe = math.nan
        self.fixed_probe_moves: dict = {}  # the probe's fractions on the first batch (probe.logp_moves)
        self.fixed_batch: dict = {}  # K optimiser steps on the first batch (fixed_batch_experiment)
        self.episodes: dict[str, list] = {"update": [], "return": [], "length": [], "frames": [], "seconds": []}
        self.updates: dict[str, list] = {k: [] for k in UPDATE_KEYS}
        if kind == "cartpole":  # the policy's mean entropy over each batch's states (CartPole only)
            self.updates["entropy"] = []
        # copies of the networks after the updates in p.gradient_at (CartPole: gradient.py measures them)
        self.snapshots: dict[str, dict] = {}
        self.seconds = 0.0

    def configure_optimizers(self):
        self._opt = make_optimizer(self.p.optimizer, self.parameters())
        if self._opt_state is not None:
            self._opt.load_state_dict(self._opt_state)
        return self._opt

    def optimizer_state(self) -> dict:
        """The optimiser's state dict (the one to be loaded while no optimiser exists yet)."""
        return self._opt.state_dict() if self._opt is not None else (self._opt_state or {})

    def load_optimizer_state(self, state: dict) -> None:
        """Give the optimiser ``state`` when Lightning makes it (configure_optimizers)."""
        self._opt_state = state

    def collect(self, update: int) -> dict:
        episodes = self.collector.collect(self.policy, self.seed, update, self.p.episodes_per_update)
        now = time.perf_counter()
        for e in episodes:
            self.episodes["update"].append(update)
            self.episodes["return"].append(float(e["rewards"].sum()))
            self.episodes["length"].append(len(e["rewards"]))
            self.episodes["frames"].append(len(e["rewards"]) * self.collector.frames_per_step)
            # wall-clock seconds of training when the game ended (stream) or its batch was complete
            self.episodes["seconds"].append(self.seconds + e.get("ended_at", now) - self._step_start)
        return make_batch(episodes, self.p.gamma, self.collector.reset_at_reward, self.p.standardize_per)

    # one update ---------------------------------------------------------------
    def losses(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.policy(batch["obs"])
        logp = torch.log_softmax(logits, dim=-1).gather(1, batch["actions"].long().unsqueeze(1)).squeeze(1)
        values = self.value(batch["obs"]) if self.value is not None else None
        loss = policy_loss(self.variant, logp, batch["adv"], batch["returns"], values)
        if values is not None:
            loss = loss + self.p.value_coef * value_loss(values, batch["returns"])
        move_cost = getattr(self.p, "move_cost", 0.0)
        if move_cost:  # the question's laziness term: move_cost * P(UP or DOWN), NOOP being action 0
            loss = loss + move_cost * (1.0 - torch.softmax(logits, dim=-1)[:, 0]).sum()
        return loss, logp

    def policy_loss_fn(self, batch: dict):
        values = self.value(batch["obs"]).detach() if self.value is not None else None
        return lambda logp: policy_loss(self.variant, logp, batch["adv"], batch["returns"], values)

    def training_step(self, update, batch_idx):
        update = int(update)
        start = self._step_start = time.perf_counter()
        if update == 0:
            self.snapshot(0)
        first_new = len(self.episodes["return"])
        batch = self.collect(update)
        new = self.episodes["return"][first_new:]
        self.updates["batch_return"].append(float(np.mean(new)) if new else math.nan)
        torch.set_num_threads(self.update_threads)  # the batch's forward and backward; the rollout runs on 1
        try:
            self.update(update, batch)
        finally:
            torch.set_num_threads(1)
        self.next_update = update + 1
        if self.diverged_at < 0:
            self.snapshot(self.next_update)
        self.seconds += time.perf_counter() - start

    def snapshot(self, update: int) -> None:
        """Keep a copy of the networks if ``update`` is one of the checkpoints of ``gradient_at`` (CartPole)."""
        if update in getattr(self.p, "gradient_at", ()) and getattr(self.p, "gradient_episodes", 0):
            copy = {"policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()}}
            if self.value is not None:
                copy["value"] = {k: v.detach().clone() for k, v in self.value.state_dict().items()}
            self.snapshots[str(update)] = copy

    def update(self, update: int, batch: dict) -> None:
        opt = self.optimizers()
        if "entropy" in self.updates:
            with torch.no_grad():
                logpi = torch.log_softmax(self.policy(batch["obs"]), dim=-1)
                self.updates["entropy"].append(float(-(logpi.exp() * logpi).sum(-1).mean()))
        if update == 0:  # the mechanism probe on the first batch (the same batch for every variant of a seed)
            moves = probe_update(self.policy, self.policy_loss_fn(batch), batch, self.p.probe_step)
            self.fixed_probe = moves["corr"]
            self.fixed_probe_moves = {k: moves[k] for k in (*FRACTION_KEYS, "adv_weighted_right_fraction")}
            if self.p.fixed_batch_steps:
                self.fixed_batch = self.fixed_batch_experiment(batch)
        loss, logp = self.losses(batch)
        logp.retain_grad()  # dL/dlogp_t: how much of the update each sample carries
        opt.zero_grad()
        finite = bool(torch.isfinite(loss))
        grad_norm = math.nan
        if finite:
            self.manual_backward(loss)
            grads = [q.grad for q in self.parameters() if q.grad is not None]
            grad_norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            finite = math.isfinite(grad_norm)
        moves = dict.fromkeys(("corr", "adv_weighted_right_fraction", *FRACTION_KEYS), math.nan)
        share = likely = math.nan
        adv = batch["adv"]
        if finite:
            opt.step()
            with torch.no_grad():
                after = self.policy.log_prob(batch["obs"], batch["actions"])
            moves = logp_moves(logp, after, adv)
            w = logp.grad.detach().abs() if logp.grad is not None else torch.zeros_like(adv)
            mask = (adv < 0) & (logp.detach() > math.log(0.5))
            total = float(w.sum())
            share = float(w[mask].sum()) / total if total > 0 else math.nan
            likely = float(mask.float().mean()) if mask.numel() else math.nan
        else:  # recorded and pruned: the trial stops here (loop.py), its episodes so far are kept
            self.diverged_at = update
        u = self.updates
        u["loss"].append(float(loss.detach()) if torch.isfinite(loss) else math.nan)
        u["probe"].append(moves["corr"])
        u["grad_norm"].append(grad_norm)
        u["batch_steps"].append(int(batch["actions"].numel()))
        sum_adv_ce = float((adv * -logp.detach()).sum())
        u["sum_adv_ce"].append(sum_adv_ce if math.isfinite(sum_adv_ce) else math.nan)
        u["adv_neg_logp_down_fraction"].append(moves["adv_neg_logp_down_fraction"])
        u["adv_pos_logp_up_fraction"].append(moves["adv_pos_logp_up_fraction"])
        u["adv_weighted_right_fraction"].append(moves["adv_weighted_right_fraction"])
        u["share_likely_adv_neg"].append(share)
        u["likely_adv_neg_samples"].append(likely)

    def fixed_batch_experiment(self, batch: dict) -> dict:
        """``fixed_batch_steps`` optimiser steps of the variant's loss on the first batch (a copy of the policy,
        the stage's optimiser): the loss before each step, and (CartPole) the mean return of
        ``fixed_batch_eval_episodes`` evaluation episodes before and after, the same environment seeds both times."""
        losses, stepped = fixed_batch_descent(
            self.policy,
            self.policy_loss_fn(batch),
            batch,
            self.p.fixed_batch_steps,
            optimizer=lambda params: make_optimizer(self.p.optimizer, params),
        )
        out = {"loss": losses, "eval_return_before": math.nan, "eval_return_after": math.nan}
        n = getattr(self.p, "fixed_batch_eval_episodes", 0)
        if n and self.kind == "cartpole" and math.isfinite(losses[-1]):
            out["eval_return_before"] = evaluate(self.policy, n, self.seed)
            out["eval_return_after"] = evaluate(stepped, n, self.seed)
        return out

    _opt: torch.optim.Optimizer | None = None
    _opt_state: dict | None = None
    _step_start: float = 0.0
    update_threads: int = 1
