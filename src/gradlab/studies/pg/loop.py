"""A trial's training loop around its LightningModule: the Trainer, the stop rules, the checkpoints.

:class:`Training` makes the trial's collector (rollout.py) and its
:class:`~gradlab.studies.pg.module.Reinforce`, trains it with ``gradlab.training.fit`` (one training step
per update, from the next one on a resume) and is itself the Trainer's callback: after every update it
applies the stop rules (a diverged update; the mean of the last ``stop_window`` games above
``stop_at_mean``; a winning evaluation of the frozen policy, evaluation.py; the cap in games), hands
the new games to ``on_episodes`` (the trial's live tracking) and saves the checkpoint.

Every random number of update ``u`` comes from (seed, u): environment resets and action sampling.
Training state at an update boundary is therefore just the networks, the optimiser and the records,
which :meth:`Training.state` saves (torch tensors and plain containers, loadable with
``torch.load(weights_only=True)``), so a resumed trial ends exactly where an uninterrupted one would.
Pong's stream (rollout.py) is the exception: its emulator state is not checkpointed, so a resumed Pong
trial restarts its games (from seed and update) and loses the unfinished ones; it continues correctly
but not bit-for-bit as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from gradlab.studies.pg.module import Reinforce
from gradlab.studies.pg.rollout import make_collector


def first_game_above(returns, first_new: int, target: float, window: int) -> int:
    """The first game from ``first_new`` on after which the mean of the last ``window`` games is above ``target``
    (1-based), or -1."""
    r = np.asarray(returns, float)
    for end in range(max(first_new + 1, window), r.size + 1):
        if r[end - window : end].mean() > target:
            return end
    return -1


def checkpoint_run_id(checkpoint: str | None, kind: str, variant: str, seed: int) -> str | None:
    """The child run that the trial's checkpoint names (``--resume`` continues it), or None."""
    if checkpoint is None or not Path(checkpoint).exists():
        return None
    s = torch.load(checkpoint, weights_only=True)
    return s.get("run_id") if s["key"] == {"kind": kind, "variant": variant, "seed": seed} else None


