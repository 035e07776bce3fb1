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

from gradlab import parallel
from gradlab.context import StageContext
from gradlab.parallel import default_workers
from gradlab.studies.mdn import analysis, figures
from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.data import make_data
from gradlab.studies.mdn.referee import independent_check, referee
from gradlab.studies.mdn.summary import summary
from gradlab.studies.mdn.trial import FIELDS, TrialSpec, run_trial, trial_specs, variant

BULKY = ("losses", "density_grid", "train_x", "train_y", "logit_gap_curve")


def _cost(spec: TrialSpec) -> float:
    """Rough relative cost, to start the slow trials first (both cores stay busy to the end)."""
    if spec.sigma == "relu" and spec.lr == 0.0:
        return 1.0  # NaN weights at step 0: stops at once
    return spec.steps * (spec.batch_size + 200)


def run(p: MdnParams, ctx: StageContext) -> dict:
    specs = trial_specs(p)
    rows, curves, grids, gaps = [], {}, {}, {}

    def log(spec: TrialSpec, timed: tuple[dict, float, float]) -> None:
        result, started, ended = timed
        row = spec.levels() | {"seed": spec.seed, "variant": variant(spec)}
        row |= {k: v for k, v in result.items() if k not in BULKY}
        log_trial(ctx, row, result["losses"], started, ended)
        rows.append(row)
        curves[(row["variant"], row["seed"])] = result["losses"]
        if spec.block == "asker":
            gaps[(row["variant"], row["seed"])] = result["logit_gap_curve"]
        if "density_grid" in result:
            grids[(spec.components, spec.seed)] = result["density_grid"] | {
                "train_x": result["train_x"],
                "train_y": result["train_y"],
            }

    run_and_log(specs, p.workers or None, log, progress=ctx.track)
    order = {(variant(s), s.seed): i for i, s in enumerate(specs)}
    rows.sort(key=lambda r: order[(r["variant"], r["seed"])])

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


def run_and_log(specs: list[TrialSpec], workers, log, progress=None, trial=run_trial) -> None:
    """Run the trials on one pool of worker processes, slowest first; log each trial as soon as it is done.

    One pool for the whole stage: starting a worker (torch, Lightning) costs ~7 s of CPU, so a pool per
    round of trials would cost more than the trials of a round. The main process logs a finished trial
    to MLflow (~0.1 s, mostly I/O wait on SQLite) while the workers train the next ones.
    """
    order = sorted(range(len(specs)), key=lambda i: -_cost(specs[i]))
    ordered = [specs[i] for i in order]
    n = min(workers or default_workers(), len(ordered)) or 1
    if n == 1:
        items = ordered if progress is None else progress(ordered, "trials")
        for spec in items:
            log(spec, parallel.timed(trial, spec))
        return

    def logged(futures):  # map_trials hands us its futures in submission order
        for spec, future in zip(ordered, futures, strict=True):
            log(spec, future.result())
            yield future

    wrap = (lambda it: progress(logged(it), "trials", len(ordered))) if progress else logged
    parallel.map_trials_timed(trial, ordered, workers=n, progress=wrap)


def log_trial(ctx, row: dict, losses: list[float], started: float | None = None, ended: float | None = None) -> None:
    """One MLflow child run for one trial (the main process logs; workers never touch MLflow), with the
    epoch seconds at which the trial really started and ended."""
    params = {f"trial.{f}": row[f] for f in FIELDS}
    tags = {
        "mdn.diverged": row["diverged"],
        "mdn.first_nonfinite": row["first_nonfinite_what"] or "none",
        "mdn.cause": row["cause"] or "none",
    }
    with ctx.child(row["variant"], row["seed"], params=params, tags=tags, started=started, ended=ended) as run:
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
