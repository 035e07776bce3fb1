"""Facts about a tensor that explain a non-finite value: finite? exact zeros? negatives? how large? which dtype?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TensorFacts:
    """What one tensor looked like: shape, dtype, counts of NaN/inf/zero/negative entries, the largest finite |x|.

    ``rows_all_neginf`` counts the rows (along the last dimension, or the op's ``dim``) whose entries are all
    ``-inf`` (a fully masked softmax row); ``rows_nonfinite`` lists the first few rows holding a NaN or inf.
    """

    shape: tuple[int, ...]
    dtype: str
    numel: int
    nan: int
    posinf: int
    neginf: int
    zeros: int
    negatives: int
    max_abs: float
    rows_all_neginf: int = 0
    rows_nonfinite: tuple[int, ...] = ()

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.posinf == 0 and self.neginf == 0

    def describe(self) -> str:
        """One short phrase, e.g. ``float32 [64, 3]: finite, 5 exactly 0, max |x| 3.2``."""
        dims = ", ".join(map(str, self.shape))
        parts = []
        if self.finite:
            parts.append("finite")
        else:
            bad = [f"{n} {what}" for n, what in ((self.nan, "NaN"), (self.posinf, "+inf"), (self.neginf, "-inf")) if n]
            parts.append(", ".join(bad))
            if self.rows_nonfinite:
                parts.append(f"row{'s' if len(self.rows_nonfinite) > 1 else ''} {list(self.rows_nonfinite)}")
        if self.zeros:
            parts.append("all exactly 0" if self.zeros == self.numel else f"{self.zeros} exactly 0")
        if self.negatives:
            parts.append(f"{self.negatives} negative")
        if self.rows_all_neginf:
            parts.append(f"{self.rows_all_neginf} row(s) entirely -inf")
        if math.isfinite(self.max_abs):
            parts.append(f"max |x| {self.max_abs:.3g}")
        return f"{self.dtype} [{dims}]: " + ", ".join(parts)


def is_float(t: object) -> bool:
    """A floating-point (or complex) tensor: the only kind that can hold NaN or inf."""
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def all_finite(t: torch.Tensor) -> bool:
    """True when every entry is finite (integers always are)."""
    if not is_float(t) or t.numel() == 0:
        return True
    return bool(torch.isfinite(t.detach()).all())


def has_nan(t: torch.Tensor) -> bool:
    return is_float(t) and t.numel() > 0 and bool(torch.isnan(t.detach()).any())


def has_inf(t: torch.Tensor) -> bool:
    return is_float(t) and t.numel() > 0 and bool(torch.isinf(t.detach()).any())


def facts(t: torch.Tensor, dim: int = -1) -> TensorFacts:
    """The :class:`TensorFacts` of ``t`` (rows taken along ``dim`` for the all ``-inf`` count)."""
    x = t.detach()
    if x.is_complex():
        x = x.abs()
    shape = tuple(x.shape)
    if not x.is_floating_point():
        x = x.double()
    n = x.numel()
    if n == 0:
        return TensorFacts(shape, str(t.dtype).replace("torch.", ""), 0, 0, 0, 0, 0, 0, math.nan)
    nan = int(torch.isnan(x).sum())
    posinf = int(torch.isposinf(x).sum())
    neginf = int(torch.isneginf(x).sum())
    zeros = int((x == 0).sum())
    negatives = int((x < 0).sum())
    fin = x[torch.isfinite(x)]
    max_abs = float(fin.abs().max()) if fin.numel() else math.nan
    rows_all_neginf = 0
    rows_nonfinite: tuple[int, ...] = ()
    if x.dim() >= 1:
        d = dim if -x.dim() <= dim < x.dim() else -1
        rows_all_neginf = int(torch.isneginf(x).all(dim=d).sum()) if x.shape[d] else 0
    if x.dim() >= 2 and (nan or posinf or neginf):
        bad = ~torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)
        rows_nonfinite = tuple(int(i) for i in torch.nonzero(bad).flatten()[:5])
    return TensorFacts(
        shape,
        str(t.dtype).replace("torch.", ""),
        n,
        nan,
        posinf,
        neginf,
        zeros,
        negatives,
        max_abs,
        rows_all_neginf,
        rows_nonfinite,
    )
