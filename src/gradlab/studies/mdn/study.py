"""Why does a mixture-density network's NLL turn NaN after a varying number of steps -- even at lr 0?

The plan, top to bottom:

1. Bishop's inverse problem (x and y scaled to [0, 1], a few corrupted training targets).
2. A factorial grid of trials: the key factors (mixture formulation, sigma activation,
   target shape, learning rate) crossed in full; optimizer, gradient clipping, dtype and
   BatchNorm crossed in full or in a half fraction (``design.fraction``); x seeds.
   Each trial trains an MDN through Lightning Fabric on one worker (both cores busy) and a
   :class:`gradlab.forensics.NonFiniteWatch` records the first non-finite quantity
   (activation, component density, log-density, loss, gradient or weight, by name) and
   its step. A diverged trial is a result, never a crash.
3. lr = 0: the loss of every batch of the trial on the fixed initial weights (is the
   trigger data-dependent?) and whether the weights themselves became non-finite
   (NaN gradient x lr 0 = NaN in the optimizer step).
4. Failure rate per level of each factor (Wilson 95 % intervals, chi-square test), per
   formulation, the stable formulation's failure count, figures and a summary.
"""

from __future__ import annotations

import math
import queue
import threading

from gradlab.parallel import map_trials
from gradlab.studies.mdn import analysis, figures
from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.summary import summary
from gradlab.studies.mdn.trial import FACTORS, TrialSpec, run_trial, trial_specs, variant


def _cost(spec: TrialSpec) -> float:
    """Rough relative cost, to start the slow trials first (both cores stay busy to the end)."""
    b, k = spec.batch_size, spec.model.components
    per_step = (b * b * k if spec.target_shape == "broadcast" else b * k) + 40 * b
    return per_step * (2.0 if spec.dtype == "float64" else 1.0)


def run(p: MdnParams, ctx) -> dict:
    specs = trial_specs(p)
    rows, curves = [], {}

    def log(spec: TrialSpec, result: dict) -> None:
        row = spec.levels() | {"seed": spec.seed, "variant": variant(spec)}
        row |= {k: v for k, v in result.items() if k != "losses"}
        log_trial(ctx, row, result["losses"])
        rows.append(row)
        curves[(row["variant"], row["seed"])] = result["losses"]

    run_and_log(specs, p.workers or None, log, chunks=p.chunks, progress=ctx.track)
    order = {(variant(s), s.seed): i for i, s in enumerate(specs)}
    rows.sort(key=lambda r: order[(r["variant"], r["seed"])])

    by_level = analysis.failure_by_level(rows, p)
    formulations = analysis.failure_by_formulation(rows)
    metrics = analysis.metrics(rows, p, by_level, formulations)
    ctx.write_csv(
        "trials.csv", [{k: v for k, v in r.items() if k != "variant"} | {"variant": r["variant"]} for r in rows]
    )
    ctx.write_csv("formulations.csv", formulations)
    ctx.write_csv(
        "plots/failure_rate.csv",
        [
            {"level": f"{f}={level}", "factor": f, **{k: v for k, v in s.items() if k != "level"}}
            for f in FACTORS
            for level, s in by_level[f]["levels"].items()
        ],
    )
    pair = analysis.curve_pair(rows, curves)
    ctx.write_csv(
        "plots/nll_curves.csv",
        [
            {"config": name, "variant": v, "seed": seed, "step": i, "train_nll": x}
            for name, (v, seed) in pair.items()
            for i, x in enumerate(curves[(v, seed)])
            if math.isfinite(x)
        ],
    )
    ctx.savefig(figures.figure_failure_rates(by_level), "failure_rates.png")
    ctx.savefig(figures.figure_heatmap(rows, metrics["strongest_factors"]), "failure_heatmap.png")
    ctx.savefig(figures.figure_curves(pair, curves, rows), "nll_curves.png")
    ctx.savefig(figures.figure_first_step(rows, p.train.steps), "first_nonfinite_step.png")
    ctx.write_json("timing.json", {"trial_seconds_total": sum(r["seconds"] for r in rows)})
    ctx.write_text("summary.md", summary(metrics, rows, p))
    return metrics


def run_and_log(specs: list[TrialSpec], workers, log, chunks: int = 4, progress=None) -> None:
    """Run the trials on worker processes in ``chunks`` rounds; log each round while the next one trains.

    Logging a child run to a SQLite store takes ~0.1 s of mostly I/O wait, as long as a trial;
    a logging thread in the main process overlaps it with the next round of trials. Within a
    round, trials start slowest first so that both cores stay busy to the end.
    """
    parts = [specs[i::chunks] for i in range(chunks) if specs[i::chunks]]
    todo: queue.Queue = queue.Queue()
    failed: list[BaseException] = []
    stop = threading.Event()

    def logger() -> None:
        try:
            while (item := todo.get()) is not None:
                for spec, result in item:
                    if stop.is_set():
                        return
                    log(spec, result)
        except BaseException as exc:  # re-raised in the main thread
            failed.append(exc)

    thread = threading.Thread(target=logger, name="mdn-logger", daemon=True)
    thread.start()
    try:
        for k, part in enumerate(parts):
            order = sorted(range(len(part)), key=lambda i: -_cost(part[i]))
            wrap = (lambda it, k=k: progress(it, f"trials {k + 1}/{len(parts)}")) if progress else None
            out = map_trials(run_trial, [part[i] for i in order], workers=workers, progress=wrap)
            results = [None] * len(part)
            for i, r in zip(order, out, strict=True):
                results[i] = r
            if failed:
                raise failed[0]
            todo.put(list(zip(part, results, strict=True)))
        todo.put(None)
        thread.join()
        if failed:
            raise failed[0]
    except BaseException:
        stop.set()
        todo.put(None)
        thread.join(timeout=30)
        raise


def log_trial(ctx, row: dict, losses: list[float]) -> None:
    """One MLflow child run for one trial (the main process logs; workers never touch MLflow)."""
    params = {f"trial.{f}": row[f] for f in FACTORS}
    tags = {"mdn.diverged": row["diverged"], "mdn.first_nonfinite": row["first_nonfinite_what"] or "none"}
    with ctx.child(row["variant"], row["seed"], params=params, tags=tags) as run:
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
        if "fixed_batches" in row:
            numbers["probe/fixed_weight_nonfinite_batches"] = row["fixed_nonfinite_batches"]
        run.log_metrics(numbers)
        finite = [(i, v) for i, v in enumerate(losses) if math.isfinite(v)]
        if finite:
            run.log_curve("train/loss", [v for _, v in finite], [i for i, _ in finite])
