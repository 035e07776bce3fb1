"""Report section: spearman. Every number is quoted from results/spearman/stats.json; every verdict comes from
its flag (+1 / 0 / -1, ``gradlab.stats.VERDICT_ENCODING``) and is stated with its exact test."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.section import Section
from gradlab.stats import verdict_word


def _spread(q: Quotes, s: str, key: str, lo: str, hi: str, values: str, fmt: str = ".3f") -> str:
    """ "95 % CI lo to hi" when the stage computed an interval (10 seeds or more), else the per-seed values."""
    if q.raw(s, f"{key}.{lo}") is not None and q.raw(s, f"{key}.{hi}") is not None:
        return f"95 % CI {q(s, f'{key}.{lo}', fmt)} to {q(s, f'{key}.{hi}', fmt)}"
    n = len(q.raw(s, f"{key}.{values}"))
    return "per seed " + ", ".join(q(s, f"{key}.{values}.{i}", fmt) for i in range(n))


def _method_row(q: Quotes, s: str, key: str) -> str:
    spread = _spread(q, s, key, "heldout_spearman_ci_low", "heldout_spearman_ci_high", "heldout_spearman_values")
    return f"{q(s, f'{key}.heldout_spearman_mean', '.3f')} ({spread})"


def _test(q: Quotes, s: str, key: str) -> str:
    return (
        f"exact sign-flip p {q(s, f'{key}.p_exact', '.3g')} over {q(s, f'{key}.pairs', 'd')} paired seeds "
        f"(smallest attainable {q(s, f'{key}.p_min', '.3g')})"
    )


def _winner(q: Quotes, s: str, task: str) -> str:
    """The winner verdict (``flags.winner_is_<m>``): +1 only when the leader is ahead of every other method by
    the exact paired test, else the top methods are not separated."""
    t = q.raw(s, task)
    methods = [k.removeprefix("winner_is_") for k in t["flags"] if k.startswith("winner_is_")]
    leader = next(m for m in methods if t.get(f"highest_mean_is_{m}"))
    runner = next(m for m in methods if t.get(f"runner_up_is_{m}"))
    w = f"{task}.winner_vs_runner_up"
    vs_runner = (
        f"against the runner-up `{runner}` the difference is {q(s, f'{w}.diff_mean', '.3f')} "
        f"({_spread(q, s, w, 'diff_ci_low', 'diff_ci_high', 'diffs')}), {_test(q, s, w)}"
    )
    if q.raw(s, f"{task}.flags.winner_is_{leader}") == 1:
        return (
            f"the winner is `{leader}`: the highest mean held-out spearmanr, "
            f"{_method_row(q, s, f'{task}.{leader}')}, ahead of every other method by an exact paired test; "
            f"{vs_runner}"
        )
    level = [m for m in methods if m != leader and q.raw(s, f"{task}.flags.winner_is_{m}") == 0]
    return (
        f"the winner is {verdict_word(q.raw(s, f'{task}.flags.winner_is_{leader}'))}: `{leader}` has the highest mean "
        f"held-out spearmanr, {_method_row(q, s, f'{task}.{leader}')}, but an exact paired test does not put "
        f"it ahead of " + ", ".join(f"`{m}`" for m in level) + f"; {vs_runner}"
    )


def _pair(q: Quotes, s: str, task: str, other: str = "pearson") -> str:
    """soft_rank vs ``other`` from the flag ``flags.soft_rank_better`` and its exact paired test."""
    pair = f"{task}.paired.soft_rank_vs_{other}"
    flag = q.raw(s, f"{pair}.flags.soft_rank_better")
    word = verdict_word(flag, f"soft_rank beat {other}", f"{other} beat soft_rank")
    if word == "inconclusive":
        word = f"soft_rank vs {other} is inconclusive"
    return (
        f"{word} (paired difference {q(s, f'{pair}.diff_mean', '.3f')}, "
        f"{_spread(q, s, pair, 'diff_ci_low', 'diff_ci_high', 'diffs')}, {_test(q, s, pair)})"
    )


def _verdict(q: Quotes, s: str, task: str) -> str:
    return f"{_winner(q, s, task)}; {_pair(q, s, task)}"


def _climb(q: Quotes, s: str, d: str, mat: str) -> str:
    """One climb of the question's procedure (derivation ``d``, matrices ``mat``): whether it stalls
    (``flags.stalled``) and why (``flags.plateau``), with the gap argument's count."""
    k = f"climb.{d}.{mat}"
    seeds = q(s, f"{k}.seeds", "d")
    stalled = q.raw(s, f"{k}.flags.stalled")
    if stalled == 1:
        verdict = f"stalls in all {seeds} seeds"
    elif stalled == -1:
        verdict = f"is still rising after {q(s, 'climb_setup.max_passes', 'd')} passes in all {seeds} seeds"
    else:
        verdict = f"stalls in {q(s, f'{k}.seeds_stalled', 'd')} of {seeds} seeds"
    plateau = q.raw(s, f"{k}.flags.plateau")
    if plateau == 1:
        why = "on a plateau in every seed (no move changes spearmanr)"
    elif plateau == -1:
        why = "at a local optimum in every seed (every move that changes spearmanr lowers it)"
    else:
        why = (
            f"on a plateau in {q(s, f'{k}.seeds_plateau', 'd')} seeds and at a local optimum in "
            f"{q(s, f'{k}.seeds_local_optimum', 'd')}"
        )
    gap = q.raw(s, f"{k}.seeds_gap_certified")
    cert = (
        "no gap argument (custom lists)"
        if gap is None
        else f"the gap argument certifies {q(s, f'{k}.seeds_gap_certified', 'd')} of {seeds} before any evaluation"
    )
    return (
        f"on `{mat}` spearmanr goes {q(s, f'{k}.initial_spearman_mean', '.3f')} -> "
        f"{q(s, f'{k}.final_spearman_mean', '.3f')} (mean; {q(s, f'{k}.kept_total', 'd')} moves kept over all seeds, "
        f"at most {q(s, f'{k}.passes_max', 'd')} passes): it {verdict}, {why}; {cert}"
    )


