"""The MDN network and the LightningModule that trains one trial, watching for non-finite values."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn

from gradlab.forensics import NonFiniteWatch, all_finite
from gradlab.studies.mdn.losses import mixture_loss, nll, sigma_from
from gradlab.training import make_fabric
from gradlab.training import make_optimizer as _make_optimizer

OPTIMIZER_OPTIONS = {"sgd": {"momentum": 0.9}, "adam": {}}  # the study's two optimizers


class MDN(nn.Module):
    """x [B] -> (logits, mu, sigma), each [B, K]: tanh MLP (optional BatchNorm) and a linear head of 3K outputs."""

    def __init__(self, hidden: int, layers: int, components: int, sigma: str, batchnorm: bool, sigma_eps: float):
        super().__init__()
        blocks: list[nn.Module] = []
        width = 1
        for _ in range(layers):
            blocks.append(nn.Linear(width, hidden))
            if batchnorm:
                blocks.append(nn.BatchNorm1d(hidden))
            blocks.append(nn.Tanh())
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, 3 * components)
        self.k, self.sigma_kind, self.sigma_eps = components, sigma, sigma_eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.head(self.body(x.reshape(-1, 1)))
        logits, mu, raw = out.split(self.k, dim=-1)
        return logits, mu, sigma_from(raw, self.sigma_kind, self.sigma_eps)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``sgd`` (momentum 0.9) or ``adam``; any other name is refused."""
    if name not in OPTIMIZER_OPTIONS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZER_OPTIONS)}")
    return _make_optimizer(name, params, lr, **OPTIMIZER_OPTIONS[name])


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """[steps, batch_size] row indices: consecutive shuffled epochs (drop_last), seeded."""
    g = torch.Generator().manual_seed(seed)
    per_epoch = n // batch_size
    epochs = math.ceil(steps / per_epoch)
    rows = [torch.randperm(n, generator=g)[: per_epoch * batch_size].view(per_epoch, batch_size) for _ in range(epochs)]
    return torch.cat(rows)[:steps]


class MDNTrial(pl.LightningModule):
    """Train ``net`` on (x, y) with one of the four NLL formulations; record losses and the first non-finite value.

    The trial goes on after a non-finite loss or gradient (that is what the questioner's loop
    did) and stops only when the weights themselves are non-finite: nothing can recover then.

    :meth:`fit` trains it with Lightning Fabric in the Trainer's automatic-optimisation order
    (the study's path: a trial's steps take ~1 ms, and the Trainer's per-step hooks would add
    about half again). ``gradlab.training.fit(module, steps)`` runs the same hooks under the
    Trainer in the same order and gives identical losses (tests/test_mdn_trial.py).
    """

    def __init__(self, net: MDN, x, y, order, mixture: str, target_shape: str, optimizer: str, lr: float):
        super().__init__()
        self.net = net
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.order = order
        self.mixture, self.target_shape, self.optimizer_name, self.lr = mixture, target_shape, optimizer, lr
        self.watch = NonFiniteWatch(net)
        self.losses: list[float] = []
        # at lr = 0, have the weights moved at all before the first non-finite value? (they should not)
        self._w0 = [p.detach().clone() for p in net.parameters()] if lr == 0.0 else None
        self.drift_at_event: float | None = None

    def _note_drift(self) -> None:
        if self._w0 is not None and self.watch.first is not None and self.drift_at_event is None:
            with torch.no_grad():
                self.drift_at_event = max(
                    float((p - w).abs().max()) for p, w in zip(self.net.parameters(), self._w0, strict=True)
                )

    def step_loss(self, idx: torch.Tensor, record=None) -> torch.Tensor:
        logits, mu, sigma = self.net(self.x[idx])
        return mixture_loss(logits, mu, sigma, self.y[idx], self.mixture, self.target_shape, record)

    def training_step(self, batch, batch_idx):
        self.watch.begin(batch_idx)
        loss = self.step_loss(self.order[batch_idx], self.watch.record)
        self.watch.check_loss(loss)
        self._note_drift()
        self.losses.append(float(loss.detach()))
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.watch.check_grads(self.net)
        self._note_drift()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if not self.watch.check_weights(self.net):
            self.trainer.should_stop = True

    def configure_optimizers(self):
        return make_optimizer(self.optimizer_name, self.net.parameters(), self.lr)

    def fit(self, steps: int, grad_clip: float = 0.0) -> None:
        """Train for ``steps`` steps (at most the batch order's length), as the Trainer would.

        Per step: training_step, zero_grad, backward, gradient check (the Trainer's
        ``on_before_optimizer_step``), norm clipping if ``grad_clip``, optimizer step,
        weight check; stop once the weights are non-finite.
        """
        fabric = make_fabric()
        model, optimizer = fabric.setup(self, self.configure_optimizers())
        for step in range(min(steps, len(self.order))):
            loss = self.training_step(step, step)
            optimizer.zero_grad()
            fabric.backward(loss)
            self.on_before_optimizer_step(optimizer)
            if grad_clip:  # a NaN gradient is a result here, not an error
                fabric.clip_gradients(model, optimizer, max_norm=grad_clip, error_if_nonfinite=False)
            optimizer.step()
            if not self.watch.check_weights(self.net):
                break


@torch.no_grad()
def val_nll(net: MDN, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean stable NLL on held-out data (correct pairing), whatever formulation trained the net."""
    net.eval()
    logits, mu, sigma = net(x)
    return float(nll(logits, mu, sigma, y).mean())


def fixed_weight_probe(net: MDN, x, y, order, mixture: str, target_shape: str) -> list[bool]:
    """For each batch of ``order``: is its loss or any gradient non-finite on the current (fixed) weights?

    Forward and backward, no optimizer step; BatchNorm in training mode (batch statistics, as in
    training) and its running statistics restored afterwards.
    """
    was = net.training
    net.train()
    saved = {k: v.clone() for k, v in net.state_dict().items()}
    params = list(net.parameters())
    out = []
    for idx in order:
        logits, mu, sigma = net(x[idx])
        loss = mixture_loss(logits, mu, sigma, y[idx], mixture, target_shape)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out.append(not (bool(torch.isfinite(loss)) and all_finite(grads)))
    net.load_state_dict(saved)
    net.train(was)
    return out
