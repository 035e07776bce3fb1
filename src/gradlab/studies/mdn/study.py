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

import itertools
import math
import queue
import threading
from collections import Counter

import numpy as np
from scipy import stats as sps

from gradlab import plotting
from gradlab.parallel import map_trials
from gradlab.stats import mean_ci, welch, wilson
from gradlab.studies.mdn.config import KEY_FACTORS, OTHER_FACTORS, MdnParams
from gradlab.studies.mdn.trial import run_trial

FACTORS = (*KEY_FACTORS, *OTHER_FACTORS)
FORMULATION = ("mixture", "sigma", "target_shape")
STABLE = {"mixture": ["logits"], "sigma": ["softplus", "elu1"], "target_shape": ["correct"]}


def is_stable(row: dict) -> bool:
    return all(row[k] in v for k, v in STABLE.items())


def level_name(factor: str, value) -> str:
    if factor == "lr":
        return f"lr{value:g}"
    if factor == "grad_clip":
        return f"clip{value:g}" if value else "noclip"
    if factor == "batchnorm":
        return "bn" if value else "nobn"
    return str(value)


def variant(row: dict) -> str:
    return "-".join(level_name(f, row[f]) for f in FACTORS)


def design(p: MdnParams) -> list[dict]:
    """The factor combinations: key factors in full x the others in full or in a half fraction.

    Half fraction: keep the combinations of the other factors whose level indices sum to an
    even number. For four two-level factors this is the 2^(4-1) design with defining relation
    I = ABCD (resolution IV): every main effect is estimable and aliased only with
    three-factor interactions; every level of every factor appears equally often.
    """
    f = p.factors
    key = list(itertools.product(*(getattr(f, n) for n in KEY_FACTORS)))
    others = list(itertools.product(*(list(enumerate(getattr(f, n))) for n in OTHER_FACTORS)))
    if p.design.fraction == "half":
        others = [c for c in others if sum(i for i, _ in c) % 2 == 0]
    rows = []
    for k in key:
        for o in others:
            rows.append(
                dict(zip(KEY_FACTORS, k, strict=True)) | dict(zip(OTHER_FACTORS, [v for _, v in o], strict=True))
            )
    return rows


def trial_specs(p: MdnParams) -> list[dict]:
    data = p.data.model_dump() | {"seed": p.seed}
    model = p.model.model_dump()
    specs = []
    for row in design(p):
        for k in range(p.seeds):
            specs.append(
                row
                | {"seed": p.seed + k, "data": data, "model": model, "steps": p.train.steps}
                | {"batch_size": p.train.batch_size}
            )
    return specs


def _cost(spec: dict) -> float:
    """Rough relative cost, to start the slow trials first (both cores stay busy to the end)."""
    b, k = spec["batch_size"], spec["model"]["components"]
    per_step = (b * b * k if spec["target_shape"] == "broadcast" else b * k) + 40 * b
    return per_step * (2.0 if spec["dtype"] == "float64" else 1.0)


