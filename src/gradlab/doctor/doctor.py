"""The NaN doctor: cheap checks every step, and an op-level replay of the step that went non-finite.

``NanDoctor(model, optimizer)`` watches a training loop in one of three modes:

* ``"cheap"`` (default): no per-op hooks. The loss (kept at ``backward``), the gradients and the buffers
  (BatchNorm running statistics) are checked just before ``optimizer.step()``, the parameters just after it, the
  optimizer state before every ``check_state_every``-th step -- each check one number read back (one sum per
  tensor on the CPU, a fused norm and one sync on an accelerator). The buffers and RNG state of the step's start
  are kept (copies refilled each step). On the first non-finite value of a step decorated with
  :meth:`NanDoctor.step`, the doctor restores what the step changed (buffers, RNG states, gradients; parameters
  and optimizer state are still the pre-step ones when the check before ``optimizer.step()`` fails) and replays
  the step under op-level tracing (:class:`~gradlab.doctor.trace.OpTracer`) to name the op, the module, the user's
  line and the cause. A non-finite value made by ``optimizer.step()`` itself is diagnosed from the gradients,
  state and hyperparameters (``snapshot=True`` copies parameters and state every step for an exact replay).
* ``"trace"``: every op of every step is traced (slow; for a loop that cannot be wrapped as a step function).
* ``"off"``: nothing is checked (the decorated function runs as it is).
"""

from __future__ import annotations

import cmath
import functools
import math
import random
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.optim.optimizer as _optim

from gradlab.doctor.causes import Evidence
from gradlab.doctor.facts import facts, has_inf, has_nan, is_float
from gradlab.doctor.frames import FrameFilter, SourceLine
from gradlab.doctor.report import NonFiniteError, NonFiniteReport, make_report
from gradlab.doctor.trace import OpTracer, TraceEvent

MODES = ("cheap", "trace", "off")
SCALE_PARAMS = {"scale", "sigma", "std", "stddev", "concentration", "rate", "df", "scale_tril", "covariance_matrix"}


class Found(BaseException):
    """Raised inside the user's step by a cheap check (a BaseException, so that ``except Exception`` keeps it)."""

    def __init__(self, phase: str, tensor: str, where: SourceLine | None, optimizer=None, value=None):
        super().__init__(f"non-finite {tensor} ({phase})")
        self.phase, self.tensor, self.where, self.optimizer, self.value = phase, tensor, where, optimizer, value
        self.step: int | None = None  # the step that wrote it, when not the current one


class StopReplay(BaseException):
    """Ends a replay once its origin is known (before ``optimizer.step()`` changes the parameters)."""


def _finite_all(tensors: list[torch.Tensor | None]) -> bool:
    """True when every entry of every tensor (``None`` skipped) is finite.

    Fast path: on the CPU, the sum of each tensor (NaN and inf propagate into it; a 0-d loss is read as it is),
    added up in double precision; elsewhere one fused 2-norm per dtype and device and one sync. Both can overflow
    on large finite values, so a non-finite result is confirmed entry by entry before it counts.
    """
    tensors = [t.detach() if t.requires_grad else t for t in tensors if t is not None]
    if not tensors:
        return True
    if tensors[0].is_cpu:  # one device in practice (.item() is right on any device, only slower)
        total = 0.0
        for t in tensors:
            total += t.item() if t.ndim == 0 else t.sum().item()
        if cmath.isfinite(total):
            return True
    else:
        by_dtype: dict = {}
        for t in tensors:
            if is_float(t) and t.numel():
                by_dtype.setdefault((t.dtype, t.device), []).append(t)
        norms = [torch.stack(torch._foreach_norm(ts, 2)).sum().double() for ts in by_dtype.values()]
        if not norms or math.isfinite(float(torch.stack(norms).sum())):
            return True
    return all(bool(torch.isfinite(t).all()) for t in tensors if is_float(t))


