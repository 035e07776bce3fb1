"""soft_rank: gradcheck, hard ranks as eps -> 0, permutation equivariance, the affine limit, batching."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import rankdata

from gradlab.studies.spearman import soft_rank


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    for eps in (0.3, 1.0, 5.0):
        x = torch.randn(3, 9, generator=g, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t, e=eps: soft_rank(t, e), (x,), eps=1e-6, atol=1e-6)
    x1 = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_rank(t, 0.7), (x1,), eps=1e-6, atol=1e-6)


def test_gradient_is_not_trivially_zero_at_moderate_strength():
    x = torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (soft_rank(x, 1.0) * torch.arange(10, dtype=torch.float64)).sum().backward()
    assert x.grad.abs().max() > 0


@pytest.mark.parametrize("n", [1, 2, 7, 50, 1000])
def test_hard_ranks_as_strength_goes_to_zero(n):
    x = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    gap = torch.diff(torch.sort(x).values).min().item() if n > 1 else 1.0
    r = soft_rank(x, gap / 2)  # adjacent values of x / eps differ by more than 1
    expected = torch.from_numpy(rankdata(x.numpy())).to(torch.float64)
    assert torch.equal(r, expected)  # exactly 1..n, not approximately
    assert sorted(r.tolist()) == list(range(1, n + 1))


def test_ranks_are_ascending_and_sum_is_preserved_at_any_strength():
    x = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0], dtype=torch.float64)
    assert soft_rank(x, 1e-3).tolist() == [3.0, 1.0, 2.0, 5.0, 4.0]
    for eps in (0.1, 1.0, 10.0, 1e6):
        r = soft_rank(x, eps)
        assert torch.isclose(r.sum(), torch.tensor(15.0, dtype=torch.float64))
        assert torch.equal(torch.argsort(r), torch.argsort(x))  # order preserved (strictly or tied)


def test_large_strength_is_affine_in_x():
    x = torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    eps = 1e4
    expected = (x - x.mean()) / eps + (30 + 1) / 2
    assert torch.allclose(soft_rank(x, eps), expected, atol=1e-12)


def test_permutation_equivariance_values_and_gradients():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, dtype=torch.float64, generator=g)
    w = torch.randn(40, dtype=torch.float64, generator=g)
    perm = torch.randperm(40, generator=g)
    for eps in (0.05, 0.5, 3.0):
        a = x.clone().requires_grad_(True)
        b = x[perm].clone().requires_grad_(True)
        ra, rb = soft_rank(a, eps), soft_rank(b, eps)
        assert torch.allclose(ra[perm], rb, atol=1e-12)
        (ra * w).sum().backward()
        (rb * w[perm]).sum().backward()
        assert torch.allclose(a.grad[perm], b.grad, atol=1e-12)


def test_batch_rows_are_independent_and_dtype_kept():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 15, generator=g)
    r = soft_rank(x, 0.5)
    assert r.dtype == torch.float32 and r.shape == (4, 15)
    for i in range(4):
        assert torch.allclose(r[i], soft_rank(x[i], 0.5))


def test_bad_inputs():
    with pytest.raises(ValueError, match="regularization_strength"):
        soft_rank(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="shape"):
        soft_rank(torch.zeros(2, 2, 2), 1.0)
    with pytest.raises(TypeError):
        soft_rank(torch.arange(3), 1.0)
