"""Can PyTorch adjust matrices so that a Spearman rank correlation computed from them reaches 1?

The plan, top to bottom:

1. The asker's own code (asker.py): the question's shapes (v 20 x 1, sm = v v^T 20 x 20, freq_m
   12 x 20), the answer's loop run as written (it raises: sm is not a leaf) and the fix.
2. The hill climb's stall, computed from the data (stall.py): the gaps between neighbouring values
   against the +-0.01 step, and every single move from the start counted; then the question's own climb on
   the tensors the asker holds (every entry of the 20 x 20 sm and of freq_m), every derivation, run until
   a full pass keeps no move (a certified stall) and why (plateau or local optimum).
3. The matrix problem under several list derivations, each labelled an assumption (derivation.py),
   every optimiser with the same budget of evaluations (methods.py: a count, a gradient step costs
   an evaluation and a backward pass): the question's hill climb, random search, CMA-ES,
   Nelder-Mead, gradient ascent on Pearson and on soft_spearman; anytime curves.
4. A learning-to-rank task (ltr.py): MSE, Pearson, soft_rank (strength swept), NeuralSort,
   RankNet and three derivative-free optimisers (a fixed number of evaluations each), scored by
   scipy's spearmanr on held-out data, paired over seeds (exact tests, verdicts +1 / 0 / -1);
   per-seed held-out predictions saved and re-scored.
5. Tables, figures, metrics (analysis.py) and summary.md (summary.py).
"""

from __future__ import annotations

import numpy as np
import torch

from gradlab.context import StageContext
from gradlab.models import log_model
from gradlab.studies.spearman import analysis, asker, figures, stall
from gradlab.studies.spearman.config import SpearmanParams
from gradlab.studies.spearman.derivation import ASSUMPTION, ROWS, Derivation, init_matrices
from gradlab.studies.spearman.ltr import GRADIENT
from gradlab.studies.spearman.methods import anytime_grid, spearman
from gradlab.studies.spearman.summary import summary
from gradlab.studies.spearman.trial import (
    LtrSpec,
    MatrixSpec,
    dataset,
    evaluation,
    run_trial,
    spec_json,
    trained_state,
)
from gradlab.tracking import Run
from gradlab.trials import Child


def _specs(p: SpearmanParams) -> tuple[list[str], list, list]:
    mp, lp = p.matrix, p.ltr
    derivations = list(mp.derivations) + (["custom"] if mp.custom else [])
    matrix = [MatrixSpec(d, m, p.seed + k, mp) for d in derivations for m in mp.methods for k in range(mp.seeds)]
    ltr = []
    for task in lp.tasks:
        for m in lp.methods:
            knobs = lp.strengths if m == "soft_rank" else [lp.tau] if m == "neuralsort" else [0.0]
            for knob in knobs:
                label = analysis.label_of(m, knob, lp.strength, lp.tau)
                ltr += [LtrSpec(task, m, p.seed + k, knob, label, lp) for k in range(lp.seeds)]
    return derivations, matrix, ltr


def _cost(spec) -> float:
    """Rough expected seconds (from the parameters only), to start the longest trials first."""
    if isinstance(spec, MatrixSpec):
        return 5e-4 * spec.params.budget if spec.method not in ("pearson", "soft_rank") else 0.05
    if spec.method in ("cma", "random_search", "nelder_mead"):
        return 6e-4 * spec.params.dfo_evaluations
    return 1e-3 * spec.params.steps * (3 if spec.method in ("soft_rank", "neuralsort", "ranknet") else 1)


