"""mdn_search: the asker's NaN searched for where it could occur (issue 27.4; a preset, not part of `dvc repro`).

The mdn stage's asker-like runs never had a mixing weight underflow to exactly 0 (their largest logit gap, 41, is far
below the ~104 float32 softmax needs, or ~87 where denormals are flushed to 0 as TensorFlow does on CPU). Here the
asker's loss (``probs_log``: ``log`` of the softmax weights, what TFP's ``Categorical(probs=...)`` computes) trains
with Adam on clean data in [0, 1] over a grid: two data sets (Bishop's inverse problem; three well-separated thin
modes), K components, three scale functions, two learning rates, ``seeds`` each, ``steps`` steps.

The plan, top to bottom:

1. Every trial (:func:`run_search_trial`, on a pool of workers) trains through the mdn study's own
   :class:`~gradlab.studies.mdn.module.MDNTrial` with denormals flushed (``flush_denormal``) and records per
   step the batch's smallest mixing weight, largest logit gap and smallest scale; the
   :class:`~gradlab.forensics.NonFiniteWatch` records the first non-finite tensor and the NaN doctor names its
   cause. A trial goes on after a non-finite loss or gradient (as the asker's loop did) until its weights are
   non-finite.
2. Across trials: how often each outcome happened (no non-finite value at all, or the doctor's cause of the
   first one), in order of frequency with Wilson intervals; where the logit gaps went against the two
   underflow thresholds; the same per data set, scale function, K and learning rate.
3. ``trials.csv`` (one row per trial), ``curves.csv`` (the per-step minima and maxima, thinned to
   ``curve_points`` per trial), a figure, ``summary.md``; each trial an MLflow child run with its curves.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections import Counter

import numpy as np
import torch

from gradlab.context import StageContext
from gradlab.stats import wilson
from gradlab.studies.mdn.config import MdnSearchParams
from gradlab.studies.mdn.module import MDNTrial, val_nll
from gradlab.studies.mdn.trial import TrialSpec, build, cost
from gradlab.tracking import Run
from gradlab.trials import Child

CURVES = ("max_logit_gap", "min_weight", "min_scale")
FINITE = "finite"  # the outcome of a trial that never saw a non-finite value


def search_specs(p: MdnSearchParams) -> list[TrialSpec]:
    """Every (data set, K, scale function, lr) x seed, the asker's loss with Adam, clean data in [0, 1]."""
    out = []
    for dataset in p.datasets:
        for k in p.components:
            for sigma in p.sigma:
                for lr in p.lr:
                    for s in range(p.seeds):
                        spec = TrialSpec(
                            block="search",
                            condition=f"{dataset}-k{k}-{sigma}-lr{lr:g}",
                            mixture="probs_log",
                            sigma=sigma,
                            lr=lr,
                            optimizer="adam",
                            grad_clip=0.0,
                            loss_clip=0.0,
                            batchnorm=False,
                            y_transform=False,
                            outliers=False,
                            nonfinite=False,
                            components=k,
                            seed=p.seed + s,
                            data_seed=p.seed,
                            steps=p.steps,
                            batch_size=p.batch_size,
                            n_train=p.n_train,
                            n_val=p.n_val,
                            noise=p.noise[dataset],
                            outlier_fraction=0.0,
                            outlier_scale=0.0,
                            nonfinite_fraction=0.0,
                            y_scale=1.0,
                            y_shift=0.0,
                            hidden=p.hidden,
                            layers=p.layers,
                            sigma_eps=p.sigma_eps,
                            dataset=dataset,
                            flush_denormal=p.flush_denormal,
                        )
                        out.append(spec)
    return out


def _thin(n: int, points: int) -> list[int]:
    """About ``points`` step indices in [0, n), evenly spaced, the last step included."""
    if n <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n - 1, min(points, n)).round()})


