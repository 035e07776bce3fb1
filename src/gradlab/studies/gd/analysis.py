"""Numbers from the gd trials: the rules' outcome, the step-size grid over seeds, the sharpness, the metrics."""

from __future__ import annotations

import math

import numpy as np

from gradlab.stats import mean_ci


def rules_table(curves: dict[str, list[float]], lr: float) -> dict:
    """Per rule: its start, end and lowest loss, and whether it descended."""
    return {
        rule: {"lr": lr, "initial_loss": c[0], "final_loss": c[-1], "min_loss": min(c), "descended": bool(c[-1] < c[0])}
        for rule, c in curves.items()
    }


def mlp_row(lr: float, seed: int, losses: list[float], target_loss: float) -> dict:
    """One network run: its final loss (inf when it diverged) and the first step at or below the target."""
    final = losses[-1] if math.isfinite(losses[-1]) else math.inf
    hit = next((i for i, v in enumerate(losses) if v <= target_loss), None)
    return {"lr": lr, "seed": seed, "final_loss": final, "steps_to_target": hit}


def summarise_grid(rows: list[dict], lrs: list[float]) -> list[dict]:
    """Per step size: seeds, diverged seeds, mean final loss with its 95 % CI, median steps to the target."""
    table = []
    for lr in lrs:
        mine = [r for r in rows if r["lr"] == lr]
        finals = [r["final_loss"] for r in mine]
        diverged = sum(not math.isfinite(v) for v in finals)
        mean, lo, hi = mean_ci(finals) if diverged == 0 else (math.inf, math.inf, math.inf)
        hits = [r["steps_to_target"] for r in mine if r["steps_to_target"] is not None]
        table.append(
            {
                "lr": lr,
                "seeds": len(mine),
                "diverged": diverged,
                "final_loss_mean": mean,
                "final_loss_ci_low": lo,
                "final_loss_ci_high": hi,
                "steps_to_target_median": float(np.median(hits)) if len(hits) == len(mine) else None,
            }
        )
    return table


def best_step_size(table: list[dict]) -> dict:
    """The grid row with the lowest mean final loss."""
    return min(table, key=lambda r: r["final_loss_mean"] if math.isfinite(r["final_loss_mean"]) else math.inf)


def sharpness_entry(lr: float, values: list[float], losses: list[float]) -> dict:
    """Peak and settled (median of the last quarter) sharpness against 2/lr."""
    tail = values[-max(1, len(values) // 4) :]
    settled = float(np.median(tail)) if tail else math.nan
    return {
        "lr": lr,
        "two_over_lr": 2 / lr,
        "max_sharpness": max(values) if values else math.nan,
        "settled_sharpness": settled,
        "settled_over_two_over_lr": settled * lr / 2,
        "final_loss": losses[-1],
    }


def sharpness_key(lr: float) -> str:
    return f"lr_{lr:g}".replace(".", "p")  # no dots in metric keys


def metrics(eigenvalues, lr_empirical: float, probes: int, rules: dict, table: list[dict], seeds: int, sharp) -> dict:
    """The stage's metrics.json: the quadratic's threshold, the rules, the network's grid, the sharpness."""
    lam_max, lam_min = float(eigenvalues[-1]), float(eigenvalues[0])
    lr_theory = 2.0 / lam_max
    best = best_step_size(table)
    return {
        "quadratic": {
            "lambda_max": lam_max,
            "lambda_min": lam_min,
            "condition_number": lam_max / lam_min,
            "lr_crit_theory": lr_theory,
            "lr_crit_empirical": lr_empirical,
            "lr_crit_rel_error": abs(lr_empirical - lr_theory) / lr_theory,
            "threshold_probes": probes,
        },
        "rules": rules,
        "mlp": {
            "best_lr": best["lr"],
            "best_final_loss_mean": best["final_loss_mean"],
            "best_final_loss_ci_low": best["final_loss_ci_low"],
            "best_final_loss_ci_high": best["final_loss_ci_high"],
            "best_steps_to_target_median": best["steps_to_target_median"],
            "diverged_lrs": [r["lr"] for r in table if r["diverged"] == r["seeds"]],
            "seeds": seeds,
        },
        "sharpness": sharp,
    }
