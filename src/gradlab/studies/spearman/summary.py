"""summary.md of the spearman stage: the answer in a few sentences, every number read from the results,
every verdict from a flag. Undefined quantities print as "n/a"."""

from __future__ import annotations

import math

from gradlab.studies.spearman.config import SpearmanParams


def f(v, spec: str = ".3f") -> str:
    if v is None or isinstance(v, str) or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def ci(lo, hi, spec: str = ".3f") -> str:
    return "n/a" if lo is None or hi is None else f"{f(lo, spec)} to {f(hi, spec)}"


def _task_lines(name: str, t: dict, methods: list[str], p: SpearmanParams) -> list[str]:
    lines = [
        f"### Learning to rank, task `{name}` (held-out scipy spearmanr, {p.ltr.seeds} seeds, "
        f"n_train {p.ltr.n_train}, n_test {p.ltr.n_test})",
        "",
        "| method | held-out spearmanr (mean) | 95 % CI | train spearmanr | forward passes | backward passes "
        "| CPU seconds (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        if m not in t:
            continue
        r = t[m]
        lines.append(
            f"| {m} | {f(r['heldout_spearman_mean'])} | "
            f"{ci(r['heldout_spearman_ci_low'], r['heldout_spearman_ci_high'])}"
            f" | {f(r['train_spearman_mean'])} | {f(r['forward_median'], '.0f')} | {f(r['backward_median'], '.0f')} | "
            f"{f(r['seconds_median'], '.2f')} |"
        )
    lines.append("")
    if "oracle_heldout_mean" in t:
        lines.append(f"Oracle (ranking by the noiseless latent score): {f(t['oracle_heldout_mean'])}.")
    winner = next((m for m in methods if t.get(f"winner_is_{m}")), None)
    if winner:
        w = t.get("winner_vs_runner_up")
        runner = next((k.removeprefix("runner_up_is_") for k in t if k.startswith("runner_up_is_")), None)
        verdict = ""
        if w is not None and runner:
            sig = "ahead of" if w["winner_better"] else "not separated by an exact paired test from"
            verdict = (
                f"; {sig} the runner-up `{runner}` (difference {f(w['diff_mean'])}, 95 % CI "
                f"{ci(w['diff_ci_low'], w['diff_ci_high'])}, sign-flip p {f(w['p_exact'], '.3g')})"
            )
        lines.append(f"- Highest mean held-out spearmanr: `{winner}`{verdict}.")
    for key, pr in t.get("paired", {}).items():
        other = key.removeprefix("soft_rank_vs_")
        if pr["soft_rank_better"]:
            word = "soft_rank better"
        elif pr[f"{other}_better"]:
            word = f"{other} better"
        else:
            word = "no significant difference"
        lines.append(
            f"- soft_rank - {other}: {f(pr['diff_mean'])} (95 % CI {ci(pr['diff_ci_low'], pr['diff_ci_high'])}), "
            f"{pr['wins']} wins / {pr['losses']} losses / {pr['ties']} ties; exact sign-flip p "
            f"{f(pr['p_exact'], '.3g')} (smallest attainable {f(pr['p_min'], '.3g')}), Wilcoxon exact p "
            f"{f(pr['p_wilcoxon'], '.3g')}: {word}."
        )
    sweep = sorted(t.get("sweep", {}).values(), key=lambda r: r["strength"])
    if sweep:
        parts = ", ".join(f"{r['strength']:g}: {f(r['heldout_mean'])}" for r in sweep)
        lines.append(f"- soft_rank strength sweep (strength: held-out mean): {parts}.")
    if "dfo_budget_at_least_soft_rank_median_time" in t:
        yes = t["dfo_budget_at_least_soft_rank_median_time"]
        lines.append(
            f"- Derivative-free optimisers had {p.ltr.dfo_seconds:g} CPU-s each, "
            + ("at least" if yes else "less than")
            + " the median CPU time of a soft_rank training run."
        )
    lines.append("")
    return lines


def summary(m: dict, p: SpearmanParams, derivations: list[str]) -> str:
    a, s = m["asker"], m["stall"]
    lines = [
        "# spearman: can PyTorch push a rank correlation to 1?",
        "",
        "## The asker's code",
        "",
        f"Shapes: v {a['v_shape'][0]}x{a['v_shape'][1]}, sm = v v^T {a['sm_shape'][0]}x{a['sm_shape'][1]}, "
        f"freq_m {a['freq_m_shape'][0]}x{a['freq_m_shape'][1]}; after `sm = torch.mm(sm, sm.t())` sm is a leaf: "
        f"{a['sm_is_leaf']}.",
        "",
    ]
    if a["literal_loop_raised"]:
        lines += [
            f"The accepted answer's loop, run as written, failed at step {a['failed_at_step']} with:",
            "",
            "```text",
            a["error"],
            "```",
            "",
            f"torch warned first: `{a['warning']}`" if a["warning"] else "",
            "",
        ]
    else:
        lines += ["The accepted answer's loop ran without raising.", ""]
    fa, fs = a["fixed"]["answer_lr"], a["fixed"]["scaled_lr"]
    lines += [
        "Fix: keep the leaf `v` (20x1), rebuild `sm = v @ v.T` inside every step, update `v`. With the answer's "
        f"lr {fa['lr']:g} and {fa['steps']} steps spearmanr goes {f(fa['initial_spearman'])} -> "
        f"{f(fa['final_spearman'])}; with lr {fs['lr']:g} -> {f(fs['final_spearman'])}.",
        "",
        "## The question's hill climb (+-" + f"{s['delta']:g}, keep if better)",
        "",
        f"Linear derivation, {s['seeds']} seeds: the smallest gap between neighbouring v values has median "
        f"{f(s['min_gap_v_median'], '.4f')} (minimum {f(s['min_gap_v_min'], '.4f')}); between neighbouring "
        f"list2 values median {f(s['min_gap_list2_median'], '.5f')} (minimum {f(s['min_gap_list2_min'], '.5f')}), "
        f"while one move shifts a list2 value by {f(s['step_on_list2'], '.5f')}. In {s['seeds_certified_stalled']} "
        f"of {s['seeds']} seeds the step is below both gaps, so no move can change a rank: the climb is stalled "
        f"forever, not slow. In {s['linear_seeds_without_improving_move']} of {s['seeds']} seeds "
        "no single move from the start improves spearmanr (counted below), so the climb never leaves its start "
        "whatever its budget. Accepted moves of the literal climb, all seeds: "
        f"{f(s['hill_climb_accepted_moves_total'], 'd')}.",
        "",
        f"Every single +-{s['delta']:g} move from the start ({s['moves_per_start']} per seed), by derivation:",
        "",
        "| derivation (assumption) | moves changing spearmanr (median) | improving (median) | seeds with no "
        "improving move |",
        "|---|---|---|---|",
    ]
    for d in derivations:
        r = s["derivations"][d]
        lines.append(
            f"| {d}: {m['assumptions'][d]} | {f(r['moves_changing_median'], '.0f')} | "
            f"{f(r['moves_improving_median'], '.0f')} | {r['seeds_without_improving_move']} |"
        )
    lines += [
        "",
        f"## The matrix problem at equal time ({p.matrix.seconds:g} CPU-seconds per single-threaded trial, "
        f"n = {p.matrix.n}, {p.matrix.seeds} seeds)",
        "",
        "| derivation | method | final spearmanr (mean) | 95 % CI | reached " + f"{p.matrix.target:g}"
        " | evaluations (median) | backward passes (median) | CPU seconds (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in derivations:
        for meth, r in m["matrix"][d].items():
            lines.append(
                f"| {d} | {meth} | {f(r['final_spearman_mean'])} | "
                f"{ci(r['final_spearman_ci_low'], r['final_spearman_ci_high'])} | {r['reached_target']}/{r['seeds']} | "
                f"{f(r['evaluations_median'], '.0f')} | {f(r['backward_median'], '.0f')} | "
                f"{f(r['seconds_median'], '.2f')} |"
            )
    lines += [
        "",
        "Gradient methods stop as soon as spearmanr reaches 1, so their seconds are below the budget.",
        "",
    ]
    for task in p.ltr.tasks:
        key = "ltr" if task == "nonlinear" else f"ltr_{task}"
        lines += _task_lines(task, m[key], list(p.ltr.methods), p)
    lines += [
        f"Held-out predictions re-scored from `heldout/*.npz`: {m['heldout_reproduced']}/{m['heldout_predictions']} "
        f"reproduce the reported spearmanr exactly; saved matrices: {m['matrices_reproduced']}/{m['matrices_saved']}.",
        "",
        "Time budgets and the seconds above are CPU seconds of single-threaded trials (wall-clock time on an idle "
        "core); wall seconds are in matrix_runs.csv and ltr_runs.csv, measured on a machine shared with other jobs. "
        "Figures: `figures/ltr_heldout.png`, "
        "`figures/soft_rank_strength_sweep.png`, `figures/matrix_equal_time.png`, `figures/soft_rank_vs_strength.png`.",
        "",
    ]
    return "\n".join(lines)
