"""The sweep's results: one row per trial, the metric per grid point (mean, 95 % CI over seeds), a figure."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gradlab.sweep.grid import SweepSpec, Trial, as_number, fmt, short
from gradlab.sweep.worker import CANCELLED
from gradlab.tracking import FAILED, FINISHED


def trial_rows(spec: SweepSpec, trials: Sequence[Trial], outcomes: dict[int, dict]) -> list[dict]:
    rows = []
    for t in trials:
        out = outcomes.get(t.index, {})
        row = {"trial": t.index, "name": t.name}
        row.update({k: fmt(v) if isinstance(v, list | dict) else v for k, v in t.point})
        row.update(
            {
                "seed": t.seed,
                "status": out.get("status", CANCELLED),
                spec.metric or "metric": out.get("value"),
                "seconds": round(out["seconds"], 3) if out.get("seconds") is not None else None,
                "run_id": out.get("run_id", ""),
                "error": out.get("error", ""),
            }
        )
        rows.append(row)
    return rows


def summary_table(spec: SweepSpec, trials: Sequence[Trial], outcomes: dict[int, dict]) -> list[dict]:
    """Per grid point: number of seeds finished, mean and 95 % CI (Student t; None below 10 seeds) of the metric."""
    from gradlab.stats import t_mean_ci

    points: dict[tuple, list[Trial]] = {}
    for t in trials:
        points.setdefault(t.point, []).append(t)
    rows = []
    for point, members in points.items():
        finished = [outcomes[t.index] for t in members if outcomes.get(t.index, {}).get("status") in (FINISHED,)]
        values = [o.get("value") for o in finished]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        mean, lo, hi = t_mean_ci(finite)
        row = {k: fmt(v) if isinstance(v, list | dict) else v for k, v in point}
        row.update(
            {
                "trials": len(members),
                "finished": len(finished),
                "failed": sum(outcomes.get(t.index, {}).get("status") == FAILED for t in members),
                "n": len(finite),
                "mean": None if math.isnan(mean) else mean,
                "ci95_low": lo,
                "ci95_high": hi,
            }
        )
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], title: str) -> str:
    if not rows:
        return f"{title}\n\n(no trials)\n"
    cols = list(rows[0])

    def cell(v):
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = [title, "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [v for v in values if v is not None and v > 0]
    return len(positive) == len(values) and len(positive) > 1 and max(positive) / min(positive) >= 100


def plot(spec: SweepSpec, grid: list[tuple[str, list[Any]]], table: list[dict], trials, outcomes, path: Path):
    """1-D: metric vs the grid value (mean, 95 % CI, each seed); 2-D: heat map of the mean. None otherwise."""
    if len(grid) not in (1, 2) or not any(r["mean"] is not None for r in table):
        return None
    import numpy as np

    from gradlab import plotting

    metric = spec.metric
    title = f"{spec.stage} sweep {spec.sweep_id}"
    if len(grid) == 1:
        key, values = grid[0]
        numeric = all(as_number(v) is not None for v in values)
        xs = [float(v) for v in values] if numeric else list(range(len(values)))
        fig, ax = plotting.figure(title)
        means = [r["mean"] if r["mean"] is not None else np.nan for r in table]
        lo = [r["ci95_low"] if r["ci95_low"] is not None else np.nan for r in table]
        hi = [r["ci95_high"] if r["ci95_high"] is not None else np.nan for r in table]
        err = np.array([np.subtract(means, lo), np.subtract(hi, means)])
        ax.errorbar(xs, means, yerr=err, marker="o", capsize=4, label=f"mean over seeds, 95 % CI (n ≤ {spec.seeds})")
        pos = {json.dumps(v, default=str): x for v, x in zip(values, xs, strict=True)}
        sx, sy = [], []
        for t in trials:
            val = outcomes.get(t.index, {}).get("value")
            if val is not None and math.isfinite(val):
                sx.append(pos[json.dumps(t.point[0][1], default=str)])
                sy.append(val)
        ax.plot(sx, sy, "x", color=plotting.PALETTE[1], alpha=0.7, label="one seed")
        if not numeric:
            ax.set_xticks(xs, [fmt(v) for v in values])
        finite = [v for v in sy if v is not None]
        plotting.label(
            ax,
            f"{metric} against {short(key)}",
            f"{key} (parameter value)",
            f"{metric} (as in metrics.json)",
            logx=numeric and _spans_decades(xs),
            logy=bool(finite) and _spans_decades(finite),
        )
    else:
        (k1, v1), (k2, v2) = grid
        mat = np.full((len(v1), len(v2)), np.nan)
        for r, (i, j) in zip(table, itertools.product(range(len(v1)), range(len(v2))), strict=True):
            if r["mean"] is not None:
                mat[i, j] = r["mean"]
        finite = mat[np.isfinite(mat)]
        log = finite.size > 1 and bool((finite > 0).all()) and finite.max() / finite.min() >= 100
        fig, ax = plotting.figure(title)
        from matplotlib.colors import LogNorm

        im = ax.imshow(mat, origin="lower", aspect="auto", cmap="viridis", norm=LogNorm() if log else None)
        cbar = fig.colorbar(im, ax=ax)
        cbar.set_label(f"{metric} (mean over seeds{', log scale' if log else ''})")
        ax.set_xticks(range(len(v2)), [fmt(v) for v in v2])
        ax.set_yticks(range(len(v1)), [fmt(v) for v in v1])
        for i, j in itertools.product(range(len(v1)), range(len(v2))):
            text = "n/a" if not np.isfinite(mat[i, j]) else f"{mat[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", color="white", fontsize=8)
        ax.grid(False)
        plotting.label(ax, f"{metric}: mean over seeds", f"{k2} (parameter value)", f"{k1} (parameter value)")
    return plotting.save(fig, path)
