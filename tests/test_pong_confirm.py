"""tools/pong_confirm.py: each winning policy replayed on new games, seeds disjoint from training's and the stage's
evaluations, with the stage's rule (the t interval of the mean score above 0)."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from gradlab.studies.pg.config import PongWinParams
from gradlab.studies.pg.policy import Policy

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "pong_confirm.py"
TINY = {"points_per_episode": 1, "hidden": 8, "updates": 1, "episodes_per_update": 2, "final_episodes": 1}


def load_tool():
    spec = importlib.util.spec_from_file_location("pong_confirm", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_confirmation_plays_new_games_of_each_policy(tmp_path):
    tool = load_tool()
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"pg_pong_tuned": {**TINY, "evaluate_envs": 2}}))
    results = tmp_path / "results" / "pg_pong_tuned"
    (results / "policies").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(Policy(1600, 8, 2).state_dict(), results / "policies" / "correct__seed7.pt")
    with open(results / "evaluation_games.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["variant", "seed", "update", "games_trained", "train_seconds", "greedy", "game", "env_seed", "score"]
        )
        w.writerow(["correct", 7, 1, 2, 1.0, False, 0, 12345, 1])
    out = tmp_path / "results" / "pong_confirm" / "pg_pong_tuned"
    result = tool.confirm("pg_pong_tuned", params, results, out, games=4, greedy=False)
    trial = result["trials"]["correct__seed7"]
    assert result["policies"] == 1 and trial["games"] == 4
    assert trial["won"] == (trial["ci_low"] is not None and trial["ci_low"] > 0)
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 4 and all(float(r["score"]) in (-1.0, 1.0) for r in rows)
    p = PongWinParams(**TINY)
    used = set(tool.training_seeds(p, 7)) | {12345}
    assert not {int(r["env_seed"]) for r in rows} & used
    assert json.loads((out / "stats.json").read_text())["won"] == int(trial["won"])
    confirmed_in_the_report(results, trial)


def confirmed_in_the_report(results: Path, trial: dict):
    """The pg_pong report section quotes the confirmation while it is of the committed policies, not after."""
    from gradlab.report.quotes import Quotes
    from gradlab.studies.pg.report import _confirm_evidence

    (results / "stats.json").write_text(json.dumps({"win": {"correct__seed7": {"evaluations": 3}}}))
    line = _confirm_evidence(Quotes(results.parent), "pg_pong_tuned")
    assert f"{int(trial['won'])} of 1 won again" in line and "correct__seed7 (won at evaluation 3)" in line
    assert f"{trial['mean']:.2f}" in line and ("not above 0" in line) != trial["won"]
    torch.save(Policy(1600, 8, 2).state_dict(), results / "policies" / "correct__seed7.pt")  # a rerun's policy
    assert "rerun `python tools/pong_confirm.py pg_pong_tuned`" in _confirm_evidence(
        Quotes(results.parent), "pg_pong_tuned"
    )


def test_bad_games_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "confirm"
    r = subprocess.run(
        [sys.executable, str(TOOL), "pg_pong_tuned", "--games", "1", "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "--games" in r.stderr and not out.exists()


def test_training_seeds_include_every_start_a_stream_of_the_trial_makes():
    from gradlab.studies.pg.rollout import pong_stream, update_seed

    tool = load_tool()
    p = PongWinParams(**{**TINY, "updates": 3})
    seeds = set(tool.training_seeds(p, 7))
    for u in (0, 3):  # a trial starts its stream at update 0, and a resumed one again where it resumed
        stream = pong_stream(p, p.episodes_per_update)
        try:
            stream.start(update_seed(7, u))
            assert {int(s) for s in stream.env_seeds} <= seeds
        finally:
            stream.close()
