"""The Pong benches drive the trainer the way a trial does (an API change once broke them unnoticed until a bench
run): each bench's subject, run on a tiny game, trains through ``loop.Training`` and counts its games and frames."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY = {"updates": 1, "episodes_per_update": 2, "final_episodes": 1, "points_per_episode": 1, "hidden": 8}


def load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_bench_pg_trains_one_update_and_counts_its_frames():
    bench = load("bench_pg")
    p = type(bench.P)(**{**bench.P.model_dump(), **TINY})
    out = bench.train_once(p)
    assert out["games"] == 2
    assert out["frames"] > 0 and out["seconds"] > 0


def test_bench_pg_learning_reports_the_cap_when_the_target_is_not_reached():
    bench = load("bench_pg_learning")
    out = bench.games_to_reach("stream", **TINY)
    assert out["games"] is None and out["frames"] is None  # 2 games never fill the 100-game window
    assert out["games_played"] == 2 and out["cap_games"] == 2
