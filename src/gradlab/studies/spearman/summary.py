"""summary.md of the spearman stage: the answer in a few sentences, every number read from the results,
every verdict from a flag (+1 / 0 / -1, ``gradlab.stats.VERDICT_ENCODING``). Undefined quantities print
as "n/a"; below ``MIN_CI_N`` seeds there is no "95 % CI", the per-seed values are printed instead."""

from __future__ import annotations

import math

from gradlab.stats import MIN_CI_N, VERDICT_ENCODING, verdict_word
from gradlab.studies.spearman.analysis import ALPHA
from gradlab.studies.spearman.config import SpearmanParams


def f(v, spec: str = ".3f") -> str:
    if v is None or isinstance(v, str) or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def spread(lo, hi, values, spec: str = ".3f", label: str = "95 % CI ") -> str:
    """The interval "95 % CI lo to hi" when there is one, else the per-seed values (fewer than MIN_CI_N
    seeds); ``label=""`` in a table column already headed "95 % CI"."""
    if lo is not None and hi is not None:
        return f"{label}{f(lo, spec)} to {f(hi, spec)}"
    if values:
        return "per seed " + ", ".join(f(v, spec) for v in values)
    return "n/a"


def test_text(pr: dict) -> str:
    """The exact paired test of a comparison: p, its smallest attainable value and the pairs."""
    return (
        f"exact sign-flip p {f(pr['p_exact'], '.3g')} over {pr['pairs']} paired seeds (smallest attainable "
        f"{f(pr['p_min'], '.3g')})"
    )


def winner_text(t: dict, methods: list[str]) -> str:
    """The winner verdict of a task, from the flags ``flags.winner_is_<m>``."""
    leader = next((m for m in methods if t.get(f"highest_mean_is_{m}")), None)
    if leader is None:
        return "no method ran"
    w = t.get("winner_vs_runner_up")
    if w is None:
        return f"`{leader}` is the only method"
    runner = next(m for m in methods if t.get(f"runner_up_is_{m}"))
    vs_runner = (
        f"vs the runner-up `{runner}`: difference {f(w['diff_mean'])} "
        f"({spread(w['diff_ci_low'], w['diff_ci_high'], w['diffs'])}), {test_text(w)}"
    )
    flags = t["flags"]
    if flags[f"winner_is_{leader}"] == 1:
        return f"winner: `{leader}` (highest mean, ahead of every other method by the exact paired test; {vs_runner})"
    level = [m for m in methods if m != leader and flags.get(f"winner_is_{m}") == 0]
    excluded = [m for m in methods if flags.get(f"winner_is_{m}") == -1]
    out = (
        f"winner: {verdict_word(flags[f'winner_is_{leader}'])}, the top methods are not separated: `{leader}` has "
        f"the highest mean but the exact paired test does not put it ahead of "
        + ", ".join(f"`{m}`" for m in level)
        + f" ({vs_runner})"
    )
    if excluded:
        out += "; it is ahead of " + ", ".join(f"`{m}`" for m in excluded)
    return out


def pair_word(pr: dict, other: str) -> str:
    return verdict_word(pr["flags"]["soft_rank_better"], "soft_rank better", f"{other} better")


def _task_lines(name: str, t: dict, methods: list[str], p: SpearmanParams) -> list[str]:
    ci_head = "95 % CI" if p.ltr.seeds >= MIN_CI_N else "per-seed values"
    lines = [
        f"### Learning to rank, task `{name}` (held-out scipy spearmanr, {p.ltr.seeds} seeds, "
        f"n_train {p.ltr.n_train}, n_test {p.ltr.n_test})",
        "",
        f"| method | held-out spearmanr (mean) | {ci_head} | train spearmanr | forward passes | backward passes |",
        "|---|---|---|---|---|---|",
    ]
    for m in methods:
        if m not in t:
            continue
        r = t[m]
        lo, hi = r["heldout_spearman_ci_low"], r["heldout_spearman_ci_high"]
        cell = spread(lo, hi, r["heldout_spearman_values"], label="")
        lines.append(
            f"| {m} | {f(r['heldout_spearman_mean'])} | {cell}"
            f" | {f(r['train_spearman_mean'])} | {f(r['forward_median'], '.0f')} | {f(r['backward_median'], '.0f')} |"
        )
    lines.append("")
    if "oracle_heldout_mean" in t:
        lines.append(f"Oracle (ranking by the noiseless latent score): {f(t['oracle_heldout_mean'])}.")
    text = winner_text(t, methods)
    lines.append(f"- {text[0].upper()}{text[1:]}.")
    for other in [x for x in methods if f"soft_rank_vs_{x}" in t.get("paired", {})]:
        pr = t["paired"][f"soft_rank_vs_{other}"]
        interval = spread(pr["diff_ci_low"], pr["diff_ci_high"], pr["diffs"])
        lines.append(
            f"- soft_rank - {other}: {f(pr['diff_mean'])} ({interval}), "
            f"{pr['wins']} wins / {pr['losses']} losses / {pr['ties']} ties; {test_text(pr)}, Wilcoxon exact p "
            f"{f(pr['p_wilcoxon'], '.3g')}: {pair_word(pr, other)}."
        )
    sweep = sorted(t.get("sweep", {}).values(), key=lambda r: r["strength"])
    if sweep:
        parts = ", ".join(f"{r['strength']:g}: {f(r['heldout_mean'])}" for r in sweep)
        lines.append(f"- soft_rank strength sweep (strength: held-out mean): {parts}.")
    lines.append("")
    return lines


