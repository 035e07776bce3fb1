"""pg: does the stream rollout learn as fast per game as the lockstep one it replaced? (about 15 minutes)

Seed 0 of the win preset (presets/pg_pong_win.yaml: `correct`, 40x40/200, RMSProp 1e-3, 8 games per
update) is trained until the mean of the last 100 games first reaches -10, once with the stream
rollout (games never wait; a game in progress at an update carries on into the next batch) and once
with the former lockstep rollout (every game of an update starts together from the current policy).
Games are counted, not seconds, so the machine's load does not change the result (both runs are
deterministic). The ratio is lockstep games / stream games: >= 1 means the stream needs no more games.
One seed per side: a difference of a few hundred games is within seed-to-seed variation (the win
preset's three seeds needed 1088-1425 games to reach 0 on 2026-12-02).
"""

from __future__ import annotations

from bench_pg import THREADS

from gradlab.studies.pg.config import PongWinParams
from gradlab.studies.pg.loop import Training

TARGET = -10.0
CAP_UPDATES = 250  # 2000 games


def games_to_reach(rollout: str, seed: int = 0, **overrides) -> dict:
    """Games (and frames) until the running mean reaches TARGET; ``overrides``: other parameters (tests: tiny)."""
    import torch

    torch.set_num_threads(1)
    settings = {"rollout": rollout, "env_threads": 2, "updates": CAP_UPDATES, "stop_at_mean": TARGET - 1e-9}
    p = PongWinParams(**{**settings, **overrides})
    trial = Training(p, "pong", "correct", seed)
    module = trial.module
    module.update_threads = THREADS
    try:
        trial.fit()
    finally:
        trial.close()
    reached = trial.stopped_at_game
    return {
        "games": reached if reached > 0 else None,
        "games_played": len(module.episodes["return"]),
        "frames": int(sum(module.episodes["frames"][:reached])) if reached > 0 else None,
        "cap_games": p.updates * p.episodes_per_update,
    }


def run() -> dict:
    stream, lockstep = games_to_reach("stream"), games_to_reach("episodes")
    ratio = (lockstep["games"] or lockstep["cap_games"]) / (stream["games"] or stream["cap_games"])
    return {
        "pong_games_to_mean_minus_10": {
            "ratio": ratio,
            "what": "games until the mean of the last 100 reaches -10, seed 0: lockstep (before) / stream (after)",
            "target": "(report; >= 1 wanted)",
            "stream": stream,
            "lockstep": lockstep,
        }
    }
