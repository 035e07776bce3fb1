"""Gradient ascent on a smooth stand-in for spearmanr, through Lightning (manual optimisation).

Objectives (maximised):

* ``pearson``:   corr(list1, list2), the Pearson correlation of the lists themselves;
* ``soft_rank``: corr(soft_rank(a), soft_rank(b)) where a, b are the lists standardised and
  multiplied by n (one unit ~ one rank position near the middle), so ``regularization_strength``
  is measured in rank positions and means the same thing at every n.

Optimiser: plain gradient ascent (SGD, step ``lr * n * gradient``: a correlation averages over
n entries, so per-entry gradients scale like 1/n) or Adam (step ``lr``, per-entry normalised).

Each training step is one evaluation of the list derivation: the referee judges the lists of
that forward pass with scipy's spearmanr before the optimiser moves the matrices.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from gradlab.studies.spearman.derivation import Derivation
from gradlab.studies.spearman.methods import Referee
from gradlab.studies.spearman.softrank import pearson, rank_scale, soft_rank, soft_spearman
from gradlab.training import fit as train
from gradlab.training import make_optimizer

__all__ = ["CorrelationAscent", "pearson", "rank_scale", "soft_rank", "soft_spearman"]  # re-exported from softrank


class CorrelationAscent(pl.LightningModule):
    """Adam on (v, freq_m) to maximise ``objective`` of the derived lists, judged by spearmanr."""

    def __init__(
        self,
        v: torch.Tensor,
        freq_m: torch.Tensor,
        derivation: Derivation,
        referee: Referee,
        objective: str,
        lr: float,
        regularization_strength: float = 1.0,
        stop_at: float = 1.0,
        optimizer: str = "sgd",
    ):
        super().__init__()
        if objective not in ("pearson", "soft_rank"):
            raise ValueError(f"unknown objective {objective!r}; allowed: pearson, soft_rank")
        self.automatic_optimization = False
        self.v = torch.nn.Parameter(v.clone())
        self.freq_m = torch.nn.Parameter(freq_m.clone())
        self.derivation, self.referee = derivation, referee
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {optimizer!r}; allowed: sgd, adam")
        self.objective, self.lr, self.strength, self.stop_at = objective, lr, regularization_strength, stop_at
        self.optimizer_name = optimizer
        self.surrogate: list[float] = []  # the objective's value at each step
        self.stopped = False

    def correlation(self, list1: torch.Tensor, list2: torch.Tensor) -> torch.Tensor:
        if self.objective == "pearson":
            return pearson(list1, list2)
        return soft_spearman(list1, list2, self.strength)

    def training_step(self, batch, batch_idx):
        list1, list2 = self.derivation(self.v, self.freq_m)  # one evaluation
        rho = self.referee.judge(list1.detach(), list2.detach())
        if rho >= self.stop_at:
            self.stopped = True
            self.trainer.should_stop = True
            return None
        corr = self.correlation(list1, list2)
        self.surrogate.append(float(corr.detach()))
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(-corr)
        self.referee.count_backward()
        opt.step()
        return None

    def configure_optimizers(self):
        # With sgd: a correlation is a mean over n entries, so each entry's gradient scales like 1/n;
        # the step lr * n * gradient means the same at every n.
        lr = self.lr if self.optimizer_name == "adam" else self.lr * self.v.shape[0]
        return make_optimizer(self.optimizer_name, [self.v, self.freq_m], lr)

    def fit(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Train for at most ``steps`` steps; judge the final matrices; return them."""
        train(self, steps)
        if not self.stopped:  # the last step moved the matrices after its evaluation
            self.referee.evaluate(self.v.detach(), self.freq_m.detach())
        return self.v.detach().clone(), self.freq_m.detach().clone()