def run(p: SpearmanParams, ctx: StageContext) -> dict:
    mp, lp = p.matrix, p.ltr
    derivations, matrix_specs, ltr_specs = _specs(p)

    # 1. the asker's loop as written, then fixed
    literal = asker.literal_loop(p.seed, p.asker.lr, p.asker.steps, p.asker.strength)
    fixed = {
        "answer_lr": asker.fixed_loop(p.seed, p.asker.lr, p.asker.steps, p.asker.strength),
        "scaled_lr": asker.fixed_loop(p.seed, p.asker.fixed_lr, p.asker.steps, p.asker.strength),
    }

    # 2. the hill climb's stall, from the data of each matrix seed
    seeds = [p.seed + k for k in range(mp.seeds)]
    stall_rows = []
    for seed in seeds:
        v, freq_m = init_matrices(mp.n, seed)
        gaps = stall.linear_gaps(v, freq_m, mp.delta)
        row = {"seed": seed, **gaps}
        for d in dict.fromkeys(["linear", *derivations]):  # linear: the question's climb, always analysed
            moves = stall.single_moves(v, freq_m, Derivation(d, custom=mp.custom if d == "custom" else ""), mp.delta)
            row |= {f"{d}_moves_changing": moves["changing"], f"{d}_moves_improving": moves["improving"]}
            row["moves"] = moves["moves"]
        stall_rows.append(row)
    ctx.write_csv("stall.csv", stall_rows)

    # 2b. the question's own climb on the tensors the asker holds: sm (20 x 20) and freq_m, every derivation
    climb_rows = []
    for d in derivations:
        derivation = Derivation(d, custom=mp.custom if d == "custom" else "")
        for matrices in p.asker.climb_matrices:
            for seed in seeds:
                v, freq_m = init_matrices(mp.n, seed)
                sm = v @ v.T  # the question's sm = torch.mm(sm, sm.t())
                out = stall.asker_climb(sm, freq_m, derivation, mp.delta, matrices, p.asker.climb_passes)
                with torch.no_grad():  # the final matrices, their lists recomputed from scratch, must agree
                    l1, l2 = derivation.rule()(torch.from_numpy(out["sm"]), torch.from_numpy(out["freq_m"]))
                if spearman(l1, l2) != out["final_spearman"]:
                    raise RuntimeError(f"climb {d} {matrices} seed {seed}: final spearmanr not reproduced")
                climb_rows.append(
                    {
                        "derivation": d,
                        "matrices": matrices,
                        "seed": seed,
                        "gap_certified": stall.gap_certificate(sm, freq_m, derivation, mp.delta, matrices),
                        **{k: v for k, v in out.items() if k not in ("sm", "freq_m", "last_pass", "matrices")},
                        **{f"last_pass_{k}": v for k, v in out["last_pass"].items()},
                        **analysis.ties_of(l1.numpy(), l2.numpy()),
                    }
                )
    ctx.write_csv("climb.csv", climb_rows)

    # 3 + 4. every trial, on all cores, longest first
    specs = matrix_specs + ltr_specs
    results = ctx.run_trials(run_trial, specs, child_of, log_trial, cost=_cost, workers=p.workers or None)
    matrix_res, ltr_res = results[: len(matrix_specs)], results[len(matrix_specs) :]

    # saved matrices: recompute the lists from the file and check the referee agrees
    matrices_reproduced = 0
    for d in derivations:
        derivation = Derivation(d, custom=mp.custom if d == "custom" else "")
        for m in mp.methods:
            rows = sorted((r for r in matrix_res if r["derivation"] == d and r["method"] == m), key=lambda r: r["seed"])
            rel = f"final/matrix_{d}_{m}.npz"
            np.savez(
                ctx.path(rel),
                seeds=np.array([r["seed"] for r in rows]),
                v=np.stack([r["v"] for r in rows]),
                freq_m=np.stack([r["freq_m"] for r in rows]),
                final_spearman=np.array([r["final_spearman"] for r in rows]),
                anytime_units=np.array(anytime_grid(mp.budget)),
                anytime_best_spearman=np.stack([r["curve"] for r in rows]),
            )
            saved = np.load(ctx.path(rel))
            for k, r in enumerate(rows):
                again = spearman(*derivation.numpy(saved["v"][k], saved["freq_m"][k]))
                if again != r["final_spearman"]:
                    raise RuntimeError(f"{rel} seed {r['seed']}: spearmanr {again!r} != {r['final_spearman']!r}")
                matrices_reproduced += 1

    # held-out predictions and targets per (task, method): re-scored with scipy from the saved file
    heldout_reproduced = heldout_total = 0
    for task in lp.tasks:
        for label in dict.fromkeys(r["label"] for r in ltr_res if r["task"] == task):
            rows = sorted((r for r in ltr_res if r["task"] == task and r["label"] == label), key=lambda r: r["seed"])
            rel = f"heldout/{task}_{label}.npz"
            np.savez(
                ctx.path(rel),
                seeds=np.array([r["seed"] for r in rows]),
                pred=np.stack([r["pred"] for r in rows]),
                target=np.stack([r["target"] for r in rows]),
                heldout_spearman=np.array([r["heldout_spearman"] for r in rows]),
                anytime_x=np.array(anytime_grid(lp.steps if rows[0]["method"] in GRADIENT else lp.dfo_evaluations)),
                anytime_train_spearman=np.stack([r["curve"] for r in rows]),
            )
            saved = np.load(ctx.path(rel))
            for k, r in enumerate(rows):
                heldout_total += 1
                heldout_reproduced += spearman(saved["pred"][k], saved["target"][k]) == r["heldout_spearman"]

    # tables: CPU and wall seconds live here only (recorded, never a budget, never in metrics/stats.json)
    drop = ("v", "freq_m", "pred", "target", "curve")
    ctx.write_csv("matrix_runs.csv", [{k: v for k, v in r.items() if k not in drop} for r in matrix_res])
    ctx.write_csv("ltr_runs.csv", [{k: v for k, v in r.items() if k not in drop} for r in ltr_res])

    matrix = analysis.matrix_table(matrix_res, derivations, list(mp.methods), mp.target)
    ties = analysis.add_tie_ceilings(matrix, matrix_res, derivations, mp.custom, mp.n)
    climb = analysis.climb_table(climb_rows, derivations, list(p.asker.climb_matrices))
    tasks = {
        task: analysis.ltr_task(
            [r for r in ltr_res if r["task"] == task], list(lp.methods), list(lp.strengths), lp.strength
        )
        for task in lp.tasks
    }
    linear_seeds = [r for r in matrix_res if r["derivation"] == "linear" and r["method"] == "hill_climb"]
    stall_summary = {
        "delta": mp.delta,
        "seeds": len(stall_rows),
        "seeds_certified_stalled": sum(r["certified"] for r in stall_rows),
        "min_gap_v_median": float(np.median([r["min_gap_v"] for r in stall_rows])),
        "min_gap_v_min": float(np.min([r["min_gap_v"] for r in stall_rows])),
        "min_gap_list2_median": float(np.median([r["min_gap_list2"] for r in stall_rows])),
        "min_gap_list2_min": float(np.min([r["min_gap_list2"] for r in stall_rows])),
        "step_on_list2": mp.delta / 12,
        "smallest_step_that_can_reorder_median": float(
            np.median([r["smallest_step_that_can_reorder"] for r in stall_rows])
        ),
        "moves_per_start": stall_rows[0]["moves"],
        "hill_climb_accepted_moves_total": sum(r["accepted"] for r in linear_seeds) if linear_seeds else None,
        "derivations": {
            d: {
                "moves_changing_median": float(np.median([r[f"{d}_moves_changing"] for r in stall_rows])),
                "moves_improving_median": float(np.median([r[f"{d}_moves_improving"] for r in stall_rows])),
                "seeds_without_improving_move": sum(r[f"{d}_moves_improving"] == 0 for r in stall_rows),
            }
            for d in derivations
        },
        "linear_seeds_without_improving_move": sum(r["linear_moves_improving"] == 0 for r in stall_rows),
    }
    metrics = {
        "asker": {
            "v_shape": [20, 1],
            "sm_shape": literal["sm"],
            "freq_m_shape": literal["freq_m"],
            "sm_is_leaf": literal["sm_is_leaf"],
            "literal_loop_raised": literal["raised"],
            "error": literal["error"],
            "failed_at_step": literal["failed_at_step"],
            "warning": literal["warning"],
            "fixed": fixed,
        },
        "assumptions": {d: ASSUMPTION[d] for d in derivations},
        "stall": stall_summary,
        "climb": climb,
        "climb_overall": analysis.climb_overall(climb),
        "climb_setup": {
            "delta": mp.delta,
            "max_passes": p.asker.climb_passes,
            "matrices": list(p.asker.climb_matrices),
            "entries": {"sm": mp.n * mp.n, "freq_m": ROWS * mp.n, "both": mp.n * mp.n + ROWS * mp.n},
        },
        "ties": ties,
        "matrix": matrix,
        "verdict_alpha": analysis.ALPHA,  # +1 / -1 when the exact paired test's p is below this, else 0
        "budgets": {
            "matrix_units": mp.budget,
            "matrix_backward_cost": mp.backward_cost,
            "matrix_gradient_step_units": 1 + mp.backward_cost,
            "ltr_dfo_evaluations": lp.dfo_evaluations,
            "ltr_steps": lp.steps,
        },
        "matrices_reproduced": matrices_reproduced,
        "matrices_saved": len(matrix_res),
        "heldout_reproduced": heldout_reproduced,
        "heldout_predictions": heldout_total,
        "heldout_reproduced_all": heldout_reproduced == heldout_total,
    }
    for task, numbers in tasks.items():
        metrics["ltr" if task == "nonlinear" else f"ltr_{task}"] = numbers

    # anytime curves: per (derivation, method) and (task, method), the median over seeds and every seed
    curves: dict[str, dict] = {
        "matrix": {
            (d, m): analysis.anytime(
                [r for r in matrix_res if r["derivation"] == d and r["method"] == m], anytime_grid(mp.budget)
            )
            for d in derivations
            for m in mp.methods
        },
        "ltr": {
            (task, m): analysis.anytime(
                [r for r in ltr_res if r["task"] == task and r["label"] == m],
                anytime_grid(lp.steps if m in GRADIENT else lp.dfo_evaluations),
            )
            for task in lp.tasks
            for m in lp.methods
        },
    }

    for name, rows in figures.plot_tables(metrics, p, curves).items():
        ctx.write_csv(f"plots/{name}.csv", rows)
    ctx.savefig(figures.figure_ltr(metrics, p), "ltr_heldout.png")
    ctx.savefig(figures.figure_sweep(metrics, p), "soft_rank_strength_sweep.png")
    ctx.savefig(figures.figure_matrix(metrics, p, derivations), "matrix_equal_budget.png")
    ctx.savefig(figures.figure_anytime_matrix(curves["matrix"], p, derivations), "anytime_matrix.png")
    ctx.savefig(figures.figure_anytime_ltr(curves["ltr"], p), "anytime_ltr.png")
    ctx.savefig(figures.figure_soft_rank(), "soft_rank_vs_strength.png")
    ctx.write_text("summary.md", summary(metrics, p, derivations))
    return metrics


