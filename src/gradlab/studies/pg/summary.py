"""summary.md of a pg stage: the answer in a few sentences, every number and verdict read from the metrics."""

from __future__ import annotations

import math

from gradlab.studies.pg.analysis import ALPHA, PONG_IMPROVEMENT
from gradlab.studies.pg.trial import EARLY_UPDATES


def fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}g}"


def ci(lo, hi) -> str:
    return "n/a" if lo is None or hi is None else f"{fmt(lo)} to {fmt(hi)}"


def seeds_list(xs) -> str:
    return ", ".join(fmt(x) for x in xs)


def with_ci(x: dict, key: str) -> str:
    return f"{fmt(x[key])} ({ci(x[key + '_ci_low'], x[key + '_ci_high'])})"


def said(flags: dict, key: str, yes: str, no: str) -> str:
    """The verdict words of ``flags[key]`` (computed in analysis.py); "n/a" when the flag was not computed."""
    return "n/a" if flags.get(key) is None else (yes if flags[key] else no)


def loss_value_lines(m: dict, p) -> list[str]:
    """Item: does the loss value matter? The fixed-batch experiment and corr(loss value, return) over training."""
    flags, out = m["flags"], []
    f = m.get("fixed_batch")
    if f:
        steps = f["variants"][next(iter(f["variants"]))]["steps"]
        out.append("## Does the value of the loss matter?")
        out.append("")
        if "loss_before" in f:
            out.append(
                f"- One fixed batch (the first batch of each seed), {steps} {p.optimizer.name} steps of `correct`: "
                f"the loss went from {fmt(f['loss_before'])} to {fmt(f['loss_after_k_steps'])} (mean over seeds; "
                f"per seed {seeds_list(f['loss_after_k_steps_per_seed'])}). It "
                + said(
                    flags,
                    "fixed_batch_loss_below_zero_every_seed",
                    "ended below zero on every seed",
                    "did not end below zero on every seed",
                )
                + " and "
                + said(
                    flags,
                    "fixed_batch_loss_falling_at_end_every_seed",
                    "was still falling at the end on every seed",
                    "had stopped falling on at least one seed",
                )
                + f" (fraction of steps that lowered it: {fmt(f['decreasing_step_fraction'])}): the loss has no floor, "
                "minimising it is not driving it to zero."
            )
            if f.get("eval_return_rose_every_seed") is not None:
                out.append(
                    f"- Meanwhile the policy's return over {p.fixed_batch_eval_episodes} evaluation episodes "
                    f"(same starts before and after) went from {fmt(f['eval_return_before'])} to "
                    f"{fmt(f['eval_return_after'])} "
                    f"(per seed {seeds_list(f['eval_return_before_per_seed'])} -> "
                    f"{seeds_list(f['eval_return_after_per_seed'])}): it "
                    + said(
                        flags, "fixed_batch_return_rose_every_seed", "rose on every seed", "did not rise on every seed"
                    )
                    + "."
                )
        rows = []
        for v, x in f["variants"].items():
            rows.append(
                f"| `{v}` | {fmt(x['loss_before'])} | {fmt(x['loss_after_k_steps'])} "
                f"| {'yes' if x['loss_below_zero_every_seed'] else 'no'} | {fmt(x['eval_return_before'])} "
                f"| {fmt(x['eval_return_after'])} |"
            )
        out += [
            "",
            f"| variant | loss before | loss after {steps} steps | below zero on every seed | return before "
            "| return after |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    if "loss_value_return_corr" in m:
        out.append(
            "- Over real training, the correlation across updates between `correct`'s loss value and the mean return "
            f"of the update's episodes is {fmt(m['loss_value_return_corr'])} (mean over seeds, 95 % CI "
            f"{ci(m['loss_value_return_corr_ci_low'], m['loss_value_return_corr_ci_high'])}; per seed "
            f"{seeds_list(m['variants']['correct']['loss_value_return_corr_per_seed'])}): "
            + said(flags, "loss_value_return_corr_negative", "negative", "not negative")
            + "; zero inside the CI: "
            + said(flags, "loss_value_return_corr_ci_excludes_zero", "no", "yes")
            + ". The loss of an update is not a score of the policy: with standardised returns it is a sum of "
            "A*CE over a batch whose A sums to zero."
        )
        out.append("")
    return out


def moves_lines(m: dict, p) -> list[str]:
    """Item: what an update does to the actions with A < 0 and A > 0, per variant."""
    v, flags = m["variants"], m["flags"]
    out = [
        "## What an update does to the actions with A < 0",
        "",
        "Of the samples with A < 0, the fraction whose log pi(a|s) went down, and of those with A > 0 the fraction "
        "whose log pi went up: after the probe's small step on the first batch, and after each real update (mean "
        "over updates, then over seeds; 95 % bootstrap CI inside [0, 1]). 0.5 = as many moved either way. "
        "'Weighted by abs(A)': the share of sum abs(A_t) on samples that moved the way their A says (a small step of "
        "`correct` raises sum A_t dlog pi_t, not each sample's). "
        "'Share on likely A < 0' is the share of the update's per-sample weights abs(dL/dlog pi(a_t|s_t)) carried by "
        "samples with A < 0 whose action had pi > 0.5; 'ΣA·CE < 0' the fraction of updates where the batch sum "
        "was negative (where `abs` reverses the whole step).",
        "",
        "| variant | probe: A<0 down | probe: A>0 up | probe: weighted by abs(A) | updates: A<0 down (95 % CI) "
        "| updates: A>0 up (95 % CI) | updates: weighted by abs(A) | share on likely A<0 | samples likely A<0 "
        "| ΣA·CE < 0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in v.items():
        out.append(
            f"| `{name}` | {fmt(x['probe_adv_neg_logp_down_fraction'])} | {fmt(x['probe_adv_pos_logp_up_fraction'])} "
            f"| {fmt(x['probe_adv_weighted_right_fraction'])} "
            f"| {with_ci(x, 'adv_neg_logp_down_fraction')} | {with_ci(x, 'adv_pos_logp_up_fraction')} "
            f"| {fmt(x['adv_weighted_right_fraction'])} "
            f"| {fmt(x['share_likely_adv_neg'])} | {fmt(x['likely_adv_neg_samples'])} "
            f"| {fmt(x['sum_negative_update_fraction'])} |"
        )
    out.append("")
    if "correct" in v:
        out.append(
            "- `correct`: the two fractions of the real updates are "
            + said(
                flags,
                "correct_update_fractions_above_half_every_seed",
                "both above 0.5 on every seed",
                "not both above 0.5 on every seed",
            )
            + "; of the probe's step they are "
            + said(
                flags,
                "correct_probe_fractions_above_half_every_seed",
                "both above 0.5 on every seed",
                "not both above 0.5 on every seed",
            )
            + "."
        )
    if "flipped" in v:
        out.append(
            "- `flipped`: the two fractions of the real updates are "
            + said(
                flags,
                "flipped_update_fractions_below_half_every_seed",
                "both below 0.5 on every seed",
                "not both below 0.5 on every seed",
            )
            + "; of the probe's step they are "
            + said(
                flags,
                "flipped_probe_fractions_below_half_every_seed",
                "both below 0.5 on every seed",
                "not both below 0.5 on every seed",
            )
            + ". To first order the probe's change of log pi for `flipped` is exactly minus that of `correct`, "
            "so its fractions are the complements of `correct`'s on the same batch."
        )
    for name in ("correct", "flipped"):
        if name in v:
            x = v[name]
            out.append(
                f"- `{name}`, first {EARLY_UPDATES} updates of each trial only (while the policy is still learning): "
                f"A<0 down {fmt(x['adv_neg_logp_down_fraction_early'])}, A>0 up "
                f"{fmt(x['adv_pos_logp_up_fraction_early'])}, weighted by abs(A) "
                f"{fmt(x['adv_weighted_right_fraction_early'])}."
            )
    if "pow" in v and "correct" in v:
        out.append(
            f"- `pow`: likely actions with A < 0 carry {fmt(v['pow']['share_likely_adv_neg'])} of its update "
            f"against {fmt(v['correct']['share_likely_adv_neg'])} of `correct`'s (d CE^A / d CE = A CE^(A-1): large "
            "where CE is small and A < 0); its share is "
            + said(
                flags,
                "pow_share_likely_adv_neg_above_correct_every_seed",
                "above `correct`'s on every seed",
                "not above `correct`'s on every seed",
            )
            + "."
        )
    if "abs" in v:
        a = v["abs"]
        out.append(
            f"- `abs`: the batch sum ΣA·CE was negative on {fmt(a['sum_negative_update_fraction'])} of its updates. On "
            f"those, the fractions were {fmt(a['adv_neg_logp_down_fraction_sum_negative'])} (A<0 down) and "
            f"{fmt(a['adv_pos_logp_up_fraction_sum_negative'])} (A>0 up): "
            + said(
                flags,
                "abs_fractions_below_half_when_sum_negative",
                "both below 0.5, the whole step reversed",
                "not both below 0.5",
            )
            + f"; on the updates with a positive sum {fmt(a['adv_neg_logp_down_fraction_sum_positive'])} and "
            f"{fmt(a['adv_pos_logp_up_fraction_sum_positive'])}: "
            + said(
                flags,
                "abs_fractions_above_half_when_sum_positive",
                "both above 0.5, as `correct`",
                "not both above 0.5",
            )
            + "."
        )
    out.append("")
    return out


def summary(m: dict, timing: dict, p, kind: str) -> str:
    v = m["variants"]
    env = "CartPole-v1" if kind == "cartpole" else "Pong"
    lines = [
        f"# {'pg_cartpole' if kind == 'cartpole' else 'pg_pong'}: REINFORCE loss-sign ablation on {env}",
        "",
        "Minimising `sum(A * CE)` with `CE = -log pi(a|s)` means *maximising* `sum(A * log pi(a|s))`: an action "
        "followed by a below-average return (A < 0) makes the loss smaller the *less* likely it is, so gradient "
        "descent lowers its probability. The optimiser does not minimise |loss| and does not push the loss to "
        "zero; the sign of A only sets the direction in which each action's log-probability moves.",
        "",
        f"Setup: {p.seeds} seeds x {len(p.variants)} variants, {m['episodes_per_trial']} episodes per trial "
        f"({p.episodes_per_update} per update), {p.optimizer.name} lr {p.optimizer.lr:g} decay {p.optimizer.decay:g}, "
        f"gamma {p.gamma:g}, returns standardised per {p.standardize_per}. Final return = mean of the last "
        f"{p.final_episodes} episodes, first return = mean of the first {p.final_episodes}; 95 % percentile-bootstrap "
        "CI over seeds, inside the possible range of the return ('n/a' with one seed); against `correct`: Welch's "
        "t-test and an exact permutation test over seeds, with the smallest p the permutation test can give at "
        "these seed counts.",
    ]
    if kind == "pong":
        e, ref = m["env"], m["reference"]
        lines += [
            "",
            f"Pong variant: {e['id']}, frameskip {e['frameskip']}, sticky actions (repeat_action_probability) "
            f"{e['repeat_action_probability']}, actions {e['actions']}, move cost {fmt(e['move_cost'])}, input "
            f"{e['input']}, an episode = {e['points_per_episode']} points at most, rollout `{e['rollout']}`. "
            f"Uniform random actions score {fmt(ref['random_return_mean'])} per game "
            f"(95 % CI {ci(ref['random_return_ci_low'], ref['random_return_ci_high'])}, {ref['random_games']} games). "
            f"Throughput (timing.json, this run): {fmt(timing['frames_per_second'], 4)} frames/s per trial "
            f"process, {timing['workers']} processes.",
        ]
    lines += [
        "",
        "| variant | first return per seed | final return per seed | final return (95 % CI) | probe corr (95 % CI) "
        "| real-update corr | p vs correct (Welch / exact, min) |"
        + (" episodes to solve (median) |" if kind == "cartpole" else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if kind == "cartpole" else ""),
    ]
    for name, x in v.items():
        row = (
            f"| `{name}` | {seeds_list(x['first_return_per_seed'])} | {seeds_list(x['final_return_per_seed'])} "
            f"| {fmt(x['final_return_mean'])} ({ci(x['final_return_ci_low'], x['final_return_ci_high'])}) "
            f"| {fmt(x['probe_corr'])} ({ci(x['probe_corr_ci_low'], x['probe_corr_ci_high'])}) "
            f"| {fmt(x['probe_corr_train_mean'])} | {fmt(x['p_vs_correct'])} / {fmt(x['p_exact_vs_correct'])}, "
            f"{fmt(x['p_exact_min'])} |"
        )
        if kind == "cartpole":
            row += f" {fmt(x['episodes_to_solve_median'])} ({x['solved_seeds']}/{p.seeds} seeds solved) |"
        lines.append(row)
    lines.append("")
    if kind == "pong":
        lines += pong_verdicts(m, p)
    if "correct" in v and "flipped" in v:
        c, f = v["correct"], v["flipped"]
        lines.append(
            f"- `correct` vs `flipped`: final return {fmt(c['final_return_mean'])} vs {fmt(f['final_return_mean'])} "
            f"(exact p = {fmt(f['p_exact_vs_correct'])}, the smallest possible with {p.seeds} vs {p.seeds} seeds being "
            f"{fmt(f['p_exact_min'])}); the probe correlation is {fmt(c['probe_corr'])} vs {fmt(f['probe_corr'])}: "
            "flipping the sign makes each update raise the probability of the actions that were followed by the "
            "worst returns."
        )
    if kind == "cartpole":
        ref = m["reference"]
        lines.append(
            f"- Reference policies: always pushing left lasts {fmt(ref['always_left_return_mean'])} steps on average "
            f"(the shortest episodes), a uniform random policy {fmt(ref['random_return_mean'])}."
        )
    for name, x in v.items():
        if "final_return_diff_vs_correct" in x:
            lines.append(
                f"- `{name}` minus `correct`, final return: {fmt(x['final_return_diff_vs_correct'])} "
                f"(95 % bootstrap CI {with_ci(x, 'final_return_diff_vs_correct').split(' (', 1)[1][:-1]}); exact "
                f"p = {fmt(x['p_exact_vs_correct'])} (smallest attainable {fmt(x['p_exact_min'])}), Welch p = "
                f"{fmt(x['p_vs_correct'])}: "
                + said(
                    m["flags"],
                    f"{name}_below_correct",
                    f"below `correct` (exact p < {ALPHA:g})",
                    f"not shown below `correct` (exact p >= {ALPHA:g} or a higher mean)",
                )
                + "."
            )
    for name in ("abs", "pow"):
        if name in v:
            x = v[name]
            lines.append(
                f"- `{name}`: final return {fmt(x['final_return_mean'])} (exact p = {fmt(x['p_exact_vs_correct'])} vs "
                f"correct), probe {fmt(x['probe_corr'])}, real-update correlation {fmt(x['probe_corr_train_mean'])}"
                + (f", {x['diverged_seeds']} seed(s) hit a non-finite loss" if x["diverged_seeds"] else "")
                + "."
            )
    lines += ["", *loss_value_lines(m, p), *moves_lines(m, p)]
    lines += [
        "",
        "The probe: on the first batch of each seed (the same batch for every variant), one gradient step of "
        f"length {p.probe_step:g} in parameter space, then the Pearson correlation between the change of "
        "log pi(a_t|s_t) and A_t. 'Real-update corr' is the same correlation for the optimiser's actual updates "
        "during training (mean over updates).",
        "",
        "Figures: `figures/learning_curves.png`, `figures/final_return_and_probe.png`, `figures/logp_moves.png`, "
        "`figures/loss_value.png`. Tables: `episodes.csv`, `trials.csv`, `plots/*.csv` (`plots/probe.csv`: every "
        "update's loss, batch return and fractions).",
        "",
    ]
    return "\n".join(lines)


def pong_verdicts(m: dict, p) -> list[str]:
    """Sentences from ``metrics['flags']`` (``analysis.pong_flags``)."""
    flags, v = m["flags"], m["variants"]
    out = []
    if "correct_improves_every_seed" in flags:
        gains = seeds_list(v["correct"]["improvement_per_seed"])
        verdict = "improves on every seed" if flags["correct_improves_every_seed"] else "does not improve on every seed"
        out.append(
            f"- `correct` {verdict} (criterion: the mean of its last {p.final_episodes} games at least "
            f"{fmt(PONG_IMPROVEMENT)} points above its first {p.final_episodes}; gains per seed: {gains} points)."
        )
    if "flipped_improves_any_seed" in flags:
        gains = seeds_list(v["flipped"]["improvement_per_seed"])
        verdict = "improves on at least one seed" if flags["flipped_improves_any_seed"] else "improves on no seed"
        out.append(f"- `flipped` {verdict} by that criterion (gains per seed: {gains} points).")
    if "correct_above_flipped_every_seed" in flags:
        verdict = "above" if flags["correct_above_flipped_every_seed"] else "not above"
        out.append(f"- `correct`'s final return is {verdict} `flipped`'s on every seed (same seed, same first batch).")
    return out


def win_summary(w: dict, m: dict, timing: dict, p, stage: str) -> str:
    """summary.md of the win presets: per seed, whether and when the running mean went above the target."""
    recipe = "the question's recipe" if p.actions == "noop_up_down" else "vanilla REINFORCE"
    lines = [
        f"# {stage}: {recipe} against Pong's built-in AI",
        "",
        f"Each trial stops at the end of the first game after which the mean return of the last {p.stop_window} "
        f"games is above {fmt(w['stop_at_mean'])}{' (more points won than lost)' if w['stop_at_mean'] == 0 else ''}, "
        "or at the cap of "
        f"{w['cap_games']} games. Network: {80 // p.downsample}x{80 // p.downsample} frame difference, {p.hidden} "
        f"hidden units, actions {m['env']['actions']}, move cost {fmt(p.move_cost)}; {p.optimizer.name} lr "
        f"{p.optimizer.lr:g} decay {p.optimizer.decay:g}; {p.episodes_per_update} games per update; rollout "
        f"`{p.rollout}`. Uniform random actions score {fmt(m['reference']['random_return_mean'])} per game.",
        "",
        "| trial | won | games to win | frames to win | minutes to win | games played | frames/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, t in w.items():
        if not (isinstance(t, dict) and "won" in t):
            continue
        minutes = None if t["seconds_to_win"] is None else t["seconds_to_win"] / 60
        lines.append(
            f"| {key} | {'yes' if t['won'] else 'no'} | {fmt(t['games_to_win'], 5)} | {fmt(t['frames_to_win'], 4)} "
            f"| {fmt(minutes)} | {t['games']} | {fmt(t['frames_per_second'], 4)} |"
        )
    lines.append("")
    for v in p.variants:
        s = w[v]
        med = s["median_seconds_to_win"]
        lines.append(
            f"- `{v}`: {s['seeds_won']} of {s['seeds']} seeds won within the cap; median time to win "
            f"{fmt(None if med is None else med / 60)} minutes, median games {fmt(s['median_games_to_win'], 5)} "
            "(a seed that did not win counts as never; n/a when half or more did not win)."
        )
    lines += [
        "",
        f"Wall-clock: training seconds of each trial, one trial at a time on the machine ({timing['machine']}); "
        "frames counted are those of finished games. Figures: `figures/win_curves.png`, "
        "`figures/learning_curves.png`. Per-game returns: `episodes.csv` (`return_mean100` is the running mean).",
        "",
    ]
    return "\n".join(lines)