def run(p: MdnParams, ctx) -> dict:
    specs = trial_specs(p)
    rows, curves = [], {}

    def log(spec: dict, result: dict) -> None:
        row = {f: spec[f] for f in FACTORS} | {"seed": spec["seed"], "variant": variant(spec)}
        row |= {k: v for k, v in result.items() if k != "losses"}
        log_trial(ctx, row, result["losses"])
        rows.append(row)
        curves[(row["variant"], row["seed"])] = result["losses"]

    run_and_log(specs, p.workers or None, log, chunks=p.chunks, progress=ctx.track)
    order = {(variant(s), s["seed"]): i for i, s in enumerate(specs)}
    rows.sort(key=lambda r: order[(r["variant"], r["seed"])])

    by_level = failure_by_level(rows, p)
    formulations = failure_by_formulation(rows)
    strongest = sorted(FACTORS, key=lambda f: -by_level[f]["spread"])[:2]
    lr0 = lr_zero_mechanism(rows)
    stable_rows = [r for r in rows if is_stable(r)]
    stable_nll = [r["val_nll"] for r in stable_rows if r["val_nll"] is not None and r["lr"] > 0]
    m, lo, hi = mean_ci(stable_nll)
    whats = Counter(r["first_nonfinite_what"] for r in rows if r["diverged"])

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
    pair = curve_pair(rows, curves)
    ctx.write_csv(
        "plots/nll_curves.csv",
        [
            {"config": name, "variant": v, "seed": seed, "step": i, "train_nll": x}
            for name, (v, seed) in pair.items()
            for i, x in enumerate(curves[(v, seed)])
            if math.isfinite(x)
        ],
    )
    figure_failure_rates(ctx, by_level)
    figure_heatmap(ctx, rows, strongest)
    figure_curves(ctx, pair, curves, rows)
    figure_first_step(ctx, rows, p.train.steps)

    metrics = {
        "trials": len(rows),
        "diverged": sum(r["diverged"] for r in rows),
        "design": {
            "fraction": p.design.fraction,
            "configurations": len(rows) // p.seeds,
            "seeds": p.seeds,
            "key_factors": list(KEY_FACTORS),
            "fractional_factors": list(OTHER_FACTORS),
        },
        "failure_rate": {
            f: {
                "chi2_p": by_level[f]["chi2_p"],
                "spread": by_level[f]["spread"],
                **{lvl: {k: v for k, v in s.items() if k != "level"} for lvl, s in by_level[f]["levels"].items()},
            }
            for f in FACTORS
        },
        "strongest_factors": strongest,
        "worst": formulations[0],
        "best": formulations[-1],
        "stable": {
            "definition": "mixture=logits, sigma in {softplus, elu1}, target_shape=correct",
            "trials": len(stable_rows),
            "failures": sum(r["diverged"] for r in stable_rows),
            "val_nll_trained_mean": m,  # trials with lr > 0
            "val_nll_trained_ci_low": lo,
            "val_nll_trained_ci_high": hi,
        },
        "lr0": lr0,
        "causes": causes(rows),
        "first_nonfinite_what": dict(sorted(whats.items())),
    }
    ctx.write_json("timing.json", {"trial_seconds_total": sum(r["seconds"] for r in rows)})
    ctx.write_text("summary.md", summary(metrics, rows, p))
    return metrics


def run_and_log(specs: list[dict], workers, log, chunks: int = 4, progress=None) -> None:
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


def _rate(failures: int, n: int) -> dict:
    rate, lo, hi = wilson(failures, n)
    return {"failures": failures, "trials": n, "rate": rate, "ci_low": lo, "ci_high": hi}


def failure_by_level(rows: list[dict], p: MdnParams) -> dict:
    """Per factor: failure rate per level (Wilson 95 %), chi-square test of independence, spread of rates."""
    out = {}
    for f in FACTORS:
        levels = {}
        table = []
        for value in getattr(p.factors, f):
            mine = [r for r in rows if r[f] == value]
            k = sum(r["diverged"] for r in mine)
            levels[level_name(f, value)] = {"level": value, **_rate(k, len(mine))}
            table.append([k, len(mine) - k])
        rates = [s["rate"] for s in levels.values()]
        table = np.array(table)
        if len(table) > 1 and table[:, 0].sum() > 0 and table[:, 1].sum() > 0:
            chi2_p = float(sps.chi2_contingency(table)[1])
        else:
            chi2_p = 1.0
        out[f] = {"levels": levels, "chi2_p": chi2_p, "spread": max(rates) - min(rates)}
    return out


def failure_by_formulation(rows: list[dict]) -> list[dict]:
    """Failure rate of each (mixture, sigma, target_shape) over everything else, worst first."""
    table = []
    for combo in sorted({tuple(r[f] for f in FORMULATION) for r in rows}):
        mine = [r for r in rows if tuple(r[f] for f in FORMULATION) == combo]
        k = sum(r["diverged"] for r in mine)
        steps = [r["first_nonfinite_step"] for r in mine if r["diverged"]]
        nll = [r["val_nll"] for r in mine if r["val_nll"] is not None and r["lr"] > 0]
        lr0 = [r for r in mine if r["lr"] == 0.0]
        table.append(
            dict(zip(FORMULATION, combo, strict=True))
            | _rate(k, len(mine))
            | {
                "lr0_failures": sum(r["diverged"] for r in lr0),
                "lr0_trials": len(lr0),
                "median_first_nonfinite_step": float(np.median(steps)) if steps else None,
                "val_nll_trained_mean": float(np.mean(nll)) if nll else None,
            }
        )
    # worst first: highest failure rate, then earliest failure, then worst validation NLL of trained trials
    table.sort(
        key=lambda r: (
            -r["rate"],
            r["median_first_nonfinite_step"] if r["median_first_nonfinite_step"] is not None else math.inf,
            -(r["val_nll_trained_mean"] if r["val_nll_trained_mean"] is not None else math.inf),
        )
    )
    return table


