"""The two problems: a least-squares quadratic with known Hessian, and a small ReLU network."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class QuadraticProblem:
    """L(w) = (1/n)||Xw - y||^2, Hessian H = (2/n) X^T X (float64)."""

    X: torch.Tensor
    y: torch.Tensor
    w0: torch.Tensor

    @property
    def n(self) -> int:
        return self.X.shape[0]

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        r = self.X @ w - self.y
        return (r @ r) / self.n

    def hessian(self) -> torch.Tensor:
        return (2.0 / self.n) * self.X.T @ self.X

    def eigenvalues(self) -> torch.Tensor:
        return torch.linalg.eigvalsh(self.hessian())


def make_quadratic(n: int, d: int, condition_number: float, noise: float, seed: int) -> QuadraticProblem:
    """Gaussian features whose column scales spread over sqrt(condition_number).

    The Hessian's condition number is then about ``condition_number`` (exactly
    only in the limit n -> infinity); the study reports the exact value.
    """
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -0.5 * math.log10(condition_number), d, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * scales
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    y = X @ w_true + noise * torch.randn(n, generator=g, dtype=torch.float64)
    w0 = torch.randn(d, generator=g, dtype=torch.float64)
    return QuadraticProblem(X, y, w0)


def target(x: torch.Tensor) -> torch.Tensor:
    """The smooth 2-D target sin(pi x1) cos(pi x2)."""
    return torch.sin(math.pi * x[:, 0]) * torch.cos(math.pi * x[:, 1])


def make_mlp_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    return x, target(x).unsqueeze(1)


def make_mlp(hidden: int, seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
