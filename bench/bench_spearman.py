"""spearman: soft_rank forward + backward vs torch.sort forward + backward (same input, same upstream gradient).

Target (issue 5): at most 5x torch.sort at n = 10^5. Measured twice: with torch's default
intra-op threads, and with one thread (what the stage's trial workers use).
"""

from __future__ import annotations

import torch
from harness import compare

from gradlab.studies.spearman import soft_rank


def run() -> dict:
    out = {}
    default_threads = torch.get_num_threads()
    try:
        for threads in (default_threads, 1):
            torch.set_num_threads(threads)
            suffix = "" if threads == default_threads else "_1thread"
            out.update({f"{k}{suffix}": v | {"threads": threads} for k, v in _compare_all().items()})
    finally:
        torch.set_num_threads(default_threads)
    return out


def _compare_all() -> dict:
    out = {}
    g = torch.Generator().manual_seed(0)
    for n in (1_000, 10_000, 100_000):
        x = torch.randn(n, generator=g).requires_grad_(True)
        upstream = torch.randn(n, generator=g)

        def soft(x=x, upstream=upstream):
            x.grad = None
            (soft_rank(x, 1.0) * upstream).sum().backward()

        def sort(x=x, upstream=upstream):
            x.grad = None
            (torch.sort(x).values * upstream).sum().backward()

        target = "(target <= 5)" if n == 100_000 else "(no target)"
        out[f"soft_rank_vs_torch_sort_fwd_bwd_n{n}"] = {**compare(soft, sort, rounds=15, warmup=2), "target": target}
    return out
