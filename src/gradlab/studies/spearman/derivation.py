"""The list derivation of the question: two lists of length n from the matrices ``v`` and ``freq_m``.

The question's code is

    sm = v @ v.T                 # v: [n, 1]  ->  sm: [n, n]
    list1 = sm.sum(dim=1)        # row sums of v v^T
    list2 = freq_m.mean(dim=0)   # freq_m: [12, n]  ->  column means

Each list is chosen by name (``derivation.list1`` / ``derivation.list2`` in params.yaml):

* list1 ``outer_row_sum``:  (v v^T).sum(1) = v_i * sum_j v_j, computed without forming the
  n x n matrix (at n = 20000 it would take 3.2 GB in float64); ``outer_row_sum_dense`` forms it,
  as the question does (the tests check that the two agree).
* list1 ``outer_row_norm``: the Euclidean norm of each row of v v^T, |v_i| * ||v||.
* list2 ``col_mean``: freq_m.mean(0) (the question);  ``col_logsumexp``: logsumexp over the
  12 rows of each column (a smooth maximum).

One call of :meth:`Derivation.__call__` is one *evaluation* in the study's accounting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

ROWS = 12  # freq_m has 12 rows, as in the question


def _outer_row_sum(v: torch.Tensor) -> torch.Tensor:
    return v[:, 0] * v[:, 0].sum()


def _outer_row_sum_dense(v: torch.Tensor) -> torch.Tensor:
    return (v @ v.T).sum(dim=1)


def _outer_row_norm(v: torch.Tensor) -> torch.Tensor:
    return v[:, 0].abs() * torch.linalg.vector_norm(v[:, 0])


def _col_mean(freq_m: torch.Tensor) -> torch.Tensor:
    return freq_m.mean(dim=0)


def _col_logsumexp(freq_m: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(freq_m, dim=0)


LIST1: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "outer_row_sum": _outer_row_sum,
    "outer_row_sum_dense": _outer_row_sum_dense,
    "outer_row_norm": _outer_row_norm,
}
LIST2: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "col_mean": _col_mean,
    "col_logsumexp": _col_logsumexp,
}


@dataclass(frozen=True)
class Derivation:
    """``(v, freq_m) -> (list1, list2)`` by the named rules; differentiable (torch)."""

    list1: str = "outer_row_sum"
    list2: str = "col_mean"

    def __post_init__(self):
        if self.list1 not in LIST1:
            raise ValueError(f"unknown list1 {self.list1!r}; allowed: {', '.join(LIST1)}")
        if self.list2 not in LIST2:
            raise ValueError(f"unknown list2 {self.list2!r}; allowed: {', '.join(LIST2)}")

    def __call__(self, v: torch.Tensor, freq_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return LIST1[self.list1](v), LIST2[self.list2](freq_m)

    def numpy(self, v: np.ndarray, freq_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same lists from numpy arrays (float64), e.g. to re-check a saved ``final/*.npz``."""
        with torch.no_grad():
            a, b = self(torch.from_numpy(np.asarray(v, np.float64)), torch.from_numpy(np.asarray(freq_m, np.float64)))
        return a.numpy(), b.numpy()


def init_matrices(n: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``v = randn(n, 1)``, ``freq_m = randn(12, n)`` as in the question, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 1, generator=g, dtype=dtype)
    freq_m = torch.randn(ROWS, n, generator=g, dtype=dtype)
    return v, freq_m