@contextlib.contextmanager
def flushed(on: bool):
    """Denormal floats flushed to 0 (``on``) for what runs inside, on one thread. The flag is per thread (MXCSR) and
    a thread started meanwhile inherits it: one intra-op thread keeps every parallel region off the pool, so that no
    pool thread computes unflushed and none is born flushed for the rest of the process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(on)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)


def run_search_trial(spec: TrialSpec, curve_points: int = 200) -> dict:
    """Train one trial (denormals flushed if the spec says so); its outcome and per-step extremes."""
    start = time.perf_counter()
    with flushed(spec.flush_denormal):
        torch.manual_seed(spec.seed)
        net, x, y, xv, yv, order = build(spec)
        module = MDNTrial(net, x, y, order, spec.mixture, "correct", spec.optimizer, spec.lr)
        module.fit(spec.steps)
        watch, n = module.watch, len(module.losses)
        first = watch.first
        gap = module.logit_gap[:n]
        weight = module.min_weight[:n]
        scale = module.min_scale[:n]
        zero_steps = module.weight_zero[:n].nonzero().flatten().tolist()
        weights_ok = watch.weights_nonfinite_step is None
        val = val_nll(net, xv, yv) if weights_ok else math.nan
    finite_gap = gap[torch.isfinite(gap)]
    finite_scale = scale[torch.isfinite(scale)]
    idx = _thin(n, curve_points)
    run_gap, run_weight, run_scale = (
        (
            torch.cummax(torch.nan_to_num(gap, nan=-math.inf), 0).values,
            torch.cummin(torch.nan_to_num(weight, nan=math.inf), 0).values,
            torch.cummin(torch.nan_to_num(scale, nan=math.inf), 0).values,
        )
        if n
        else (gap, weight, scale)
    )
    return {
        "steps_run": n,
        "diverged": int(first is not None),
        "first_nonfinite_step": first.step if first else None,
        "first_nonfinite_what": first.label if first else "",
        "cause": (module.cause or "other") if first is not None else "",
        "outcome": (module.cause or "other") if first is not None else FINITE,
        "weights_nonfinite": int(not weights_ok),
        "nonfinite_loss_steps": sum(not math.isfinite(v) for v in module.losses),
        "zero_weight_steps": len(zero_steps),
        "first_zero_weight_step": zero_steps[0] if zero_steps else None,
        "max_logit_gap": float(finite_gap.max()) if len(finite_gap) else None,
        "min_weight": float(weight[torch.isfinite(weight)].min()) if n and bool(torch.isfinite(weight).any()) else None,
        "min_scale": float(finite_scale.min()) if len(finite_scale) else None,
        "val_nll": val if math.isfinite(val) else None,
        "curve": [
            {
                "step": i,
                "max_logit_gap": float(run_gap[i]),
                "min_weight": float(run_weight[i]),
                "min_scale": float(run_scale[i]),
            }
            for i in idx
        ],  # fmt: skip
        "losses": module.losses,
        "seconds": time.perf_counter() - start,
    }


def thresholds() -> dict:
    """The logit gap at which a float32 softmax weight is exactly 0: torch as is, torch with denormals flushed (as
    TF on CPU), and TensorFlow's own when the TFP referee script measured it (tfp_referee/tf_underflow.json)."""
    import json

    from gradlab.studies.mdn.referee import REFERENCE, underflow_gap

    with flushed(False):
        out: dict[str, float | None] = {"torch": underflow_gap(low=60.0)}
    with flushed(True):
        out["torch_flushed"] = underflow_gap(low=60.0)
    tf_file = REFERENCE.with_name("tf_underflow.json")  # asker_tfp.py --underflow, in TensorFlow itself
    out["tensorflow"] = json.loads(tf_file.read_text())["underflow_gap"] if tf_file.exists() else None
    return out


