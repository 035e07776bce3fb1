"""The mdn study's causes come from the NaN doctor: per trial, in the committed results, and in the docs.

- tiny trials that go non-finite for different reasons: each trial's ``cause`` is what
  :func:`gradlab.doctor.diagnose` reports for a replay of the trial's first non-finite step, written here from
  scratch (the trial's own loop brought to the weights before that step, then forward, loss, backward and, when
  the update made the weights non-finite, the optimizer step); and the diagnosis leaves the training run as it
  was (losses, first event, weights: bit for bit);
- the committed results: ``stats.json``'s cause counts are the per-trial causes of the stage's outputs;
- ``docs/studies/mdn.md``: the asker's loop under the doctor prints exactly the output shown there.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import runpy
from collections import Counter
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from gradlab.doctor import CAUSES, diagnose
from gradlab.headline import read_metrics
from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.losses import mixture_loss
from gradlab.studies.mdn.module import MDNTrial, make_optimizer
from gradlab.studies.mdn.trial import TrialSpec, build, run_trial, trial_specs

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data": {"n_train": 512, "n_val": 128, "outlier_fraction": 0.002, "nonfinite_fraction": 0.002},
    "model": {"hidden": 16, "layers": 2, "components": 3},
    "asker": {"seeds": 1, "steps": 40, "batch_size": 32},
}


def spec(**kw) -> TrialSpec:
    base = next(s for s in trial_specs(MdnParams.model_validate(TINY)) if s.block == "asker")
    return dataclasses.replace(base, **kw)


# (name, trial, the doctor's cause, the phase the trial's watch saw first)
CASES = [
    ("nonfinite_input_lr0", spec(block="lr0", lr=0.0, nonfinite=True), "nonfinite_input", "activation"),
    (
        "nonfinite_input_lr0_batchnorm_sgd",
        spec(block="lr0", lr=0.0, nonfinite=True, batchnorm=True, optimizer="sgd"),
        "nonfinite_input",
        "activation",
    ),
    ("relu_scale_lr0", spec(block="lr0", lr=0.0, sigma="relu", batchnorm=True), "zero_scale", "component_logdensity"),
    ("saturated_head_probs_log", spec(lr=0.01, head_bias0=-150.0), "log_of_underflowed_weight", "grad"),
    (
        "density_far_targets_lr0",
        spec(block="lr0", lr=0.0, mixture="density", y_transform=True),
        "probability_underflow",
        "mixture_logdensity",
    ),
    ("update_overflows_at_step0", spec(lr=3e38, optimizer="sgd", y_transform=True), "weight_overflow", "weight"),
    # the watch sees the weights first (step 1); the doctor's replay finds an earlier inf in the head's output
    (
        "update_overflows_at_step1",
        spec(lr=1e36, optimizer="sgd", y_transform=True, mixture="logits", steps=10),
        "overflow",
        "weight",
    ),
]


def _trial(s: TrialSpec, diagnose_cause: bool = True, steps: int | None = None) -> MDNTrial:
    net, x, y, _, _, order = build(s)
    module = MDNTrial(net, x, y, order, s.mixture, "correct", s.optimizer, s.lr, s.loss_clip, diagnose=diagnose_cause)
    module.fit(s.steps if steps is None else steps, s.grad_clip)
    return module


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


def _doctor(s: TrialSpec, step: int, update: bool):
    """The doctor's report of ``step``, replayed here: the trial's loop up to the step, then the step by hand."""
    before = _trial(s, diagnose_cause=False, steps=step)  # the weights before `step`
    assert before.watch.first is None and len(before.losses) == step
    net, idx = before.net, before.order[step]
    if step == 0:  # nothing to carry over: a fresh optimizer is the trial's (one update per parameter)
        optimizer = make_optimizer(s.optimizer, net.parameters(), s.lr)
    else:
        optimizer = before._loop[2]
    for g in optimizer.param_groups:
        g["foreach"] = False  # the doctor names the parameter of a per-parameter update (same numbers)

    def replay():
        logits, mu, sigma = net(before.x[idx])
        loss = mixture_loss(logits, mu, sigma, before.y[idx], s.mixture, "correct", None, s.loss_clip)
        optimizer.zero_grad()
        loss.backward()
        if update:
            optimizer.step()
        return loss

    return diagnose(replay, step=step, skip_gradlab=False, keep_state=net)


@pytest.mark.parametrize("name,s,cause,what", CASES, ids=[c[0] for c in CASES])
def test_a_trials_cause_is_what_the_doctor_reports_for_its_first_nonfinite_step(name, s, cause, what):
    r = run_trial(s)
    step = r["first_nonfinite_step"]
    assert r["diverged"] == 1 and r["first_nonfinite_what"].split(":")[0] == what, r["first_nonfinite_what"]
    report = _doctor(s, step, update=what == "weight")
    assert report is not None and report.step == step
    assert r["cause"] == report.cause == cause, (r["cause"], str(report))
    assert cause in CAUSES


@pytest.mark.parametrize("name,s", [c[:2] for c in CASES], ids=[c[0] for c in CASES])
def test_the_doctors_replay_leaves_the_training_run_unchanged(name, s):
    """Diagnosing the first non-finite step changes nothing the trial records but its cause."""
    a, b = _trial(s), _trial(s, diagnose_cause=False)
    assert a.report is not None and a.cause == a.report.cause and b.cause == "other" and b.report is None
    assert str(a.losses) == str(b.losses)  # str: NaN losses compare equal
    assert a.watch.first == b.watch.first and a.watch.weights_nonfinite_step == b.watch.weights_nonfinite_step
    assert a.event_loss_finite == b.event_loss_finite and a.drift_at_event == b.drift_at_event
    assert torch.equal(a.weight_zero, b.weight_zero) and _same(a.logit_gap, b.logit_gap)
    assert all(_same(p, q) for p, q in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True))


def _cause_of(row: dict) -> str | None:
    """The per-trial cause that the stage counts (analysis.cause_of, over the rows with a symptom)."""
    if row["diverged"] in ("1", 1):
        return row["cause"] or "other"
    if row["val_nonfinite"] in ("1", 1):
        return "bn_running_stats" if row["running_stats_nonfinite"] in ("1", 1) else "other"
    return None


def _counts(rows: list[dict]) -> dict:
    return dict(sorted(Counter(c for c in map(_cause_of, rows) if c is not None).items()))


@pytest.mark.parametrize("folder", ["results/mdn", "results/replications/mdn"])
def test_committed_cause_counts_are_the_per_trial_causes(folder):
    stats = json.loads((ROOT / folder / "stats.json").read_text())
    causes = stats["causes"]
    assert causes and set(causes) <= set(CAUSES), causes
    assert read_metrics(ROOT / folder / "metrics.json")["causes"] == causes
    with open(ROOT / folder / "symptoms.csv") as f:  # per (symptom, cause): counts of trials
        table = list(csv.DictReader(f))
    from_table = Counter()
    for t in table:
        if t["source"] == "trials":
            from_table[t["cause"]] += int(t["trials"])
            assert (t["explanation"], t["fix"]) == (CAUSES[t["cause"]].why, CAUSES[t["cause"]].fix)
    assert dict(sorted(from_table.items())) == causes
    trials = ROOT / folder / "trials.csv"  # committed for the replication; a DVC output of the stage
    if trials.exists():
        with open(trials) as f:
            rows = list(csv.DictReader(f))
        assert _counts(rows) == causes
        assert all(r["cause"] in CAUSES for r in rows if r["diverged"] == "1")


DOC = ROOT / "docs" / "studies" / "mdn.md"
BEGIN, END = "<!-- asker-doctor-output:", "<!-- /asker-doctor-output -->"


def test_docs_asker_loop_under_the_doctor_prints_what_the_page_shows(tmp_path):
    """docs/studies/mdn.md "From your code": the asker's loop under the doctor, run as ``asker_mdn.py``; its output
    is the ```text block between the markers (paths shown relative to the script's folder)."""
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    code = re.findall(r"^```python\n(.*?)^```$", head, re.S | re.M)[-1]
    assert "gradlab.nan_doctor(" in code
    script = tmp_path / "asker_mdn.py"
    script.write_text(code)
    out = io.StringIO()
    with redirect_stdout(out):
        runpy.run_path(str(script), run_name="__main__")
    printed = out.getvalue().replace(f"{tmp_path}{os.sep}", "")
    assert "nonfinite_input" in printed and "log_of_underflowed_weight" in printed
    marker, _ = rest.split("\n", 1)
    old = rest.split(END, 1)[0].split("\n", 1)[1]
    new = f"```text\n{printed}```\n"
    if os.environ.get("GRADLAB_WRITE_DOCS") == "1":
        DOC.write_text(head + BEGIN + marker + "\n" + new + END + rest.split(END, 1)[1])
    assert old == new, "docs/studies/mdn.md: the asker loop's doctor output is out of date (GRADLAB_WRITE_DOCS=1)"
