"""End to end: the mdn stage on tiny parameters; outputs, metrics, summary and one MLflow child run per trial."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from gradlab.doctor import CAUSES
from gradlab.stages import quick_params_file
from gradlab.studies.mdn.config import STAGES, MdnParams
from gradlab.studies.mdn.trial import FIELDS, trial_specs
from gradlab.tracking import Tracker

ACCEPTANCE = [
    "asker.trials",
    "asker.nan_trials",
    "asker.finite_loss_nan_grad_trials",
    "asker.lr0.trials",
    "asker.lr0.nan_trials",
    "stable.val_nll_mean",
    "stable.single_gaussian_val_nll_mean",
]


@pytest.mark.slow
def test_mdn_stage_end_to_end(tiny_runs):
    import yaml

    p = MdnParams.model_validate(yaml.safe_load(quick_params_file("mdn").read_text())["mdn"])
    n = len(trial_specs(p))
    out = tiny_runs.stage("mdn")  # studies/mdn/tiny.yaml, run once per session (conftest.TinyRuns)
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == n
    for col in [*FIELDS, "seed", "diverged", "first_nonfinite_step", "first_nonfinite_what", "cause", "val_nll"]:
        assert col in trials.columns, col
    nan = trials[trials.diverged == 1]
    assert nan.cause.notna().all() and nan.first_nonfinite_what.notna().all()  # every NaN trial: tensor and cause
    lr0 = trials[trials.block == "lr0"]
    assert lr0[lr0.sigma == "relu"].diverged.all() and (lr0[lr0.sigma == "relu"].cause == "zero_scale").all()
    bad = lr0[(lr0.condition == "nonfinite") & (lr0.sigma != "relu")]
    assert bad.diverged.all() and (bad.cause == "nonfinite_input").all() and bad.weights_nonfinite.all()
    clean = lr0[(lr0.condition == "clean") & (lr0.sigma != "relu")]
    assert not clean.diverged.any()

    stats = json.loads((out / "stats.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())["mdn"]
    from gradlab.config import dotted

    for key in ACCEPTANCE:
        assert dotted(metrics, key, None) is not None, key
    a = stats["asker"]
    asker = trials[trials.block == "asker"]
    mine = asker[(asker.mixture == "probs_log") & ~asker.outliers.astype(bool) & (asker.condition != "saturated")]
    assert a["trials"] == len(mine) and a["nan_trials"] == int(mine.diverged.sum())
    assert a["lr0"]["trials"] == int((lr0.mixture == "probs_log").sum())
    assert stats["flags"]["every_nan_trial_has_cause"] and stats["flags"]["independent_check_passes"]
    assert stats["flags"]["referee_agrees"]
    sat = asker[asker.condition == "saturated"]  # a head built with one weight exactly 0: the asker's path fails
    assert (sat[sat.mixture == "probs_log"].cause == "log_of_underflowed_weight").all()
    assert (
        sat[sat.mixture == "probs_log"].finite_loss_nan_grad.all()
        and not sat[sat.mixture != "probs_log"].diverged.any()
    )
    assert stats["flags"]["saturated_head_probs_log_all_nan"] and stats["flags"]["saturated_head_others_finite"]
    assert stats["stable"]["nonfinite_events"] == 0
    verdicts = [k for k in stats["flags"] if k.startswith("stable_") or k.endswith("_fewer_nan")]
    assert {"stable_beats_single_gaussian", "stable_learns", "logits_fewer_nan", "probs_torch_fewer_nan"} <= set(
        verdicts
    )
    for k, v in stats["flags"].items():  # verdicts +1 / 0 / -1, observations booleans
        assert (type(v) is int and v in (-1, 0, 1)) if k in verdicts else type(v) is bool, (k, v)
    assert all(stats["flags"][k] == 0 for k in verdicts)  # 2 seeds: the exact tests' smallest p is 0.5
    assert stats["stable"]["vs_single_gaussian"]["sign_flip_p_min"] == 0.5
    assert stats["stable"]["val_nll_ci_low"] is None  # 2 seeds: no 95 % CI, the per-seed values
    assert {row["cause"] for row in stats["symptoms"]} >= {"zero_scale", "nonfinite_input"}
    summary = (out / "summary.md").read_text()
    for cause in CAUSES.values():  # the doctor's explanations and fixes are prose ("log(0) = -inf"), not numbers
        summary = summary.replace(cause.why, "").replace(cause.fix, "")
    assert not re.search(r"\b(nan|None|inf)\b", summary)  # "n/a" where undefined; "NaN" is the subject
    for name in [
        "figures/conditional_densities.png",
        "figures/stable_val_nll.png",
        "figures/logit_gap.png",
        "figures/lr0_first_nonfinite.png",
        "plots/stable_val_nll.csv",
        "plots/logit_gap.csv",
        "symptoms.csv",
        "timing.json",
    ]:
        assert (out / name).stat().st_size > 0, name
    assert "seconds" not in json.dumps(stats)  # timings stay out of the metrics

    parent, runs = tiny_runs.stage_run("mdn")  # the one top-level run of the stage
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == n and all(r.info.status == "FINISHED" for r in children)
    assert all("mdn.cause" in r.data.tags for r in children)

    # a trial's network reloads from its run and gives the validation NLL it logged, to the bit
    from gradlab.studies.mdn.trial import load_logged, reevaluate

    trained = next(r for r in children if "eval/nll" in r.data.metrics)
    net, meta = load_logged(trained.info.run_id, tiny_runs.uri)
    assert meta["network"].endswith(".MDN") and sum(p.numel() for p in net.parameters()) > 0
    again, logged = reevaluate(trained.info.run_id, tiny_runs.uri)
    assert again == logged and logged["val_nll"] == trained.data.metrics["eval/nll"]
    client = Tracker(tiny_runs.uri).client
    names = {d.dataset.name for r in children for d in client.get_run(r.info.run_id).inputs.dataset_inputs}
    assert names and all(n.startswith("mdn_bishop") for n in names), names  # each trial's training data


def test_headline_names_every_acceptance_key_and_no_config_counts():
    from fnmatch import fnmatchcase

    patterns = STAGES[0].headline
    for key in ACCEPTANCE:
        assert any(fnmatchcase(key, pat) for pat in patterns), key
    assert not any("seeds" in pat or "steps" in pat for pat in patterns)
