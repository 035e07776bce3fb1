"""pg_pong_factorial: the recipe's arms read from their preset results, outcomes within the cap, exact tests."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import write_params
from scipy import stats

from gradlab.config import ConfigError, validate_section
from gradlab.runner import run_stage
from gradlab.studies.pg.config import PongFactorialParams, PongParams

# games until each seed's 100-game mean reached -10 (None: never within 400 games), and its winning game (or None)
ARMS = {
    "pg_pong_win": [(150, 300), (180, None), (210, 390)],
    "pg_pong_noop": [(250, None), (None, None), (300, None)],
    "pg_pong_recipe": [(None, None), (None, None), (None, None)],
}
FACTORIAL = """
pg_pong_factorial:
  cap_games: 400
"""


def _write_arm(results, stage, seeds, games=450):
    folder = results / stage
    folder.mkdir(parents=True)
    win = {"rule": "evaluation"}
    with (folder / "episodes.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "seed", "episode", "return"])
        for seed, (reach, won_at) in enumerate(seeds):
            # -21, then +21 from game reach - 27 on: the 100-game mean first reaches -10 after game reach
            start = None if reach is None else reach - 27
            for g in range(games):
                w.writerow(["correct", seed, g, 21.0 if start is not None and g >= start else -21.0])
            win[f"correct__seed{seed}"] = {
                "won": won_at is not None,
                "games_to_win": won_at,
                "seconds_to_win": None if won_at is None else won_at / 2,
                "eval_mean": None if won_at is None else 1.5,
                "eval_ci_low": None if won_at is None else 0.4,
                "eval_ci_high": None if won_at is None else 2.6,
            }
    (folder / "stats.json").write_text(json.dumps({"win": win}))


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_factorial_reads_the_arms_and_tests_them_exactly(store, tmp_path):
    results = tmp_path / "results"
    for stage, seeds in ARMS.items():
        _write_arm(results, stage, seeds)
    assert run_stage("pg_pong_factorial", params_file=write_params(tmp_path, FACTORIAL)) == 0
    out = results / "pg_pong_factorial"
    m = json.loads((out / "stats.json").read_text())
    rows = _rows(out / "seeds.csv")
    assert len(rows) == 12  # 4 arms x 3 seeds; the fourth repeats up_down's rows
    by_arm = {a: [r for r in rows if r["arm"] == a] for a in ("up_down", "noop", "recipe", "up_down_cost")}
    assert [r["games_to_progress"] for r in by_arm["up_down"]] == ["150", "180", "210"]
    assert [r["games_to_progress"] for r in by_arm["noop"]] == ["250", "", "300"]
    assert [r["won"] for r in by_arm["up_down"]] == ["True", "False", "True"]  # 390 <= 400
    assert [r[k] for r in by_arm["up_down_cost"] for k in ("games_to_progress", "won")] == [
        r[k] for r in by_arm["up_down"] for k in ("games_to_progress", "won")
    ]
    assert m["arms"]["up_down_cost"]["same_as"] == "up_down"
    assert m["arms"]["noop"]["games_to_progress_median"] == 300  # 250, 300, never
    assert m["arms"]["recipe"]["games_to_progress_median"] is None and m["arms"]["recipe"]["seeds_won"] == 0
    t = m["tests"]["noop_vs_up_down"]
    # 3 vs 3, all noop above all up_down: the exact two-sided p is 2 / C(6, 3) = 0.1, its floor
    assert t["games_to_progress_p"] == pytest.approx(0.1) and t["games_to_progress_p_min"] == pytest.approx(0.1)
    assert t["flags"]["faster"] == 0  # 0.1 >= 0.05: not shown, whatever the data
    assert t["won_p"] == pytest.approx(stats.fisher_exact([[0, 3], [2, 1]]).pvalue)
    assert t["won_p_min"] == pytest.approx(0.1)
    # recipe: never x3 vs noop 250, never, 300; "never" ranks last, tied (midrank 4.5): recipe's rank sum 13.5 is
    # 3 from the centre 10.5, as are 4 of the 20 splits at 13.5 and 4 at 7.5 (250, 300 and one never): p = 8 / 20
    r = m["tests"]["recipe_vs_noop"]
    assert r["games_to_progress_p"] == pytest.approx(0.4)
    summary = (out / "summary.md").read_text()
    assert "same training as `up_down`" in summary and "never" in summary
    assert (out / "figures" / "factorial.png").stat().st_size > 0


def test_factorial_refuses_missing_or_short_arms(store, tmp_path, capsys):
    results = tmp_path / "results"
    _write_arm(results, "pg_pong_win", ARMS["pg_pong_win"])
    assert run_stage("pg_pong_factorial", params_file=write_params(tmp_path, FACTORIAL)) == 2
    assert "arms:" in capsys.readouterr().err
    assert not (results / "pg_pong_factorial").exists()
    _write_arm(results, "pg_pong_noop", ARMS["pg_pong_noop"], games=300)  # stopped before the cap, no win
    _write_arm(results, "pg_pong_recipe", ARMS["pg_pong_recipe"])
    assert run_stage("pg_pong_factorial", params_file=write_params(tmp_path, FACTORIAL)) == 2
    assert "stopped before the cap" in capsys.readouterr().err


def test_factorial_params_name_the_bad_key():
    with pytest.raises(ConfigError, match="same_as"):
        validate_section(
            "pg_pong_factorial",
            PongFactorialParams,
            {
                "arms": [
                    {"name": "a", "actions": "up_down", "move_cost": 0.0, "stage": "pg_pong_win"},
                    {"name": "b", "actions": "up_down", "move_cost": 0.01, "same_as": "c"},
                ],
                "comparisons": [],
            },
        )
    with pytest.raises(ConfigError, match="comparisons"):
        validate_section("pg_pong_factorial", PongFactorialParams, {"comparisons": [["noop", "noop"]]})


def test_a_move_cost_on_up_down_is_a_constant():
    """Why the fourth arm is not trained: with UP and DOWN only, P(UP or DOWN) = 1 for any logits, so
    move_cost * P(UP or DOWN) has zero gradient; the stage refuses move_cost without NOOP for that reason."""
    import torch

    logits = torch.randn(64, 2, requires_grad=True, dtype=torch.float64)
    (0.01 * torch.softmax(logits, dim=-1).sum()).backward()
    assert torch.allclose(logits.grad, torch.zeros_like(logits.grad), atol=1e-15)
    with pytest.raises(ConfigError, match="move_cost"):
        validate_section("pg_pong", PongParams, {"move_cost": 0.01})
