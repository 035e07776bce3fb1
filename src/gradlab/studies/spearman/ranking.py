"""Other differentiable ranking objectives, for comparison with soft_rank (torch only).

* :func:`neuralsort_rank`: NeuralSort (Grover, Wang, Zweig & Ermon 2019, "Stochastic Optimization of
  Sorting Networks via Continuous Relaxations"). The relaxed permutation matrix
  ``P[i, :] = softmax(((n + 1 - 2 i) s - A_s 1) / tau)`` (A_s = |s_j - s_k|) puts row i on the
  i-th largest score; ascending soft ranks are ``n + 1 - sum_i i P[i, j]``. O(n^2) memory.
  ``s`` is standardised first, so ``tau`` is in standard deviations of the scores.
* :func:`ranknet_loss`: RankNet (Burges et al. 2005), the mean logistic loss over every pair whose
  targets differ, ``softplus(-(f_i - f_j) sign(y_i - y_j))``.
"""

from __future__ import annotations

import torch


def neuralsort_rank(scores: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Ascending soft ranks (1 = smallest) of a 1-D tensor by NeuralSort's relaxed sort, temperature ``tau``."""
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if scores.dim() != 1:
        raise ValueError(f"scores must have shape [n], got {tuple(scores.shape)}")
    n = scores.shape[0]
    s = (scores - scores.mean()) / scores.std().clamp_min(1e-12)
    b = (s[:, None] - s[None, :]).abs().sum(dim=1)  # A_s 1
    scaling = n + 1 - 2 * torch.arange(1, n + 1, dtype=s.dtype, device=s.device)  # row i: n + 1 - 2 i
    p = torch.softmax((scaling[:, None] * s[None, :] - b[None, :]) / tau, dim=1)  # [position i, element j]
    positions = torch.arange(1, n + 1, dtype=s.dtype, device=s.device)  # 1 = largest
    return n + 1 - positions @ p


def ranknet_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean pairwise logistic loss over the pairs with different targets (RankNet)."""
    sign = torch.sign(target[:, None] - target[None, :])
    diff = pred[:, None] - pred[None, :]
    mask = sign != 0
    return torch.nn.functional.softplus(-(diff * sign)[mask]).mean()
