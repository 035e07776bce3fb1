"""Why the question's hill climb (one entry +-0.01, keep if spearmanr improves) never moves: computed, not quoted.

spearmanr depends on the lists only through their ranks. A proposal changes spearmanr only if it
changes a rank, i.e. moves some list value past a neighbour. For the ``linear`` derivation this
can be decided from the data:

* a +-delta move on ``freq_m[r, j]`` changes only ``list2[j] = mean_r freq_m[r, j]``, by delta / 12:
  it can reorder list2 only if delta / 12 >= the smallest gap between neighbouring list2 values;
* a +-delta move on ``v[k]`` turns ``list1 = v * S`` (S = sum v) into ``(v + delta e_k)(S +- delta)``:
  every entry is scaled by the same factor (order kept while |S| > delta) and entry k moves by delta
  relative to the others, so the order of list1 (that of v, times the sign of S) can change only if
  delta >= the smallest gap between neighbouring v values.

If delta is below both gaps (and |S| > delta), *no* proposal changes spearmanr, none is accepted,
the matrices never change, and so the climb is stalled forever (:func:`linear_gaps`,
``certified``). For any derivation, :func:`single_moves` evaluates all 2 x 13 n proposals from the
start and counts those that change or improve spearmanr: zero improving moves means the climb can
never leave its starting point, whatever its budget.
"""

from __future__ import annotations

import numpy as np
import torch

from gradlab.studies.spearman.derivation import ROWS, Derivation
from gradlab.studies.spearman.methods import spearman


def _min_gap(x: np.ndarray) -> float:
    s = np.sort(np.asarray(x, dtype=np.float64).reshape(-1))
    return float(np.diff(s).min()) if s.size > 1 else float("inf")


def linear_gaps(v: torch.Tensor, freq_m: torch.Tensor, delta: float) -> dict:
    """The gap criterion for the ``linear`` derivation (see the module docstring)."""
    vv = v.detach().reshape(-1).numpy()
    list2 = freq_m.detach().mean(dim=0).numpy()
    gap_v, gap_list2, total = _min_gap(vv), _min_gap(list2), float(vv.sum())
    return {
        "min_gap_v": gap_v,
        "min_gap_list2": gap_list2,
        "step_on_list2": delta / ROWS,
        "abs_sum_v": abs(total),
        # the smallest single-entry step that could change a rank at all
        "smallest_step_that_can_reorder": min(gap_v, ROWS * gap_list2),
        "certified": bool(delta < gap_v and delta / ROWS < gap_list2 and delta < abs(total)),
    }


@torch.no_grad()
def single_moves(v: torch.Tensor, freq_m: torch.Tensor, derivation: Derivation, delta: float) -> dict:
    """Every +-delta move of one entry from (v, freq_m): how many change spearmanr, how many improve it."""
    n = v.shape[0]
    x = np.concatenate([v.reshape(-1).numpy(), freq_m.reshape(-1).numpy()]).astype(np.float64)
    t = torch.from_numpy(x)
    tv, tf = t[:n].view(n, 1), t[n:].view(ROWS, n)
    base = spearman(*derivation(tv, tf))
    changed = improved = 0
    best = base
    for i in range(x.size):
        old = x[i]
        for step in (delta, -delta):
            x[i] = old + step
            rho = spearman(*derivation(tv, tf))
            x[i] = old
            changed += rho != base
            improved += rho > base
            best = max(best, rho)
    return {"moves": 2 * x.size, "changing": changed, "improving": improved, "best_gain": best - base}