def analyse(rows: list[dict], gaps: dict) -> dict:
    """Outcomes in order of frequency (Wilson intervals), the logit gaps against the thresholds, per factor."""
    n = len(rows)
    counts = Counter(r["outcome"] for r in rows)
    outcomes = []
    for outcome, k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        share, low, high = wilson(k, n)
        outcomes.append({"outcome": outcome, "trials": k, "share": share, "ci_low": low, "ci_high": high})
    nan_rows = [r for r in rows if r["diverged"]]
    nan_causes = Counter(r["outcome"] for r in nan_rows)
    flushed = gaps.get("torch_flushed")
    metrics: dict = {
        "trials": n,
        "nan_trials": len(nan_rows),
        "outcomes": {o["outcome"]: o for o in outcomes},
        "outcome_order": [o["outcome"] for o in outcomes],
        "most_frequent_outcome": outcomes[0]["outcome"] if outcomes else None,
        "most_frequent_nan_cause": max(nan_causes, key=lambda c: (nan_causes[c], c)) if nan_causes else None,
        "zero_weight_trials": sum(r["zero_weight_steps"] > 0 for r in rows),
        "thresholds": gaps,
        "max_logit_gap": max((r["max_logit_gap"] for r in rows if r["max_logit_gap"] is not None), default=None),
        "gap_over_flushed_threshold_trials": sum(
            r["max_logit_gap"] is not None and flushed is not None and r["max_logit_gap"] >= flushed for r in rows
        ),
        "gap_over_torch_threshold_trials": sum(
            r["max_logit_gap"] is not None and r["max_logit_gap"] >= gaps["torch"] for r in rows
        ),
        "min_weight": min((r["min_weight"] for r in rows if r["min_weight"] is not None), default=None),
        "min_scale": min((r["min_scale"] for r in rows if r["min_scale"] is not None), default=None),
        "by": {},
    }
    for factor in ("dataset", "components", "sigma", "lr"):
        groups: dict = {}
        for r in rows:
            groups.setdefault(str(r[factor]), []).append(r)
        metrics["by"][factor] = {
            level: {
                "trials": len(g),
                "nan_trials": sum(r["diverged"] for r in g),
                "outcomes": dict(sorted(Counter(r["outcome"] for r in g).items())),
                "max_logit_gap": max((r["max_logit_gap"] for r in g if r["max_logit_gap"] is not None), default=None),
                "min_scale": min((r["min_scale"] for r in g if r["min_scale"] is not None), default=None),
            }
            for level, g in groups.items()
        }
    return metrics


FIELDS = ("dataset", "components", "sigma", "lr")


def row_of(spec: TrialSpec, result: dict) -> dict:
    """A trial's row of trials.csv: its condition, levels and seed, and what it returned but its curves."""
    row = {"condition": spec.condition, **{f: getattr(spec, f) for f in FIELDS}, "seed": spec.seed}
    return row | {k: v for k, v in result.items() if k not in ("curve", "losses")}


def child_of(spec: TrialSpec) -> Child:
    return Child(spec.condition, spec.seed, {f"trial.{k}": getattr(spec, k) for k in FIELDS})


def run(p: MdnSearchParams, ctx: StageContext) -> dict:
    specs = search_specs(p)
    trial = functools.partial(run_search_trial, curve_points=p.curve_points)
    results = ctx.run_trials(trial, specs, child_of, log_trial, cost=cost, workers=p.workers or None)
    rows = [row_of(spec, result) for spec, result in zip(specs, results, strict=True)]
    curves = [
        {"condition": spec.condition, "seed": spec.seed, **point}
        for spec, result in zip(specs, results, strict=True)
        for point in result["curve"]
    ]
    gaps = thresholds()
    metrics = analyse(rows, gaps)
    metrics["steps"] = p.steps
    metrics["flush_denormal"] = p.flush_denormal
    ctx.write_csv("trials.csv", rows)
    ctx.write_csv("curves.csv", curves)
    ctx.savefig(figure(curves, rows, gaps), "extremes.png")
    ctx.write_json("timing.json", {"trial_seconds_total": sum(r["seconds"] for r in rows)})
    ctx.write_text("summary.md", summary(metrics, p))
    return metrics


def log_trial(run: Run, spec: TrialSpec, result: dict) -> None:
    """What a trial returned, on its child run (in the process that ran it)."""
    row = row_of(spec, result)
    run.set_tags({"mdn.diverged": row["diverged"], "mdn.cause": row["cause"] or "none"})
    numbers = {k: row[k] for k in ("steps_run", "diverged", "zero_weight_steps") if row[k] is not None}
    numbers |= {k: row[k] for k in ("max_logit_gap", "min_weight", "min_scale", "val_nll") if row[k] is not None}
    if row["first_nonfinite_step"] is not None:
        numbers["first_nonfinite_step"] = row["first_nonfinite_step"]
    run.log_metrics({f"trial/{k}": float(v) for k, v in numbers.items()})
    steps = [c["step"] for c in result["curve"]]
    for key in CURVES:  # running extremes per step, up to the trial's last step
        values = [c[key] for c in result["curve"]]
        keep = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        if keep:
            run.log_curve(f"train/{key}", [v for _, v in keep], [s for s, _ in keep])
    finite = [(i, v) for i, v in enumerate(result["losses"]) if math.isfinite(v)]
    if finite:
        run.log_curve("train/loss", [v for _, v in finite], [i for i, _ in finite])


