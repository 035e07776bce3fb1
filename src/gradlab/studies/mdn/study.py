"""Why does a mixture-density network's NLL turn NaN after a varying number of steps -- even at lr 0?

The plan, top to bottom:

1. The port: the asker's TFP loss (``probs_log``) against TFP's own output on the same batches
   (``referee``), and an independent check of an underflowed mixing weight.
2. The asker's conditions (``asker``): clean Bishop data in [0, 1], long training, the asker's loss
   under the baseline and each remedy they tried, alone; torch's ``Categorical(probs=)`` and the
   logits path beside it; outliers as a separate condition. lr 0 (``lr0``): clean or non-finite
   inputs, BatchNorm, SGD/Adam, a scale that can be 0. Each trial trains an MDN through Lightning
   Fabric on a worker; a :class:`gradlab.forensics.NonFiniteWatch` records the first non-finite
   tensor and step, and the NaN doctor (``gradlab.doctor.diagnose``) replays that step op by op and names its
   cause. A diverged trial is a result, never a crash.
3. The stable loss learns (``stable``): logits + softplus with K components vs a single Gaussian
   vs the marginal, over seeds, with the fitted conditional densities.
4. Analysis (counts, Wilson intervals, exact tests), the symptom -> cause -> fix table, figures, summary.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from gradlab.context import StageContext
from gradlab.models import log_model
from gradlab.studies.mdn import analysis, figures
from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.referee import independent_check, referee
from gradlab.studies.mdn.summary import summary
from gradlab.studies.mdn.trial import FIELDS, TrialSpec, cost, dataset, run_trial, trial_specs, variant
from gradlab.tracking import Run
from gradlab.trials import Child

BULKY = ("losses", "density_grid", "train_x", "train_y", "logit_gap_curve")


def run(p: MdnParams, ctx: StageContext) -> dict:
    specs = trial_specs(p)
    rows, curves, grids, gaps = [], {}, {}, {}
    results = ctx.run_trials(run_trial, specs, child_of, log_trial, cost=cost, workers=p.workers or None)
    for spec, result in zip(specs, results, strict=True):
        row = row_of(spec, result)
        rows.append(row)
        curves[(row["variant"], row["seed"])] = result["losses"]
        if spec.block == "asker":
            gaps[(row["variant"], row["seed"])] = result["logit_gap_curve"]
        if "density_grid" in result:
            grids[(spec.components, spec.seed)] = result["density_grid"] | {
                "train_x": result["train_x"],
                "train_y": result["train_y"],
            }

    d = p.data
    data = make_data(d.n_train, d.n_val, d.noise, 0.0, d.outlier_scale, p.seed)
    marginal = analysis.marginal_nll(data.y_train, data.y_val)
    metrics = analysis.metrics(rows, referee(), independent_check(), marginal, p.stable.components)

    ctx.write_csv("trials.csv", rows)
    ctx.write_csv("symptoms.csv", metrics["symptoms"])
    st = metrics["stable"]
    ctx.write_csv(
        "plots/stable_val_nll.csv",
        [
            {"model": f"mdn_k{p.stable.components}", "seed": i, "val_nll": v}
            for i, v in enumerate(st["val_nll_per_seed"])
        ]
        + [
            {"model": "single_gaussian", "seed": i, "val_nll": v}
            for i, v in enumerate(st["single_gaussian_val_nll_per_seed"])
        ]
        + [{"model": "marginal_kde", "seed": i, "val_nll": marginal} for i in range(len(st["val_nll_per_seed"]))],
    )
    ctx.write_csv(
        "plots/logit_gap.csv",
        [
            {
                "trial": f"{r['variant']}__seed{r['seed']}",
                "condition": r["condition"],
                "mixture": r["mixture"],
                "lr": r["lr"],
                "max_logit_gap": r["max_logit_gap"],
            }
            for r in rows
            if r["block"] == "asker" and r["max_logit_gap"] is not None
        ],
    )
    ctx.savefig(figures.figure_densities(grids, p.stable.components, st, p.seed), "conditional_densities.png")
    ctx.savefig(figures.figure_stable(st), "stable_val_nll.png")
    ctx.savefig(figures.figure_logit_gap(rows, gaps, metrics["independent"]["underflow_gap"]), "logit_gap.png")
    ctx.savefig(figures.figure_lr0(rows), "lr0_first_nonfinite.png")
    ctx.write_json("timing.json", {"trial_seconds_total": sum(r["seconds"] for r in rows)})
    ctx.write_text("summary.md", summary(metrics, p))
    return metrics


def row_of(spec: TrialSpec, result: dict) -> dict:
    """A trial's row of trials.csv: its levels, seed and variant, and what it returned but the bulky curves."""
    row = spec.levels() | {"seed": spec.seed, "variant": variant(spec)}
    return row | {k: v for k, v in result.items() if k not in BULKY}


def child_of(spec: TrialSpec) -> Child:
    return Child(variant(spec), spec.seed, {f"trial.{f}": getattr(spec, f) for f in FIELDS})


def log_trial(run: Run, spec: TrialSpec, result: dict) -> None:
    """What a trial returned, on its child run (in the process that ran it)."""
    row, losses = row_of(spec, result), result["losses"]
    run.set_tags(
        {
            "mdn.diverged": row["diverged"],
            "mdn.first_nonfinite": row["first_nonfinite_what"] or "none",
            "mdn.cause": row["cause"] or "none",
        }
    )
    numbers = {
        "trial/diverged": row["diverged"],
        "trial/weights_nonfinite": row["weights_nonfinite"],
        "trial/steps_run": row["steps_run"],
        "trial/nonfinite_loss_steps": row["nonfinite_loss_steps"],
    }
    if row["first_nonfinite_step"] is not None:
        numbers["trial/first_nonfinite_step"] = row["first_nonfinite_step"]
    if row["val_nll"] is not None:
        numbers["eval/nll"] = row["val_nll"]
    if row["max_logit_gap"] is not None:
        numbers["trial/max_logit_gap"] = row["max_logit_gap"]
    numbers["trial/zero_weight_steps"] = row["zero_weight_steps"]
    if "fixed_batches" in row:
        numbers["probe/fixed_weight_nonfinite_batches"] = row["fixed_nonfinite_batches"]
    run.log_metrics(numbers)
    finite = [(i, v) for i, v in enumerate(losses) if math.isfinite(v)]
    if finite:
        run.log_curve("train/loss", [v for _, v in finite], [i for i, _ in finite])
    state = result.pop("state")  # the network goes to MLflow (trial.load_logged, trial.reevaluate), not back
    network, evaluation = "gradlab.studies.mdn.module.MDN", {"val_nll": row["val_nll"]}
    log_model(run, state, {"network": network, "spec": asdict(spec), "evaluation": evaluation})
    run.log_dataset(*dataset(spec))
