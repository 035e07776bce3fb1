"""Which tensor went non-finite first?

A :class:`NonFiniteWatch` follows a training loop step by step and records the
first non-finite quantity, in the order the computation produced it:

1. the forward pass: outputs of every sub-module (forward hooks, in call order)
   and any intermediate the loss code hands to :meth:`NonFiniteWatch.record`
   (e.g. ``component_density``, ``mixture_logdensity``, ``loss``);
2. the gradients, by parameter name (:meth:`check_grads`, after ``backward``);
3. the weights, by parameter name (:meth:`check_weights`, after the optimizer step).

Checking every tensor of every step costs more than the step itself on a small
model, so the forward pass is checked lazily: hooks keep references to the
tensors of the current step, and they are scanned (in order) only when a cheap
check fails -- a non-finite loss, gradient or weight. Gradients and weights are
checked with one fused reduction each, and named only when that reduction fails.

    watch = NonFiniteWatch(model)
    for step, batch in enumerate(batches):
        watch.begin(step)
        loss = loss_fn(model(x), y, record=watch.record)
        watch.check_loss(loss)
        loss.backward(); watch.check_grads(model)
        opt.step(); watch.check_weights(model)
    watch.first  # Event(step=..., what="grad", where="head.weight") or None
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Event:
    """The first non-finite quantity: at ``step``, a ``what`` (activation, density, loss, grad, weight) at ``where``."""

    step: int
    what: str
    where: str

    @property
    def label(self) -> str:
        return self.what if self.where == self.what else f"{self.what}:{self.where}"


def all_finite(tensors) -> bool:
    """True when every element of every tensor is finite (one fused reduction)."""
    tensors = [t for t in tensors if t is not None and t.numel()]
    if not tensors:
        return True
    if all(t.dtype == tensors[0].dtype and t.is_floating_point() for t in tensors):
        # one fused max-abs per tensor (NaN propagates, no overflow as with a 2-norm)
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf")))).all())
    flags = torch.stack([torch.isfinite(t).all() for t in tensors])
    return bool(flags.all())


class NonFiniteWatch:
    """Records the first non-finite tensor of a training run, in forward/backward/step order."""

    def __init__(self, module: torch.nn.Module | None = None):
        self.step = -1
        self.first: Event | None = None
        self.weights_nonfinite_step: int | None = None
        self._seen: list[tuple[str, str, torch.Tensor]] = []  # this step's (what, where, tensor) in order
        self._handles = []
        self._named_cache: dict[int, tuple[torch.nn.Module, list]] = {}
        if module is not None:
            self.attach(module)

    # the forward pass -----------------------------------------------------
    def attach(self, module: torch.nn.Module, prefix: str = "") -> NonFiniteWatch:
        """Forward hooks on every sub-module (leaves and containers) that keep their output for this step."""
        for name, sub in module.named_modules():
            if sub is module and name == "":
                continue
            where = f"{prefix}{name}"
            self._handles.append(sub.register_forward_hook(self._hook(where)))
        return self

    def _hook(self, where: str):
        def hook(mod, inputs, output):
            if self.first is None and isinstance(output, torch.Tensor):
                self._seen.append(("activation", where, output))

        return hook

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def begin(self, step: int) -> None:
        """Start a new step: forget the previous step's tensors."""
        self.step = step
        self._seen.clear()

    def record(self, name: str, tensor: torch.Tensor) -> None:
        """Hand an intermediate of the loss (in computation order) to the watch."""
        if self.first is None:
            self._seen.append((name, name, tensor))

    def _set(self, what: str, where: str) -> None:
        if self.first is None:
            self.first = Event(self.step, what, where)

    def scan_forward(self) -> Event | None:
        """Name the first non-finite tensor of this step's forward pass (in the order it was produced)."""
        if self.first is None:
            for what, where, tensor in self._seen:
                if not bool(torch.isfinite(tensor.detach()).all()):
                    self._set(what, where)
                    break
        return self.first

    def check_loss(self, loss: torch.Tensor) -> bool:
        """Cheap per-step check; when the loss is non-finite, scan the forward pass for its origin."""
        ok = bool(torch.isfinite(loss.detach()).all())
        if not ok and self.first is None:
            self.scan_forward()
            self._set("loss", "loss")  # nothing upstream was non-finite
        self._seen.clear()
        return ok

    # gradients and weights ------------------------------------------------
    def _named(self, module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        """``module.named_parameters()``, listed once per module (walking the module tree every step costs)."""
        key = id(module)
        if self._named_cache.get(key, (None,))[0] is not module:
            self._named_cache[key] = (module, list(module.named_parameters()))
        return self._named_cache[key][1]

    def check_grads(self, module: torch.nn.Module) -> bool:
        params = [(n, p.grad) for n, p in self._named(module) if p.grad is not None]
        ok = all_finite([g for _, g in params])
        if not ok and self.first is None:
            self._set("grad", next(n for n, g in params if not bool(torch.isfinite(g).all())))
        return ok

    def check_weights(self, module: torch.nn.Module) -> bool:
        named = self._named(module)
        ok = all_finite([p.detach() for _, p in named])
        if not ok:
            if self.weights_nonfinite_step is None:
                self.weights_nonfinite_step = self.step
            if self.first is None:
                self._set("weight", next(n for n, p in named if not bool(torch.isfinite(p.detach()).all())))
        return ok
