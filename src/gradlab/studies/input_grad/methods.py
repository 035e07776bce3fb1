"""Per-sample gradients of a network's output with respect to its inputs.

**What is computed.** A model maps a batch ``X`` of shape ``[N, *]`` (vectors ``[N, d]``, images
``[N, C, H, W]``, ...) to one scalar per sample, ``out = model(X)`` of shape ``[N]`` or ``[N, 1]``.
:func:`per_sample_input_grad` returns ``G`` with the shape of ``X`` and

    ``G[i] = d out[i] / d X[i]``   (every other row ``X[j]``, ``j != i``, held at its value),

exactly what one backward pass per sample returns: ``torch.autograd.grad(out[i], X)[0][i]``. These
are the diagonal blocks of the batch Jacobian ``J[i, j] = d out[i] / d X[j]``. When the samples do
not interact (``out[i]`` depends on ``X[i]`` only) ``J`` is block diagonal and ``G[i]`` is the gradient
of the per-sample function at ``x_i``. When they do -- BatchNorm in training mode normalises every
sample with the batch's mean and variance -- ``G[i]`` also carries the effect of ``X[i]`` on those
statistics, still for output ``i`` only.

**Methods.**

``auto``          (default) ``sum`` when :func:`couples_samples` is False, else ``vmap``: exact either way.
``sum``           ``autograd.grad(out.sum(), X)``: one backward for the whole batch. It returns the column
                  sums ``sum_j d out[j] / d X[i]``, equal to ``G`` only when the samples do not interact,
                  so it is refused on a model that couples them (``allow_coupling=True`` to get it anyway).
``grad_outputs``  ``autograd.grad(out, X, grad_outputs=ones)``: the same vector-Jacobian product as ``sum``.
``vmap``          ``torch.func.vmap(torch.func.grad(...))``: the per-sample function, vectorised. With
                  coupling it differentiates ``out[i]`` with respect to row ``i`` of the whole batch
                  (exact, O(N^2) work; ``chunk_size`` bounds the memory).
``jacrev``        the full batch Jacobian ``[N, N, *]`` by ``torch.func.jacrev``, then its diagonal blocks.
                  Exact whatever the model; O(N^2) memory.
``loop``          one forward, then one backward per sample. Exact whatever the model; O(N) backward passes.

BatchNorm is recognised as coupling by its type (see :mod:`.batchnorm`). A model that mixes samples in its own
code (``x - x.mean(0)``, attention across the batch) is found at run time: before ``auto``, ``sum``,
``grad_outputs`` and ``vmap`` run, a probe perturbs one sample of (a few rows of) the batch and checks whether
the other samples' outputs move (two small forwards, same random masks, running statistics untouched). Then
``auto`` uses ``loop`` (exact whatever the model), ``sum``/``grad_outputs``/``vmap`` are refused
(``allow_coupling=True`` runs ``sum``/``grad_outputs`` anyway); ``detect_coupling=False`` skips the probe.

``create_graph=True`` keeps the graph, so a loss on ``G`` back-propagates to the parameters (Sobolev
training, gradient penalties). :func:`per_sample_input_grad_and_outputs` also returns ``out`` from the same
computation, attached to the parameters like a plain forward: it replaces the training loop's ``pred = model(X)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypedDict, Unpack

import torch
from torch.func import functional_call, grad, jacrev, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from gradlab.studies.input_grad.batchnorm import (
    couples_samples,
    coupling_layers,
    no_running_stat_updates,
    random_layers,
)

METHODS = ("sum", "grad_outputs", "vmap", "jacrev", "loop")
AUTO = "auto"
RANDOMNESS = ("error", "different", "same")
# ``auto`` on a coupling model: vmap vectorises N batch forwards; chunks keep chunk * N * (elements of one
# sample) below this many elements (64 MiB of float32 inputs), so a large N does not exhaust the memory.
AUTO_CHUNK_ELEMENTS = 2**24


@dataclass(frozen=True)
class _Options:
    create_graph: bool
    chunk_size: int | None
    keep: bool  # return the outputs, attached to the graph of the parameters
    randomness: str


class InputGradOptions(TypedDict, total=False):
    """The keyword options of :func:`per_sample_input_grad` and :func:`per_sample_input_grad_and_outputs`.

    Their defaults: ``create_graph=False``, ``chunk_size=None``, ``randomness="error"``,
    ``allow_coupling=False``, ``update_running_stats=None``, ``detect_coupling=True``.
    """

    create_graph: bool
    chunk_size: int | None
    randomness: str
    allow_coupling: bool
    update_running_stats: bool | None
    detect_coupling: bool


def per_sample_input_grad_and_outputs(
    model: torch.nn.Module, X: torch.Tensor, method: str = AUTO, **options: Unpack[InputGradOptions]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, out)``: :func:`per_sample_input_grad` and ``out = model(X)`` from the same computation.

    ``out`` is attached to the parameters like a plain forward's, shaped as the model returns it: the call
    replaces a training loop's ``pred = model(X)`` (``G, pred = per_sample_input_grad_and_outputs(model, X)``).
    BatchNorm running statistics are updated once, as that forward would (``update_running_stats=False``
    to keep them). Arguments, options and errors: :func:`per_sample_input_grad`.
    """
    return _input_grad(model, X, method, True, **_known(options, outputs=True))