def _climb_answer(q: Quotes, s: str) -> str:
    """The asker's own plan in one sentence, from ``climb_overall.flags.stalled_everywhere``."""
    if "climb_overall" not in q.metrics(s):
        return ""
    flag = q.raw(s, "climb_overall.flags.stalled_everywhere")
    climbed = ", ".join(f"`{m}`" for m in q.raw(s, "climb_setup.matrices"))
    where = f"under each of the {q(s, 'climb_overall.derivations', 'd')} assumed list derivations, climbing {climbed}"
    if flag == 1:
        said = f"stalls for good in every one of its {q(s, 'climb_overall.climbs', 'd')} runs {where}"
    elif flag == -1:
        said = f"is still rising after its passes in every one of its {q(s, 'climb_overall.climbs', 'd')} runs {where}"
    else:
        said = (
            f"stalls in {q(s, 'climb_overall.climbs_stalled', 'd')} of its {q(s, 'climb_overall.climbs', 'd')} runs "
            f"{where}"
        )
    return (
        f"The asker's own plan, tweaking one entry of `sm` or `freq_m` by {q(s, 'climb_setup.delta', 'g')} and keeping "
        f"it if spearmanr rises, {said} (a full pass over every entry keeps no move), at mean spearmanr "
        f"{q(s, 'climb_overall.final_spearman_mean_min', '.3f')} to "
        f"{q(s, 'climb_overall.final_spearman_mean_max', '.3f')}. "
    )


