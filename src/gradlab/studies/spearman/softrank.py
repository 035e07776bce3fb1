"""Differentiable soft ranks (Blondel, Teboul, Berthet & Djolonga 2020, "Fast Differentiable Sorting and Ranking").

The hard rank vector of ``x`` is the vertex of the permutahedron P(w), w = (n, n-1, ..., 1),
that maximises <x, r>; it is piecewise constant in ``x``, so its gradient is zero almost
everywhere. Blondel et al. regularise the linear program with a quadratic term, which turns
the rank into a Euclidean projection:

    soft_rank(x, eps) = argmin_{r in P(w)} 1/2 || r - x / eps ||^2.

Sorting theta = x / eps in decreasing order (s = theta[perm]), the projection is

    r[perm] = s - v,   v = argmin_{v_1 >= v_2 >= ... >= v_n} 1/2 || v - (s - w) ||^2,

an isotonic regression solved by pool-adjacent-violators (``scipy.optimize.isotonic_regression``)
in O(n) after the O(n log n) sort. v is constant on blocks B of consecutive sorted positions,
equal to mean_B(s) - mean_B(w), so r_i = s_i - mean_B(s) + mean_B(w) (written that way so that
singleton blocks give w_i exactly: hard ranks 1..n as eps -> 0).

Backward (analytical): the Jacobian of the projection is I - M in sorted order, where M averages
within each block (a symmetric, block-diagonal matrix), so for an upstream gradient g

    dL/dx = (1/eps) * unsort( g[perm] - blockmean(g[perm]) ).

As eps -> infinity every entry falls in one block and soft_rank(x) = (x - mean(x)) / eps + (n+1)/2:
an affine function of x, so a Pearson correlation of soft ranks tends to the Pearson correlation
of the values themselves.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import isotonic_regression

from gradlab.arguments import require_float_tensor, require_tensor


def _blocks(s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Block boundaries [0, b1, ..., n] of the decreasing isotonic regression of s - w (one row)."""
    return np.asarray(isotonic_regression(s - w, increasing=False).blocks)


class SoftRank(torch.autograd.Function):
    """Ascending soft ranks of each row of a [B, n] tensor with quadratic regularisation ``eps``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float):
        B, n = x.shape
        theta = x.detach() / eps
        perm = torch.argsort(theta, dim=1, descending=True, stable=True)
        s = torch.gather(theta, 1, perm)
        w = torch.arange(n, 0, -1, dtype=x.dtype, device=x.device)
        s64 = s.to(torch.float64).cpu().numpy()
        w64 = w.to(torch.float64).cpu().numpy()
        # block j of all rows together: its size and the mean of w over it (w is n, n-1, ..., 1, so the
        # mean over sorted positions [a, b) is n - (a + b - 1) / 2); seg[b, i]: the block of position i
        sizes, w_means, seg = [], [], np.empty((B, n), dtype=np.int64)
        offset = 0
        for b in range(B):
            bounds = _blocks(s64[b], w64)
            size = np.diff(bounds)
            seg[b] = np.repeat(np.arange(offset, offset + size.size), size)
            sizes.append(size)
            w_means.append(n - (bounds[:-1] + bounds[1:] - 1) / 2.0)
            offset += size.size
        seg_t = torch.from_numpy(seg).to(x.device).reshape(-1)
        sizes_t = torch.from_numpy(np.concatenate(sizes)).to(x.device)
        counts = sizes_t.to(x.dtype)
        mean_w = torch.from_numpy(np.concatenate(w_means)).to(device=x.device, dtype=x.dtype)
        mean_s = torch.zeros(offset, dtype=x.dtype, device=x.device).index_add_(0, seg_t, s.reshape(-1)) / counts
        # (s - mean_B(s)) + mean_B(w): a singleton block gives w exactly; blocks are contiguous
        centred = s.reshape(-1) - mean_s.repeat_interleave(sizes_t, output_size=B * n)
        r_sorted = (centred + mean_w.repeat_interleave(sizes_t, output_size=B * n)).reshape(B, n)
        out = torch.empty_like(r_sorted).scatter_(1, perm, r_sorted)
        ctx.save_for_backward(perm, seg_t, sizes_t)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad):
        perm, seg_t, sizes_t = ctx.saved_tensors
        g = torch.gather(grad, 1, perm)
        flat = g.reshape(-1)
        sums = torch.zeros(sizes_t.shape[0], dtype=grad.dtype, device=grad.device).index_add_(0, seg_t, flat)
        mean_g = (sums / sizes_t.to(grad.dtype)).repeat_interleave(sizes_t, output_size=flat.numel())
        g_sorted = (flat - mean_g).reshape(g.shape)
        dx = torch.empty_like(g_sorted).scatter_(1, perm, g_sorted) / ctx.eps
        return dx, None


def soft_rank(x: torch.Tensor, regularization_strength: float = 1.0) -> torch.Tensor:
    """Soft ranks of ``x`` ([n] or [B, n], ranks along the last dimension; 1 = smallest).

    ``regularization_strength`` (eps > 0) controls the smoothing: as eps -> 0 the result is the
    hard rank vector 1..n (exactly, once adjacent values of x / eps differ by more than 1); as
    eps grows the ranks shrink towards an affine function of x around (n+1)/2. Differentiable
    with an analytical backward (see the module docstring).
    """
    require_tensor(x, "x", "soft_rank")
    if not regularization_strength > 0:
        raise ValueError(f"regularization_strength must be > 0, got {regularization_strength}")
    if x.dim() not in (1, 2):
        raise ValueError(f"x must have shape [n] or [B, n], got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.dim() == 1:
        return SoftRank.apply(x.unsqueeze(0), float(regularization_strength)).squeeze(0)
    return SoftRank.apply(x, float(regularization_strength))


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two 1-D tensors (differentiable; 0 when either is constant)."""
    a = a - a.mean()
    b = b - b.mean()
    return (a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()).clamp_min(1e-300)


