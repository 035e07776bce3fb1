"""Bishop's inverse problem: predict y from x = y + 0.3 sin(2 pi y) + noise (multi-valued in x); and three
well-separated modes (the mdn_search preset)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MdnData:
    x_train: np.ndarray  # [N] in [0, 1] (min-max scaled on the clean training data)
    y_train: np.ndarray  # [N]; clean targets in [0, 1], outliers outside
    x_val: np.ndarray
    y_val: np.ndarray  # clean
    outlier_index: np.ndarray  # rows of the training set whose target is an outlier
    nonfinite_index: np.ndarray  # rows of the training set whose input x is NaN


def bishop(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """y ~ U(0, 1), x = y + 0.3 sin(2 pi y) + U(-noise, noise) (Bishop 1994, section 5.6)."""
    y = rng.uniform(0.0, 1.0, n)
    x = y + 0.3 * np.sin(2 * np.pi * y) + rng.uniform(-noise, noise, n)
    return x, y


def separated(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated modes: x ~ U(0, 1), y = (k + 0.5) / 3 + 0.05 sin(2 pi x) + N(0, noise^2), k uniform
    in {0, 1, 2} (modes 1/3 apart, each a thin curve when noise is small)."""
    x = rng.uniform(0.0, 1.0, n)
    k = rng.integers(0, 3, n)
    y = (k + 0.5) / 3 + 0.05 * np.sin(2 * np.pi * x) + rng.normal(0.0, noise, n)
    return x, y


DATASETS = {"bishop": bishop, "separated": separated}


def make_data(
    n_train: int,
    n_val: int,
    noise: float,
    outlier_fraction: float,
    outlier_scale: float,
    seed: int,
    nonfinite_fraction: float = 0.0,
    dataset: str = "bishop",
) -> MdnData:
    """Training and validation sets scaled to [0, 1] with the clean training set's min and max.

    A fraction of the training targets (``round(outlier_fraction * n_train)`` rows) is
    corrupted: moved by ``outlier_scale * U(0.5, 1)`` (in units of the target's range)
    up or down, like a value recorded in the wrong unit. Validation targets stay clean.

    ``round(nonfinite_fraction * n_train)`` training rows get the input x = NaN (what min-max
    scaling makes of a feature whose range is 0 in some group, ``0 / 0``, or of a missing value).
    Both corruptions are drawn from their own generators, so the clean rows are the same with or
    without them.
    """
    rng = np.random.default_rng(seed)
    draw = DATASETS[dataset]
    x, y = draw(n_train, noise, rng)
    xv, yv = draw(n_val, noise, rng)
    x_lo, x_hi, y_lo, y_hi = x.min(), x.max(), y.min(), y.max()
    x, xv = (x - x_lo) / (x_hi - x_lo), (xv - x_lo) / (x_hi - x_lo)
    y, yv = (y - y_lo) / (y_hi - y_lo), (yv - y_lo) / (y_hi - y_lo)
    n_out = int(round(outlier_fraction * n_train))
    index = np.sort(rng.choice(n_train, size=n_out, replace=False)) if n_out else np.zeros(0, dtype=np.int64)
    if n_out:
        sign = rng.choice([-1.0, 1.0], size=n_out)
        y = y.copy()
        y[index] += sign * outlier_scale * rng.uniform(0.5, 1.0, n_out)
    n_nan = int(round(nonfinite_fraction * n_train))
    nan_index = np.zeros(0, dtype=np.int64)
    if n_nan:
        nan_index = np.sort(np.random.default_rng([seed, 1]).choice(n_train, size=n_nan, replace=False))
        x = x.copy()
        x[nan_index] = np.nan
    return MdnData(x, y, xv, yv, index, nan_index)
