"""The asker's Pong recipe taken apart (issue 26.4): NOOP action yes/no x move cost 0 / 0.01, on the win preset.

Each trained arm is a preset stage of its own, run to an evaluated win or a cap (results/<stage>/):

| arm | actions | move cost | stage |
|---|---|---|---|
| `up_down` | UP, DOWN | 0 | `pg_pong_win` |
| `noop` | NOOP, UP, DOWN | 0 | `pg_pong_noop` |
| `recipe` | NOOP, UP, DOWN | 0.01 | `pg_pong_recipe` |
| `up_down_cost` | UP, DOWN | 0.01 | none: the same training as `up_down` |

The fourth arm is not trained: with UP and DOWN only, every step moves the paddle, so the cost term
``move_cost * P(UP or DOWN)`` is ``move_cost * 1``, a constant whose gradient is zero (tests/test_pg_factorial.py
checks it on the loss); its rows are the `up_down` arm's, marked as such.

This stage trains nothing: it reads the arms' committed ``episodes.csv`` and ``stats.json`` and recomputes, per
seed and within ``cap_games``: the games until the mean of the last 100 training games first reached
``progress_mean`` (-10), and whether and when an evaluated checkpoint won (its 95 % CI above 0) within the cap.
Between arms: the exact Mann-Whitney test of games-to-progress (a seed that never got there within the cap ranks
last, ties as ties) and Fisher's exact test of the win counts, each with the smallest p its sample sizes allow.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats as sps

from gradlab.config import ConfigError
from gradlab.stats import mann_whitney_exact
from gradlab.studies.pg.trial import running_mean

ALPHA = 0.05
# the words of the verdicts (flags +1 / -1 / 0), in the summary and the report
FASTER = {1: "faster", -1: "slower", 0: "no difference shown"}
WINS_MORE = {1: "wins more", -1: "wins fewer", 0: "no difference shown"}


def load_arm(results: Path, stage: str) -> dict:
    """An arm's committed results: per (variant, seed) the returns of its training games and its win block."""
    folder = results / stage
    stats_file, episodes_file = folder / "stats.json", folder / "episodes.csv"
    if not stats_file.exists() or not episodes_file.exists():
        raise ConfigError(
            "arms", f"{folder} has no stats.json/episodes.csv: run `gradlab run {stage} --params presets/{stage}.yaml`"
        )
    win = json.loads(stats_file.read_text()).get("win") or {}
    if win.get("rule") != "evaluation":
        raise ConfigError("arms", f"{stage}: its win is not evaluated (rule {win.get('rule')!r}); rerun its preset")
    returns: dict[str, list[float]] = {}
    with episodes_file.open() as f:
        for row in csv.DictReader(f):
            returns.setdefault(f"{row['variant']}__seed{row['seed']}", []).append(float(row["return"]))
    return {"stage": stage, "win": win, "returns": returns}


def seed_rows(arm: dict, cap_games: int, progress_mean: float, window: int) -> list[dict]:
    """Per seed within the cap: games until the running mean reached ``progress_mean``, the evaluated win."""
    win = arm["win"]
    rows = []
    for key, returns in sorted(arm["returns"].items(), key=lambda kv: int(kv[0].rsplit("seed", 1)[1])):
        w = win[key]
        seen = returns[:cap_games]
        full = running_mean(seen, window)[window - 1 :] if len(seen) >= window else np.empty(0)
        reached = np.flatnonzero(full >= progress_mean)
        games_to_progress = int(reached[0]) + window if reached.size else None
        won = bool(w.get("won")) and w.get("games_to_win") is not None and w["games_to_win"] <= cap_games
        rows.append(
            {
                "seed": int(key.rsplit("seed", 1)[1]),
                "games_played": len(returns),
                "games_to_progress": games_to_progress,
                "won": won,
                "games_to_win": w["games_to_win"] if won else None,
                "seconds_to_win": w.get("seconds_to_win") if won else None,
                "eval_mean": w.get("eval_mean") if won else None,
                "eval_ci_low": w.get("eval_ci_low") if won else None,
                "eval_ci_high": w.get("eval_ci_high") if won else None,
            }
        )
    short = [r["seed"] for r in rows if r["games_played"] < cap_games and not r["won"]]
    if short:
        raise ConfigError(
            "arms",
            f"{arm['stage']}: seeds {short} stopped before the cap ({cap_games} games) without a win; "
            "their outcome within the cap is unknown",
        )
    return rows


