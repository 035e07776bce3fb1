"""summary.md of a pg stage: the answer in a few sentences, every number and verdict read from the metrics."""

from __future__ import annotations

import math

from gradlab.studies.pg.analysis import PONG_IMPROVEMENT


def fmt(x, nd=3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}g}"


def ci(lo, hi) -> str:
    return "n/a" if lo is None or hi is None else f"{fmt(lo)} to {fmt(hi)}"


def seeds_list(xs) -> str:
    return ", ".join(fmt(x) for x in xs)


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
    for name in ("abs", "pow"):
        if name in v:
            x = v[name]
            lines.append(
                f"- `{name}`: final return {fmt(x['final_return_mean'])} (exact p = {fmt(x['p_exact_vs_correct'])} vs "
                f"correct), probe {fmt(x['probe_corr'])}, real-update correlation {fmt(x['probe_corr_train_mean'])}"
                + (f", {x['diverged_seeds']} seed(s) hit a non-finite loss" if x["diverged_seeds"] else "")
                + "."
            )
    lines += [
        "",
        "The probe: on the first batch of each seed (the same batch for every variant), one gradient step of "
        f"length {p.probe_step:g} in parameter space, then the Pearson correlation between the change of "
        "log pi(a_t|s_t) and A_t. 'Real-update corr' is the same correlation for the optimiser's actual updates "
        "during training (mean over updates).",
        "",
        "Figures: `figures/learning_curves.png`, `figures/final_return_and_probe.png`. Tables: `episodes.csv`, "
        "`trials.csv`, `plots/*.csv`.",
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
