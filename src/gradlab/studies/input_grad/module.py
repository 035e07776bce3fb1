"""Sobolev training: fit h to f from values only, or from values and input gradients.

``SobolevRegression`` minimises, full batch,

    mean_i (h(x_i) - f(x_i))^2  +  grad_weight * mean_i ||dh(x_i)/dx_i - grad f(x_i)||^2

where the per-sample input gradients come from :func:`per_sample_input_grad` with
``create_graph=True``, so the second term is back-propagated to the parameters
(Czarnecki et al. 2017, "Sobolev Training for Neural Networks"). ``grad_weight = 0``
is ordinary value-only regression. Every ``eval_every`` steps the module records the
held-out value RMSE and gradient RMSE; the study logs the curves in one batch.

:meth:`SobolevRegression.fit` drives the steps itself through Lightning Fabric (as the Trainer would:
training_step, zero_grad, backward, optimizer step; the same numbers to the bit): a step here is well under
a millisecond of arithmetic, and the Trainer's thirty-odd hooks per step cost more than that. The run-time
coupling probe of :func:`per_sample_input_grad` runs on the first step only: the network does not change
its structure while it trains.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from gradlab.studies.input_grad.methods import per_sample_input_grad
from gradlab.studies.input_grad.problems import target, target_grad
from gradlab.training import make_fabric, make_optimizer


def rmse(model: torch.nn.Module, X: torch.Tensor, method: str) -> tuple[float, float]:
    """(value RMSE, gradient RMSE) of ``model`` against f on ``X``; gradient RMSE = sqrt(mean ||error||^2)."""
    with torch.no_grad():
        value = float(torch.sqrt(((model(X).reshape(-1) - target(X)) ** 2).mean()))
    G = per_sample_input_grad(model, X, method)
    gradient = float(torch.sqrt(((G - target_grad(X)) ** 2).sum(dim=1).mean()))
    return value, gradient


class SobolevRegression(pl.LightningModule):
    def __init__(
        self,
        net: torch.nn.Module,
        X: torch.Tensor,
        X_test: torch.Tensor,
        grad_weight: float,
        lr: float,
        method: str = "sum",
        eval_every: int = 50,
    ):
        super().__init__()
        self.net = net
        self.register_buffer("X", X)
        self.register_buffer("y", target(X))
        self.register_buffer("dy", target_grad(X))
        self.register_buffer("X_test", X_test)
        self.grad_weight, self.lr, self.method, self.eval_every = grad_weight, lr, method, eval_every
        self.losses: list[float] = []
        self._probe = True  # per_sample_input_grad's run-time coupling probe: the first step only
        self.eval_steps: list[int] = []
        self.eval_value_rmse: list[float] = []
        self.eval_grad_rmse: list[float] = []

    def loss(self) -> torch.Tensor:
        loss = ((self.net(self.X).reshape(-1) - self.y) ** 2).mean()
        if self.grad_weight > 0:
            G = per_sample_input_grad(self.net, self.X, self.method, create_graph=True, detect_coupling=self._probe)
            self._probe = False
            loss = loss + self.grad_weight * ((G - self.dy) ** 2).sum(dim=1).mean()
        return loss

    def evaluate(self, step: int) -> None:
        value, gradient = rmse(self.net, self.X_test, "sum")
        self.eval_steps.append(step)
        self.eval_value_rmse.append(value)
        self.eval_grad_rmse.append(gradient)

    def training_step(self, batch, batch_idx):
        if batch_idx % self.eval_every == 0:
            self.evaluate(batch_idx)
        loss = self.loss()
        self.losses.append(float(loss.detach()))
        return loss

    def configure_optimizers(self):
        return make_optimizer("adam", self.net.parameters(), self.lr)

    def fit(self, steps: int) -> None:
        """Train for ``steps`` full-batch steps, evaluating every ``eval_every`` and after the last.

        Per step, as the Trainer's automatic optimisation: training_step (the evaluation, then the loss),
        zero_grad, backward, optimizer step."""
        fabric = make_fabric()
        _, optimizer = fabric.setup(self, self.configure_optimizers())
        self.train()
        for step in range(steps):
            loss = self.training_step(step, step)
            optimizer.zero_grad()
            fabric.backward(loss)
            optimizer.step()
        self.evaluate(steps)