def rank_scale(x: torch.Tensor) -> torch.Tensor:
    """Map a 1-D tensor of n values to a scale on which one unit is about one rank position.

    Soft ranks compare ``x / strength`` with the integer ranks, so the strength is in the units of
    ``x``. The middle half of the values (the interquartile range) spans n / 2 rank positions, so
    ``rank_scale(x) = (n / 2) * (x - median(x)) / IQR(x)`` puts neighbouring values in the middle
    about one unit apart, whatever the scale of the data, its length n, or its tails (a few
    outliers move the standard deviation a lot, the quartiles hardly at all). When the IQR is 0
    (more than half the values tied) the standard deviation stands in for it.
    """
    require_float_tensor(x, "x", "rank_scale")
    if x.dim() != 1:
        raise ValueError(f"x must have shape [n], got {tuple(x.shape)}")
    n = x.shape[0]
    q = torch.quantile(x, torch.tensor([0.25, 0.5, 0.75], dtype=x.dtype, device=x.device))
    spread = q[2] - q[0]
    if not spread > 0:
        spread = 1.349 * x.std()  # the IQR of a normal distribution, in standard deviations
    return (n / 2) * (x - q[1]) / spread.clamp_min(1e-300)


def soft_spearman(a: torch.Tensor, b: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """A differentiable Spearman correlation: the Pearson correlation of the soft ranks of ``a`` and ``b``.

    Both 1-D tensors of the same length n are passed through :func:`rank_scale`, so ``strength`` (the
    soft-rank regularisation, > 0) is in rank positions. As strength -> 0 the value tends to
    ``scipy.stats.spearmanr(a, b)`` (exactly equal once neighbouring values are further apart than
    the strength, in rank_scale units) but its gradient vanishes; as strength grows it tends to the
    Pearson correlation of ``a`` and ``b``. Gradients flow to whichever of ``a``, ``b`` require them.
    """
    require_float_tensor(a, "a", "soft_spearman")
    require_float_tensor(b, "b", "soft_spearman")
    if not strength > 0:
        raise ValueError(f"soft_spearman: strength must be > 0 (in rank positions, e.g. 1.0), got {strength!r}")
    if a.dim() != 1 or b.dim() != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D tensors of the same length, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError("a and b need at least 2 entries")
    return pearson(soft_rank(rank_scale(a), strength), soft_rank(rank_scale(b), strength))
