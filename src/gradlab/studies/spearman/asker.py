"""The question's own code, run as written: the non-leaf trap, then the fix.

The question builds its matrices as

    sm = Var(torch.randn(20, 1), requires_grad=True)
    sm = torch.mm(sm, sm.t())                 # rebinds sm to a non-leaf 20 x 20 tensor
    freq_m = Var(torch.randn(12, 20), requires_grad=True)

and the accepted answer's update loop is

    loss = 1 - f(sm, freq_m); loss.backward()
    with torch.no_grad():
        sm -= lr * sm.grad                    # sm.grad is None: sm is not a leaf

``backward`` fills ``.grad`` only for leaf tensors, so ``sm.grad`` is ``None`` and the update raises
a TypeError. :func:`literal_loop` runs exactly that (with ``f`` the soft Spearman correlation of the
``linear`` lists, an assumption: the question does not give f) and returns the error it raised and
the warning torch printed. :func:`fixed_loop` keeps the 20 x 1 leaf ``v``, rebuilds ``sm = v @ v.T``
inside every step, and updates ``v`` and ``freq_m``.
"""

from __future__ import annotations

import warnings

import torch
from torch.autograd import Variable as Var  # the question's Var (a no-op wrapper in torch >= 0.4)

from gradlab.studies.spearman.derivation import Derivation
from gradlab.studies.spearman.methods import spearman
from gradlab.studies.spearman.softrank import soft_spearman


def _f(derivation: Derivation, strength: float):
    def f(sm: torch.Tensor, freq_m: torch.Tensor) -> torch.Tensor:
        list1, list2 = derivation.rule()(sm, freq_m)
        return soft_spearman(list1, list2, strength)

    return f


def literal_loop(seed: int, lr: float = 1e-3, steps: int = 100, strength: float = 3.0) -> dict:
    """The question's set-up and the answer's loop, verbatim; returns what it raised."""
    torch.manual_seed(seed)
    f = _f(Derivation("linear"), strength)
    sm = Var(torch.randn(20, 1, dtype=torch.float64), requires_grad=True)
    sm = torch.mm(sm, sm.t())
    freq_m = Var(torch.randn(12, 20, dtype=torch.float64), requires_grad=True)
    shapes = {"sm": list(sm.shape), "freq_m": list(freq_m.shape), "sm_is_leaf": sm.is_leaf}
    error, step = None, None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            for i in range(steps):
                step = i
                loss = 1 - f(sm, freq_m)
                loss.backward()
                with torch.no_grad():
                    sm -= lr * sm.grad
                    freq_m -= lr * freq_m.grad
                sm.grad.zero_()
                freq_m.grad.zero_()
        except Exception as exc:  # the point: record what the question's loop raises
            error = f"{type(exc).__name__}: {exc}"
    warning = next((str(w.message) for w in caught if ".grad" in str(w.message)), None)
    return {
        **shapes,
        "error": error,
        "failed_at_step": step if error else None,
        "raised": error is not None,
        "warning": warning,
    }


def fixed_loop(
    seed: int, lr: float, steps: int = 100, strength: float = 3.0, derivation: Derivation | None = None
) -> dict:
    """The fix: keep the leaf v [20, 1], rebuild sm = v @ v.T in every step; spearmanr before and after."""
    derivation = derivation or Derivation("linear")
    torch.manual_seed(seed)
    v = torch.randn(20, 1, dtype=torch.float64, requires_grad=True)  # the leaf the optimiser updates
    freq_m = torch.randn(12, 20, dtype=torch.float64, requires_grad=True)
    smooth = Derivation(derivation.name, smooth=True, custom=derivation.custom)
    f = _f(smooth, strength)
    with torch.no_grad():
        initial = spearman(*derivation(v, freq_m))
    for _ in range(steps):
        sm = v @ v.T  # rebuilt from the leaf every step: 20 x 20
        loss = 1 - f(sm, freq_m)
        loss.backward()
        with torch.no_grad():
            v -= lr * v.grad
            freq_m -= lr * freq_m.grad
        v.grad.zero_()
        freq_m.grad.zero_()
    with torch.no_grad():
        final = spearman(*derivation(v, freq_m))
    return {"lr": lr, "steps": steps, "initial_spearman": initial, "final_spearman": final}