def figure(curves: list[dict], rows: list[dict], gaps: dict):
    """Per trial, the running largest logit gap and smallest scale against the step; the underflow thresholds."""
    from gradlab.plotting import figure as new_figure
    from gradlab.plotting import label

    fig, axes = new_figure("The asker's loss searched: logit gaps and scales over training", ncols=2, width=5.5)
    colours = {"bishop": "C0", "separated": "C1"}
    by_trial: dict = {}
    for c in curves:
        by_trial.setdefault((c["condition"], c["seed"]), []).append(c)
    for (cond, _), pts in by_trial.items():
        dataset = cond.split("-")[0]
        steps = [c["step"] + 1 for c in pts]
        axes[0].plot(steps, [c["max_logit_gap"] for c in pts], color=colours.get(dataset, "C2"), lw=0.6, alpha=0.5)
        axes[1].plot(steps, [c["min_scale"] for c in pts], color=colours.get(dataset, "C2"), lw=0.6, alpha=0.5)
    for name, value, style in (
        ("torch float32", gaps["torch"], "--"),
        ("denormals flushed", gaps["torch_flushed"], ":"),
    ):
        if value is not None:
            axes[0].axhline(value, color="black", ls=style, lw=1.0, label=f"{name}: weight 0 at gap {value:.1f}")
    for dataset, colour in colours.items():
        axes[0].plot([], [], color=colour, label=dataset)
    label(axes[0], "largest logit gap so far (one line per trial)", "step", "logit gap", logx=True)
    label(axes[1], "smallest scale so far", "step", "sigma", logx=True, logy=True, legend=False)
    return fig


def summary(m: dict, p: MdnSearchParams) -> str:
    from gradlab.stats import fmt

    g = m["thresholds"]
    lines = [
        "# mdn_search: where does the asker's NaN occur?",
        "",
        f"{m['trials']} trials of the asker's loss (log of the softmax weights, as TFP's `Categorical(probs=)`) with "
        f"Adam on clean data in [0, 1]: data sets {', '.join(p.datasets)}; K {', '.join(map(str, p.components))}; "
        f"scales {', '.join(p.sigma)}; lr {', '.join(f'{x:g}' for x in p.lr)}; {p.seeds} seeds each; {p.steps} steps"
        + (", denormals flushed to 0 as TensorFlow does on CPU." if p.flush_denormal else "."),
        "",
        "## What happened, in order of frequency",
        "",
        "| outcome | trials | share (95 % Wilson) |",
        "|---|---|---|",
    ]
    for name in m["outcome_order"]:
        o = m["outcomes"][name]
        label = "no non-finite value" if name == FINITE else f"NaN, cause `{name}`"
        lines.append(
            f"| {label} | {o['trials']} of {m['trials']} | {fmt(o['share'])} ({fmt(o['ci_low'])} to "
            f"{fmt(o['ci_high'])}) |"
        )
    tf = g.get("tensorflow")
    lines += [
        "",
        f"A float32 softmax weight is exactly 0 from a logit gap of {fmt(g['torch'], '.2f')} in torch, "
        f"{fmt(g['torch_flushed'], '.2f')} with denormals flushed"
        + (
            f", {fmt(tf, '.2f')} in TensorFlow (measured by the TFP referee)."
            if tf is not None
            else " (TensorFlow's own: not recorded; run the TFP referee)."
        ),
        f"The largest logit gap of any trial was {fmt(m['max_logit_gap'], '.1f')}; "
        f"{m['gap_over_flushed_threshold_trials']} trials reached the flushed threshold, "
        f"{m['gap_over_torch_threshold_trials']} torch's; {m['zero_weight_trials']} trials had a weight of exactly 0 "
        f"at some step. The smallest weight seen was {fmt(m['min_weight'])}, the smallest scale "
        f"{fmt(m['min_scale'])}.",
        "",
        "## By factor",
        "",
        "| factor | level | trials | NaN trials | outcomes | largest gap | smallest scale |",
        "|---|---|---|---|---|---|---|",
    ]
    for factor, levels in m["by"].items():
        for level, b in levels.items():
            outcomes = ", ".join(f"{k} {v}" for k, v in b["outcomes"].items())
            lines.append(
                f"| {factor} | {level} | {b['trials']} | {b['nan_trials']} | {outcomes} | "
                f"{fmt(b['max_logit_gap'], '.1f')} | {fmt(b['min_scale'])} |"
            )
    lines += ["", "Tables: `trials.csv`, `curves.csv`. Figure: `figures/extremes.png`."]
    return "\n".join(lines) + "\n"
