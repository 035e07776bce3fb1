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


def test_soft_spearman_limits_and_gradient():
    from scipy.stats import pearsonr, spearmanr

    from gradlab.studies.spearman.softrank import rank_scale, soft_spearman

    g = torch.Generator().manual_seed(5)
    a = torch.randn(30, dtype=torch.float64, generator=g)
    b = (a + 0.7 * torch.randn(30, dtype=torch.float64, generator=g)) ** 3
    # small strength: exactly scipy's spearmanr (hard ranks); large strength: the Pearson correlation
    assert soft_spearman(a, b, 1e-4).item() == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert soft_spearman(a, b, 1e7).item() == pytest.approx(pearsonr(a, b).statistic, abs=1e-5)
    x = a.clone().requires_grad_(True)
    soft_spearman(x, b, 3.0).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    # rank_scale: invariant to scale and shift, and one outlier hardly moves the middle values
    assert torch.allclose(rank_scale(a), rank_scale(5 * a + 3), atol=1e-10)
    spiked = a.clone()
    spiked[0] = 1e6
    assert torch.allclose(rank_scale(spiked)[1:], rank_scale(a)[1:], rtol=0.2, atol=2.0)
    with pytest.raises(ValueError, match="same length"):
        soft_spearman(a, b[:-1], 1.0)


def test_soft_spearman_lives_in_softrank_and_is_re_exported():
    import gradlab.studies.spearman.softrank as softrank
    from gradlab.studies.spearman import rank_scale, soft_spearman
    from gradlab.studies.spearman.module import rank_scale as rs2
    from gradlab.studies.spearman.module import soft_spearman as ss2

    assert soft_spearman is softrank.soft_spearman is ss2 and rank_scale is softrank.rank_scale is rs2
    assert soft_spearman.__module__ == "gradlab.studies.spearman.softrank"


def test_softrank_module_imports_only_torch_numpy_scipy():
    import subprocess
    import sys

    code = (
        "import sys, gradlab.studies.spearman.softrank\n"
        "bad = [m for m in ('lightning', 'pytorch_lightning', 'mlflow', 'pandas', 'gymnasium') if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