def per_sample_input_grad(
    model: torch.nn.Module, X: torch.Tensor, method: str = AUTO, **options: Unpack[InputGradOptions]
) -> torch.Tensor:
    """Gradient of each sample's output with respect to that sample's input, for a whole batch.

    Args:
        model: a ``torch.nn.Module`` mapping ``X`` to one scalar per sample, shape ``[N]`` or ``[N, 1]``.
        X: the batch, shape ``[N, *]`` with ``N >= 1``, floating point. It need not require grad.
        method: ``"auto"`` (default: exact and as cheap as the model allows), ``"sum"``, ``"grad_outputs"``,
            ``"vmap"``, ``"jacrev"`` or ``"loop"`` (see the module docstring).
        create_graph: keep the graph of ``G``, so that a loss on it can be back-propagated.
        chunk_size: ``vmap``/``jacrev`` only: how many samples (Jacobian rows) to vectorise at once.
        randomness: passed to ``torch.func.vmap`` (``"error"``, ``"different"``, ``"same"``): how Dropout
            draws its masks when ``vmap`` runs. ``"different"`` draws one mask per sample, as a batch
            forward does; with a coupling model ``"same"`` gives every ``out[i]`` the same batch mask.
        allow_coupling: let ``"sum"``/``"grad_outputs"`` run on a model that couples samples; the
            result is then the Jacobian's column sums, not ``G``.
        update_running_stats: update BatchNorm running statistics once, as a training forward would.
            Default: only in :func:`per_sample_input_grad_and_outputs` (the call replaces the forward).
        detect_coupling: probe at run time whether the model's own code mixes samples (see the module
            docstring); ``auto`` then uses ``loop``, and ``sum``/``grad_outputs``/``vmap`` are refused.

    Returns:
        ``G`` with the shape of ``X``: ``G[i] = d out[i] / d X[i]`` = ``autograd.grad(out[i], X)[0][i]``.
        ``G`` requires grad only with ``create_graph=True``. For ``model(X)`` too, from the same
        computation: :func:`per_sample_input_grad_and_outputs`.

    Raises:
        TypeError: ``model`` is not a module, ``X`` is not a tensor, an unknown option.
        ValueError: ``X`` is not a floating-point batch ``[N, *]``; ``model(X)`` is not one scalar per
            sample; an unknown ``method`` or ``randomness``; ``"sum"``/``"grad_outputs"`` on a model
            that couples samples (naming the layer); ``"vmap"`` on a model with active Dropout and
            ``randomness="error"``, or ``"jacrev"`` with active Dropout (naming the layer); random numbers
            drawn in the model's own code under ``vmap`` without a ``randomness``.
    """
    G, _ = _input_grad(model, X, method, False, **_known(options, outputs=False))
    return G


