"""The networks and the target function of the study."""

from __future__ import annotations

import math

import torch


def make_network(hidden: int, activation: str = "relu", batchnorm: bool = False, seed: int = 0) -> torch.nn.Sequential:
    """The question's network Linear(2,H) -> act -> Linear(H,1), float64; BatchNorm1d(H) after the first layer if asked.

    The BatchNorm affine parameters are drawn from U(0.5, 1.5) and U(-0.5, 0.5)
    (seeded), as after some training, instead of the special values 1 and 0.
    """
    torch.manual_seed(seed)
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[activation]
    layers: list[torch.nn.Module] = [torch.nn.Linear(2, hidden)]
    if batchnorm:
        bn = torch.nn.BatchNorm1d(hidden)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        layers.append(bn)
    layers += [act(), torch.nn.Linear(hidden, 1)]
    return torch.nn.Sequential(*layers).double()


IMAGE_SHAPE = (1, 8, 8)  # one sample of the image check: a batch is [N, 1, 8, 8]


def make_cnn(batchnorm: bool = False, seed: int = 0) -> torch.nn.Sequential:
    """A small CNN [N, 1, 8, 8] -> [N, 1]: Conv(1->4, 3x3) [-> BatchNorm2d] -> ReLU -> MaxPool 2 -> Linear, float64."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        bn = torch.nn.BatchNorm2d(4)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        layers.append(bn)
    layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 1)]
    return torch.nn.Sequential(*layers).double()


def make_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images [n, 1, 8, 8] with standard normal pixels, float64."""
    return torch.randn(n, *IMAGE_SHAPE, generator=generator, dtype=torch.float64)


def make_smooth_mlp(hidden: int, seed: int) -> torch.nn.Sequential:
    """2 -> hidden -> hidden -> 1 with tanh (smooth, so its input gradient is smooth too), float64."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(2, hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(hidden, 1),
    ).double()


def make_points(n: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``n`` points uniform on [-1, 1]^2."""
    return torch.rand(n, 2, generator=generator, dtype=dtype) * 2 - 1


def target(x: torch.Tensor) -> torch.Tensor:
    """f(x) = sin(pi x1) cos(pi x2), shape [N]."""
    return torch.sin(math.pi * x[:, 0]) * torch.cos(math.pi * x[:, 1])


def target_grad(x: torch.Tensor) -> torch.Tensor:
    """grad f(x) = pi (cos(pi x1) cos(pi x2), -sin(pi x1) sin(pi x2)), shape [N, 2]."""
    a, b = math.pi * x[:, 0], math.pi * x[:, 1]
    return math.pi * torch.stack([torch.cos(a) * torch.cos(b), -torch.sin(a) * torch.sin(b)], dim=1)
