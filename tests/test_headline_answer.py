"""The parent run's metrics: the few numbers that answer each stage's question (Stage.answer), verdicts as tags."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from gradlab.headline import ANSWER_LIMIT, answer, read_metrics, verdict_tags
from gradlab.stages import all_stages

COMMITTED = sorted(name for name in all_stages() if (ROOT / "results" / name / "metrics.json").exists())


@pytest.mark.parametrize("name", COMMITTED)
def test_each_stage_answers_with_a_few_numbers_and_its_verdicts_as_tags(name):
    top = read_metrics(ROOT / "results" / name / "metrics.json")
    numbers = answer(top, all_stages()[name].answer, limit=10**6)  # every match: none may be cut off
    assert 1 <= len(numbers) <= ANSWER_LIMIT, sorted(numbers)
    assert not any("flags" in k.split(".") for k in numbers)
    tags = verdict_tags(top)
    assert set(tags.values()) <= {"+1", "0", "-1", "yes", "no"}
    assert all(k.startswith("verdict.") for k in tags)


def test_answer_refuses_more_than_the_limit_and_keeps_order():
    top = {"a": {f"x{i}": float(i) for i in range(20)}, "flags": {"ok": 1}, "passed": True}
    assert list(answer(top, ())) == [f"a.x{i}" for i in range(ANSWER_LIMIT)]
    assert answer(top, ("a.x1", "a.x2")) == {"a.x1": 1.0, "a.x2": 2.0}
    assert len(answer(top, ("a.*",))) == ANSWER_LIMIT
    assert verdict_tags(top) == {"verdict.flags.ok": "+1", "verdict.passed": "yes"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gd", "mdn", "spearman", "pg_pong"])
def test_tiny_parent_runs_carry_the_answer_and_children_their_curves(tiny_runs, name):
    from gradlab.tracking import Tracker

    parent, runs = tiny_runs.stage_run(name)
    own = sorted(k for k in parent.data.metrics if not k.startswith("system/"))
    assert "stage/seconds" in own and len(own) <= ANSWER_LIMIT + 1, own
    whole = json.loads((tiny_runs.results / name / "metrics.json").read_text())
    assert list(whole) == [name]  # the headline under the stage's name: every key unique across stages
    top = whole[name]
    assert {k for k in parent.data.tags if k.startswith("verdict.")} == set(verdict_tags(top))
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    client = Tracker(tiny_runs.uri).client
    curve = {"gd": "train/loss", "mdn": "train/loss", "spearman": "train/best_spearman", "pg_pong": "episode/return"}
    longest = max(len(client.get_metric_history(c.info.run_id, curve[name])) for c in children)
    assert longest >= 2, f"no child of {name} has a {curve[name]} curve"
