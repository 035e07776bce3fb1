"""Does each winning Pong checkpoint still win on games nobody has seen? A confirmation of the evaluated win.

A win preset stops a seed at the first evaluation (200 fresh games, sampled actions) whose 95 % CI of the mean score
lies above 0. A seed that is evaluated many times before it wins gets many chances: that first winning evaluation is
selected, and its mean is biased upwards. This plays each committed winning policy (``results/STAGE/policies/``)
again, for new games: emulator seeds from another branch of the seed tree (``CONFIRM_UPDATE``), checked disjoint
from training's and from every evaluation the stage ran. The verdict is the same rule as the stage's (the t interval
of the mean score above 0); nothing here is selected, so it is the unbiased estimate of how well each policy plays.

    .venv/bin/python tools/pong_confirm.py pg_pong_tuned [--games 200] [--greedy]

Writes ``results/pong_confirm/STAGE/`` (``scores.csv``: one row per game; ``stats.json``: per seed, quoted by the
report).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch

from gradlab.config import ConfigError
from gradlab.runner import resolve_params
from gradlab.studies.pg.evaluation import evaluate_pong
from gradlab.studies.pg.policy import Policy
from gradlab.studies.pg.rollout import update_seed
from gradlab.studies.pg.stream import stream_env_seeds

ROOT = Path(__file__).resolve().parent.parent
CONFIRM_UPDATE = 2**40  # never a training update (updates <= 1e6): its own stream of evaluation seeds


def training_seeds(p, seed: int) -> list[int]:
    """Every emulator seed the trial's training could have started: its stream starts at update 0 and again at the
    update it was resumed at, if it was (which is not recorded), so every update's start is counted."""
    return sorted(
        {int(s) for u in range(p.updates + 1) for s in stream_env_seeds(update_seed(seed, u), p.episodes_per_update)}
    )


def stage_evaluation_seeds(results: Path) -> dict[int, set[int]]:
    """Per trial seed, the emulator seeds of every evaluation the stage ran (its evaluation_games.csv)."""
    seen: dict[int, set[int]] = {}
    with open(results / "evaluation_games.csv") as f:
        for row in csv.DictReader(f):
            seen.setdefault(int(row["seed"]), set()).add(int(row["env_seed"]))
    return seen


def confirm(stage: str, params_file: Path, results: Path, out: Path, games: int, greedy: bool) -> dict:
    p = resolve_params(stage, [], params_file).model_copy(update={"evaluate_games": games})
    policies = sorted((results / "policies").glob("*.pt"))
    if not policies:
        raise ConfigError("stage", f"{results / 'policies'} holds no winning policies to confirm")
    evaluated = stage_evaluation_seeds(results)
    rows, summary = [], {}
    for path in policies:
        seed = int(re.fullmatch(r"\w+?__seed(\d+)", path.stem).group(1))
        data = path.read_bytes()  # read once: loaded here, hashed below
        state = torch.load(io.BytesIO(data), weights_only=True)
        hidden, obs_dim = state["net.0.weight"].shape  # the network's shape, as it was trained
        policy = Policy(obs_dim, hidden, state["net.2.weight"].shape[0])
        policy.load_state_dict(state)
        used = training_seeds(p, seed) + sorted(evaluated.get(seed, ()))
        ev = evaluate_pong(policy, p, seed, CONFIRM_UPDATE, greedy, used)
        summary[path.stem] = {k: ev[k] for k in ("games", "mean", "ci_low", "ci_high", "won", "seconds")}
        summary[path.stem]["policy_sha256"] = hashlib.sha256(data).hexdigest()  # the report compares it
        per_env = -(-games // len(ev["env_seeds"]))  # scores are emulator-major, per_env games each
        rows += [
            {"trial": path.stem, "seed": seed, "game": i, "env_seed": ev["env_seeds"][i // per_env], "score": score}
            for i, score in enumerate(ev["scores"])
        ]
        low, high = ev["ci_low"], ev["ci_high"]
        ci = f"95 % CI {low:.2f} to {high:.2f}" if low is not None else "no interval: every score the same"
        print(f"{path.stem}: mean {ev['mean']:.2f} ({ci}) over {ev['games']} new games; won {ev['won']}")
    won = sum(s["won"] for s in summary.values())
    result = {
        "stage": stage,
        "greedy": greedy,
        "games_per_policy": games,
        "confirm_update": CONFIRM_UPDATE,
        "won": won,
        "policies": len(summary),
        "trials": summary,
    }
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "scores.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["trial", "seed", "game", "env_seed", "score"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "stats.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"{won} of {len(summary)} winning policies won again; {out}")
    return result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage")
    ap.add_argument("--games", type=int, default=200)
    ap.add_argument("--greedy", action="store_true", help="the policy's most likely actions (default: sampled)")
    ap.add_argument("--params", type=Path, help="default: presets/STAGE.yaml")
    ap.add_argument("--results", type=Path, help="default: results/STAGE")
    ap.add_argument("--out", type=Path, help="default: results/pong_confirm/STAGE")
    a = ap.parse_args(argv)
    if a.games < 2:
        print(f"error: --games must be at least 2 (got {a.games})", file=sys.stderr)
        return 2
    params = a.params or ROOT / "presets" / f"{a.stage}.yaml"
    results = a.results or ROOT / "results" / a.stage
    out = a.out or ROOT / "results" / "pong_confirm" / a.stage
    try:
        confirm(a.stage, params, results, out, a.games, a.greedy)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