def lr_zero_mechanism(rows: list[dict]) -> dict:
    """At lr = 0: what triggers the first non-finite value, and what makes it permanent?

    * trigger -- the probe evaluates loss and gradients of every batch of one epoch on the
      fixed initial weights: non-finite on *every* batch means the weights alone are to blame
      (e.g. a relu scale of exactly 0 somewhere in every batch); on *some* batches means the
      trigger is data-dependent (a target the density cannot represent). Before its first
      non-finite value an lr-0 trial's weights have not moved at all (``drift`` = 0), so its
      first non-finite step is simply the first such batch in its order.
    * persistence -- whether the weights were non-finite right after that step's optimizer
      update (NaN gradient x lr 0 = NaN), which makes every later step non-finite.
    """
    lr0 = [r for r in rows if r["lr"] == 0.0]
    div = [r for r in lr0 if r["diverged"]]
    every = [r for r in div if r["fixed_nonfinite_batches"] == r["fixed_batches"]]
    some = [r for r in div if 0 < r["fixed_nonfinite_batches"] < r["fixed_batches"]]
    none = [r for r in div if r["fixed_nonfinite_batches"] == 0]
    epoch1 = [r for r in div if r["first_nonfinite_step"] < r["fixed_batches"]]
    steps_some = [r["first_nonfinite_step"] for r in some]

    def whats(group):
        return dict(sorted(Counter(r["first_nonfinite_what"] for r in group).items()))

    return {
        "trials": len(lr0),
        "diverged": len(div),
        "weights_unmoved_before_first_nonfinite": sum(r["drift_before_first_nonfinite"] == 0.0 for r in div),
        "weights_nonfinite": sum(r["weights_nonfinite"] for r in div),
        "weights_nonfinite_same_step": sum(r["weights_nonfinite_step"] == r["first_nonfinite_step"] for r in div),
        "trials_with_nonfinite_batch_on_fixed_weights": sum(r["fixed_nonfinite_batches"] > 0 for r in lr0),
        "nonfinite_on_every_batch": {"trials": len(every), "first_nonfinite_what": whats(every)},
        "nonfinite_on_some_batches": {
            "trials": len(some),
            "first_nonfinite_what": whats(some),
            "batch_fraction_median": float(np.median([r["fixed_nonfinite_batches"] / r["fixed_batches"] for r in some]))
            if some
            else None,
            "first_step_min": min(steps_some) if some else None,
            "first_step_max": max(steps_some) if some else None,
            "distinct_first_steps": len(set(steps_some)),
        },
        "no_nonfinite_batch_in_first_epoch": {
            "trials": len(none),
            "first_nonfinite_what": whats(none),
            "batchnorm": sum(bool(r["batchnorm"]) for r in none),
        },
        "first_in_epoch_one": len(epoch1),
        "first_in_epoch_one_at_first_probe_batch": sum(
            r["fixed_first_nonfinite_batch"] == r["first_nonfinite_step"] for r in epoch1
        ),
        "by_formulation": {
            "-".join(str(c) for c in combo): {
                "trials": len(mine),
                "diverged": sum(r["diverged"] for r in mine),
                "distinct_first_steps": len({r["first_nonfinite_step"] for r in mine if r["diverged"]}),
            }
            for combo in sorted({tuple(r[f] for f in FORMULATION) for r in lr0})
            for mine in [[r for r in lr0 if tuple(r[f] for f in FORMULATION) == combo]]
        },
    }


