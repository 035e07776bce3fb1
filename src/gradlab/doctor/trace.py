"""Op-level tracing of one step: the first operation whose output turned non-finite while its inputs were finite.

A :class:`OpTracer` is a ``TorchFunctionMode``: it sees every torch function the user's code calls (``torch.log``,
``x / y``, ``F.linear``, the optimizer's in-place updates), checks each floating-point result and remembers
which op made each tensor (provenance). Forward-pass origins are found as the ops run; backward-pass origins
with hooks on the autograd graph's nodes, registered when ``backward`` / ``autograd.grad`` is called: the first
node whose incoming gradients are finite and whose outgoing ones are not. Module paths come from global forward
hooks, the user's line from the call stack (:mod:`gradlab.doctor.frames`).

Tracing checks every tensor of the step; the cheap mode (:mod:`gradlab.doctor.doctor`) runs it only to replay a
step that went wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.optim.optimizer as _optim
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakIdKeyDictionary

from gradlab.doctor.causes import DIV_OPS, SOFTMAX_OPS, Evidence
from gradlab.doctor.facts import facts, has_inf, has_nan, is_float
from gradlab.doctor.frames import FrameFilter, SourceLine

_DUNDER = {
    "truediv": "div",
    "div": "div",
    "rdiv": "div",
    "rtruediv": "div",
    "itruediv": "div_",
    "mul": "mul",
    "rmul": "mul",
    "imul": "mul_",
    "pow": "pow",
    "rpow": "pow",
    "ipow": "pow_",
    "add": "add",
    "radd": "add",
    "iadd": "add_",
    "sub": "sub",
    "rsub": "sub",
    "isub": "sub_",
    "matmul": "matmul",
    "rmatmul": "matmul",
    "getitem": "getitem",
    "neg": "neg",
    "floordiv": "floor_divide",
    "mod": "remainder",
}
# calls that make no float tensor of their own: not checked
_QUIET = {
    "dim",
    "size",
    "numel",
    "item",
    "is_complex",
    "is_floating_point",
    "__get__",
    "__set__",
    "__bool__",
    "__len__",
    "__format__",
    "__repr__",
    "tolist",
    "_set_grad_enabled",
    "isfinite",
    "isnan",
    "isinf",
    "_is_all_true",
    "requires_grad_",
    "detach_",
    "zero_",
    "fill_",
    "normal_",
    "uniform_",
    "copy_",
    "set_",
    "data_ptr",
    "stride",
    "storage_offset",
    "untyped_storage",
    "__setitem__",
    "register_hook",
    "retain_grad",
}
_BACKWARD = {"backward", "grad"}
_UNINITIALISED = {"empty", "empty_like", "empty_strided", "new_empty"}  # garbage until written: never checked
# ops that pass their input's values through (views, copies, casts): a tensor they make keeps its maker's name
_TRANSPARENT = {
    "broadcast_tensors",
    "expand",
    "expand_as",
    "view",
    "view_as",
    "reshape",
    "reshape_as",
    "unsqueeze",
    "squeeze",
    "contiguous",
    "to",
    "float",
    "double",
    "half",
    "bfloat16",
    "clone",
    "t",
    "transpose",
    "permute",
    "flatten",
    "narrow",
    "select",
    "split",
    "chunk",
    "unbind",
    "type_as",
    "detach",
    "movedim",
    "getitem",
    "stack",
    "cat",
    "concat",
    "index_select",
}
_ACCUMULATE = "torch::autograd::AccumulateGrad"


def op_name(func) -> str:
    """A short op name: ``torch.log`` / ``Tensor.log`` -> ``log``, ``Tensor.__truediv__`` -> ``div``."""
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        core = name[2:-2]
        return _DUNDER.get(core, name)
    return name


def _same_length_list(obj, like: list) -> bool:
    """A list of tensors paired index by index with ``like`` (the other lists of a ``_foreach_`` op)."""
    return isinstance(obj, list | tuple) and len(obj) == len(like) and all(isinstance(x, torch.Tensor) for x in obj)


def _tensors(obj, out: list) -> list:
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, list | tuple):
        for item in obj:
            if isinstance(item, torch.Tensor):
                out.append(item)
            elif isinstance(item, list | tuple):
                _tensors(item, out)
    return out


def _scalars(args, kwargs) -> list[float]:
    vals = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, float | int) and not isinstance(a, bool):
            vals.append(float(a))
    return vals


def _denominator(func, name: str, args, kwargs):
    """The divisor of a division op (a tensor, a number or None)."""
    raw = getattr(func, "__name__", "")
    if raw in ("__rtruediv__", "__rdiv__") or name == "reciprocal":
        return args[0] if args else None
    if name.startswith("addcdiv"):
        return args[2] if len(args) > 2 else kwargs.get("tensor2")
    if len(args) > 1:
        return args[1]
    return kwargs.get("other")


@dataclass
class OpRecord:
    """One traced op that made a tensor: enough to explain a backward-pass origin at that op later."""

    op: str
    module: str
    where: SourceLine | None
    inputs: list[torch.Tensor]
    producers: list[str | None]
    dim: int = -1


@dataclass
class TraceEvent:
    """A first non-finite value found by tracing: phase, op, module, user line, and the evidence to classify it."""

    phase: str
    op: str
    module: str
    where: SourceLine | None
    evidence: Evidence
    node: str | None = None
    tensor: str | None = None
    notes: list[str] = field(default_factory=list)


def _dim(args, kwargs) -> int:
    d = kwargs.get("dim")
    if d is None and len(args) > 1 and isinstance(args[1], int) and not isinstance(args[1], bool):
        d = args[1]
    if isinstance(d, list | tuple):
        d = d[-1] if d else -1
    return d if isinstance(d, int) else -1


class OpTracer(TorchFunctionMode):
    """Traces every torch call of a step (use as a context manager); ``events`` lists what it found, in order.

    ``names``: ``id(module) -> path`` for the module paths; ``params``/``buffers``: ``id(tensor) -> name`` so
    that a non-finite tensor from outside the step is called a weight or a buffer, not an input.
    """

    def __init__(
        self,
        frames: FrameFilter,
        names: dict[int, str] | None = None,
        params: dict[int, str] | None = None,
        buffers: dict[int, str] | None = None,
        step: int = 0,
    ):
        super().__init__()
        self.frames = frames
        self.names = dict(names or {})
        self.params = dict(params or {})
        self.buffers = dict(buffers or {})
        self.step = step
        self.events: list[TraceEvent] = []
        self.produced = WeakIdKeyDictionary()  # tensor -> op that made it
        self.tainted = WeakIdKeyDictionary()  # non-finite tensor -> index of the event it descends from
        self.checked = WeakIdKeyDictionary()  # tensors from outside the step, already checked
        self.node_info: dict = {}
        self.module_stack: list[str] = []
        self.roots: list[torch.nn.Module] = []  # the models called at the top level
        self.phase = "forward"
        self.optimizer_state: dict[int, str] = {}
        self.in_backward = False
        self._handles: list = []
        self.ops = 0

    # set-up ------------------------------------------------------------------------------------------------
    def __enter__(self):
        mm = torch.nn.modules.module
        self._handles = [
            mm.register_module_forward_pre_hook(self._module_enter),
            mm.register_module_forward_hook(self._module_exit, always_call=True),
            _optim.register_optimizer_step_pre_hook(self._optimizer_enter),
            _optim.register_optimizer_step_post_hook(self._optimizer_exit),
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return super().__exit__(*exc)

    def _module_enter(self, module, inputs):
        key = id(module)
        if not self.module_stack and not any(module is r for r in self.roots):
            self.roots.append(module)
        if key not in self.names:
            if not self.module_stack:
                for name, sub in module.named_modules():
                    self.names.setdefault(id(sub), name)
                for name, p in module.named_parameters():
                    self.params.setdefault(id(p), name)
                for name, b in module.named_buffers():
                    self.buffers.setdefault(id(b), name)
            else:
                self.names[key] = f"{self.module_stack[-1]}.{type(module).__name__}".lstrip(".")
        self.module_stack.append(self.names.get(key, ""))

    def _module_exit(self, module, inputs, output):
        if self.module_stack:
            self.module_stack.pop()

    def _optimizer_enter(self, optimizer, args, kwargs):
        self.phase = "optimizer step"
        for group_index, group in enumerate(optimizer.param_groups):
            for k, p in enumerate(group["params"]):
                pname = self.params.get(id(p), f"param_groups[{group_index}][{k}]")
                for key, value in optimizer.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor):
                        self.optimizer_state[id(value)] = f"{type(optimizer).__name__}.state[{pname}][{key!r}]"

    def _optimizer_exit(self, optimizer, args, kwargs):
        self.phase = "forward"

    # the mode ----------------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = op_name(func)
        if name in _QUIET:
            return func(*args, **kwargs)
        if name in _UNINITIALISED or getattr(func, "__module__", "") == "torch.nn.init":
            out = func(*args, **kwargs)
            for t in _tensors(out, []) + _tensors(args[:1], []):
                self.checked[t] = True
            return out
        if name in _BACKWARD and getattr(func, "__module__", "") in ("torch._tensor", "torch.autograd", "torch"):
            return self._backward(func, args, kwargs)
        self.ops += 1
        inputs = _tensors(args, [])
        if kwargs:
            _tensors(list(kwargs.values()), inputs)
        inputs = [t for t in inputs if is_float(t)]
        if name in _TRANSPARENT and self._defer(inputs):
            return func(*args, **kwargs)  # a slice/view of a non-finite batch: its first real consumer reports it
        for t in inputs:
            if t not in self.produced and t not in self.checked:
                self._check_external(t, name)
        foreach = name.startswith("_foreach_") and name.endswith("_")  # in place on every tensor of its first list
        inplace = name.endswith("_") and (foreach or not name.startswith("_"))
        if foreach:
            targets = [t for t in _tensors(args[0], []) if is_float(t)]
        else:
            targets = [inputs[0]] if inplace and inputs else []
        bad_in = [t for t in inputs if t in self.tainted]
        nan_in = any(has_nan(t) for t in bad_in)
        stats = []
        if name == "batch_norm":
            stats = [(s, t) for s, t in zip(("running_mean", "running_var"), inputs[1:3], strict=False)]
            stats = [(s, t) for s, t in stats if not (has_nan(t) or has_inf(t))]
        # an in-place op overwrites its input: was each target finite before?
        pre = {t: facts(t) if not (has_nan(t) or has_inf(t)) else None for t in targets}
        out = func(*args, **kwargs)
        outputs = [t for t in _tensors(out, []) if is_float(t)]
        if foreach:
            outputs = targets
        elif inplace and not outputs and targets:
            outputs = targets
        for i, t in enumerate(outputs):
            target = t if t in pre else None
            if foreach:  # one tensor of the list at a time, with its partners (x_i, grad_i): as the loop would be
                ins = [t] + [a[i] for a in args[1:] if _same_length_list(a, targets) and is_float(a[i])]
                bad = [u for u in ins if u in self.tainted]
                self._output(t, name, func, args, kwargs, ins, bad, any(has_nan(u) for u in bad), True, pre[t], t)
            else:
                self._output(t, name, func, args, kwargs, inputs, bad_in, nan_in, inplace, pre.get(t), target)
        for stat_name, stat in stats:
            if has_nan(stat) or has_inf(stat):
                self._buffer_event(name, stat_name, stat, inputs)
        for t in outputs:
            fn = t.grad_fn
            if fn is not None and fn not in self.node_info:
                self.node_info[fn] = OpRecord(
                    name,
                    self._module(),
                    self.frames.here(),
                    inputs,
                    [self.produced.get(i) for i in inputs],
                    _dim(args, kwargs),
                )
        return out

    def _output(self, t, name, func, args, kwargs, inputs, bad_in, nan_in, inplace, pre_facts, target) -> None:
        nan, inf = has_nan(t), has_inf(t)
        maker = name
        if name in _TRANSPARENT and inputs and inputs[0] in self.produced:
            maker = self.produced[inputs[0]]
        if not (nan or inf):
            self.produced[t] = maker
            for b in bad_in if self.phase != "optimizer step" else ():  # finite output: the op dropped (masked) it
                index = self.tainted.get(b, -1)
                if index >= 0 and self.events[index].evidence.masked_by is None:
                    self.events[index].evidence.masked_by = name
            return
        already_bad = (t is target and pre_facts is None) if inplace else (t in self.tainted)
        if already_bad:
            return
        if not inputs and not any(math.isnan(s) or math.isinf(s) for s in _scalars(args, kwargs)):
            return  # made from outside data (torch.tensor(list), from_numpy): its first consumer reports it
        self.produced[t] = maker
        if self._is_origin(name, inputs, bad_in, nan, inf, nan_in, args, kwargs):
            self.tainted[t] = self._event(name, func, args, kwargs, inputs, t, pre_facts if t is target else None)
        else:
            self.tainted[t] = self.tainted[bad_in[0]] if bad_in else -1

    def _is_origin(self, name, inputs, bad_in, nan, inf, nan_in, args, kwargs) -> bool:
        scalars = _scalars(args, kwargs)
        scalar_nan = any(math.isnan(s) for s in scalars)
        scalar_inf = any(math.isinf(s) for s in scalars)
        if name in SOFTMAX_OPS and not nan_in and inputs:
            if int(torch.isneginf(inputs[0].detach()).all(dim=_dim(args, kwargs)).sum()) if inputs[0].dim() else 0:
                return True
        if nan and not nan_in and not scalar_nan:
            return True
        if inf and not bad_in and not scalar_inf and not scalar_nan:
            return True
        return False

    def _module(self) -> str:
        return self.module_stack[-1] if self.module_stack else ""

    def _where_phase(self, target: torch.Tensor | None) -> str:
        if self.phase == "optimizer step":
            if target is not None and id(target) in self.optimizer_state:
                return "optimizer state"
            if target is not None and id(target) not in self.params and not isinstance(target, torch.nn.Parameter):
                return "optimizer state"  # state made inside this first step (Adam's exp_avg_sq)
            return "optimizer step"
        if self.in_backward:
            return "backward"
        return "forward" if self.module_stack else "loss"

    def _event(self, name, func, args, kwargs, inputs, out, inplace_facts=None) -> int:
        dim = _dim(args, kwargs)
        in_facts = [facts(t, dim) for t in inputs]
        for t, f in zip(inputs, in_facts, strict=True):
            if not f.finite and t is not out and t not in self.tainted:
                # a tensor changed outside the traced ops (x[i] = nan): report it like a tensor from outside
                if t in self.produced:
                    del self.produced[t]
                self._check_external(t, name)
                return self.tainted.get(t, -1)
        if inplace_facts is not None and in_facts:
            in_facts[0] = inplace_facts
        ev = Evidence(
            phase="",
            op=name.rstrip("_") if not name.startswith("_") else name,
            inputs=in_facts,
            producers=[self.produced.get(t) for t in inputs],
            output=facts(out, dim),
            scalars=_scalars(args, kwargs),
        )
        if name.rstrip("_") in DIV_OPS:
            den = _denominator(func, name.rstrip("_"), args, kwargs)
            if isinstance(den, torch.Tensor):
                ev.inputs = [f for f, t in zip(in_facts, inputs, strict=True) if t is not den] + [facts(den)]
                ev.producers = [self.produced.get(t) for t in inputs if t is not den] + [self.produced.get(den)]
            elif isinstance(den, int | float) and den == 0:
                ev.extra["denominator_zero"] = True
        target = inputs[0] if inputs and name.endswith("_") else None
        phase = self._where_phase(target)
        ev.phase = phase
        tensor = self.optimizer_state.get(id(target)) if target is not None else None
        if tensor is None and target is not None:
            tensor = self.params.get(id(target))
        self.events.append(TraceEvent(phase, ev.op, self._module(), self.frames.here(), ev, tensor=tensor))
        return len(self.events) - 1

    def _defer(self, inputs: list[torch.Tensor]) -> bool:
        """A transparent op (slice, view, cast) of an unchecked non-finite input batch: report at its consumer."""
        for t in inputs:
            if t in self.produced or t in self.checked or t in self.tainted:
                continue
            key = id(t)
            if key in self.params or key in self.buffers or key in self.optimizer_state:
                continue
            if has_nan(t) or has_inf(t):
                return True
        return False

    def _check_external(self, t: torch.Tensor, consumer: str) -> None:
        """A tensor the step did not make (a batch, a weight, a buffer, optimizer state): is it finite?"""
        self.checked[t] = True
        if not (has_nan(t) or has_inf(t)):
            return
        key = id(t)
        if key in self.params:
            phase, tensor = "weights", self.params[key]
        elif key in self.buffers:
            phase, tensor = "buffers", self.buffers[key]
        elif key in self.optimizer_state:
            phase, tensor = "optimizer state", self.optimizer_state[key]
        elif isinstance(t, torch.nn.Parameter):
            phase, tensor = "weights", "a parameter"
        else:
            phase, tensor = "input batch", "an input tensor"
        ev = Evidence(phase=phase, op=consumer, inputs=[facts(t)], producers=[None], output=facts(t))
        self.events.append(TraceEvent(phase, consumer, self._module(), self.frames.here(), ev, tensor=tensor))
        self.tainted[t] = len(self.events) - 1

    def _buffer_event(self, name: str, stat: str, t: torch.Tensor, inputs) -> None:
        ev = Evidence(phase="buffers", op=name, inputs=[facts(i) for i in inputs[:1]], output=facts(t))
        module = self._module()
        ev.extra["buffer"] = stat
        self.events.append(
            TraceEvent("buffers", name, module, self.frames.here(), ev, tensor=f"{module}.{stat}".lstrip("."))
        )

    # the backward pass -------------------------------------------------------------------------------------
    def _backward(self, func, args, kwargs):
        roots = _tensors(args[:1], []) or _tensors(kwargs.get("tensors", kwargs.get("outputs", [])), [])
        for r in roots:
            if is_float(r) and r not in self.produced and r not in self.checked:
                self._check_external(r, "backward")
        hooks = self._hook_graph([r.grad_fn for r in roots if r.grad_fn is not None])
        self.in_backward = True
        try:
            return func(*args, **kwargs)
        finally:
            self.in_backward = False
            for h in hooks:
                h.remove()

    def _hook_graph(self, roots) -> list:
        handles, seen = [], set()
        stack = [(n, self.node_info.get(n)) for n in roots]
        while stack:
            node, inherited = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            info = self.node_info.get(node) or inherited
            if node.name() != _ACCUMULATE:
                handles.append(node.register_hook(self._node_hook(node, info)))
            for child, _ in node.next_functions:
                if child is not None and child not in seen:
                    stack.append((child, info))
        return handles

    def _node_hook(self, node, info: OpRecord | None):
        def hook(grad_inputs, grad_outputs):
            if any(e.phase == "backward" for e in self.events):
                return
            if not all(g is None or not (has_nan(g) or has_inf(g)) for g in grad_outputs):
                return
            bad = [g for g in grad_inputs if g is not None and (has_nan(g) or has_inf(g))]
            if not bad:
                return
            op = info.op if info else node.name()
            ev = Evidence(
                phase="backward",
                op=op.rstrip("_") if not op.startswith("_") else op,
                inputs=[facts(t, info.dim) for t in info.inputs] if info else [],
                producers=list(info.producers) if info else [],
                output=facts(bad[0]),
            )
            ev.extra["node"] = node.name()
            self.events.append(
                TraceEvent(
                    "backward", ev.op, info.module if info else "", info.where if info else None, ev, node=node.name()
                )
            )

        return hook