def ceiling_cell(r: dict) -> str:
    """The tie ceiling of a method's final lists (mean over seeds, and the seeds at it), or "no ties"."""
    if not r.get("seeds_tied"):
        return "no ties"
    return f"{f(r['tie_ceiling_mean'], '.4f')}; {r['seeds_at_tie_ceiling']}/{r['seeds']}"


def stalled_word(c: dict) -> str:
    """The flag ``flags.stalled`` of a climb in words, with its count."""
    flag = c["flags"]["stalled"]
    if flag == 1:
        return f"stalls in all {c['seeds']} seeds"
    if flag == -1:
        return f"still rising after its passes in all {c['seeds']} seeds"
    return f"stalls in {c['seeds_stalled']} of {c['seeds']} seeds"


def why_word(c: dict) -> str:
    """The flag ``flags.plateau`` of a climb in words."""
    flag = c["flags"]["plateau"]
    if flag == 1:
        return "a plateau in every seed (no move changes spearmanr)"
    if flag == -1:
        return "a local optimum in every seed (every move that changes spearmanr lowers it)"
    return f"a plateau in {c['seeds_plateau']} seeds, a local optimum in {c['seeds_local_optimum']}" + (
        "" if c["flags"]["stalled"] == 1 else f", not stalled in {c['seeds'] - c['seeds_stalled']}"
    )


def gap_word(c: dict) -> str:
    g = c["seeds_gap_certified"]
    return "no argument (custom lists)" if g is None else f"{g}/{c['seeds']}"


