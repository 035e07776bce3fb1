"""The win presets' evaluated win: fresh games on unseen emulator seeds, a 95 % CI, the first winning checkpoint."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import write_params

from gradlab.runner import run_stage

TINY_WIN = """
pg_pong_win:
  seed: 0
  seeds: 1
  episodes_per_update: 2
  updates: 2
  final_episodes: 1
  points_per_episode: 1
  hidden: 8
  env_threads: 1
  stop_at_mean: null
  stop_window: 2
  evaluate_games: 10
  evaluate_envs: 2
  evaluate_every: 1
  evaluate_from_mean: -21
  progress_mean: -1
"""


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_evaluation_plays_fresh_games_and_reports_a_ci(store, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADLAB_WORKERS", "1")
    assert run_stage("pg_pong_win", params_file=write_params(tmp_path, TINY_WIN)) == 0
    out = tmp_path / "results" / "pg_pong_win"
    w = json.loads((out / "stats.json").read_text())["win"]
    trial = w["correct__seed0"]
    assert w["rule"] == "evaluation" and w["evaluate_games"] == 10
    rows = _rows(out / "evaluation_games.csv")
    updates = sorted({int(r["update"]) for r in rows})
    assert updates == [1, 2][: trial["evaluations"]] and len(rows) == 10 * len(updates)
    assert {float(r["score"]) for r in rows} <= {-1.0, 1.0}  # one point per game
    for u in updates:  # every emulator played the same number of games; each checkpoint its own seeds
        per_env = {}
        for r in rows:
            if int(r["update"]) == u:
                per_env[r["env_seed"]] = per_env.get(r["env_seed"], 0) + 1
        assert sorted(per_env.values()) == [5, 5]
    scores = [float(r["score"]) for r in rows if int(r["update"]) == updates[-1]]
    assert not trial["won"] or trial["eval_ci_low"] > 0
    assert trial["games_to_win"] is None or trial["won"]
    summary = (out / "summary.md").read_text()
    assert "fresh games" in summary and "evaluated mean" in summary
    assert np.isfinite(np.mean(scores))

    # the trial's child run logged its policy: reloaded, it plays the same fresh games to the same evaluation
    from gradlab.studies.pg.policy import load_logged, reevaluate
    from gradlab.tracking import Tracker

    children = [r for r in Tracker(store).runs("gradlab/pg_pong_win") if "mlflow.parentRunId" in r.data.tags]
    (child,) = [r for r in children if r.data.tags["gradlab.variant"] != "reference"]  # beside the reference trial
    policy, meta = load_logged(child.info.run_id, tracking_uri=store)
    assert meta["updates"] == trial["evaluations"] and meta["params"]["evaluate_games"] == 10
    again, logged = reevaluate(child.info.run_id, tracking_uri=store)
    last = [r for r in rows if int(r["update"]) == logged["update"] and r["greedy"] == "False"]
    assert again["scores"] == [float(r["score"]) for r in last]
    assert (again["mean"], again["ci_low"], again["ci_high"]) == (logged["mean"], logged["ci_low"], logged["ci_high"])
    if trial["won"]:  # the winning policy too
        assert load_logged(child.info.run_id, "winner", tracking_uri=store)[1]["evaluations"]["winner"]["won"]
    else:
        with pytest.raises(FileNotFoundError, match="no 'winner' policy"):
            load_logged(child.info.run_id, "winner", tracking_uri=store)


def test_first_winning_checkpoint_stops_training_and_is_saved(store, tmp_path, monkeypatch):
    """A checkpoint whose interval lies above 0 ends the trial: its training seconds are the time to win, its
    policy is saved, and the same policy is also evaluated greedily (reported, not the rule)."""
    import torch

    from gradlab.studies.pg import evaluation

    calls = []

    def above_zero(values, low, high):  # the 2nd checkpoint "wins": the stop path, not Pong skill, is tested
        calls.append(len(values))
        return (0.75, 0.5, 1.0) if len(calls) >= 2 else (-0.75, -1.0, -0.5)

    monkeypatch.setattr(evaluation, "t_mean_ci", above_zero)
    monkeypatch.setenv("GRADLAB_WORKERS", "1")
    text = TINY_WIN.replace("updates: 2", "updates: 4")
    assert run_stage("pg_pong_win", params_file=write_params(tmp_path, text)) == 0
    out = tmp_path / "results" / "pg_pong_win"
    trial = json.loads((out / "stats.json").read_text())["win"]["correct__seed0"]
    assert trial["won"] and trial["evaluations"] == 2 and trial["games_to_win"] == 4  # 2 updates x 2 games
    assert trial["eval_ci_low"] == 0.5 and trial["eval_greedy_mean"] is not None
    assert trial["seconds_to_win"] <= trial["train_seconds"]
    rows = _rows(out / "evaluation_games.csv")
    assert {(int(r["update"]), r["greedy"]) for r in rows} == {(1, "False"), (2, "False"), (2, "True")}
    state = torch.load(out / "policies" / "correct__seed0.pt", weights_only=True)
    assert set(state) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}


def test_evaluation_seeds_never_reuse_training_seeds():
    from gradlab.studies.pg.evaluation import check_disjoint, eval_seed
    from gradlab.studies.pg.rollout import update_seed

    assert eval_seed(0, 10) != update_seed(0, 10)
    check_disjoint([1, 2], [3, 4])
    with pytest.raises(RuntimeError, match="used by training"):
        check_disjoint([1, 2], [2, 5])


@pytest.mark.parametrize(
    "change, message",
    [
        ("stop_at_mean: null", "set stop_at_mean: null"),
        ("evaluate_games: 10", "multiple of evaluate_envs"),
    ],
)
def test_evaluation_settings_are_checked(change, message):
    from gradlab.studies.pg.config import PongWinParams

    kw = {"evaluate_games": 12, "evaluate_envs": 8, "stop_at_mean": None}
    if change == "stop_at_mean: null":
        kw = {"evaluate_games": 16, "evaluate_envs": 8, "stop_at_mean": 0.0}
    with pytest.raises(ValueError, match=message):
        PongWinParams(**kw)
