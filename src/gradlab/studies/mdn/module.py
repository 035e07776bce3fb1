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
        self.config = {
            "hidden": hidden,
            "layers": layers,
            "components": components,
            "sigma": sigma,
            "batchnorm": batchnorm,
            "sigma_eps": sigma_eps,
        }  # to build a twin

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
    """Train ``net`` on (x, y) with one NLL formulation; record losses, the first non-finite value and its cause.

    The trial goes on after a non-finite loss or gradient (that is what the questioner's loop
    did) and stops only when the weights themselves are non-finite: nothing can recover then.
    Every step also notes, without a device sync, whether some mixing weight of the batch was
    exactly 0 (softmax underflow) and the largest logit gap of the batch.

    The cause of the first non-finite value comes from the NaN doctor (:func:`gradlab.doctor.diagnose`):
    the step is replayed op by op on the same batch and the same weights, and :attr:`report` keeps the
    doctor's :class:`~gradlab.doctor.NonFiniteReport`. A value first seen in the loss or the gradients is
    replayed after the step's backward pass, before its update (forward, loss, backward; the weights and the
    optimizer state are still the step's own, and the replay leaves them, the gradients, the buffers and the
    RNG as they were). A value first seen in the weights after the update is replayed on a twin trained from
    the initial weights up to that step (the loop is deterministic), with the optimizer step: no copy of the
    weights is kept on the way, so a trial that stays finite pays nothing for it.

    :meth:`fit` trains it with Lightning Fabric in the Trainer's automatic-optimisation order
    (the study's path: a trial's steps take ~1 ms, and the Trainer's per-step hooks would add
    about half again). ``gradlab.training.fit(module, steps)`` runs the same hooks under the
    Trainer in the same order and gives identical losses (tests/test_mdn_trial.py).
    """

    def __init__(
        self,
        net: MDN,
        x,
        y,
        order,
        mixture: str,
        target_shape: str,
        optimizer: str,
        lr: float,
        loss_clip: float = 0.0,
        diagnose: bool = True,
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
        self.min_weight = torch.zeros(n, dtype=torch.float64)  # the batch's smallest mixing weight
        self.min_scale = torch.zeros(n, dtype=torch.float64)  # the batch's smallest component scale
        self.cause: str | None = None
        self.report = None  # the doctor's NonFiniteReport of the first non-finite value
        self.event_loss_finite: bool | None = None
        self._step_refs: tuple[int, bool] | None = None  # (step, loss finite) of the current step
        self._diagnose = diagnose
        # the initial weights and buffers: a twin replays a step whose update made the weights non-finite
        self._state0 = {k: v.detach().clone() for k, v in net.state_dict().items()} if diagnose else None
        self._grad_clip = 0.0
        self._loop: tuple | None = None  # (fabric, model, optimizer) of :meth:`fit`
        # at lr = 0, have the weights moved at all before the first non-finite value? (they should not)
        self._w0 = [p.detach().clone() for p in net.parameters()] if lr == 0.0 else None
        self.drift_at_event: float | None = None

    def _after_check(self, replay: bool = True) -> None:
        """Once the first non-finite value is known: the weights' drift (lr 0) and the doctor's cause.

        ``replay=False`` (right after the forward pass): note the drift now and leave the doctor's replay to the
        next check, after the step's own backward pass (the replay must not touch buffers that the step's
        autograd graph still holds, BatchNorm's running statistics).
        """
        first = self.watch.first
        if first is None or self.cause is not None:
            return
        if self.event_loss_finite is None:
            step, self.event_loss_finite = self._step_refs
            if self._w0 is not None:
                with torch.no_grad():
                    self.drift_at_event = max(
                        float((p - w).abs().max()) for p, w in zip(self.net.parameters(), self._w0, strict=True)
                    )
        if not replay:
            return
        if not self._diagnose:
            self.cause = "other"
            return
        self.report = self.diagnose_step(self._step_refs[0], update=first.what == "weight")
        self.cause = self.report.cause if self.report is not None else "other"

    def diagnose_step(self, step: int, update: bool = False):
        """The NaN doctor's report of ``step`` replayed op by op (None when the replay stays finite).

        ``update=False``: forward, loss and backward on the current weights (the step's own: the check
        that fired came before its update). ``update=True``: the update made the weights non-finite, so
        the step is replayed with its optimizer step on a twin brought to the weights before it.
        """
        from gradlab.doctor import diagnose

        if not update:
            return diagnose(self.replay_step, step, step=step, skip_gradlab=False, keep_state=self.net)
        with torch.random.fork_rng(devices=[]):
            twin = self.twin(step)
            return diagnose(twin.replay_step, step, True, step=step, skip_gradlab=False, keep_state=twin.net)

    def twin(self, step: int) -> MDNTrial:
        """A copy of this trial trained from the initial weights for ``step`` steps: the state before ``step``."""
        net = MDN(**self.net.config)
        net.load_state_dict(self._state0)
        twin = MDNTrial(
            net,
            self.x,
            self.y,
            self.order,
            self.mixture,
            self.target_shape,
            self.optimizer_name,
            self.lr,
            self.loss_clip,
            diagnose=False,
        )
        twin.fit(step, self._grad_clip)
        return twin

    def replay_step(self, step: int, update: bool = False) -> torch.Tensor:
        """Step ``step`` again, as :meth:`fit` runs it, without the watch: forward, loss, zero_grad,
        backward and, when ``update``, gradient clipping and the optimizer step (of :meth:`fit`'s loop)."""
        loss = self.step_loss(self.order[step])
        if not update:
            for p in self.net.parameters():
                p.grad = None
            loss.backward()
            return loss
        fabric, model, optimizer = self._loop
        optimizer.zero_grad()
        fabric.backward(loss)
        if self._grad_clip:
            fabric.clip_gradients(model, optimizer, max_norm=self._grad_clip, error_if_nonfinite=False)
        # one in-place update per parameter instead of the fused _foreach_ one (the same numbers): the doctor's
        # tracer reads a fused update that makes several parameters non-finite as weights that already were
        foreach = [g.get("foreach") for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["foreach"] = False
        try:
            optimizer.step()
        finally:
            for g, f in zip(optimizer.param_groups, foreach, strict=True):
                g["foreach"] = f
        return loss

    def step_loss(self, idx: torch.Tensor, record=None, step: int | None = None) -> torch.Tensor:
        xb, yb = self.x[idx], self.y[idx]
        logits, mu, sigma = self.net(xb)
        if step is not None:
            with torch.no_grad():
                lg = logits.detach()
                weights = torch.softmax(lg, dim=-1)
                self.weight_zero[step] = (weights == 0).any()
                self.min_weight[step] = weights.min()
                self.logit_gap[step] = (lg.max(-1).values - lg.min(-1).values).max()
                self.min_scale[step] = sigma.detach().min()
            self._step_refs = (step, True)
        return mixture_loss(logits, mu, sigma, yb, self.mixture, self.target_shape, record, self.loss_clip)

    def training_step(self, batch, batch_idx):
        self.watch.begin(batch_idx)
        loss = self.step_loss(self.order[batch_idx], self.watch.record, step=batch_idx)
        finite = self.watch.check_loss(loss)
        self._step_refs = (batch_idx, finite)
        self._after_check(replay=False)
        self.losses.append(float(loss.detach()))
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.watch.check_grads(self.net)
        self._after_check()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        ok = self.watch.check_weights(self.net)
        if not ok and self.cause is None:
            self._grad_clip = float(self.trainer.gradient_clip_val or 0.0)  # the Trainer's clipping, for the twin
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
        self._grad_clip, self._loop = grad_clip, (fabric, model, optimizer)
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