def compare(a: list[dict], b: list[dict], cap_games: int) -> dict:
    """Arm a against arm b: games to progress (never within the cap = cap + 1, tied) and win counts."""
    ga = [r["games_to_progress"] or cap_games + 1 for r in a]
    gb = [r["games_to_progress"] or cap_games + 1 for r in b]
    mw = mann_whitney_exact(ga, gb)
    wa, wb = sum(r["won"] for r in a), sum(r["won"] for r in b)
    fisher = sps.fisher_exact([[wa, len(a) - wa], [wb, len(b) - wb]]).pvalue
    # Fisher's smallest attainable p at these sizes: all wins on one side, none on the other
    fisher_min = min(
        sps.fisher_exact([[len(a), 0], [0, len(b)]]).pvalue,
        sps.fisher_exact([[0, len(a)], [len(b), 0]]).pvalue,
    )
    return {
        "games_to_progress_median_a": _median_censored([r["games_to_progress"] for r in a]),  # None: never
        "games_to_progress_median_b": _median_censored([r["games_to_progress"] for r in b]),
        "games_to_progress_p": mw["p"],
        "games_to_progress_p_min": mw["p_min"],
        "games_to_progress_exact": mw["exact"],
        "won_a": wa,
        "won_b": wb,
        "won_p": float(fisher),
        "won_p_min": float(fisher_min),
        # +1: a's games to progress are lower (it learns faster) by the exact test; 0: not shown either way
        "flags": {
            "faster": _flag(mw["p"], float(np.median(gb)) - float(np.median(ga))),
            "wins_more": _flag(float(fisher), wa / len(a) - wb / len(b)),
        },
    }


def _flag(p: float, effect: float) -> int:
    if math.isnan(p) or p >= ALPHA or effect == 0:
        return 0
    return 1 if effect > 0 else -1


def analyse(p, results: Path) -> tuple[dict, list[dict]]:
    """The factorial's metrics and its per-seed table (one row per arm and seed)."""
    arms: dict[str, list[dict]] = {}
    settings: dict[str, dict] = {}
    for arm in p.arms:
        if arm.same_as:
            continue
        data = load_arm(results, arm.stage)
        arms[arm.name] = seed_rows(data, p.cap_games, p.progress_mean, p.window)
        settings[arm.name] = {"stage": arm.stage, "actions": arm.actions, "move_cost": arm.move_cost}
    for arm in p.arms:
        if arm.same_as:
            arms[arm.name] = arms[arm.same_as]
            settings[arm.name] = {"same_as": arm.same_as, "actions": arm.actions, "move_cost": arm.move_cost}
    table = [
        {"arm": name, "actions": settings[name]["actions"], "move_cost": settings[name]["move_cost"], **row}
        for name, rows in arms.items()
        for row in rows
    ]
    metrics: dict = {"cap_games": p.cap_games, "progress_mean": p.progress_mean, "arms": {}, "tests": {}}
    for name, rows in arms.items():
        g = [r["games_to_progress"] for r in rows]
        metrics["arms"][name] = {
            **settings[name],
            "seeds": len(rows),
            "seeds_to_progress": sum(x is not None for x in g),
            "seeds_won": sum(r["won"] for r in rows),
            # a seed that never got there within the cap counts as above every other (None: half or more did not)
            "games_to_progress_median": _median_censored(g),
            "games_to_win_median": _median_censored([r["games_to_win"] for r in rows]),
            "seed_per_seed": [r["seed"] for r in rows],
            "games_to_progress_per_seed": g,  # None: not within the cap
            "won_per_seed": [r["won"] for r in rows],
            "games_to_win_per_seed": [r["games_to_win"] for r in rows],
        }
    for a, b in p.comparisons:
        metrics["tests"][f"{a}_vs_{b}"] = compare(arms[a], arms[b], p.cap_games)
    return metrics, table


def _median_censored(values: list) -> float | None:
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return None
    m = float(np.median(ordered))
    return None if math.isinf(m) or math.isnan(m) else m


def _games(median: float | None) -> str:
    """A median number of games as a reader counts them: 1299, 1257.5, or never (not within the cap)."""
    return "never" if median is None else f"{median:.1f}".removesuffix(".0")


