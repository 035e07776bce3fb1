"""Full-batch regression trained by one of the update rules, through Lightning."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from gradlab.studies.gd.rules import make_rule
from gradlab.studies.gd.sharpness import top_hessian_eigenvalue
from gradlab.training import fit as train


class FullBatchRegression(pl.LightningModule):
    """Minimise mean((net(X) - y)^2) with ``rule`` at step size ``lr``; record the loss before each step."""

    def __init__(self, net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, rule: str, lr: float, seed: int = 0):
        super().__init__()
        self.net = net
        self.register_buffer("X", X)
        self.register_buffer("y", y)
        self.rule, self.lr, self.seed = rule, lr, seed
        self.losses: list[float] = []

    def full_loss(self) -> torch.Tensor:
        r = self.net(self.X) - self.y
        return (r * r).mean()

    def training_step(self, batch, batch_idx):
        loss = self.full_loss()
        value = float(loss.detach())
        self.losses.append(value)
        if not math.isfinite(value):
            self.trainer.should_stop = True
        return loss

    def configure_optimizers(self):
        return make_rule(self.rule, self.parameters(), self.lr, seed=self.seed)

    def fit(self, steps: int, callbacks=()) -> list[float]:
        """Train for ``steps`` full-batch steps; return the losses before each step and after the last."""
        train(self, steps, callbacks)
        with torch.no_grad():
            self.losses.append(float(self.full_loss()))
        return self.losses


class SharpnessProbe(pl.Callback):
    """Every ``every`` steps, the top Hessian eigenvalue of the full-batch loss."""

    def __init__(self, every: int, iters: int, seed: int = 0):
        self.every, self.iters, self.seed = every, iters, seed
        self.steps: list[int] = []
        self.values: list[float] = []

    def on_train_batch_start(self, trainer, module: FullBatchRegression, batch, batch_idx):
        if batch_idx % self.every == 0 and math.isfinite(module.losses[-1] if module.losses else 0.0):
            params = [p for p in module.parameters() if p.requires_grad]
            self.steps.append(batch_idx)
            self.values.append(top_hessian_eigenvalue(module.full_loss, params, self.iters, self.seed))
