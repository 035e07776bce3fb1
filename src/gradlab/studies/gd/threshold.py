"""Find the smallest learning rate at which a training run diverges (doubling, then bisection)."""

from __future__ import annotations

from collections.abc import Callable


def find_lr_threshold(
    diverges: Callable[[float], bool], start: float, rel_tol: float = 1e-3, max_doublings: int = 60
) -> tuple[float, int]:
    """Return (threshold, number of probes).

    ``diverges(lr)`` must be monotone: False below the threshold, True above.
    The bracket [lo, hi] is grown from ``start`` by factors of two, then halved
    until (hi - lo) / hi < rel_tol; the midpoint is returned.
    """
    probes = 0
    lo, hi = 0.0, start
    while True:
        probes += 1
        if diverges(hi):
            break
        lo, hi = hi, hi * 2
        if probes > max_doublings:
            raise RuntimeError(f"no divergence up to lr={hi:g}")
    if lo == 0.0:  # shrink until a stable lr is found
        lo = hi / 2
        while True:
            probes += 1
            if not diverges(lo):
                break
            hi, lo = lo, lo / 2
            if probes > 2 * max_doublings:
                raise RuntimeError(f"diverges even at lr={lo:g}")
    while (hi - lo) / hi >= rel_tol:
        mid = 0.5 * (lo + hi)
        probes += 1
        if diverges(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi), probes
