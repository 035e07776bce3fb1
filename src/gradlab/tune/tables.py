"""The study's results: ``trials.csv``, ``summary.md``, ``best.yaml`` and ``figure.png`` (from the storage)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

from gradlab.tune import study as st
from gradlab.tune.space import Space


def _seconds(t) -> float | None:
    if t.datetime_start is None or t.datetime_complete is None:
        return None
    return round((t.datetime_complete - t.datetime_start).total_seconds(), 3)


def _fmt(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def trial_rows(study, space: Space) -> list[dict]:
    """One row per trial of the study (every process's), in trial order."""
    trials = study.get_trials(deepcopy=False)
    retried = st.retried_numbers(trials)
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        state = st.label(t, retried)
        step, value = st.intermediate(t)
        row = {"number": t.number, "state": state}
        row["objective"] = t.value if state == "COMPLETE" else None
        params = t.params or t.system_attrs.get("fixed_params") or {}  # a WAITING trial: the point queued
        row.update({f"params.{k}": _fmt(params.get(k)) for k in space.params})
        row.update(
            {
                "last_step": step,
                "last_intermediate": value,
                "pruned_at_step": st.pruned_at(t) if state == "PRUNED" else None,
                "seconds": _seconds(t),
                "objective_missing": bool(t.user_attrs.get(st.MISSING, False)),
                "retry_of": t.user_attrs.get(st.RETRY_OF),
                "run_id": t.user_attrs.get(st.RUN_ID, ""),
                "reason": t.user_attrs.get(st.REASON, ""),
            }
        )
        rows.append(row)
    return rows


def best_trial(study):
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return study.best_trial


def importances(study) -> tuple[dict[str, float], str]:
    """PED-ANOVA importances over the COMPLETE trials (Optuna's default); ({}, why) when they cannot be had."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"needs at least 2 COMPLETE trials (has {len(complete)})"
    try:
        import optuna

        return dict(optuna.importance.get_param_importances(study)), ""
    except Exception as exc:  # noqa: BLE001 - too few distinct values, a single parameter value...
        return {}, f"not computed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def write_best(path: Path, study, space: Space, params_text: str) -> dict | None:
    """The best trial's full resolved section of the stage, as a parameter file for ``gradlab run --params``."""
    best = best_trial(study)
    if best is None:
        path.unlink(missing_ok=True)
        return None
    import tempfile

    from gradlab.config import to_plain
    from gradlab.runner import resolve_params
    from gradlab.tune.space import trial_values

    values = trial_values(space, best.params)
    with tempfile.TemporaryDirectory() as tmp:
        frozen = Path(tmp) / "params.yaml"
        frozen.write_text(params_text)
        plain = to_plain(resolve_params(space.stage, space.sets(values), frozen))
    header = (
        f"# gradlab tune {space.name}: the best trial (#{best.number}, {space.objective['key']} = {best.value:.6g}, "
        f"{space.objective['direction']}).\n# Searched: {', '.join(f'{k}={v}' for k, v in values.items())}.\n"
        f"# Fixed for the search: {', '.join(f'{k}={json.dumps(v)}' for k, v in space.fixed.items()) or 'nothing'}.\n"
        f"# Use: gradlab run {space.stage} --params {path}\n"
    )
    path.write_text(header + yaml.safe_dump({space.stage: plain}, sort_keys=False))
    return values


def summary(study, space: Space, rows: list[dict], imp: dict, imp_note: str, info: dict) -> str:
    c = st.counts(study)
    best = best_trial(study)
    obj = space.objective
    lines = [
        f"# Tuning {space.name} ({space.stage})",
        "",
        f"Objective `{obj['key']}` ({obj['direction']}; a trial without a finite value: "
        f"{'FAIL' if obj['missing'] == 'fail' else obj['missing']}). Sampler {space.sampler['name']} "
        f"(seed {space.sampler.get('seed')}), pruner {space.pruner.get('name')} "
        f"({', '.join(f'{k} {v}' for k, v in space.pruner.items() if k != 'name') or 'defaults'}).",
        "",
        f"{len(rows)} trials in the study (budget {space.trials}): {c.complete} COMPLETE, {c.pruned} PRUNED, "
        f"{c.failed} FAIL, {c.killed} KILLED (interrupted; their points were run again), {c.running} RUNNING, "
        f"{c.waiting} WAITING.",
        "",
    ]
    if best is not None:
        params = ", ".join(f"`{k}` = {_fmt(best.params.get(k))}" for k in space.params)
        lines += [
            f"Best: trial {best.number}, {obj['key']} = {best.value:.6g} ({params}); "
            f"MLflow run {best.user_attrs.get(st.RUN_ID, '?')}. Its parameters: `best.yaml` "
            f"(`gradlab run {space.stage} --params best.yaml`).",
            "",
        ]
    else:
        lines += ["No trial has COMPLETEd yet.", ""]
    if imp:
        lines += [
            "Parameter importance (PED-ANOVA over the COMPLETE trials): "
            + ", ".join(f"`{k}` {v:.2f}" for k, v in imp.items())
            + ".",
            "",
        ]
    else:
        lines += [f"Parameter importance: {imp_note}.", ""]
    lines += [
        f"Study `{space.name}` in `{info['storage']}`; MLflow experiment `gradlab/{space.stage}`, parent run "
        f"`tune__{space.name}` ({info['parent_run']}). Run the same command again to continue it "
        f"(up to `trials`; raise `trials` to search further).",
        "",
    ]
    return "\n".join(lines)


def plot(study, space: Space, rows: list[dict], imp: dict, imp_note: str, path: Path) -> Path | None:
    """Objective per trial (pruned and failed trials marked), the intermediate values per step, importances."""
    import numpy as np

    from gradlab import plotting

    fig, (ax1, ax2, ax3) = plotting.figure(f"gradlab tune {space.name} ({space.stage})", ncols=3, width=5.5)
    obj = space.objective
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["objective"] is not None]
    xs = [r["number"] for r in complete]
    ys = [r["objective"] for r in complete]
    if complete:
        ax1.plot(xs, ys, "o", color=plotting.PALETTE[0], label="COMPLETE")
        best = np.maximum.accumulate(ys) if obj["direction"] == "maximize" else np.minimum.accumulate(ys)
        ax1.step(xs, best, where="post", color=plotting.PALETTE[2], label="best so far")
    for state, marker, color in (("PRUNED", "x", plotting.PALETTE[3]), ("FAIL", "v", "0.5"), ("KILLED", "s", "0.7")):
        marked = [r["number"] for r in rows if r["state"] == state]
        if marked:  # no objective value: marked along the bottom edge
            ax1.plot(
                marked,
                [0.02] * len(marked),
                marker,
                color=color,
                transform=ax1.get_xaxis_transform(),
                clip_on=False,
                label=f"{state} (no objective)",
            )
    from matplotlib.ticker import MaxNLocator

    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    plotting.label(ax1, "objective per trial", "trial number", f"{obj['key']} ({obj['direction']})")

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    shown = {"COMPLETE": False, "PRUNED": False}
    for r in rows:
        t = trials[r["number"]]
        if not t.intermediate_values or r["state"] not in shown:
            continue
        sign = float(t.user_attrs.get(st.SIGN, 1.0))
        steps = sorted(t.intermediate_values)
        vals = [t.intermediate_values[s] * sign for s in steps]
        pruned = r["state"] == "PRUNED"
        color = plotting.PALETTE[3] if pruned else plotting.PALETTE[0]
        lab = None if shown[r["state"]] else r["state"]
        shown[r["state"]] = True
        ax2.plot(steps, vals, "-", marker=".", markersize=3, color=color, alpha=0.7, label=lab)
        if pruned:
            ax2.plot(steps[-1], vals[-1], "x", color=color)
    plotting.label(
        ax2,
        "intermediate value (pruned: x where stopped)",
        "step (as reported by the stage)",
        "reported value (stage units)",
    )

    if imp:
        names = list(imp)[::-1]
        ax3.barh(names, [imp[n] for n in names], color=plotting.PALETTE[0])
        plotting.label(ax3, "parameter importance (PED-ANOVA)", "share of the objective's variation", "", legend=False)
    else:
        ax3.axis("off")
        ax3.text(0.5, 0.5, f"parameter importance\n{imp_note}", ha="center", va="center", wrap=True)
    fig.tight_layout()
    return plotting.save(fig, path)


def write_all(study, space: Space, folder: Path, params_text: str, info: dict) -> list[Path]:
    """Write the results into ``folder``; returns the files written (the figure's failure only warns)."""
    import pandas as pd

    rows = trial_rows(study, space)
    pd.DataFrame(rows).to_csv(folder / "trials.csv", index=False, float_format="%.10g")
    imp, imp_note = importances(study)
    (folder / "summary.md").write_text(summary(study, space, rows, imp, imp_note, info))
    written = [folder / "trials.csv", folder / "summary.md"]
    if write_best(folder / "best.yaml", study, space, params_text) is not None:
        written.append(folder / "best.yaml")
    try:
        written.append(plot(study, space, rows, imp, imp_note, folder / "figure.png"))
    except Exception as exc:  # noqa: BLE001 - a figure must never lose the table
        print(f"warning: tune figure not drawn: {type(exc).__name__}: {exc}", file=sys.stderr)
    return written


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