def climb_lines(m: dict, derivations: list[str]) -> list[str]:
    """The question's own climb on the entries of sm and freq_m, per derivation: whether and why it stalls."""
    cs, c = m["climb_setup"], m["climb"]
    lines = [
        "## The question's climb on the tensors the asker holds (sm 20x20, freq_m 12x20)",
        "",
        f"One entry of sm (tweaked entry by entry: sm stops being v v^T) or of freq_m moved by +-{cs['delta']:g}, kept "
        "only if spearmanr rises, else restored; cyclic passes over the entries (sm row by row, then freq_m; + then -; "
        f"the order is an assumption), at most {cs['max_passes']} passes. A pass that keeps nothing has tried every "
        "move from one unchanged point: the climb is stalled for good (certified). Why, from that pass: a plateau (no "
        "move changes spearmanr) or a local optimum (the moves that change it all lower it). The gap argument "
        "certifies a stall before any evaluation: a move on row i of sm shifts only list1[i], on column j of freq_m "
        "only list2[j], each by at most a fixed multiple of the step (see `stall.py`; for the count, only a move "
        "across 0 changes list2), so when every gap between neighbouring list values exceeds it no rank can move.",
        "",
        "| derivation | climbed | moves per pass | initial spearmanr (mean) | final (mean) | stalled | why "
        "| gap argument holds at the start | kept moves (total; most in one seed) | passes (most) "
        "| tie ceiling (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in derivations:
        for mat, r in c[d].items():
            tie = f(r["tie_ceiling_mean"], ".4f") if r["seeds_tied"] else "no ties"
            lines.append(
                f"| {d} | {mat} | {r['moves_per_pass']} | {f(r['initial_spearman_mean'])} | "
                f"{f(r['final_spearman_mean'])} | {stalled_word(r)} | {why_word(r)} | {gap_word(r)} | "
                f"{r['kept_total']}; {r['kept_max']} | {r['passes_max']} | {tie} |"
            )
    lines.append("")
    for d in derivations:
        parts = []
        for mat, r in c[d].items():
            if r["flags"]["stalled"] == 1:
                why = (
                    "no seed kept a move"
                    if r["seeds_moved"] == 0
                    else f"{r['seeds_moved']} of {r['seeds']} seeds kept moves first, {r['kept_total']} in all; mean "
                    f"gain {f(r['gain_mean'], '.4f')}"
                )
                g = r["seeds_gap_certified"]
                if g is None:
                    cert = "the exhaustive last pass certifies every seed (no gap argument for custom lists)"
                elif g == r["seeds"]:
                    cert = "the gap argument alone certifies every seed before any evaluation"
                else:
                    cert = (
                        f"the gap argument alone certifies {g} of {r['seeds']} seeds before any evaluation, the "
                        "exhaustive last pass the rest"
                    )
                parts.append(f"on {mat}, it {stalled_word(r)} ({why}); why: {why_word(r)}; {cert}")
            else:
                parts.append(f"on {mat}: {stalled_word(r)} within {cs['max_passes']} passes")
        lines.append(f"- `{d}`: " + "; ".join(parts) + ".")
    return lines


def tie_lines(m: dict, derivations: list[str], methods: list[str], n: int) -> list[str]:
    """The tie ceiling beside the methods' scores, for the derivations whose final lists tie."""
    lines = []
    for d in derivations:
        t = m["ties"][d]
        if not t["trials_tied"]:
            continue
        text = (
            f"Ties in `{d}`: {t['trials_tied']} final states have tied lists. With one list tied (group sizes t) and "
            "the other untied, spearmanr cannot exceed its tie ceiling sqrt(1 - sum(t^3 - t) / (n^3 - n))."
        )
        if "best_ceiling" in t:
            text += (
                f" list2 counts the positive entries of a column ({t['count_levels']} possible values for "
                f"{n} columns), so it must tie: the best tie pattern any "
                f"freq_m can have caps spearmanr at {f(t['best_ceiling'], '.4f')}."
            )
        rows = [
            f"`{meth}` {f(r['final_spearman_mean'], '.4f')} against {f(r['tie_ceiling_mean'], '.4f')} "
            f"({r['seeds_at_tie_ceiling']} of {r['seeds']} seeds at their ceiling)"
            for meth in methods
            if (r := m["matrix"][d].get(meth)) and r.get("seeds_tied")
        ]
        text += " Final spearmanr (mean) against the ceiling of each final state (mean): " + ", ".join(rows) + "."
        lines += [text, ""]
    return lines


def summary(m: dict, p: SpearmanParams, derivations: list[str]) -> str:
    a, s, b = m["asker"], m["stall"], m["budgets"]
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
    lines += ["", *climb_lines(m, derivations)]
    ci_head = "95 % CI" if p.matrix.seeds >= MIN_CI_N else "per-seed values"
    lines += [
        "",
        f"## The matrix problem at an equal budget ({b['matrix_units']} units per trial: an evaluation costs 1, "
        f"a gradient step {b['matrix_gradient_step_units']}; n = {p.matrix.n}, {p.matrix.seeds} seeds)",
        "",
        f"| derivation | method | final spearmanr (mean) | {ci_head} | reached {p.matrix.target:g} "
        "| evaluations (median) | backward passes (median) | units (median) "
        "| tie ceiling (mean; seeds at it) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for d in derivations:
        for meth in p.matrix.methods:  # the parameters' order, whatever the order of the keys
            r = m["matrix"][d][meth]
            cell = spread(r["final_spearman_ci_low"], r["final_spearman_ci_high"], r["final_spearman_values"], label="")
            lines.append(
                f"| {d} | {meth} | {f(r['final_spearman_mean'])} | {cell} | "
                f"{r['reached_target']}/{r['seeds']} | {f(r['evaluations_median'], '.0f')} | "
                f"{f(r['backward_median'], '.0f')} | {f(r['units_median'], '.0f')} | {ceiling_cell(r)} |"
            )
    lines += ["", *tie_lines(m, derivations, list(p.matrix.methods), p.matrix.n)]
    lines += [
        "",
        "Gradient methods stop as soon as spearmanr reaches 1, so they may use fewer units than the budget. "
        "Best spearmanr so far against units: `figures/anytime_matrix.png`.",
        "",
        f"Learning to rank: every derivative-free optimiser gets {b['ltr_dfo_evaluations']} evaluations (a forward "
        f"pass over the training set and a spearmanr each); every gradient method {b['ltr_steps']} Adam steps "
        "(a forward and a backward pass each). Training spearmanr against evaluations / steps: "
        f"`figures/anytime_ltr.png`. Verdicts: +1 / -1 when the exact paired test rejects at {ALPHA:g}, else "
        "inconclusive (0).",
        "",
    ]
    for task in p.ltr.tasks:
        key = "ltr" if task == "nonlinear" else f"ltr_{task}"
        lines += _task_lines(task, m[key], list(p.ltr.methods), p)
    lines += [
        f"Held-out predictions re-scored from `heldout/*.npz`: {m['heldout_reproduced']}/{m['heldout_predictions']} "
        f"reproduce the reported spearmanr exactly; saved matrices: {m['matrices_reproduced']}/{m['matrices_saved']}.",
        "",
        f"Verdict encoding: {VERDICT_ENCODING}. Budgets are counts; CPU and wall seconds of each trial are "
        "recorded in matrix_runs.csv and ltr_runs.csv only. Figures: `figures/ltr_heldout.png`, "
        "`figures/soft_rank_strength_sweep.png`, `figures/matrix_equal_budget.png`, `figures/anytime_matrix.png`, "
        "`figures/anytime_ltr.png`, `figures/soft_rank_vs_strength.png`.",
        "",
    ]
    return "\n".join(lines)
