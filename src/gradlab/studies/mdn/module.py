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

# the study's two optimizers; foreach: one fused kernel per update step for all parameters (same numbers)
OPTIMIZER_OPTIONS = {"sgd": {"momentum": 0.9, "foreach": True}, "adam": {"foreach": True}}


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


CAUSES = (
    "nonfinite_input",
    "zero_scale",
    "log_of_underflowed_weight",
    "probability_underflow",
    "gradient_overflow",
    "weight_overflow",
    "loss_overflow",
    "other",
)


def classify(
    event_what: str, *, input_finite: bool, sigma_positive: bool, weight_zero: bool, loss_finite: bool, mixture: str
) -> str:
    """The cause of a trial's first non-finite value, from what the step's batch and tensors looked like.

    In order: a non-finite number in the batch's inputs or targets (``nonfinite_input``); a scale of
    exactly 0 (``zero_scale``: the Normal log-density is 0/0); a finite loss with a NaN gradient while a
    mixing weight was exactly 0 on the asker's path (``log_of_underflowed_weight``: log(0) = -inf, its
    backward 0/0); a probability-space density that underflowed (``probability_underflow``); otherwise a
    finite loss with an overflowing gradient, a weight that overflowed in the update, a loss that
    overflowed, or ``other``.
    """
    if not input_finite:
        return "nonfinite_input"
    if not sigma_positive:
        return "zero_scale"
    if loss_finite and event_what.startswith("grad") and weight_zero and mixture == "probs_log":
        return "log_of_underflowed_weight"
    if mixture == "density" and event_what.split(":")[0] in ("mixture_logdensity", "grad", "component_density"):
        return "probability_underflow"
    if loss_finite and event_what.startswith("grad"):
        return "gradient_overflow"
    if event_what.startswith("weight"):
        return "weight_overflow"
    if not loss_finite:
        return "loss_overflow"
    return "other"


class MDNTrial(pl.LightningModule):
    """Train ``net`` on (x, y) with one NLL formulation; record losses, the first non-finite value and its cause.

    The trial goes on after a non-finite loss or gradient (that is what the questioner's loop
    did) and stops only when the weights themselves are non-finite: nothing can recover then.
    Every step also notes, without a device sync, whether some mixing weight of the batch was
    exactly 0 (softmax underflow) and the largest logit gap of the batch.

    :meth:`fit` trains it with Lightning Fabric in the Trainer's automatic-optimisation order
    (the study's path: a trial's steps take ~1 ms, and the Trainer's per-step hooks would add
    about half again). ``gradlab.training.fit(module, steps)`` runs the same hooks under the
    Trainer in the same order and gives identical losses (tests/test_mdn_trial.py).
    """

    def __init__(
        self, net: MDN, x, y, order, mixture: str, target_shape: str, optimizer: str, lr: float, loss_clip: float = 0.0
    ):
        super().__init__()
        self.net = net
        self.register_buffer("x", x)
        self.register_buffer("y", y)
        self.order = order
        self.mixture, self.target_shape, self.optimizer_name, self.lr = mixture, target_shape, optimizer, lr
        self.loss_clip = loss_clip
        self.watch = NonFiniteWatch(net)
        self.losses: list[float] = []
        n = len(order)
        self.weight_zero = torch.zeros(n, dtype=torch.bool)  # some mixing weight of the batch exactly 0
        self.logit_gap = torch.zeros(n, dtype=torch.float64)  # the batch's largest max-min logit gap
        self.cause: str | None = None
        self.event_loss_finite: bool | None = None
        self._step_refs: tuple | None = None
        # at lr = 0, have the weights moved at all before the first non-finite value? (they should not)
        self._w0 = [p.detach().clone() for p in net.parameters()] if lr == 0.0 else None
        self.drift_at_event: float | None = None

    def _after_check(self) -> None:
        """Once the first non-finite value is known: the weights' drift (lr 0) and the cause."""
        first = self.watch.first
        if first is None or self.cause is not None:
            return
        if self._w0 is not None:
            with torch.no_grad():
                self.drift_at_event = max(
                    float((p - w).abs().max()) for p, w in zip(self.net.parameters(), self._w0, strict=True)
                )
        xb, yb, sigma, step, loss_finite = self._step_refs
        self.event_loss_finite = loss_finite
        self.cause = classify(
            first.label,
            input_finite=bool(torch.isfinite(xb).all()) and bool(torch.isfinite(yb).all()),
            sigma_positive=bool((sigma > 0).all()),
            weight_zero=bool(self.weight_zero[step]),
            loss_finite=loss_finite,
            mixture=self.mixture,
        )

    def step_loss(self, idx: torch.Tensor, record=None, step: int | None = None) -> torch.Tensor:
        xb, yb = self.x[idx], self.y[idx]
        logits, mu, sigma = self.net(xb)
        if step is not None:
            with torch.no_grad():
                lg = logits.detach()
                self.weight_zero[step] = (torch.softmax(lg, dim=-1) == 0).any()
                self.logit_gap[step] = (lg.max(-1).values - lg.min(-1).values).max()
            self._step_refs = (xb, yb, sigma.detach(), step, True)
        return mixture_loss(logits, mu, sigma, yb, self.mixture, self.target_shape, record, self.loss_clip)

    def training_step(self, batch, batch_idx):
        self.watch.begin(batch_idx)
        loss = self.step_loss(self.order[batch_idx], self.watch.record, step=batch_idx)
        finite = self.watch.check_loss(loss)
        self._step_refs = (*self._step_refs[:4], finite)
        self._after_check()
        self.losses.append(float(loss.detach()))
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.watch.check_grads(self.net)
        self._after_check()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        ok = self.watch.check_weights(self.net)
        self._after_check()
        if not ok:
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
            ok = self.watch.check_weights(self.net)
            self._after_check()
            if not ok:
                break


@torch.no_grad()
def val_nll(net: MDN, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean NLL on held-out data in eval mode (BatchNorm: running statistics), whatever formulation trained the
    net; NaN when the net's output is not finite or a scale is not positive."""
    was = net.training
    net.eval()
    logits, mu, sigma = net(x)
    net.train(was)
    if not (bool(torch.isfinite(logits).all()) and bool(torch.isfinite(mu).all()) and bool((sigma > 0).all())):
        return math.nan
    if not bool(torch.isfinite(sigma).all()):
        return math.nan
    return float(nll(logits, mu, sigma, y).mean())


def fixed_weight_probe(net: MDN, x, y, order, mixture: str, target_shape: str = "correct") -> list[bool]:
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
