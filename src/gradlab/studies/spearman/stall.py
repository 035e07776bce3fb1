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

Those two climb the leaf ``v``. :func:`asker_climb` runs the question's own procedure on the tensors the asker
holds, every entry of the 20 x 20 ``sm`` and of ``freq_m``, for every derivation, until a full pass keeps no move
(a certified stall), and says why (a plateau or a local optimum); :func:`gap_certificate` is the same gap argument
for every derivation on ``sm`` and ``freq_m``; :func:`tie_ceiling` is the highest spearmanr an untied list can
reach against a tied one (the count of ``threshold_count``).
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


# ---------------------------------------------------------------------------------------------------------------
# The asker's own procedure, on the asker's own tensors: the climb on the entries of sm (20 x 20) and freq_m (12 x 20)
# ---------------------------------------------------------------------------------------------------------------
#
# The question: "tweak values in the matrices by .01 ... If the new correlation value is higher than the previous
# one, I would save the 2 matrices and tweak a different value". After ``sm = torch.mm(sm, sm.t())`` the asker holds
# a plain 20 x 20 tensor, so the climb tweaks its 400 entries one at a time (sm stops being v v^T: ASSUMPTION, the
# asker tweaks the matrix they hold, not the leaf v). The order is also an ASSUMPTION (the question does not give
# one): cyclic passes over the entries, sm row by row then freq_m row by row; each entry is tried at +delta, then,
# if that did not raise spearmanr, at -delta; a raise is kept (strictly higher: equal is not "higher"), anything else
# is undone by restoring the saved value (not by subtracting delta, which need not give the same float back).
#
# Certified stall: a pass that keeps no move evaluated all 2 x (entries) moves from one unchanged point and none
# raised spearmanr; the climb changes its point only by keeping a move, so it will never move again, whatever its
# budget or order. Why it stalls is read from that pass:
#
# * ``plateau``: no move changes spearmanr at all. The gap argument says why: each list entry depends on one row
#   of sm (list1[i]: sum, max or logsumexp of row i) or one column of freq_m (list2[j]); a +-delta move on one entry
#   shifts that list entry by at most L * delta (``SHIFT``: sum, max and logsumexp are 1-Lipschitz in each entry,
#   the mean over the 12 rows 1/12), so when that is below the entry's gap to its nearest neighbour no rank can
#   change; for the count, a move changes list2[j] only if it takes an entry across 0.
# * ``local optimum``: some moves change spearmanr, every one of them lowers it.
#
# A shortcut that changes nothing: a move that cannot take its list entry past (or onto) a neighbour leaves every
# rank, so spearmanr, exactly as it is, so it is not "higher" and is undone without recomputing the lists (the new
# entry is computed from its row / column alone; a slack of 1e-9 covers rounding). Every other move is judged on the
# lists recomputed by the derivation and scipy's spearmanr. Proposals (the asker's evaluations) and the moves
# actually computed are both counted. A user's custom derivation gets no shortcut: every move is computed.

SHIFT: dict[str, tuple[float, float | None]] = {
    # largest shift of list1[i] / list2[j] per unit move of one entry of its row of sm / column of freq_m;
    # None: a count, which changes only when an entry crosses 0
    "linear": (1.0, 1.0 / ROWS),
    "row_max": (1.0, 1.0),
    "logsumexp": (1.0, 1.0),
    "threshold_count": (1.0, None),
}
_SLACK = 1e-9  # absolute slack on the shift bound, far above the rounding of a 20-term sum


def _gaps(x: np.ndarray) -> np.ndarray:
    """Each entry's distance to its nearest other entry (0 for a tie)."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    d = np.diff(s)
    near = np.minimum(np.r_[np.inf, d], np.r_[d, np.inf])
    out = np.empty_like(x)
    out[order] = near
    return out


def tie_ceiling(values) -> float:
    """The highest spearmanr an untied list can reach against ``values``: sqrt(1 - sum(t^3 - t) / (n^3 - n)),
    t the sizes of the groups of tied values (1 without ties).

    Ranking the untied list in the order of ``values`` (any order inside a tie group) gives ranks r1 whose
    average inside each group is the tied list's average rank r2, so cov(r1, r2) = var(r2) and
    rho = sqrt(var(r2) / var(r1)); no other order does better (rearrangement inequality)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    n = x.size
    _, counts = np.unique(x, return_counts=True)
    t = counts.astype(np.float64)
    return float(np.sqrt(1.0 - (t**3 - t).sum() / (n**3 - n)))


def best_tie_ceiling(n: int, levels: int) -> float:
    """The highest :func:`tie_ceiling` over every list of n values that can take only ``levels`` values (the count
    of positive entries in a column of 12: 13 levels): the n values spread as evenly as the levels allow."""
    q, r = divmod(n, levels)
    sizes = [q + 1] * r + [q] * (levels - r)
    t = np.array([s for s in sizes if s > 0], dtype=np.float64)
    return float(np.sqrt(1.0 - (t**3 - t).sum() / (n**3 - n)))


def _entry_value(name: str, line: np.ndarray, old_list: float, step: float, which: int) -> float:
    """The list entry after a move, from its row of sm / column of freq_m alone (``line``, already moved), in numpy;
    only used to decide whether the move can pass a neighbour (the list itself is always recomputed by the rule)."""
    if name == "linear":
        return old_list + (step if which == 1 else step / ROWS)
    if name == "row_max":
        return float(line.max())
    if name == "logsumexp":
        top = line.max()
        return float(top + np.log(np.exp(line - top).sum()))
    if which == 1:  # threshold_count: list1 = sm.sum(1)
        return old_list + step
    return float((line > 0).sum())


