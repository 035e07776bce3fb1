"""pg stages end to end on tiny parameters: outputs, MLflow runs, determinism, checkpoint/resume."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil

import pytest
import torch
from conftest import tiny_params

from gradlab.runner import run_stage
from gradlab.tracking import Tracker


def _headline_keys(text: str) -> list[str]:
    from gradlab.config import flatten

    return sorted(flatten(json.loads(text)))


def _cis_inside_their_range(m: dict) -> int:
    """Every *_ci_low/_ci_high of a pg stage inside its quantity's possible range, low <= mean <= high; returns how
    many there are (tiny stages have none: fewer than 10 seeds and 10 updates)."""
    from gradlab.config import flatten

    flat = flatten(m)
    ranges = {"final_return": (0.0, 500.0), "probe_corr": (-1.0, 1.0), "loss_value_return_corr": (-1.0, 1.0)}
    checked = 0
    for key, low in flat.items():
        if not key.endswith("_ci_low") or low is None:
            continue
        base = key.removesuffix("_ci_low")
        high, mean = flat[base + "_ci_high"], flat.get(base, flat.get(base + "_mean"))
        name = base.rsplit(".", 1)[-1]
        lo, hi = next(
            (r for k, r in ranges.items() if name.endswith(k)),
            (0.0, 1.0) if "fraction" in name or name.startswith("share") else (-math.inf, math.inf),
        )
        if name.endswith("diff_vs_correct"):
            lo, hi = -500.0, 500.0
        assert lo <= low <= high <= hi, (key, low, high)
        if mean is not None:
            assert low <= mean + 1e-9 and mean <= high + 1e-9, (key, low, mean, high)
        checked += 1
    return checked


def _verdicts_and_counts(m: dict) -> None:
    """flags.* are verdicts (+1 / 0 / -1, ints), seed_counts.* counts of seeds (ints in [0, seeds])."""
    assert m["flags"] and m["seed_counts"]
    for key, value in m["flags"].items():
        assert type(value) is int and value in (-1, 0, 1), key
    for key, value in m["seed_counts"].items():
        assert type(value) is int and 0 <= value <= m["seeds"], key


@pytest.mark.slow
def test_pg_cartpole_three_episodes_end_to_end(tiny_runs):
    out = tiny_runs.stage("pg_cartpole")  # studies/pg/tiny.yaml, run once per session (conftest.TinyRuns)
    m = json.loads((out / "stats.json").read_text())
    assert set(m["variants"]) == {"correct", "flipped", "baseline"}
    for v, x in m["variants"].items():
        for key in ("final_return_mean", "probe_corr"):
            assert isinstance(x[key], float), (v, key)
        assert x["final_return_ci_low"] is None and x["final_return_ci_high"] is None  # 2 seeds: no "95 % CI"
        assert len(x["final_return_per_seed"]) == 2 and len(x["probe_corr_per_seed"]) == 2
        assert "episodes_to_solve_median" in x
    f = m["variants"]["flipped"]
    assert f["p_exact_min"] == pytest.approx(0.5) and f["p_exact_vs_correct"] >= f["p_exact_min"]  # paired, 2 seeds
    assert m["flags"]["flipped_below_correct"] == 0  # 2 seeds cannot reach p < 0.05
    _verdicts_and_counts(m)
    # the same first batch for both variants of a seed: the probe is exactly mirrored by the sign flip
    c, f = m["variants"]["correct"], m["variants"]["flipped"]
    assert c["probe_corr"] > 0 and f["probe_corr"] == pytest.approx(-c["probe_corr"], abs=0.05)
    # the loss value does not matter: K steps of the correct loss on the first batch drive it below zero
    fixed = m["fixed_batch"]
    assert fixed["steps"] == 100 and fixed["loss_after_k_steps"] < 0 < fixed["steps"]
    assert m["seed_counts"]["fixed_batch_loss_below_zero"] == sum(x < 0 for x in fixed["loss_after_k_steps_per_seed"])
    assert fixed["variants"]["flipped"]["loss_after_k_steps"] < 0  # flipped's own loss falls too
    for v, x in m["variants"].items():
        for key in ("adv_neg_logp_down_fraction", "adv_pos_logp_up_fraction", "probe_adv_neg_logp_down_fraction"):
            assert 0.0 <= x[key] <= 1.0, (v, key)
        assert -1.0 <= x["loss_value_return_corr"] <= 1.0
    # first order: the probe's change for flipped is minus correct's, so the fractions are complements
    assert f["probe_adv_neg_logp_down_fraction"] == pytest.approx(1 - c["probe_adv_neg_logp_down_fraction"], abs=0.05)
    _cis_inside_their_range(m)
    text = (out / "summary.md").read_text()
    assert not re.search(r"\b(nan|None|inf)\b", text), text
    assert "| variant | probe: A<0 down" in text and "## Does the value of the loss matter?" in text
    # the cosines with grad J at the kept policies (gradient_at [0, 3]): the same initial policy for every variant
    g = m["gradient"]
    assert g["checkpoints"] == [0, 3] and set(g["at_correct"]) == {"correct", "flipped"}
    c0 = g["at_correct"]["correct"]["u0"]
    assert c0["seeds"] == 2 and c0["ci_low"] is None  # 2 seeds: no interval
    assert g["at_correct"]["flipped"]["u0"]["per_seed"] == [-x for x in c0["per_seed"]]  # the mirror, exactly
    assert g["own"]["baseline"]["u0"]["seeds"] == 2  # baseline's direction needs its own value network
    assert "## Does each loss move the policy up the true gradient?" in text
    assert text.index("## Does each loss move") < text.index("| variant | first return per seed")  # the lead
    rows = (out / "gradient.csv").read_text().splitlines()
    assert rows[0].startswith("policy_of,seed,update,direction_of,cos,")
    assert len(rows) == 1 + 2 * 2 * (2 + 2 + 3)  # seeds x checkpoints x directions (baseline: its own trial only)
    episodes = (out / "episodes.csv").read_text().splitlines()
    assert episodes[0] == "variant,seed,episode,update,return,return_mean100,length,frames"
    assert len(episodes) == 1 + 3 * 2 * 3  # 3 variants x 2 seeds x 3 episodes
    assert "frames_per_second" in json.loads((out / "timing.json").read_text())
    for name in [
        "figures/learning_curves.png",
        "figures/final_return_and_probe.png",
        "figures/gradient_cosine.png",
        "summary.md",
        "plots/learning_curve.csv",
        "plots/final_return.csv",
        "plots/probe.csv",
    ]:
        assert (out / name).stat().st_size > 0, name

    parent, runs = tiny_runs.stage_run("pg_cartpole")  # the one top-level run of the stage
    assert parent.info.status == "FINISHED"
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    trained = {f"{v}__seed{s}" for v in ("correct", "flipped", "baseline") for s in (0, 1)}
    assert set(children) == trained | {"reference__seed0"}  # the reference policies are a trial too
    assert set(children["reference__seed0"].data.metrics) == {
        "reference/always_left_return_mean",
        "reference/random_return_mean",
    }
    history = Tracker(tiny_runs.uri).client.get_metric_history(children["correct__seed0"].info.run_id, "episode/return")
    assert len(history) == 3


@pytest.mark.slow
@pytest.mark.parametrize("where", ["same_store", "fresh_store"])
def test_pg_cartpole_resume_equals_an_uninterrupted_run(
    store, tmp_path, monkeypatch, tiny_runs, _template_store, where
):
    """Resumed in the same MLflow store, the runs go on; with the checkpoints carried to a store that lacks their
    runs (another clone), new runs are made, tagged with the run they continue."""
    from gradlab.studies.pg import loop, module
    from gradlab.tracking import Tracker

    params = tiny_params(tmp_path, "pg_cartpole")
    out = tmp_path / "results" / "pg_cartpole"
    shutil.copytree(tiny_runs.stage("pg_cartpole"), out)  # the uninterrupted run (same parameters), as previous results
    uninterrupted = (out / "metrics.json").read_text()

    original = loop.Training.save_checkpoint
    saves = []

    def save_then_interrupt(self):
        original(self)
        saves.append((self.variant, self.seed, self.module.next_update))
        if (self.variant, self.seed, self.module.next_update) == ("flipped", 1, 2):
            raise KeyboardInterrupt  # Ctrl-C after the second update of the 5th trial

    monkeypatch.setattr(loop.Training, "save_checkpoint", save_then_interrupt)
    assert run_stage("pg_cartpole", params_file=params) == 130
    assert (out / "metrics.json").read_text() == uninterrupted  # previous results intact
    ckpt = tmp_path / "results" / ".checkpoints" / "pg_cartpole" / "flipped__seed1.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["next_update"] == 2 and not state["finished"] and len(state["episodes"]["return"]) == 2
    assert state["cpu_seconds"] > 0  # the interrupted process's CPU time travels with the checkpoint

    monkeypatch.setattr(loop.Training, "save_checkpoint", original)
    if where == "fresh_store":
        fresh = tmp_path / "fresh.db"
        shutil.copy(_template_store, fresh)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{fresh}")
    collected = []
    collect = module.Reinforce.collect
    monkeypatch.setattr(module.Reinforce, "collect", lambda self, u: collected.append(u) or collect(self, u))
    assert run_stage("pg_cartpole", params_file=params, resume=True) == 0
    assert collected == [2, 0, 1, 2]  # flipped seed 1 continues at update 2, baseline seed 1 starts over
    assert (out / "metrics.json").read_text() == uninterrupted
    timing = {(r["variant"], r["seed"]): r for r in csv.DictReader((out / "timing.csv").open())}
    assert float(timing["flipped", "1"]["cpu_seconds"]) > state["cpu_seconds"]  # both processes' CPU time
    if where == "fresh_store":
        runs = Tracker(f"sqlite:///{tmp_path / 'fresh.db'}").runs("gradlab/pg_cartpole")
        (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert "gradlab.resumed_from" in parent.data.tags
        assert len(children) == len({(r.data.tags["gradlab.variant"], r.data.tags["gradlab.seed"]) for r in children})
        assert any("gradlab.resumed_from" in r.data.tags for r in children)


@pytest.mark.slow
def test_pg_pong_tiny_end_to_end(tiny_runs):
    out = tiny_runs.stage("pg_pong")  # studies/pg/tiny.yaml, run once per session (conftest.TinyRuns)
    first = (out / "metrics.json").read_text()
    assert "frames_per_second" not in first and "frameskip" not in first  # no wall-clock numbers, no config echo
    m = json.loads((out / "stats.json").read_text())  # every number
    assert set(m["variants"]) == {"correct", "flipped"}
    assert m["env"]["frameskip"] == 4 and m["env"]["repeat_action_probability"] == 0.25
    timing = json.loads((out / "timing.json").read_text())
    assert timing["frames_per_second"] > 0 and timing["frames_total"] > 0
    for v in m["variants"].values():  # one point per episode: every episode return is +1 or -1
        assert all(r in (-1.0, 0.0, 1.0) for r in v["final_return_per_seed"])  # mean of two +-1 episodes
    text = (out / "summary.md").read_text()
    assert "repeat_action_probability) 0.25" in text
    assert not re.search(r"\b(nan|None|inf)\b", text), text
    assert "fixed_batch" not in m  # off for Pong (a whole batch of games per step)
    _verdicts_and_counts(m)
    assert {"correct_improves", "flipped_improves", "flipped_below_correct"} <= set(m["flags"])
    assert 0.0 <= m["variants"]["correct"]["adv_neg_logp_down_fraction"] <= 1.0
    assert "variants.correct.adv_neg_logp_down_fraction" in str(_headline_keys(first))
    # deterministic (the same bytes again, in another process): tests/test_quick.py
