"""The update rules take the exact step they claim; the threshold finder finds 2/lambda_max."""

from __future__ import annotations

import pytest
import torch

from gradlab.studies.gd import find_lr_threshold, make_rule
from gradlab.studies.gd.problems import make_quadratic
from gradlab.studies.gd.threshold import quadratic_diverges

A = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # f(w) = 1/2 w^T A w, grad = A w


def one_step(rule: str, lr: float = 0.1, seed: int = 0) -> torch.Tensor:
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = make_rule(rule, [w], lr, seed=seed)
    (0.5 * w @ A @ w).backward()
    opt.step()
    return w.detach()


def test_gradient_step():
    assert torch.allclose(one_step("gradient"), torch.tensor([1 - 0.3, -2 + 0.2], dtype=torch.float64))


def test_scalar_step_subtracts_the_step_itself():
    assert torch.allclose(one_step("scalar"), torch.tensor([0.9, -2.1], dtype=torch.float64))


def test_sign_step():
    assert torch.allclose(one_step("sign"), torch.tensor([0.9, -1.9], dtype=torch.float64))


def test_random_step_is_a_unit_direction_and_seeded():
    moved = one_step("random", lr=0.5) - torch.tensor([1.0, -2.0], dtype=torch.float64)
    assert torch.isclose(moved.norm(), torch.tensor(0.5, dtype=torch.float64))
    assert torch.equal(one_step("random", seed=3), one_step("random", seed=3))
    assert not torch.equal(one_step("random", seed=3), one_step("random", seed=4))


def test_unknown_rule():
    with pytest.raises(ValueError, match="allowed: gradient, scalar, sign, random"):
        make_rule("adam", [torch.zeros(1, requires_grad=True)], 0.1)


def test_threshold_finder_on_a_known_step_function():
    found, probes = find_lr_threshold(lambda lr: lr > 0.3, start=1.0, rel_tol=1e-4)
    assert abs(found - 0.3) / 0.3 < 1e-4
    assert probes < 40
    found, _ = find_lr_threshold(lambda lr: lr > 7.0, start=0.01, rel_tol=1e-3)
    assert abs(found - 7.0) / 7.0 < 1e-3


def test_threshold_on_the_quadratic_is_two_over_lambda_max():
    problem = make_quadratic(50, 5, 10.0, 0.01, seed=1)
    lam_max = float(problem.eigenvalues()[-1])
    assert torch.allclose(problem.hessian(), 2 / 50 * problem.X.T @ problem.X)
    found, _ = find_lr_threshold(lambda lr: quadratic_diverges(problem, lr, 500), start=1.0, rel_tol=1e-3)
    assert abs(found - 2 / lam_max) / (2 / lam_max) < 0.01
