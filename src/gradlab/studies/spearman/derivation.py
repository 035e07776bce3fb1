"""How the two lists come from the matrices: the question leaves it open, so every rule here is an assumption.

The question's matrices: ``v = randn(20, 1)`` (a leaf), ``sm = v @ v.T`` (20 x 20) and
``freq_m = randn(12, 20)``; "How I am creating the lists is not important". Each rule below turns
``(sm, freq_m)`` into two lists of length n = 20 (``derivation`` names in params.yaml):

* ``linear`` (ASSUMPTION, the study's former default): ``sm.sum(1)``, ``freq_m.mean(0)``. Both
  lists are linear in the entries they read (``sm.sum(1) = v_i * sum(v)``), so the Pearson
  correlation can reach 1 and then the Spearman correlation is 1 too: any surrogate works.
* ``row_max`` (ASSUMPTION, non-linear): ``sm.max(1)``, ``freq_m.max(0)``: the largest entry of
  each row / column (a gradient reaches only the arg-max entries).
* ``logsumexp`` (ASSUMPTION, non-linear): ``logsumexp(sm, 1)``, ``logsumexp(freq_m, 0)``, a
  smooth maximum.
* ``threshold_count`` (ASSUMPTION, non-linear, piecewise constant): ``sm.sum(1)`` and the number
  of positive entries in each column of ``freq_m`` (an integer 0..12, with ties, so spearmanr
  cannot always reach 1). It has no useful gradient; the gradient methods differentiate
  ``sigmoid(freq_m / 0.1).sum(0)`` instead while the referee judges the hard count.
* ``custom``: a user function ``module:function`` called as ``function(sm, freq_m) -> (list1,
  list2)`` (the question's ``f(sm, freq_m)``), given as ``spearman.matrix.custom``.

One call of :meth:`Derivation.__call__` is one *evaluation* in the study's accounting. ``sm`` is
recomputed from the leaf ``v`` at every call: that is the fix of the question's loop (see asker.py).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ROWS = 12  # freq_m has 12 rows, as in the question
COUNT_TEMPERATURE = 0.1  # the sigmoid that stands in for the threshold count in the gradient methods

Lists = tuple[torch.Tensor, torch.Tensor]


def _linear(sm: torch.Tensor, freq_m: torch.Tensor) -> Lists:
    return sm.sum(dim=1), freq_m.mean(dim=0)


def _row_max(sm: torch.Tensor, freq_m: torch.Tensor) -> Lists:
    return sm.max(dim=1).values, freq_m.max(dim=0).values


def _logsumexp(sm: torch.Tensor, freq_m: torch.Tensor) -> Lists:
    return torch.logsumexp(sm, dim=1), torch.logsumexp(freq_m, dim=0)


def _threshold_count(sm: torch.Tensor, freq_m: torch.Tensor) -> Lists:
    return sm.sum(dim=1), (freq_m > 0).sum(dim=0).to(freq_m.dtype)


def _threshold_count_smooth(sm: torch.Tensor, freq_m: torch.Tensor) -> Lists:
    return sm.sum(dim=1), torch.sigmoid(freq_m / COUNT_TEMPERATURE).sum(dim=0)


RULES: dict[str, Callable[[torch.Tensor, torch.Tensor], Lists]] = {
    "linear": _linear,
    "row_max": _row_max,
    "logsumexp": _logsumexp,
    "threshold_count": _threshold_count,
}
SMOOTH: dict[str, Callable[[torch.Tensor, torch.Tensor], Lists]] = {"threshold_count": _threshold_count_smooth}
ASSUMPTION = {
    "linear": "list1 = sm.sum(1), list2 = freq_m.mean(0) (both linear)",
    "row_max": "list1 = sm.max(1), list2 = freq_m.max(0) (non-linear)",
    "logsumexp": "list1 = logsumexp(sm, 1), list2 = logsumexp(freq_m, 0) (non-linear, smooth)",
    "threshold_count": "list1 = sm.sum(1), list2 = (freq_m > 0).sum(0) (a count: piecewise constant, ties)",
    "custom": "the user's function(sm, freq_m) -> (list1, list2)",
}


def load_user_function(spec: str) -> Callable:
    """``"package.module:function"`` -> the function (ValueError saying why when it cannot be used).

    The current working directory is put on ``sys.path`` first, so a module next to params.yaml is found.
    """
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name or not func_name.isidentifier():
        raise ValueError(f"must look like 'module:function' (got {spec!r})")
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise ValueError(f"{module_name!r} is not a module name")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while importing the user's module
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ValueError(f"{module_name!r} has no function {func_name!r}")
    return func


def check_user_function(spec: str, n: int = 20) -> None:
    """Call the user's function once on the question's shapes; ValueError unless it returns two length-n lists."""
    func = load_user_function(spec)
    v, freq_m = init_matrices(n, 0)
    try:
        out = func(v @ v.T, freq_m)
    except Exception as exc:
        raise ValueError(f"{spec} raised {type(exc).__name__}: {exc} on sm [{n}, {n}], freq_m [12, {n}]") from None
    if not (isinstance(out, tuple | list) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise ValueError(f"{spec} must return a pair of tensors (list1, list2)")
    if any(t.shape != (n,) for t in out):
        raise ValueError(f"{spec} returned shapes {[tuple(t.shape) for t in out]}; expected two lists of shape [{n}]")


@functools.cache
def _rule(name: str, smooth: bool, custom: str) -> Callable[[torch.Tensor, torch.Tensor], Lists]:
    if name == "custom":
        return load_user_function(custom)
    return (SMOOTH if smooth else {}).get(name, RULES[name])


@dataclass(frozen=True)
class Derivation:
    """``(v, freq_m) -> (list1, list2)`` by a named rule, through ``sm = v @ v.T``; differentiable (torch).

    ``smooth=True`` gives the rule the gradient methods differentiate (the same rule except for
    ``threshold_count``). ``custom`` is the user's ``module:function`` when ``name == "custom"``.
    """

    name: str = "linear"
    smooth: bool = False
    custom: str = ""

    def __post_init__(self):
        if self.name == "custom":
            if not self.custom:
                raise ValueError("derivation 'custom' needs spearman.matrix.custom = 'module:function'")
        elif self.name not in RULES:
            raise ValueError(f"unknown derivation {self.name!r}; allowed: {', '.join(RULES)}, custom")

    def rule(self) -> Callable[[torch.Tensor, torch.Tensor], Lists]:
        return _rule(self.name, self.smooth, self.custom)

    def __call__(self, v: torch.Tensor, freq_m: torch.Tensor) -> Lists:
        return self.rule()(v @ v.T, freq_m)

    def numpy(self, v: np.ndarray, freq_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same lists from numpy arrays (float64), e.g. to re-check saved matrices."""
        with torch.no_grad():
            a, b = self(torch.from_numpy(np.asarray(v, np.float64)), torch.from_numpy(np.asarray(freq_m, np.float64)))
        return a.numpy(), b.numpy()


def init_matrices(n: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``v = randn(n, 1)``, ``freq_m = randn(12, n)`` as in the question, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 1, generator=g, dtype=dtype)
    freq_m = torch.randn(ROWS, n, generator=g, dtype=dtype)
    return v, freq_m
