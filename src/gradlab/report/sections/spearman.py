"""Report section: spearman. Every number is quoted from results/spearman/stats.json; verdicts come from flags."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


def _method_row(q: Quotes, s: str, key: str) -> str:
    return (
        f"{q(s, f'{key}.heldout_spearman_mean', '.3f')} (95 % CI {q(s, f'{key}.heldout_spearman_ci_low', '.3f')} to "
        f"{q(s, f'{key}.heldout_spearman_ci_high', '.3f')})"
    )


def _verdict(q: Quotes, s: str, task: str) -> str:
    """Which method wins on held-out data (the flag ``winner_is_<m>``) and soft_rank vs pearson (paired flags)."""
    t = q.raw(s, task)
    methods = [k.removeprefix("winner_is_") for k in t if k.startswith("winner_is_")]
    winner = next(m for m in methods if t[f"winner_is_{m}"])
    runner = next(k.removeprefix("runner_up_is_") for k in t if k.startswith("runner_up_is_"))
    separated = (
        "ahead of"
        if q.raw(s, f"{task}.winner_vs_runner_up.winner_better")
        else "not separated by an exact paired test from"
    )
    text = (
        f"the highest mean held-out spearmanr was `{winner}`'s, {_method_row(q, s, f'{task}.{winner}')}, "
        f"{separated} the runner-up `{runner}` (difference {q(s, f'{task}.winner_vs_runner_up.diff_mean', '.3f')}, "
        f"sign-flip p {q(s, f'{task}.winner_vs_runner_up.p_exact', '.3g')})"
    )
    pair = f"{task}.paired.soft_rank_vs_pearson"
    if q.raw(s, f"{pair}.soft_rank_better"):
        word = "soft_rank beat pearson"
    elif q.raw(s, f"{pair}.pearson_better"):
        word = "pearson beat soft_rank"
    else:
        word = "soft_rank and pearson were not separated"
    text += (
        f"; {word}: paired difference {q(s, f'{pair}.diff_mean', '.3f')} (95 % CI "
        f"{q(s, f'{pair}.diff_ci_low', '.3f')} to {q(s, f'{pair}.diff_ci_high', '.3f')}), exact sign-flip p "
        f"{q(s, f'{pair}.p_exact', '.3g')} over {q(s, f'{pair}.pairs', 'd')} seeds (smallest attainable "
        f"{q(s, f'{pair}.p_min', '.3g')})"
    )
    return text


def spearman(q: Quotes) -> Section:
    s = "spearman"
    m = q.metrics(s)
    raised = q.raw(s, "asker.literal_loop_raised")
    asker = (
        f"The question's own loop (`sm = torch.mm(sm, sm.t())` rebinds `sm` to a non-leaf, then "
        f"`sm -= lr * sm.grad`) raises `{q(s, 'asker.error')}`"
        if raised
        else "The question's own loop ran without raising"
    )
    answer = (
        f"Yes, once the matrices stay leaves and the rank correlation is replaced by a differentiable stand-in. "
        f"{asker}; keeping the leaf `v` and rebuilding `sm = v @ v.T` in every step fixes it, and with the "
        f"answer's learning rate spearmanr stays at {q(s, 'asker.fixed.answer_lr.final_spearman', '.3f')}, with a "
        f"step scaled to the list length it reaches {q(s, 'asker.fixed.scaled_lr.final_spearman', '.3f')}. "
        f"On a learning-to-rank task scored by scipy's spearmanr on held-out data, {_verdict(q, s, 'ltr')}."
    )
    evidence = [
        f"The question's hill climb (a step of {q(s, 'stall.delta', 'g')} on one entry, kept if spearmanr improves) "
        f"is stalled, not slow: in {q(s, 'stall.seeds_certified_stalled', 'd')} of {q(s, 'stall.seeds', 'd')} "
        f"seeds the step is below both the smallest gap between neighbouring `v` values (median "
        f"{q(s, 'stall.min_gap_v_median', '.4f')}) and, divided over the rows of `freq_m`, the smallest gap "
        f"between neighbouring column means (median {q(s, 'stall.min_gap_list2_median', '.5f')} against a shift of "
        f"{q(s, 'stall.step_on_list2', '.5f')}), so no move can change a rank. In "
        f"{q(s, 'stall.linear_seeds_without_improving_move', 'd')} of {q(s, 'stall.seeds', 'd')} seeds none of the "
        f"{q(s, 'stall.moves_per_start', 'd')} single moves from the start improves spearmanr, so the climb never "
        f"leaves its start whatever its budget; the literal climb accepted "
        f"{q(s, 'stall.hill_climb_accepted_moves_total', 'd')} moves over all seeds."
    ]
    for d, methods in m["matrix"].items():
        rows = ", ".join(
            f"`{meth}` {q(s, f'matrix.{d}.{meth}.final_spearman_mean', '.3f')} "
            f"(reached the target in {q(s, f'matrix.{d}.{meth}.reached_target', 'd')} of "
            f"{q(s, f'matrix.{d}.{meth}.seeds', 'd')} seeds, median "
            f"{q(s, f'matrix.{d}.{meth}.evaluations_median', '.4g')} evaluations, "
            f"{q(s, f'matrix.{d}.{meth}.backward_median', '.4g')} backward passes)"
            for meth in methods
        )
        evidence.append(
            f"Matrix problem, derivation `{d}` (an assumption: {q(s, f'assumptions.{d}')}), every method "
            f"{q(s, 'matrix_seconds_budget', 'g')} s of CPU time per seed, mean final spearmanr: {rows}."
        )
    for task in [k for k in m if k.startswith("ltr")]:
        rows = ", ".join(
            f"`{meth}` {_method_row(q, s, f'{task}.{meth}')}"
            for meth in m[task]
            if isinstance(m[task][meth], dict) and "heldout_spearman_mean" in m[task][meth]
        )
        sweep = ", ".join(
            f"{q(s, f'{task}.sweep.{k}.strength', 'g')}: {q(s, f'{task}.sweep.{k}.heldout_mean', '.3f')}"
            for k in m[task]["sweep"]
        )
        evidence.append(
            f"Learning to rank (`{task}`), held-out spearmanr, mean over seeds: {rows}; oracle "
            f"{q(s, f'{task}.oracle_heldout_mean', '.3f')}. soft_rank strength sweep (strength: held-out mean): "
            f"{sweep}."
        )
        if task != "ltr":
            evidence.append(f"On `{task}`, {_verdict(q, s, task)}.")
    evidence.append(
        f"The saved per-seed held-out predictions and targets re-scored with scipy: "
        f"{q(s, 'heldout_reproduced', 'd')} of {q(s, 'heldout_predictions', 'd')} reproduce the reported spearmanr."
    )
    return Section(
        stage=s,
        title="Optimising for a Spearman rank correlation",
        question="Can PyTorch adjust matrices so that a Spearman rank correlation computed from them reaches 1, "
        "though ranks are not differentiable?",
        answer=answer,
        evidence=evidence,
        figures=["figures/ltr_heldout.png", "figures/matrix_equal_time.png", "figures/soft_rank_strength_sweep.png"],
        caveats=[
            "The question does not say how the lists are derived; every derivation here is an assumption. With the "
            "linear one a Pearson correlation of one already implies a Spearman correlation of one, so any "
            "differentiable surrogate works there.",
            "Time budgets are CPU seconds of single-threaded trials (equal to wall-clock time on an idle core); the "
            "machine was shared with other jobs, so wall seconds in the tables are inflated.",
            "The derivative-free optimisers on the ranking task maximise the training spearmanr itself; the gradient "
            "methods train for a fixed number of steps with no early stopping or tuning on held-out data.",
        ],
    )