def _step_hooks(doctor: NanDoctor) -> list:
    """torch's global ``optimizer.step()`` hooks for ``doctor``, registered once and removed with it (registering
    and removing them every step costs ~2% of a 1 ms step); they act only while the doctor is installed."""
    ref = weakref.ref(doctor)

    def pre(optimizer, args, kwargs):
        d = ref()
        if d is not None and d._saved_backward is not None:
            d._pre_step(optimizer, args, kwargs)

    def post(optimizer, args, kwargs):
        d = ref()
        if d is not None and d._saved_backward is not None:
            d._post_step(optimizer, args, kwargs)

    handles = [_optim.register_optimizer_step_pre_hook(pre), _optim.register_optimizer_step_post_hook(post)]
    for h in handles:
        weakref.finalize(doctor, h.remove)
    return handles


def _leaves(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors (``requires_grad=True``, no ``grad_fn``) that ``tensor``'s graph accumulates into."""
    out, seen, stack = [], set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            out.append(variable)
        stack.extend(child for child, _ in node.next_functions)
    return out


def _first_bad(named: Iterable[tuple[str, torch.Tensor]]) -> tuple[str, torch.Tensor] | None:
    for name, t in named:
        if t is not None and is_float(t) and (has_nan(t) or has_inf(t)):
            return name, t
    return None


class NanDoctor:
    """Finds the first non-finite value of a training loop and says its origin, cause and fix.

    ``model``: the module(s) trained (for parameter and buffer names; optional), ``optimizer``: optional (every
    optimizer is watched through torch's global optimizer hooks). ``mode``: ``"cheap"``, ``"trace"`` or ``"off"``.
    ``on_find``: ``"raise"`` (a :class:`NonFiniteError` carrying the report) or ``"record"`` (keep it in
    :attr:`report` and return ``None`` from the step). ``snapshot``: copy parameters and optimizer state every
    step, so that a value made non-finite by ``optimizer.step()`` is replayed op by op too (costs a copy per
    step). ``rng``: the random states saved for the replay: ``"torch"`` (dropout, ``torch.rand``; the default) or
    ``"all"`` (also Python's ``random`` and NumPy's global generator; ~0.2 ms more per step).
    ``check_state_every``: check the optimizer state (Adam's moments) every this many steps (1: every step).
    ``skip_gradlab``: count frames inside gradlab as library frames (``True``) or as the user's (``False``, for
    gradlab's own studies).

        doctor = gradlab.nan_doctor(model, opt)

        @doctor.step
        def train_step(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss
    """

    def __init__(
        self,
        model: torch.nn.Module | Iterable[torch.nn.Module] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        mode: str = "cheap",
        on_find: str = "raise",
        snapshot: bool = False,
        rng: str = "torch",
        check_state_every: int = 10,
        skip_gradlab: bool = True,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if on_find not in ("raise", "record"):
            raise ValueError(f"on_find must be 'raise' or 'record'; got {on_find!r}")
        if rng not in ("torch", "all"):
            raise ValueError(f"rng must be 'torch' or 'all'; got {rng!r}")
        self.mode, self.on_find, self.snapshot, self.rng = mode, on_find, snapshot, rng
        self.frames = FrameFilter(skip_gradlab=skip_gradlab)
        self.models: list[torch.nn.Module] = []
        if isinstance(model, torch.nn.Module):
            self.models = [model]
        elif model is not None:
            self.models = list(model)
        self.optimizers = [optimizer] if optimizer is not None else []
        self.report: NonFiniteReport | None = None
        self.steps = 0
        self._handles: list = []  # the step hooks (see _step_hooks)
        self._saved_backward = None
        self._backward: tuple | None = None  # (the original, its wrapper)
        self._discover = None
        self._tracer: OpTracer | None = None
        self._names_cache: tuple | None = None
        self._buffer_copies: tuple | None = None  # (buffers, their copies at the step's start)
        self._params_cache: dict = {}
        self._state_cache: dict = {}
        self._loss: tuple | None = None
        self._manual: tuple | None = None  # (leaves, where) of a backward not followed by optimizer.step()
        self._pre_calls = 0
        self.check_state_every = check_state_every
        self._last_step_where: SourceLine | None = None

    # names --------------------------------------------------------------------------------------------------
    def _names(self) -> tuple[dict, dict, dict]:
        key = tuple(map(id, self.models))
        if self._names_cache is not None and self._names_cache[0] == key:
            return self._names_cache[1]
        modules, params, buffers = {}, {}, {}
        for m in self.models:
            for name, sub in m.named_modules():
                modules.setdefault(id(sub), name)
            for name, p in m.named_parameters():
                params.setdefault(id(p), name)
            for name, b in m.named_buffers():
                buffers.setdefault(id(b), name)
        float_buffers = [b for m in self.models for b in m.buffers() if is_float(b)]
        all_buffers = [b for m in self.models for b in m.buffers()]
        self._names_cache = (key, (modules, params, buffers), float_buffers, all_buffers)
        return modules, params, buffers

    def _named_params(self, optimizer=None) -> list[tuple[str, torch.Tensor]]:
        opts = [optimizer] if optimizer is not None else self.optimizers
        sizes = [len(g["params"]) for opt in opts for g in opt.param_groups]  # a group added: listed again
        key = (id(optimizer), len(self.optimizers), len(self.models))
        cached = self._params_cache.get(key)
        if cached is not None and cached[0] == sizes:
            return cached[1]
        _, names, _ = self._names()
        out = []
        for opt in opts:
            for g, group in enumerate(opt.param_groups):
                for k, p in enumerate(group["params"]):
                    out.append((names.get(id(p), f"param_groups[{g}][{k}]"), p))
        if not out:
            for m in self.models:
                out.extend(m.named_parameters())
        self._params_cache[key] = (sizes, out)
        return out

    def _float_buffers(self) -> list[torch.Tensor]:
        self._names()
        return self._names_cache[2]

    def _named_buffers(self) -> list[tuple[str, torch.Tensor]]:
        _, _, names = self._names()
        return [(names.get(id(b), "buffer"), b) for b in self._names_cache[2]]

    # cheap checks -------------------------------------------------------------------------------------------
    def _install(self) -> None:
        """Watch ``backward`` and ``optimizer.step()``. ``torch.autograd.backward`` (which ``Tensor.backward``
        calls) is replaced, not ``Tensor.backward``: setting an attribute of ``torch.Tensor`` empties Python's
        attribute caches of every tensor type, which costs more than the checks on a small model."""
        if self._saved_backward is not None:
            return
        original = torch.autograd.backward
        if self._backward is None or self._backward[0] is not original:  # made once, not every step
            self._backward = (original, self._wrap_backward(original))
        self._saved_backward = original
        torch.autograd.backward = self._backward[1]
        if not self._handles:
            self._handles = _step_hooks(self)
        if not self.models:
            self._discover = torch.nn.modules.module.register_module_forward_pre_hook(self._found_module)

    def _wrap_backward(self, original):
        """``torch.autograd.backward`` that keeps a scalar loss (checked with the gradients), checks any other
        output and notes a manual update (a list of outputs is passed on as it is). It holds the doctor weakly: kept
        by the doctor, it must not keep the doctor (and its models) alive."""
        ref = weakref.ref(self)

        @functools.wraps(original)
        def backward(tensors, *args, **kwargs):
            doctor = ref()
            if doctor is None or not isinstance(tensors, torch.Tensor):
                return original(tensors, *args, **kwargs)
            if doctor._manual is not None:  # the previous backward had no optimizer.step() after it
                doctor._check_manual_step()
            if is_float(tensors):
                if tensors.numel() == 1:  # the usual scalar loss: no sync here, checked with the gradients
                    doctor._loss = (tensors.detach(), doctor.frames.here())
                elif not _finite_all([tensors]):
                    raise Found("loss", "loss", doctor.frames.here(), value=tensors)
            leaves = _leaves(tensors) if not doctor.optimizers and tensors.grad_fn is not None else None
            out = original(tensors, *args, **kwargs)
            if not doctor.optimizers:
                doctor._manual = (leaves or [], doctor.frames.here())
            return out

        return backward

    def _uninstall(self) -> None:
        if self._saved_backward is not None:
            torch.autograd.backward = self._saved_backward
            self._saved_backward = None  # the step hooks do nothing until the next install
        if self._discover is not None:
            self._discover.remove()
            self._discover = None

    def _found_module(self, module, inputs):
        """Learn the user's model(s) from the first forward pass (for buffer and parameter names)."""
        if not any(module is m or any(module is s for s in m.modules()) for m in self.models):
            self.models.append(module)

    def _pre_step(self, optimizer, args, kwargs):
        """Before ``optimizer.step()``: the loss, the gradients, the buffers and the optimizer state (one sync)."""
        if self._discover is not None:
            self._discover.remove()
            self._discover = None
        if optimizer not in self.optimizers:
            self.optimizers.append(optimizer)
        self._manual = None  # checked here, with the optimizer's parameters
        named = self._named_params(optimizer)
        self._pre_calls += 1
        every = self.check_state_every
        state = self._state_tensors(optimizer, named) if every and self._pre_calls % every == 0 else []
        loss, self._loss = self._loss, None
        tensors = [p.grad for _, p in named] + self._float_buffers() + [v for _, v in state]
        if loss is not None:
            tensors.append(loss[0])
        if _finite_all(tensors):
            return
        if loss is not None and not bool(torch.isfinite(loss[0]).all()):
            raise Found("loss", "loss", loss[1], value=loss[0])
        where = self.frames.here()
        bad = _first_bad((n, p.grad) for n, p in named)
        if bad is not None:
            raise Found("backward", f"grad of {bad[0]}", where, optimizer, bad[1])
        bad = _first_bad(self._named_buffers())
        if bad is not None:
            raise Found("buffers", bad[0], where, optimizer, bad[1])
        # the state was written by the previous step (its parameters were finite): that step's optimizer phase
        bad = _first_bad(state)
        found = Found(
            "optimizer state", bad[0] if bad else "?", self._last_step_where, optimizer, bad[1] if bad else None
        )
        found.step = max(0, self.steps - 1)
        raise found

    def _post_step(self, optimizer, args, kwargs):
        """After ``optimizer.step()``: the parameters (the state is checked before the next step, with the grads)."""
        named = self._named_params(optimizer)
        self._manual = None
        self._last_step_where = self.frames.here()
        if not _finite_all([p for _, p in named]):
            bad = _first_bad(named)
            where = self._last_step_where
            raise Found("optimizer step", bad[0] if bad else "?", where, optimizer, bad[1] if bad else None)
        if self.snapshot:  # the replay restores this step's state: check the state now, not before the next step
            state = self._state_tensors(optimizer, named)
            if not _finite_all([v for _, v in state]):
                bad = _first_bad(state)
                raise Found("optimizer state", bad[0] if bad else "?", self._last_step_where, optimizer, bad[1])
        if self._step_depth == 0:
            self.steps += 1

    def _check_manual_step(self) -> None:
        """A loop that updates its weights by hand (``w -= lr * w.grad``, no optimizer): the loss and the
        gradients of the last ``backward`` (checked at the next ``backward`` or at the end); a step per backward."""
        leaves, where = self._manual
        self._manual = None
        loss, self._loss = self._loss, None
        grads = [(f"leaf {k} {tuple(t.shape)}", t.grad) for k, t in enumerate(leaves)]
        _, names, _ = self._names()
        grads += [(names.get(id(p), "parameter"), p.grad) for m in self.models for p in m.parameters()]
        tensors = [g for _, g in grads] + ([loss[0]] if loss is not None else [])
        if not _finite_all(tensors):
            if loss is not None and not bool(torch.isfinite(loss[0]).all()):
                raise Found("loss", "loss", loss[1], value=loss[0])
            bad = _first_bad(grads)
            raise Found("backward", f"grad of {bad[0]}" if bad else "a gradient", where, None, bad[1] if bad else None)
        self.steps += 1

    def final_check(self) -> None:
        """The loss of a last ``backward`` and the optimizer state of the last step (otherwise checked before the
        next ``optimizer.step()``)."""
        if self._manual is not None:
            self._check_manual_step()
        loss, self._loss = self._loss, None
        if loss is not None and not bool(torch.isfinite(loss[0]).all()):
            raise Found("loss", "loss", loss[1], value=loss[0])
        for optimizer in self.optimizers:
            state = self._state_tensors(optimizer, self._named_params(optimizer))
            if not _finite_all([v for _, v in state]):
                bad = _first_bad(state)
                found = Found("optimizer state", bad[0] if bad else "?", self._last_step_where, optimizer, bad[1])
                found.step = max(0, self.steps - 1)
                raise found

    _step_depth = 0

    def _state_tensors(self, optimizer, named) -> list[tuple[str, torch.Tensor]]:
        """The optimizer's floating-point state tensors (not its step counters), listed once per state size."""
        key = id(optimizer)
        size = sum(len(s) for s in optimizer.state.values())
        cached = self._state_cache.get(key)
        if cached is not None and cached[0] == size and cached[1] is optimizer:
            return cached[2]
        state = [
            (f"{type(optimizer).__name__}.state[{n}][{k!r}]", v)
            for n, p in named
            for k, v in optimizer.state.get(p, {}).items()
            if isinstance(v, torch.Tensor) and is_float(v) and k != "step"
        ]
        self._state_cache[key] = (size, optimizer, state)
        return state

    # snapshot and restore -----------------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        self._names()
        snap: dict[str, Any] = {"buffers": self._save_buffers(self._names_cache[3]), "torch_rng": torch.get_rng_state()}
        if self.rng == "all":
            snap["random"] = random.getstate()
            np = sys.modules.get("numpy")
            if np is not None:
                snap["numpy"] = np.random.get_state()
        if self.snapshot:
            snap["params"] = [(p, p.detach().clone()) for _, p in self._named_params()]
            snap["state"] = [
                (
                    opt,
                    {
                        p: {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
                        for p, s in opt.state.items()
                    },
                )
                for opt in self.optimizers
            ]
        return snap

    def _save_buffers(self, buffers: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(buffer, copy) for every buffer; the copies are made once and refilled each step (one fused copy)."""
        if not buffers:
            return []
        kept = self._buffer_copies
        if (
            kept is None
            or kept[0] is not buffers
            or any(c.shape != b.shape for c, b in zip(kept[1], buffers, strict=True))
        ):
            kept = self._buffer_copies = (buffers, [b.detach().clone() for b in buffers])
        else:
            torch._foreach_copy_(kept[1], [b.detach() for b in buffers])
        return list(zip(buffers, kept[1], strict=True))

    def _restore(self, snap: dict) -> None:
        with torch.no_grad():
            for b, saved in snap["buffers"]:
                b.copy_(saved)
            for p, saved in snap.get("params", []):
                p.copy_(saved)
        for opt, state in snap.get("state", []):
            opt.state.clear()
            for p, s in state.items():
                opt.state[p] = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
        torch.set_rng_state(snap["torch_rng"])
        if "random" in snap:
            random.setstate(snap["random"])
        if "numpy" in snap:
            sys.modules["numpy"].random.set_state(snap["numpy"])
        for _, p in self._named_params():
            p.grad = None

    # the decorator ------------------------------------------------------------------------------------------
    def step(self, fn: Callable) -> Callable:
        """Decorate a training-step function (one call = one step): checked cheaply, replayed when it goes wrong."""

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            if self.mode == "off":
                return fn(*args, **kwargs)
            if self.mode == "trace":
                return self._traced_call(fn, args, kwargs)
            return self._cheap_call(fn, args, kwargs)

        return wrapped

    def _cheap_call(self, fn, args, kwargs):
        snap = self._snapshot()
        self._install()
        self._step_depth = 1
        found: Found | None = None
        error: BaseException | None = None
        self._loss = None
        try:
            out = fn(*args, **kwargs)
            loss, self._loss = self._loss, None
            if loss is not None and not bool(torch.isfinite(loss[0]).all()):
                found = Found("loss", "loss", loss[1], value=loss[0])
        except Found as f:
            found = f
        except Exception as exc:  # noqa: BLE001 -- diagnosed below, re-raised when it has nothing non-finite
            error = exc
        finally:
            self._step_depth = 0
            self._uninstall()
        if found is None and error is None:
            self.steps += 1
            return out
        if found is not None and found.phase in ("optimizer step", "optimizer state") and not self.snapshot:
            report = self._post_mortem(found)
        else:
            self._restore(snap)
            report = self._replay(fn, args, kwargs, found, error)
            self._restore(snap)
        if report is None:
            raise error if error is not None else RuntimeError(str(found))
        return self._deliver(report, error)

    def _traced_call(self, fn, args, kwargs):
        report = self._replay(fn, args, kwargs, None, None, stop_early=False, run=True)
        self.steps += 1
        if report is None:
            return self._last_out
        return self._deliver(report, None)

    def _deliver(self, report: NonFiniteReport, error: BaseException | None):
        self.report = report
        if self.on_find == "raise":
            raise NonFiniteError(report) from error
        return None

    # replay under tracing -----------------------------------------------------------------------------------
    def _replay(self, fn, args, kwargs, found, error, stop_early: bool = True, run: bool = False):
        modules, params, buffers = self._names()
        tracer = OpTracer(self.frames, modules, params, buffers, step=self.steps)
        stop = None
        if stop_early:
            stop = _optim.register_optimizer_step_pre_hook(self._stop_if_found(tracer))
        exc: BaseException | None = None
        self._last_out = None
        try:
            with tracer:
                self._last_out = fn(*args, **kwargs)
        except StopReplay:
            pass
        except Exception as e:  # noqa: BLE001
            exc = e
        finally:
            if stop is not None:
                stop.remove()
        if exc is not None and error is None and run:
            error = exc
        report = self.report_from(tracer, self.steps, exc or error)
        if report is None and exc is not None and run:
            raise exc
        if report is None and found is not None:
            report = self._phase_only(found)
        return report

    @staticmethod
    def _stop_if_found(tracer: OpTracer):
        def hook(optimizer, args, kwargs):
            if tracer.events:
                raise StopReplay()

        return hook

    def report_from(self, tracer: OpTracer, step: int, error: BaseException | None = None) -> NonFiniteReport | None:
        """The report of a traced step: its first event, or the error it raised when that says what was wrong."""
        if tracer.events:
            ev = _pick(tracer.events)
            notes = self._notes(ev)
            return make_report(
                step,
                ev.evidence,
                ev.module,
                ev.where,
                tensor=ev.tensor,
                node=ev.node,
                exception=_one_line(error) if error is not None else None,
                notes=notes,
            )
        if error is not None:
            return self._from_exception(tracer, step, error)
        return None

    def _notes(self, ev: TraceEvent) -> list[str]:
        notes = []
        params = [p.detach() for m in self.models for p in m.parameters() if p.numel() and p.is_floating_point()]
        big = max((float(p.abs().nan_to_num(0.0, 0.0, 0.0).max()) for p in params), default=0.0)
        if big > 1e6:
            notes.append(
                f"the weights have grown large (max |w| = {big:.3g}): the run diverges; lower the learning rate"
            )
        lr0 = [g.get("lr") for opt in self.optimizers for g in opt.param_groups if g.get("lr") == 0]
        if lr0 and ev.phase in ("backward", "forward", "loss", "input batch"):
            notes.append("learning rate 0 does not protect the weights: the update adds 0 * NaN = NaN")
        if ev.phase == "input batch" and any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for model in self.models for m in model.modules()
        ):
            notes.append("in train mode this batch also makes BatchNorm's running statistics NaN (eval turns NaN)")
        return notes

    def _from_exception(self, tracer: OpTracer, step: int, error: BaseException) -> NonFiniteReport | None:
        """A torch.distributions validation error: which argument broke which constraint, and why."""
        tb = error.__traceback__
        where = self.frames.from_traceback(tb)
        value, param, dist = None, None, None
        while tb is not None:
            local = tb.tb_frame.f_locals
            if "torch/distributions" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
                if isinstance(local.get("value"), torch.Tensor):
                    value, param = local["value"], local.get("param", "value")
                if "self" in local and dist is None:
                    dist = type(local["self"]).__name__
            tb = tb.tb_next
        if value is None or not isinstance(error, ValueError):
            return None
        f = facts(value)
        if not f.finite:
            cause = "nonfinite_input"
        elif f.zeros and param in SCALE_PARAMS:
            cause = "zero_scale"
        else:
            cause = "invalid_distribution_argument"
        producer = tracer.produced.get(value)
        ev = Evidence(phase="forward", op=dist or "distribution", inputs=[f], producers=[producer], output=f)
        notes = [f"argument {param!r} of {dist}" + (f", made by {producer}" if producer else "")]
        return make_report(
            step, ev, tracer._module(), where, tensor=str(param), exception=_one_line(error), notes=notes, cause=cause
        )

    def _phase_only(self, found: Found) -> NonFiniteReport:
        f = facts(found.value) if isinstance(found.value, torch.Tensor) else None
        phase = found.phase
        ev = Evidence(phase=phase, op="backward" if phase == "loss" else phase, inputs=[f] if f else [], output=f)
        return make_report(
            self.steps,
            ev,
            "",
            found.where,
            tensor=found.tensor,
            notes=["no op-level origin found on replay (is the step deterministic?)"],
        )

    def _post_mortem(self, found: Found) -> NonFiniteReport:
        """A non-finite value made by optimizer.step(): diagnosed from gradients, state and hyperparameters."""
        opt = found.optimizer
        named = self._named_params(opt)
        group = opt.param_groups[0] if opt is not None else {}
        bad_name = found.tensor
        param = next((p for n, p in named if n == bad_name), None)
        grad = param.grad if param is not None else None
        grads = [p.grad for _, p in named if p.grad is not None]
        zero_grads = any(bool((g == 0).any()) for g in grads)
        inputs = [facts(grad)] if grad is not None else []
        ev = Evidence(
            phase=found.phase,
            op=f"{type(opt).__name__}.step" if opt is not None else "optimizer.step",
            inputs=inputs,
            output=facts(found.value) if isinstance(found.value, torch.Tensor) else None,
            extra={"eps": group.get("eps"), "lr": group.get("lr"), "zero_grads": zero_grads},
        )
        notes = [f"hyperparameters: lr={group.get('lr')}, eps={group.get('eps')}"]
        if group.get("lr") == 0:
            notes.append("learning rate 0 does not protect the weights: 0 * NaN = NaN")
        notes.append("snapshot=True (or `gradlab doctor script.py`) replays the update op by op")
        step = found.step if found.step is not None else self.steps
        return make_report(step, ev, "", found.where, tensor=bad_name, notes=notes)

    # the context manager ------------------------------------------------------------------------------------
    def __enter__(self) -> NanDoctor:
        if self.mode == "cheap":
            self._install()
        elif self.mode == "trace":
            modules, params, buffers = self._names()
            self._tracer = OpTracer(self.frames, modules, params, buffers, step=self.steps)
            self._tracer.__enter__()
            self._step_hook = _optim.register_optimizer_step_post_hook(self._count_traced)
        return self

    def _count_traced(self, optimizer, args, kwargs):
        if self._tracer is not None and self._tracer.events:
            raise StopReplay()
        self.steps += 1
        if self._tracer is not None:
            self._tracer.step = self.steps
            self._tracer.node_info.clear()

    def __exit__(self, exc_type, exc, tb) -> bool:
        report = None
        if self.mode == "cheap":
            if exc is None:
                try:
                    self.final_check()
                except Found as found:
                    exc = found
            self._uninstall()
            if isinstance(exc, Found):
                report = (
                    self._post_mortem(exc)
                    if exc.phase in ("optimizer step", "optimizer state")
                    else self._phase_only(exc)
                )
                report.notes.append("decorate the step (@doctor.step) or run `gradlab doctor script.py` for the op")
        elif self.mode == "trace" and self._tracer is not None:
            tracer, self._tracer = self._tracer, None
            tracer.__exit__(None, None, None)
            self._step_hook.remove()
            err = exc if isinstance(exc, Exception) else None
            report = self.report_from(tracer, self.steps, err)
        if report is None:
            return False
        self.report = report
        if self.on_find == "raise":
            raise NonFiniteError(report) from (exc if isinstance(exc, Exception) else None)
        return True

    # Lightning ----------------------------------------------------------------------------------------------
    def lightning_callback(self):
        """A Lightning ``Callback`` running this doctor's cheap checks and replay (needs pytorch_lightning)."""
        from gradlab.doctor.lightning import make_callback

        return make_callback(self)


def _pick(events: list[TraceEvent]) -> TraceEvent:
    """The event to report: the first one (events come in the order the computation made them)."""
    return events[0]


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def nan_doctor(
    model: torch.nn.Module | Iterable[torch.nn.Module] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    mode: str = "cheap",
    on_find: str = "raise",
    snapshot: bool = False,
) -> NanDoctor:
    """A :class:`NanDoctor` for ``model`` (and ``optimizer``): decorate a step, or use it as a context manager.

    ``@gradlab.nan_doctor(model, opt).step`` checks each step cheaply (loss, gradients, parameters, optimizer
    state, buffers) and replays a step that turned non-finite under op-level tracing; ``with
    gradlab.nan_doctor(mode="trace"):`` traces every op of a block. At the first non-finite value it raises
    :class:`gradlab.NonFiniteError` whose ``.report`` (a :class:`gradlab.NonFiniteReport`) names the step, phase,
    op, module, the user's ``file:line``, facts about the op's inputs, the cause class and its fix
    (``on_find="record"`` keeps it in ``doctor.report`` instead). ``mode="off"`` costs nothing.
    """
    return NanDoctor(model, optimizer, mode=mode, on_find=on_find, snapshot=snapshot)


def diagnose(
    fn: Callable[..., Any],
    *args: Any,
    step: int = 0,
    skip_gradlab: bool = True,
    keep_state: torch.nn.Module | Iterable[torch.nn.Module] | None = None,
    **kwargs: Any,
) -> NonFiniteReport | None:
    """Run ``fn(*args, **kwargs)`` once under op-level tracing; the report of its first non-finite value, or None.

    For a study or a test that already knows which step went wrong: replay that step (forward, backward and,
    if ``fn`` calls it, ``optimizer.step()``) inside ``fn``. An exception ``fn`` raises is diagnosed when it comes
    from a non-finite value or a torch.distributions argument check, and re-raised otherwise. ``keep_state``:
    module(s) whose buffers (BatchNorm running statistics), parameters' gradients and torch RNG state are put
    back as they were after the replay, so that diagnosing a step leaves a training run unchanged.
    ``skip_gradlab=False`` reports lines inside gradlab (for gradlab's own studies).
    """
    doctor = NanDoctor(keep_state, mode="trace", on_find="record", skip_gradlab=skip_gradlab)
    doctor.steps = step
    saved = None
    if keep_state is not None:
        saved = doctor._snapshot()
        saved["grads"] = [
            (p, None if p.grad is None else p.grad.clone()) for m in doctor.models for p in m.parameters()
        ]
    try:
        return doctor._replay(fn, args, kwargs, None, None, stop_early=False, run=True)
    finally:
        if saved is not None:
            doctor._restore(saved)
            for p, g in saved["grads"]:
                p.grad = g