class Training(pl.Callback):
    """One trial's module, collector, stop rules and checkpoint (``checkpoint``: its file, or None)."""

    def __init__(self, p, kind: str, variant: str, seed: int, checkpoint: Path | None = None, on_episodes=None):
        self._cpu0 = time.process_time()
        self.cpu_before = 0.0  # CPU seconds of the processes that trained it before a resume (NaN: not recorded)
        self.p, self.kind, self.variant, self.seed, self.checkpoint = p, kind, variant, seed, checkpoint
        self.on_episodes = on_episodes  # called with the module and the index of its first new game after each update
        self.collector = make_collector(kind, p)
        self.module = Reinforce(p, kind, variant, seed, self.collector)
        self.stopped_at_game = -1  # 1-based game at which the stop criterion (mean or evaluation) was first met
        self.evaluations: list[dict] = []  # the frozen policy's evaluations (win presets: evaluation.py)
        self.winner: dict | None = None  # the state_dict of the first policy whose evaluation won
        self.run_id: str | None = None  # the trial's MLflow child run (kept in checkpoints: --resume continues it)
        self._first_new = 0

    def cpu_seconds(self) -> float:
        """CPU seconds of this trial so far, the processes it was resumed from included."""
        return self.cpu_before + time.process_time() - self._cpu0

    # the stop rules -------------------------------------------------------------
    def stop_reached(self, first_new: int) -> bool:
        """Was the mean of the last ``stop_window`` games above ``stop_at_mean`` after one of the new games?"""
        target = getattr(self.p, "stop_at_mean", None)
        if target is None or self.stopped_at_game >= 0:
            return self.stopped_at_game >= 0
        game = first_game_above(self.module.episodes["return"], first_new, target, self.p.stop_window)
        if game < 0:
            return False
        self.stopped_at_game = game
        return True

    def games_cap_reached(self) -> bool:
        cap = getattr(self.p, "max_games", None)
        return cap is not None and len(self.module.episodes["return"]) >= cap

    def evaluation_due(self) -> bool:
        """Win presets with ``evaluate_games``: every ``evaluate_every`` updates once the running mean of the last
        ``stop_window`` games reached ``evaluate_from_mean``, until an evaluation has won."""
        p, m = self.p, self.module
        if not getattr(p, "evaluate_games", 0) or self.stopped_at_game >= 0 or m.next_update % p.evaluate_every:
            return False
        r = m.episodes["return"]
        return len(r) >= p.stop_window and float(np.mean(r[-p.stop_window :])) >= p.evaluate_from_mean

    def evaluate_now(self) -> bool:
        """Evaluate the policy as it is now (its time is not training time); True if it beat the built-in AI."""
        from gradlab.studies.pg.evaluation import evaluate_pong

        m = self.module
        trained = {
            "games_trained": len(m.episodes["return"]),
            "frames_trained": int(sum(m.episodes["frames"])),
            "train_seconds": m.seconds,
        }
        seen = self.collector.env_seeds_used  # training's emulator seeds: the evaluation must use others
        ev = {**evaluate_pong(m.policy, self.p, self.seed, m.next_update, False, seen), **trained}
        self.evaluations.append(ev)
        if not ev["won"]:
            return False
        self.stopped_at_game = trained["games_trained"]
        self.winner = {k: v.detach().clone() for k, v in m.policy.state_dict().items()}
        if self.p.evaluate_greedy:  # the same policy's most likely actions, reported beside it
            greedy = evaluate_pong(m.policy, self.p, self.seed, m.next_update, True, seen)
            self.evaluations.append({**greedy, **trained})
        return True

    @property
    def finished(self) -> bool:
        m = self.module
        return (
            m.next_update >= self.p.updates
            or m.diverged_at >= 0
            or self.stopped_at_game >= 0
            or self.games_cap_reached()
        )

    # the Trainer and its callback -------------------------------------------------
    def fit(self) -> None:
        """Train from the next update to ``p.updates`` (or a stop rule), then save the checkpoint."""
        from gradlab.training import fit

        if not self.finished:  # one training step per update, from the next one (resume)
            fit(self.module, self.p.updates, callbacks=[self], start=self.module.next_update, max_epochs=1)
        if self.checkpoint is not None and self.p.checkpoint_every:
            self.save_checkpoint()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._first_new = len(self.module.episodes["return"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """After each update: the stop rules, the new games to ``on_episodes``, the checkpoint."""
        m, first_new = self.module, self._first_new
        stop = (
            self.stop_reached(first_new) or (self.evaluation_due() and self.evaluate_now()) or self.games_cap_reached()
        )
        if stop or m.diverged_at >= 0:
            trainer.should_stop = True
        if self.on_episodes is not None:
            self.on_episodes(m, first_new)
        every = self.p.checkpoint_every
        if self.checkpoint is not None and every and (m.next_update % every == 0 or m.diverged_at >= 0):
            self.save_checkpoint()

    # checkpoints --------------------------------------------------------------
    def state(self) -> dict:
        m = self.module
        return {
            "key": {"kind": self.kind, "variant": self.variant, "seed": self.seed},
            "policy": m.policy.state_dict(),
            "value": m.value.state_dict() if m.value is not None else {},
            "optimizer": m.optimizer_state(),
            "next_update": m.next_update,
            "diverged_at": m.diverged_at,
            "fixed_probe": m.fixed_probe,
            "fixed_probe_moves": m.fixed_probe_moves,
            "fixed_batch": m.fixed_batch,
            "stopped_at_game": self.stopped_at_game,
            "evaluations": self.evaluations,
            "winner": self.winner or {},
            "training_seeds": self.collector.env_seeds_used,
            "run_id": self.run_id,
            "finished": self.finished,
            "episodes": m.episodes,
            "updates": m.updates,
            "snapshots": m.snapshots,
            "seconds": m.seconds,
            "cpu_seconds": self.cpu_seconds(),
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
        m = self.module
        m.policy.load_state_dict(s["policy"])
        if m.value is not None:
            m.value.load_state_dict(s["value"])
        m.load_optimizer_state(s["optimizer"])
        m.next_update, m.diverged_at, m.fixed_probe = s["next_update"], s["diverged_at"], s["fixed_probe"]
        self.stopped_at_game, self.run_id = s.get("stopped_at_game", -1), s.get("run_id")
        self.evaluations, self.winner = s.get("evaluations", []), s.get("winner") or None
        self.collector.env_seeds_used = s.get("training_seeds", [])
        m.fixed_probe_moves, m.fixed_batch = s.get("fixed_probe_moves", {}), s.get("fixed_batch", {})
        m.episodes, m.updates, m.seconds = s["episodes"], s["updates"], s["seconds"]
        m.snapshots = s.get("snapshots", {})
        self.cpu_before = s.get("cpu_seconds", math.nan)  # checkpoints before 2026-12-05 did not record it
        torch.set_rng_state(s["torch_rng"])
        random.setstate(s["python_rng"])
        return True

    def close(self) -> None:
        self.collector.close()