def summary(metrics: dict, table: list[dict], p) -> str:
    """summary.md: the arms, per seed, and the exact tests; every verdict from a flag."""
    from gradlab.stats import fmt

    arms = metrics["arms"]
    lines = [
        "# pg_pong_factorial: NOOP x move cost on the win preset",
        "",
        f"Each trained arm ran the win preset's settings to an evaluated win (a checkpoint's 200 fresh games with a "
        f"95 % CI above 0) or to its cap; here every outcome is read within {p.cap_games} training games. "
        f"Games to {fmt(p.progress_mean)}: the first game at which the mean of the last {p.window} training games "
        f"reached {fmt(p.progress_mean)} ('never' = not within the cap).",
        "",
        "| arm | actions | move cost | trained as | seeds | games to -10 per seed | won per seed (games) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        rows = [r for r in table if r["arm"] == name]
        progress = ", ".join(str(r["games_to_progress"]) if r["games_to_progress"] else "never" for r in rows)
        won = ", ".join(f"yes ({r['games_to_win']})" if r["won"] else "no" for r in rows)
        source = f"`{a['stage']}`" if a.get("stage") else f"same training as `{a['same_as']}`"
        lines.append(
            f"| `{name}` | {a['actions']} | {fmt(a['move_cost'])} | {source} | {a['seeds']} | {progress} | {won} |"
        )
    same = [n for n, a in arms.items() if a.get("same_as")]
    if same:
        lines += [
            "",
            f"{', '.join(f'`{n}`' for n in same)}: not trained. With UP and DOWN only every step moves the paddle, so "
            "the cost term move_cost * P(UP or DOWN) equals move_cost, a constant with zero gradient: the training "
            "is the same as without it, and its rows repeat that arm's.",
        ]
    lines += [
        "",
        "| comparison | median games to -10 | exact p (smallest attainable) | faster? | wins | Fisher p "
        "(smallest attainable) | wins more? |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, t in metrics["tests"].items():
        a, b = key.split("_vs_")
        medians = f"{_games(t['games_to_progress_median_a'])} vs {_games(t['games_to_progress_median_b'])}"
        lines.append(
            f"| `{a}` vs `{b}` | {medians} | "
            f"{fmt(t['games_to_progress_p'])} ({fmt(t['games_to_progress_p_min'])}) | "
            f"{FASTER[t['flags']['faster']]} | {t['won_a']} vs {t['won_b']} | "
            f"{fmt(t['won_p'])} ({fmt(t['won_p_min'])}) "
            f"| {WINS_MORE[t['flags']['wins_more']]} |"
        )
    lines += [
        "",
        "Games to -10 are compared by the exact Mann-Whitney test (a seed that never got there ranks last, ties as "
        "ties); win counts by Fisher's exact test. Where the smallest attainable p is above 0.05 the design cannot "
        "show a difference at these seed counts, whatever the data: the per-seed values are the evidence.",
        "",
        "Table: `seeds.csv`. Figure: `figures/factorial.png`.",
    ]
    return "\n".join(lines) + "\n"


def figure(ctx, table: list[dict], p) -> None:
    """Games to -10 per seed, one column per arm (points; 'never' drawn at the cap), won seeds filled."""
    from gradlab.plotting import figure as new_figure
    from gradlab.plotting import label

    names = list(dict.fromkeys(r["arm"] for r in table))
    fig, ax = new_figure("Games until the 100-game training mean reached -10, per seed", width=7.0, height=4.0)
    for i, name in enumerate(names):
        rows = [r for r in table if r["arm"] == name]
        for j, r in enumerate(rows):
            y = r["games_to_progress"] or p.cap_games
            x = i + (j - (len(rows) - 1) / 2) * 0.08
            ax.scatter(
                [x],
                [y],
                s=40,
                marker="o" if r["games_to_progress"] else "^",
                facecolors="C0" if r["won"] else "none",
                edgecolors="C0",
            )
    ax.axhline(p.cap_games, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(names)), names)
    label(
        ax,
        "filled: an evaluated win within the cap; triangle at the cap: never reached -10",
        "arm",
        "training games",
        legend=False,
    )
    ctx.savefig(fig, "factorial.png")
