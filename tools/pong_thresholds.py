"""Which training threshold predicts the evaluated Pong win? (the objective of presets/tune/pg_pong_late.yaml)

For every seed of the committed evaluated-win presets given (default: pg_pong_fast and pg_pong_win), the games until
the mean of the last 100 training games first rose above each threshold, and the Spearman correlation of those
counts with the games to the evaluated win (a seed that never got there ranks last, as tied):

    .venv/bin/python tools/pong_thresholds.py [pg_pong_fast pg_pong_win ...]
"""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
THRESHOLDS = (-10.0, -7.0, -5.0, -3.0, -1.0)


def first_above(means: list[float], threshold: float) -> float:
    return next((i for i, m in enumerate(means) if m > threshold), math.inf)


def seeds(stage: str) -> list[tuple[str, list[float], float]]:
    """(trial, its running means by game, games to its evaluated win or inf), per trial of the stage."""
    curves: dict[str, list[float]] = defaultdict(list)
    with open(ROOT / "results" / stage / "episodes.csv") as f:
        for row in csv.DictReader(f):
            curves[f"{stage} {row['variant']}__seed{row['seed']}"].append(float(row["return_mean100"]))
    wins = {}
    with open(ROOT / "results" / stage / "trials.csv") as f:
        for row in csv.DictReader(f):
            won = row["won"] == "True"
            wins[f"{stage} {row['variant']}__seed{row['seed']}"] = float(row["games_to_win"]) if won else math.inf
    return [(t, curves[t], wins[t]) for t in sorted(curves)]


def main(stages: list[str]) -> None:
    rows = [r for s in stages for r in seeds(s)]
    win = [r[2] for r in rows]
    big = 10 * max(len(r[1]) for r in rows)  # "never" ranks last, tied
    print(f"{len(rows)} seeds of {', '.join(stages)}; games to the evaluated win: {win}")
    for t in THRESHOLDS:
        games = [first_above(r[1], t) for r in rows]
        rho = spearmanr([min(g, big) for g in games], [min(w, big) for w in win]).statistic
        print(f"mean above {t:g}: games {games}; Spearman with games to win {rho:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["pg_pong_fast", "pg_pong_win"])