def child_of(spec: MatrixSpec | LtrSpec) -> Child:
    """A trial's child run: ``matrix_<derivation>_<method>`` or ``ltr_<task>_<label>``."""
    if isinstance(spec, MatrixSpec):
        return Child(f"matrix_{spec.derivation}_{spec.method}", spec.seed, {"part": "matrix"})
    return Child(f"ltr_{spec.task}_{spec.label}", spec.seed, {"part": "ltr", "knob": spec.knob})


def log_trial(run: Run, spec: MatrixSpec | LtrSpec, r: dict) -> None:
    """What a trial returned, on its child run (in the process that ran it), with what it trained as its model
    (``trial.load_logged``, ``trial.reevaluate``)."""
    meta = {"spec": spec_json(spec), "evaluation": evaluation(spec, r)}
    log_model(run, trained_state(spec, r), meta)
    if isinstance(spec, LtrSpec):  # a matrix trial starts from seeded matrices: no data set
        run.log_dataset(*dataset(spec))
    if isinstance(spec, MatrixSpec):
        run.log_metrics(
            {
                "eval/final_spearman": r["final_spearman"],
                "eval/initial_spearman": r["initial_spearman"],
                "cost/evaluations": r["evaluations"],
                "cost/forward": r["forward"],
                "cost/backward": r["backward"],
                "cost/units": r["units"],
                "time/seconds": r["seconds"],
            }
        )
        # the anytime curve: the best spearmanr reached after each budget point (cost units)
        _log_finite_curve(run, "train/best_spearman", r["curve"], anytime_grid(spec.params.budget))
        return
    run.log_metrics(
        {
            "eval/heldout_spearman": r["heldout_spearman"],
            "train/spearman": r["train_spearman"],
            "cost/forward": r["forward"],
            "cost/backward": r["backward"],
            "time/seconds": r["seconds"],
        }
    )
    lp = spec.params
    steps = anytime_grid(lp.steps if r["method"] in GRADIENT else lp.dfo_evaluations)
    _log_finite_curve(run, "train/spearman", r["curve"], steps)  # the training spearmanr along training


def _log_finite_curve(run, key: str, values, steps) -> None:
    """A per-step curve of the child run (its finite points)."""
    pairs = [(int(x), float(v)) for x, v in zip(steps, values, strict=True) if np.isfinite(v)]
    if pairs:
        run.log_curve(key, [v for _, v in pairs], [x for x, _ in pairs])