OUTPUTS_FUNCTION = "per_sample_input_grad_and_outputs"


def _known(options: InputGradOptions, outputs: bool) -> InputGradOptions:
    """``options`` when every key is one of :class:`InputGradOptions`; else a TypeError naming the allowed ones."""
    unknown = sorted(set(options) - set(InputGradOptions.__annotations__))
    if unknown:
        where = OUTPUTS_FUNCTION if outputs else "per_sample_input_grad"
        hint = ""
        if "return_outputs" in unknown:
            hint = ": it always returns (G, out)" if outputs else ": for model(X) too, call " + OUTPUTS_FUNCTION
        allowed = ", ".join(InputGradOptions.__annotations__)
        raise TypeError(f"{where}: unknown option {', '.join(unknown)}; allowed: {allowed}{hint}")
    return options


def _input_grad(
    model: torch.nn.Module,
    X: torch.Tensor,
    method: str,
    keep: bool,
    *,
    create_graph: bool = False,
    chunk_size: int | None = None,
    randomness: str = "error",
    allow_coupling: bool = False,
    update_running_stats: bool | None = None,
    detect_coupling: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(G, out)``; ``keep``: ``out`` attached to the graph of the parameters (the call replaces the forward)."""
    resolved = _check_arguments(model, X, method, chunk_size, randomness, allow_coupling)
    if detect_coupling and resolved in ("sum", "grad_outputs", "vmap") and not couples_samples(model):
        resolved = _check_run_time_coupling(model, X, method, resolved, allow_coupling)
    if method == AUTO and resolved == "vmap" and chunk_size is None:
        per_vector = X.shape[0] * X[0].numel()
        if X.shape[0] * per_vector > AUTO_CHUNK_ELEMENTS:
            chunk_size = max(1, AUTO_CHUNK_ELEMENTS // per_vector)
    options = _Options(bool(create_graph), chunk_size, keep, randomness)
    update = keep if update_running_stats is None else bool(update_running_stats)
    implementation = _IMPLEMENTATIONS[resolved]
    with torch.enable_grad():  # also inside an evaluation loop's torch.no_grad()
        if update and resolved in ("sum", "grad_outputs", "loop"):  # their one forward updates the statistics
            G, out = implementation(model, X, options)
        else:
            with no_running_stat_updates(model):
                G, out = implementation(model, X, options)
            if update and _tracks_running_stats(model):
                with torch.no_grad():
                    model(X)  # the running-average update of one training forward on this batch
    if not create_graph:
        G = G.detach()
    return G, out


def auto_method(model: torch.nn.Module) -> str:
    """The method ``"auto"`` picks: ``"sum"`` when the samples do not interact, else ``"vmap"``."""
    return "vmap" if couples_samples(model) else "sum"


def _check_arguments(model, X, method: str, chunk_size, randomness: str, allow_coupling: bool) -> str:
    """Validate the arguments (errors name the argument, what it got and what it needs); the method to run."""
    where = "per_sample_input_grad"
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{where}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"{where}: X must be a torch.Tensor of shape [N, *], got {type(X).__name__}")
    if X.dim() == 0 or X.shape[0] == 0:
        raise ValueError(f"{where}: X must be a batch of shape [N, *] with N >= 1, got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise ValueError(
            f"{where}: X must be a floating-point tensor [N, *], got dtype {X.dtype} with shape {tuple(X.shape)}"
        )
    if method != AUTO and method not in METHODS:
        raise ValueError(f"{where}: unknown method {method!r}; allowed: {', '.join((AUTO, *METHODS))}")
    if randomness not in RANDOMNESS:
        raise ValueError(f"{where}: unknown randomness {randomness!r}; allowed: {', '.join(RANDOMNESS)}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"{where}: chunk_size must be None or an integer >= 1, got {chunk_size!r}")
    resolved = auto_method(model) if method == AUTO else method
    if resolved in ("sum", "grad_outputs") and not allow_coupling and couples_samples(model):
        layers = ", ".join(coupling_layers(model))
        raise ValueError(
            f"{where}: method={resolved!r} is wrong for this model: layer {layers} normalises with the "
            "statistics of the batch (training mode), so output i depends on every input and "
            "grad(model(X).sum(), X) returns the Jacobian's column sums, not d out[i]/d X[i]. "
            "Use method='auto' (exact), model.eval() (running statistics), or allow_coupling=True "
            "if the column sums are what you want"
        )
    random = random_layers(model)
    if random and resolved == "vmap" and randomness == "error":
        raise ValueError(
            f"{where}: method='vmap' meets random layer {', '.join(random)} in training mode; pass "
            "randomness='different' (one mask per sample, like a batch forward) or 'same' (one mask for "
            "all), use model.eval(), or a method without vmap ('sum' or 'loop')"
        )
    if random and resolved == "jacrev":
        raise ValueError(
            f"{where}: method='jacrev' cannot draw the masks of random layer {', '.join(random)} "
            "(torch.func.jacrev has no randomness option); use method='vmap' with randomness=..., "
            "'loop', or model.eval()"
        )
    return resolved


def mixes_samples(model: torch.nn.Module, X: torch.Tensor, rows: int = 4) -> bool:
    """Does ``model``'s output for one sample change when another sample of the batch changes?

    Two forwards without gradients on the first ``rows`` rows of ``X`` (the whole batch if the model refuses
    a smaller one), the second with row 0 perturbed, the same random masks and no running-statistics update;
    True when another row's output moved. Catches coupling in the model's own code (``x - x.mean(0)``,
    attention across the batch), not only BatchNorm.
    """
    if X.shape[0] < 2:
        return False
    for sub in (X[: min(rows, X.shape[0])], X):
        try:
            return _moved(model, sub)
        except Exception:  # noqa: BLE001 -- a model that needs the full batch: probe on it instead
            if sub.shape[0] == X.shape[0]:
                raise
    return False


def _moved(model: torch.nn.Module, X: torch.Tensor) -> bool:
    g = torch.Generator(device=X.device).manual_seed(0)
    bump = torch.randn(X[0].shape, generator=g, dtype=X.dtype, device=X.device)
    X2 = X.detach().clone()
    X2[0] += bump * (X.detach().abs().mean() + 1.0)
    outs = []
    if X.device.type == "cpu":
        # both forwards draw the same random masks from the caller's CPU generator state, which is put back
        # afterwards (the probe consumes none of the caller's randomness). torch.manual_seed is avoided: it also
        # seeds every other device lazily, recording a stack trace each call (~1 ms, more than the two forwards;
        # the Sobolev trials call this once per training step)
        state = torch.get_rng_state()
        try:
            with torch.no_grad(), no_running_stat_updates(model):
                for batch in (X.detach(), X2):
                    torch.set_rng_state(state)
                    outs.append(model(batch).reshape(X.shape[0], -1)[1:])
        finally:
            torch.set_rng_state(state)
        scale = float(outs[0].abs().max()) + 1.0
        return bool(((outs[1] - outs[0]).abs() > 1e-5 * scale).any())
    seed = int(torch.randint(0, 2**31 - 1, (1,)))
    with torch.no_grad(), no_running_stat_updates(model):
        for batch in (X.detach(), X2):
            with torch.random.fork_rng(devices=[X.device.index or 0] if X.is_cuda else []):
                torch.manual_seed(seed)
                outs.append(model(batch).reshape(X.shape[0], -1)[1:])
    scale = float(outs[0].abs().max()) + 1.0
    return bool(((outs[1] - outs[0]).abs() > 1e-5 * scale).any())


def _check_run_time_coupling(model, X, method: str, resolved: str, allow_coupling: bool) -> str:
    if not mixes_samples(model, X):
        return resolved
    if method == AUTO:
        return "loop"  # exact whatever the model; vmap's per-sample branch would be wrong here
    if resolved in ("sum", "grad_outputs") and allow_coupling:
        return resolved
    raise ValueError(
        f"per_sample_input_grad: method={resolved!r} is wrong for this model: changing one sample changes the "
        "other samples' outputs (the model's own code mixes the batch, e.g. x - x.mean(0)), so it would not return "
        "d out[i]/d X[i]. Use method='auto' (falls back to 'loop'), 'loop' or 'jacrev'"
        + (", or allow_coupling=True for the Jacobian's column sums" if resolved != "vmap" else "")
    )


def _tracks_running_stats(model: torch.nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) and m.training and m.track_running_stats for m in model.modules())


def _per_sample(out: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``out`` [N] or [N, 1] (any [N, 1, ..., 1]) as [N]; ValueError naming both shapes otherwise."""
    n = X.shape[0]
    if out.dim() == 0 or out.shape[0] != n or out.numel() != n:
        raise ValueError(
            f"per_sample_input_grad: model(X) must return one scalar per sample, shape [N] or [N, 1] with "
            f"N = {n}; got shape {tuple(out.shape)} for X of shape {tuple(X.shape)}. For several outputs, "
            "wrap the model to select one (or use torch.func.jacrev for the full Jacobian)"
        )
    return out.reshape(n)


def _input(X: torch.Tensor) -> torch.Tensor:
    """X itself when it already takes part in a graph, else a leaf copy that requires grad."""
    return X if X.requires_grad else X.detach().requires_grad_(True)


def _sum(model, X, o: _Options):
    Xg = _input(X)
    out = model(Xg)
    (g,) = torch.autograd.grad(_per_sample(out, X).sum(), Xg, create_graph=o.create_graph, retain_graph=o.keep or None)
    return g, out


def _grad_outputs(model, X, o: _Options):
    Xg = _input(X)
    out = model(Xg)
    _per_sample(out, X)
    (g,) = torch.autograd.grad(
        out, Xg, grad_outputs=torch.ones_like(out), create_graph=o.create_graph, retain_graph=o.keep or None
    )
    return g, out


def _loop(model, X, o: _Options):
    Xg = _input(X)
    n = X.shape[0]
    out = model(Xg)
    pred = _per_sample(out, X)
    if o.create_graph:  # rows keep their graph; clone() so no row keeps its pass's whole gradient alive
        rows = []
        for i in range(n):
            (g,) = torch.autograd.grad(pred[i], Xg, retain_graph=True, create_graph=True)
            rows.append(g[i].clone())
        return torch.stack(rows), out
    G = torch.empty_like(X)  # written in place: N tiny row tensors fragment the heap (RSS grew ~0.2 MB/row)
    for i in range(n):
        (g,) = torch.autograd.grad(pred[i], Xg, retain_graph=True)
        G[i] = g[i]
    return G, out


def _state(model: torch.nn.Module, attached: bool) -> dict[str, torch.Tensor]:
    """Parameters and buffers for ``functional_call``; detached unless a graph is wanted."""
    state = dict(model.named_parameters())
    if not attached:
        state = {k: v.detach() for k, v in state.items()}
    state.update(dict(model.named_buffers()))
    return state


@contextmanager
def _randomness_explained(randomness: str) -> Iterator[None]:
    """torch's vmap randomness error (random ops in the model's own code, not a Dropout layer) as a ValueError."""
    try:
        yield
    except RuntimeError as err:
        if randomness == "error" and "randomness" in str(err):
            raise ValueError(
                "per_sample_input_grad: the model draws random numbers inside torch.func.vmap (e.g. F.dropout in "
                "its forward); pass randomness='different' (one draw per sample, like a batch forward) or 'same', "
                "or use method='sum'/'loop'"
            ) from err
        raise


def _vmap(model, X, o: _Options):
    n = X.shape[0]
    attached = o.create_graph or o.keep
    state = _state(model, attached)
    X = X if attached else X.detach()
    if not couples_samples(model):

        def h(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # one sample [*] -> scalar, its output
            out = functional_call(model, state, (x.unsqueeze(0),))
            if out.numel() != 1:
                _per_sample(out, x.unsqueeze(0))
            return out.reshape(()), out

        with _randomness_explained(o.randomness):
            G, out = vmap(grad(h, has_aux=True), chunk_size=o.chunk_size, randomness=o.randomness)(X)
        return G, out.reshape(n, *out.shape[2:])

    # The samples interact: out[i] is a function of the whole batch. Differentiate it with respect to
    # row i, every other row held at its value: X_i(x) = X + e_i (x - X[i]) equals X at x = X[i].
    shapes: list[tuple[int, ...]] = []
    broadcast = (n,) + (1,) * (X.dim() - 1)

    def h_i(x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Xi = X + e.reshape(broadcast) * (x.unsqueeze(0) - X)
        out = functional_call(model, state, (Xi,))
        shapes.append(tuple(out.shape))
        value = _per_sample(out, X) @ e
        return value, value

    eye = torch.eye(n, dtype=X.dtype, device=X.device)
    with _randomness_explained(o.randomness):
        G, values = vmap(grad(h_i, has_aux=True), chunk_size=o.chunk_size, randomness=o.randomness)(X, eye)
    return G, values.reshape(shapes[0])


def _jacrev(model, X, o: _Options):
    n = X.shape[0]
    attached = o.create_graph or o.keep
    state = _state(model, attached)
    X = X if attached else X.detach()

    def f(Xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(model, state, (Xb,))
        return _per_sample(out, X), out

    J, out = jacrev(f, has_aux=True, chunk_size=o.chunk_size)(X)  # J[i, j] = d out[i] / d X[j]: [N, N, *]
    idx = torch.arange(n, device=X.device)
    return J[idx, idx], out


_IMPLEMENTATIONS: dict[str, Callable] = {
    "sum": _sum,
    "grad_outputs": _grad_outputs,
    "vmap": _vmap,
    "jacrev": _jacrev,
    "loop": _loop,
}


def batch_jacobian(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The full batch Jacobian ``J[i, j] = d out[i] / d X[j]`` (shape ``[N, N, *]``), no side effects."""
    _check_arguments(model, X, "jacrev", None, "error", True)
    with no_running_stat_updates(model), torch.enable_grad():
        state = _state(model, False)
        return jacrev(lambda Xb: _per_sample(functional_call(model, state, (Xb,)), X))(X.detach())


def central_differences(model: torch.nn.Module, X: torch.Tensor, eps: float) -> torch.Tensor:
    """Shape of ``X``: ``(out(X + eps e_k) - out(X - eps e_k)) / (2 eps)`` per input element ``k``.

    Every sample of the batch moves at once, which is only valid without cross-sample coupling;
    this is meant for such models (checked).
    """
    if couples_samples(model):
        raise ValueError(
            f"central_differences: model must not couple samples; layer {', '.join(coupling_layers(model))} "
            "uses batch statistics (call model.eval())"
        )
    n = X.shape[0]
    out = torch.empty_like(X)
    flat = out.view(n, -1)
    with torch.no_grad():
        for k in range(flat.shape[1]):
            step = torch.zeros_like(X)
            step.view(n, -1)[:, k] = eps
            flat[:, k] = (_per_sample(model(X + step), X) - _per_sample(model(X - step), X)) / (2 * eps)
    return out