def _ties(q: Quotes, s: str, d: str) -> str | None:
    """The tie ceiling beside each method's final spearmanr, where the final lists of derivation ``d`` tie."""
    if not q.raw(s, f"ties.{d}.trials_tied"):
        return None
    rows = ", ".join(
        f"`{meth}` {q(s, f'matrix.{d}.{meth}.final_spearman_mean', '.4f')} against "
        f"{q(s, f'matrix.{d}.{meth}.tie_ceiling_mean', '.4f')} (at it in "
        f"{q(s, f'matrix.{d}.{meth}.seeds_at_tie_ceiling', 'd')} of {q(s, f'matrix.{d}.{meth}.seeds', 'd')} seeds)"
        for meth, r in q.raw(s, f"matrix.{d}").items()
        if r.get("seeds_tied")
    )
    best = (
        f" A count takes only {q(s, f'ties.{d}.count_levels', 'd')} values, so the lists must tie: the best tie "
        f"pattern any `freq_m` allows caps spearmanr at {q(s, f'ties.{d}.best_ceiling', '.4f')}."
        if q.raw(s, f"ties.{d}").get("best_ceiling") is not None
        else ""
    )
    return (
        f"Ties, derivation `{d}`: with one list tied (group sizes t) and the other untied, spearmanr cannot exceed "
        f"its tie ceiling sqrt(1 - sum(t^3 - t) / (n^3 - n)).{best} Mean final spearmanr against the mean ceiling of "
        f"the final lists: {rows}."
    )


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
        f"{_climb_answer(q, s)}"
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
    climbs = m.get("climb", {})
    for d, by_matrix in climbs.items():
        evidence.append(
            f"The question's own climb on the tensors the asker holds (one entry of the 20x20 `sm` or of `freq_m` "
            f"moved by {q(s, 'climb_setup.delta', 'g')}, kept only if spearmanr rises; cyclic passes, an assumed "
            f"order), derivation `{d}`: " + "; ".join(_climb(q, s, d, mat) for mat in by_matrix) + "."
        )
    budget = (
        f"every method {q(s, 'budgets.matrix_units', 'd')} budget units per seed (an evaluation costs 1, a gradient "
        f"step {q(s, 'budgets.matrix_gradient_step_units', 'd')}: an evaluation and a backward pass)"
    )
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
            f"Matrix problem, derivation `{d}` (an assumption: {q(s, f'assumptions.{d}')}), {budget}, mean final "
            f"spearmanr: {rows}."
        )
    for d in m["matrix"]:
        tie = _ties(q, s, d) if "ties" in m else None
        if tie:
            evidence.append(tie)
    evidence.append(
        f"Learning to rank: every derivative-free optimiser gets {q(s, 'budgets.ltr_dfo_evaluations', 'd')} "
        f"evaluations of the training spearmanr, every gradient method {q(s, 'budgets.ltr_steps', 'd')} Adam steps "
        "(each a forward and a backward pass)."
    )
    for task in [k for k in m if k.startswith("ltr") and isinstance(m[k], dict)]:
        rows = ", ".join(
            f"`{meth}` {_method_row(q, s, f'{task}.{meth}')}"
            for meth in m[task]
            if isinstance(m[task][meth], dict) and "heldout_spearman_mean" in m[task][meth]
        )
        sweep = ", ".join(
            f"{q(s, f'{task}.sweep.{k}.strength', 'g')}: {q(s, f'{task}.sweep.{k}.heldout_mean', '.3f')}"
            for k in sorted(m[task]["sweep"], key=lambda k: m[task]["sweep"][k]["strength"])
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
        figures=[
            "figures/ltr_heldout.png",
            "figures/matrix_equal_budget.png",
            "figures/anytime_matrix.png",
            "figures/anytime_ltr.png",
            "figures/soft_rank_strength_sweep.png",
        ],
        caveats=[
            "The question does not say how the lists are derived; every derivation here is an assumption. With the "
            "linear one a Pearson correlation of one already implies a Spearman correlation of one, so any "
            "differentiable surrogate works there.",
            "Budgets are counts (evaluations; on the matrices a gradient step counts as an evaluation plus a "
            "backward pass), chosen from a reference run that was still timed in CPU seconds (see the parameters). "
            "The cost rule counts every gradient step alike, though a soft_rank step (a projection per list) costs "
            "more CPU time than a Pearson step; the seconds are recorded per trial in matrix_runs.csv and "
            "ltr_runs.csv, never used as a budget.",
            f"Verdicts are +1 / -1 only when the exact paired sign-flip test over the seeds rejects at "
            f"{q(s, 'verdict_alpha', 'g')}, else inconclusive (0); `gradlab replicate spearman` reruns the stage on "
            "an independent block of seeds (the replication table says which verdicts held).",
            "The derivative-free optimisers on the ranking task maximise the training spearmanr itself; the gradient "
            "methods train for a fixed number of steps with no early stopping or tuning on held-out data.",
        ],
    )