def causes(rows: list[dict]) -> dict:
    """The numbers behind each cause named in the summary."""

    def rate(group):
        return _rate(sum(r["diverged"] for r in group), len(group))

    def pick(**levels):
        return [r for r in rows if all((r[k] in v) if isinstance(v, list) else r[k] == v for k, v in levels.items())]

    relu = pick(sigma="relu")
    out = {
        "zero_scale_relu": rate(relu)
        | {"first_step_max": max((r["first_nonfinite_step"] for r in relu if r["diverged"]), default=None)},
        "probs": {
            dt: rate(pick(mixture="probs", dtype=dt, sigma=["exp", "softplus", "elu1"]))
            for dt in ("float32", "float64")
        },
        "logits_nonzero_scale": {
            sg: rate(pick(mixture="logits", sigma=sg)) for sg in ("exp", "softplus", "elu1") if pick(sigma=sg)
        },
        "probs_by_target_shape": {
            ts: rate(pick(mixture="probs", target_shape=ts, sigma=["exp", "softplus", "elu1"]))
            for ts in ("correct", "broadcast")
        },
        "probs_first_nonfinite_what": dict(
            sorted(
                Counter(
                    r["first_nonfinite_what"].split(":")[0]
                    for r in pick(mixture="probs", sigma=["exp", "softplus", "elu1"])
                    if r["diverged"]
                ).items()
            )
        ),
    }
    exp_fail = [r for r in pick(mixture="logits", sigma="exp") if r["diverged"]]
    out["logits_exp_failures"] = [
        {
            "variant": r["variant"],
            "seed": r["seed"],
            "step": r["first_nonfinite_step"],
            "what": r["first_nonfinite_what"],
            "loss_finite": int(r["nonfinite_loss_steps"] == 0),
        }
        for r in exp_fail
    ]
    shape = {}
    for ts in ("correct", "broadcast"):
        trained = pick(mixture="logits", sigma=["softplus", "elu1"], target_shape=ts)
        nll = [r["val_nll"] for r in trained if r["lr"] > 0 and r["val_nll"] is not None]
        mean, lo, hi = mean_ci(nll)
        shape[ts] = rate(trained) | {
            "val_nll_trained_median": float(np.median(nll)) if nll else None,
            "val_nll_trained_min": min(nll) if nll else None,
            "val_nll_trained_mean": mean,
            "val_nll_trained_ci_low": lo,
            "val_nll_trained_ci_high": hi,
        }
    trained = {
        ts: [
            r["val_nll"]
            for r in pick(mixture="logits", sigma=["softplus", "elu1"], target_shape=ts)
            if r["lr"] > 0 and r["val_nll"] is not None
        ]
        for ts in ("correct", "broadcast")
    }
    shape["welch_p"] = welch(trained["broadcast"], trained["correct"])[1]
    out["target_shape_in_log_space"] = shape
    return out


def curve_pair(rows: list[dict], curves: dict) -> dict:
    """A stable trial and the same trial with the probs formulation (same everything else), at the largest lr."""
    lr = max(r["lr"] for r in rows)
    stable = [r for r in rows if is_stable(r) and r["lr"] == lr and not r["diverged"]]
    for s in stable:
        twin = next(
            (
                r
                for r in rows
                if r["mixture"] == "probs"
                and r["diverged"]
                and r["seed"] == s["seed"]
                and all(r[f] == s[f] for f in FACTORS if f != "mixture")
            ),
            None,
        )
        if twin is not None:
            return {"stable (logits)": (s["variant"], s["seed"]), "naive (probs)": (twin["variant"], twin["seed"])}
    pair = {}
    if stable:
        pair["stable (logits)"] = (stable[0]["variant"], stable[0]["seed"])
    failing = sorted((r for r in rows if r["diverged"]), key=lambda r: -r["first_nonfinite_step"])
    if failing:
        pair["failing"] = (failing[0]["variant"], failing[0]["seed"])
    return pair


def figure_failure_rates(ctx, by_level: dict) -> None:
    fig, ax = plotting.figure("Which factor levels make the MDN loss non-finite?", width=11, height=4.5)
    xs, labels, x = [], [], 0
    for i, f in enumerate(FACTORS):
        colour = plotting.PALETTE[i % len(plotting.PALETTE)]
        first = True
        for lvl, s in by_level[f]["levels"].items():
            err = [[s["rate"] - s["ci_low"]], [s["ci_high"] - s["rate"]]]
            ax.bar(x, s["rate"], color=colour, yerr=err, capsize=3, label=f if first else None)
            xs.append(x)
            labels.append(lvl)
            first, x = False, x + 1
        x += 0.6
    ax.set_xticks(xs, labels, rotation=60, ha="right")
    ax.set_ylim(0, 1.05)
    plotting.label(ax, "bars: share of trials diverged; whiskers: Wilson 95 % CI", "factor level", "failure rate")
    ctx.savefig(fig, "failure_rates.png")