def _passes_neighbour(values: np.ndarray, k: int, new: float) -> bool:
    """True when moving ``values[k]`` to ``new`` could change a rank: some other value lies between the old and the
    new one, or within the slack of either (a tie made or broken)."""
    old = values[k]
    if new == old:  # row_max or the count: the entry is exactly what it was
        return False
    lo, hi = min(old, new) - _SLACK, max(old, new) + _SLACK
    inside = (values >= lo) & (values <= hi)
    inside[k] = False
    return bool(inside.any())


def gap_certificate(sm: torch.Tensor, freq_m: torch.Tensor, derivation: Derivation, delta: float, matrices: str):
    """The stall argument without any evaluation: True when no +-delta move on one entry of the climbed matrices
    can pass a neighbour, because each list entry's gap to its nearest neighbour exceeds its largest shift
    (``SHIFT`` x delta) or, for the count, no entry of freq_m lies within delta of 0; then the climb never keeps a
    move. None for a custom derivation (no argument)."""
    if derivation.name not in SHIFT:
        return None
    l1, l2 = (t.numpy() for t in derivation.rule()(sm, freq_m))
    s1, s2 = SHIFT[derivation.name]
    ok = True
    if matrices != "freq_m":
        ok &= bool(_gaps(l1).min() > s1 * delta + _SLACK)
    if matrices != "sm":
        f = freq_m.numpy()
        near_zero = bool(((f > -delta) & (f <= delta)).any())  # the count: an entry a step could take across 0
        ok &= not near_zero if s2 is None else bool(_gaps(l2).min() > s2 * delta + _SLACK)
    return ok


@torch.no_grad()
def asker_climb(
    sm: torch.Tensor,
    freq_m: torch.Tensor,
    derivation: Derivation,
    delta: float,
    matrices: str,
    max_passes: int,
    shortcut: bool = True,
) -> dict:
    """The asker's climb on the entries of ``sm`` and / or ``freq_m`` (``matrices``: "sm", "freq_m" or "both"), in
    cyclic passes (see above) until a pass keeps nothing (certified stall) or ``max_passes`` passes (a count).
    ``shortcut=False`` computes every move (the same climb, slower: for checking the shortcut).

    Returns the initial and final spearmanr, the kept moves, passes, proposals (evaluations of the asker's
    procedure) and those computed, the final matrices, and the last pass's census (moves that could pass a
    neighbour, moves that changed spearmanr, moves that raised it: 0 when stalled)."""
    if matrices not in ("sm", "freq_m", "both"):
        raise ValueError(f"matrices must be sm, freq_m or both (got {matrices!r})")
    rule, name = derivation.rule(), derivation.name
    exact = shortcut and name in SHIFT  # a custom derivation: no shortcut, every move is computed
    a = np.array(sm.detach().numpy(), dtype=np.float64)  # copies: the caller's tensors stay as they were
    b = np.array(freq_m.detach().numpy(), dtype=np.float64)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)

    def lists() -> tuple[np.ndarray, np.ndarray]:
        l1, l2 = rule(ta, tb)
        return l1.numpy().copy(), l2.numpy().copy()

    l1, l2 = lists()
    rho = initial = spearman(l1, l2)
    entries = [(1, i, j) for i in range(a.shape[0]) for j in range(a.shape[1])] if matrices != "freq_m" else []
    entries += [(2, r, j) for r in range(b.shape[0]) for j in range(b.shape[1])] if matrices != "sm" else []

    kept = passes = proposals = computed = 0
    census: dict = {}
    stalled = False
    while passes < max_passes:
        passes += 1
        kept_now = reorder = changing = raising = 0
        for which, i, j in entries:
            mat, k = (a, i) if which == 1 else (b, j)
            old = mat[i, j]
            for step in (delta, -delta):
                proposals += 1
                mat[i, j] = old + step
                if exact:
                    line = a[i] if which == 1 else b[:, j]
                    values = l1 if which == 1 else l2
                    if not _passes_neighbour(values, k, _entry_value(name, line, values[k], step, which)):
                        mat[i, j] = old  # no rank moves, so spearmanr is the current one: not higher
                        continue
                reorder += 1
                new_l1, new_l2 = lists()
                new = spearman(new_l1, new_l2)
                computed += 1
                changing += new != rho
                if new > rho:
                    raising += 1
                    kept_now += 1
                    rho, l1, l2 = new, new_l1, new_l2
                    break  # kept: "tweak a different value"
                mat[i, j] = old  # undone by restoring the saved value
        kept += kept_now
        census = {"moves": 2 * len(entries), "reorderable": reorder, "changing": changing, "raising": raising}
        if kept_now == 0:
            stalled = True
            break
    return {
        "matrices": matrices,
        "initial_spearman": initial,
        "final_spearman": rho,
        "kept": kept,
        "passes": passes,
        "proposals": proposals,
        "computed": computed,
        "stalled": stalled,
        # why it stalled: a plateau (no move changes spearmanr) or a local optimum (moves change it, none raises it)
        "plateau": stalled and census["changing"] == 0,
        "local_optimum": stalled and census["changing"] > 0,
        "last_pass": census,
        "sm": a,
        "freq_m": b,
    }