def figure_heatmap(ctx, rows: list[dict], factors: list[str]) -> None:
    a, b = factors
    la = list(dict.fromkeys(r[a] for r in rows))  # levels in the order of params.yaml
    lb = list(dict.fromkeys(r[b] for r in rows))
    grid = np.full((len(la), len(lb)), np.nan)
    fig, ax = plotting.figure(f"Failure rate over the two strongest factors: {a} x {b}", width=6.5, height=4.5)
    for i, va in enumerate(la):
        for j, vb in enumerate(lb):
            mine = [r for r in rows if r[a] == va and r[b] == vb]
            k = sum(r["diverged"] for r in mine)
            grid[i, j] = k / len(mine) if mine else np.nan
            ax.text(j, i, f"{k}/{len(mine)}", ha="center", va="center", color="white" if grid[i, j] > 0.5 else "k")
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="failure rate (diverged / trials)")
    ax.set_xticks(range(len(lb)), [level_name(b, v) for v in lb])
    ax.set_yticks(range(len(la)), [level_name(a, v) for v in la])
    ax.grid(False)
    plotting.label(ax, "cells: diverged / trials, all other factors pooled", b, a, legend=False)
    ctx.savefig(fig, "failure_heatmap.png")


def figure_curves(ctx, pair: dict, curves: dict, rows: list[dict]) -> None:
    fig, ax = plotting.figure("Training NLL: stable (log space) vs naive (probability space)")
    for i, (name, key) in enumerate(pair.items()):
        losses = curves[key]
        steps = [s for s, v in enumerate(losses) if math.isfinite(v)]
        colour = plotting.PALETTE[i]
        ax.plot(steps, [losses[s] for s in steps], color=colour, label=f"{name}: {key[0]} seed {key[1]}"[:90])
        bad = next((s for s, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is not None:
            ax.axvline(bad, color=colour, ls="--", label=f"{name}: first non-finite loss at step {bad}")
    plotting.label(
        ax,
        "dashed: first non-finite loss (a run stops once its weights are NaN)",
        "step",
        "training NLL (nats per target)",
    )
    ctx.savefig(fig, "nll_curves.png")


def figure_first_step(ctx, rows: list[dict], steps: int) -> None:
    fig, ax = plotting.figure("After how many steps does the loss turn non-finite?")
    relu = sum(r["diverged"] for r in rows if r["sigma"] == "relu")
    rest = [r for r in rows if r["sigma"] != "relu"]
    groups = {"lr = 0": [r for r in rest if r["lr"] == 0.0], "lr > 0": [r for r in rest if r["lr"] > 0.0]}
    bins = np.linspace(0, steps, min(steps, 50) + 1)
    for i, (name, mine) in enumerate(groups.items()):
        first = [r["first_nonfinite_step"] for r in mine if r["diverged"]]
        if first:
            ax.hist(first, bins=bins, alpha=0.6, color=plotting.PALETTE[i], label=f"{name} ({len(first)} diverged)")
    plotting.label(
        ax,
        f"diverged trials with a non-zero scale; the {relu} relu trials all fail at step 0",
        "first step with a non-finite value",
        "trials",
    )
    ctx.savefig(fig, "first_nonfinite_step.png")


def _pct(s: dict) -> str:
    return (
        f"{s['failures']}/{s['trials']} = {100 * s['rate']:.0f} % "
        f"(95 % CI {100 * s['ci_low']:.0f}-{100 * s['ci_high']:.0f} %)"
    )


def summary(m: dict, rows: list[dict], p: MdnParams) -> str:
    st, lr0, fr, c = m["stable"], m["lr0"], m["failure_rate"], m["causes"]
    worst, best = m["worst"], m["best"]
    some, every, none = (
        lr0["nonfinite_on_some_batches"],
        lr0["nonfinite_on_every_batch"],
        lr0["no_nonfinite_batch_in_first_epoch"],
    )
    shape = c["target_shape_in_log_space"]

    def fmt(x, spec=".3f"):
        return "n/a" if x is None else format(x, spec)

    lines = [
        "# mdn: why the mixture-density NLL turns NaN, even at lr 0",
        "",
        f"{m['trials']} trials ({m['design']['configurations']} configurations x {p.seeds} seeds; mixture, sigma, "
        f"target_shape and lr crossed in full, optimizer/grad_clip/dtype/batchnorm in a {p.design.fraction} fraction), "
        f"{p.train.steps} steps of batch {p.train.batch_size} on Bishop's inverse problem "
        f"({p.data.n_train} training points, {round(p.data.outlier_fraction * p.data.n_train)} of them with a "
        f"corrupted target up to {p.data.outlier_scale:g} target ranges away). {m['diverged']} trials diverged "
        f"(a non-finite loss, gradient or weight); none crashed the stage.",
        "",
        "## Causes, with numbers",
        "",
        f"1. **A scale that can be exactly 0** (`relu`): {_pct(c['zero_scale_relu'])} diverged, all by step "
        f"{c['zero_scale_relu']['first_step_max']}, in both formulations: `(y - mu) / 0` and `log 0` give "
        f"`inf - inf = NaN` in the component log-density (log space) or `0 / 0` in the density (probability space).",
        "2. **Densities computed in probability space** (`probs`, non-relu scales): "
        + ", ".join(f"{_pct(v)} in {k}" for k, v in c["probs"].items())
        + ". `exp(-z^2/2)` is exactly 0 once |z| > ~14.4 "
        "(float32) or ~38.6 (float64); when that holds for every component of a target, `log(0) = -inf` "
        "(first non-finite: `mixture_logdensity`); just before that, a sum of denormals keeps the log finite but "
        "its gradient `1/s` overflows (first non-finite: a `grad`). First non-finite quantities: "
        + ", ".join(f"`{k}` {v}" for k, v in c["probs_first_nonfinite_what"].items())
        + ".",
        "3. **The scale activation, in log space**: failures of the `logits` formulation with "
        + ", ".join(f"`{k}` {_pct(v)}" for k, v in c["logits_nonzero_scale"].items())
        + (
            ". The `exp` failures: "
            + "; ".join(
                f"`{e['variant']}` seed {e['seed']} at step {e['step']} (`{e['what']}`)"
                for e in c["logits_exp_failures"]
            )
            + f" -- in {sum(e['loss_finite'] for e in c['logits_exp_failures'])} of them the loss stayed finite while"
            " a gradient overflowed; `exp` puts no floor under the scale."
            if c["logits_exp_failures"]
            else "."
        ),
        f"4. **The [B, 1] target** (`broadcast`) scores every target against every row's mixture -- a different "
        f"objective. In log space (logits + softplus/elu1) it failed in {_pct(shape['broadcast'])} trials vs "
        f"{_pct(shape['correct'])} with `correct` -- not a NaN cause there -- but it learns the wrong thing: "
        f"validation NLL (correct pairing, trained trials) best {fmt(shape['broadcast']['val_nll_trained_min'])}, "
        f"median {fmt(shape['broadcast']['val_nll_trained_median'])} with `broadcast` vs best "
        f"{fmt(shape['correct']['val_nll_trained_min'])}, median {fmt(shape['correct']['val_nll_trained_median'])} "
        f"with `correct` (means {fmt(shape['broadcast']['val_nll_trained_mean'])} vs "
        f"{fmt(shape['correct']['val_nll_trained_mean'])}, Welch p = {fmt(shape['welch_p'], '.2g')}); a model of "
        f"the marginal p(y) = U(0, 1) scores 0 nats, and `broadcast` cannot do much better, because the mean over "
        f"all B x B pairs rewards predicting every row's y for every x. In probability space (non-relu scales): "
        f"{_pct(c['probs_by_target_shape']['broadcast'])} failures with `broadcast` vs "
        f"{_pct(c['probs_by_target_shape']['correct'])} with `correct`.",
        "",
        "Failure rate per level of every factor (all other factors pooled; chi-square test of independence):",
        "",
    ]
    for f in FACTORS:
        parts = "; ".join(f"`{lvl}` {_pct(fr[f][lvl])}" for lvl in fr[f] if lvl not in ("chi2_p", "spread"))
        lines.append(f"- **{f}** (p = {fr[f]['chi2_p']:.2g}): {parts}")
    lines += [
        "",
        f"Strongest factors: {', '.join(m['strongest_factors'])}. Worst formulation: {worst['mixture']} + "
        f"{worst['sigma']} + {worst['target_shape']} ({worst['failures']}/{worst['trials']} diverged). Best: "
        f"{best['mixture']} + {best['sigma']} + {best['target_shape']} ({best['failures']}/{best['trials']}, "
        f"validation NLL {fmt(best['val_nll_trained_mean'])} when trained).",
        "",
        "## lr = 0",
        "",
        f"{lr0['diverged']} of {lr0['trials']} lr-0 trials diverged. In {lr0['weights_unmoved_before_first_nonfinite']}"
        f" of them the weights had not moved at all before the first non-finite value (a finite gradient times 0 "
        f"changes nothing), so the trigger is the batch itself, on fixed weights:",
        "",
        f"- {every['trials']} trials are non-finite on **every** batch of an epoch on the fixed initial weights "
        f"({', '.join(f'`{k}` {v}' for k, v in every['first_nonfinite_what'].items()) or 'none'}): the weights, "
        f"not the data (a relu scale of 0 in every batch), fail at step 0.",
        f"- {some['trials']} trials are non-finite on **some** batches only (median "
        f"{100 * (some['batch_fraction_median'] or 0):.0f} % of an epoch's batches; "
        f"{', '.join(f'`{k}` {v}' for k, v in some['first_nonfinite_what'].items()) or 'none'}): a **data-dependent "
        f"underflow** -- a batch holding a target the float32 density cannot represent. Their first non-finite step "
        f"ranges from {some['first_step_min']} to {some['first_step_max']} ({some['distinct_first_steps']} distinct "
        f"values over {p.seeds} seeds, i.e. batch orders): it is wherever that batch falls in the shuffled order, "
        f"hence 'after a varying number of steps'.",
        f"- {none['trials']} trials had no non-finite batch in the first epoch on fixed weights and diverged on a "
        f"later epoch's batch ({', '.join(f'`{k}` {v}' for k, v in none['first_nonfinite_what'].items()) or 'none'};"
        f" {none['batchnorm']} of them with BatchNorm, where a row's output depends on the rest of its batch).",
        f"- Of the {lr0['first_in_epoch_one']} trials whose first non-finite value came in the first epoch, "
        f"{lr0['first_in_epoch_one_at_first_probe_batch']} came exactly at the first batch the probe flags.",
        "",
        f"What makes it a *collapse*: in {lr0['weights_nonfinite_same_step']} of {lr0['diverged']} the weights were "
        f"non-finite right after that step's optimizer update -- the NaN gradient times lr 0 is NaN (SGD "
        f"`p - 0 * NaN`, Adam `0 * m / (sqrt(v) + eps)`, and gradient clipping divides by a NaN norm) -- so every "
        f"later step is NaN too, although in the data-dependent cases most batches are finite on the fixed weights. "
        f"So the questioner's lr-0 observation needs both: a data-dependent non-finite loss or gradient on some "
        f"batch, made permanent by NaN x 0 in the optimizer step.",
        "",
        "## Recommendation",
        "",
        f"Compute the NLL in log space -- `log_softmax(logits)` plus the Normal log-density, reduced with `logsumexp` "
        f"(`gradlab.studies.mdn.nll`, equal to `-MixtureSameFamily(Categorical(logits=...), Normal(...)).log_prob(y)`) "
        f"-- with a scale bounded away from 0 (softplus or ELU + 1, plus eps = {p.model.sigma_eps:g}) and a target of "
        f"shape [B]. This **stable formulation** ({st['definition']}) had **{st['failures']} failures in "
        f"{st['trials']} trials**, validation NLL {fmt(st['val_nll_trained_mean'])} (95 % CI "
        f"{fmt(st['val_nll_trained_ci_low'])} to {fmt(st['val_nll_trained_ci_high'])}) for trained trials.",
        "",
        "Figures: `figures/failure_rates.png`, `figures/failure_heatmap.png`, `figures/nll_curves.png`, "
        "`figures/first_nonfinite_step.png`; every trial in `trials.csv`, every formulation in `formulations.csv`.",
        "",
    ]
    return "\n".join(lines)
