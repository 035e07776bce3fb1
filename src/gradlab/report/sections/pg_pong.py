"""Report section: pg_pong. Numbers quoted from results/pg_pong/stats.json; every verdict read from its flag
(+1 / 0 / -1) with its exact test or interval, "inconclusive" where it is 0; seed counts worded as counts."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.pg_cartpole import (
    _PG_QUESTION,
    _count,
    _exact,
    _flag,
    _fractions,
    _loss_corr,
    _per_seed,
    _pg_evidence,
    _small_sample_caveats,
)
from gradlab.report.sections.section import Section


def _improves(q: Quotes, s: str, v: str) -> str:
    return (
        f"gains per seed {_per_seed(q, s, f'variants.{v}.improvement_per_seed')} points, at least "
        f"{q(s, 'improvement_threshold', 'g')} on {_count(q, s, f'{v}_improves')}; improves: "
        + _flag(q, s, f"{v}_improves", "yes", "no, gets worse")
        + " (sign-flip test of the gains over seeds, "
        + _exact(q, s, f"variants.{v}.improvement_p", f"variants.{v}.improvement_p_min")
        + ")"
    )


def pg_pong(q: Quotes) -> Section:
    s = "pg_pong"
    m = q.metrics(s)
    answer = (
        f"The same mechanism on Pong: the probe correlation is {q(s, 'variants.correct.probe_corr', '+.3f')} for "
        f"the correct sign and {q(s, 'variants.flipped.probe_corr', '+.3f')} when flipped (means over seeds). Over "
        f"{q(s, 'episodes_per_trial', 'd')} games per trial, `correct` went from "
        f"{_per_seed(q, s, 'variants.correct.first_return_per_seed')} (mean of its first "
        f"{q(s, 'final_episodes', 'd')} games, per seed) to "
        f"{_per_seed(q, s, 'variants.correct.final_return_per_seed')} (its last {q(s, 'final_episodes', 'd')}): "
        + _improves(q, s, "correct")
        + f". `flipped` ended at {_per_seed(q, s, 'variants.flipped.final_return_per_seed')}: "
        + _improves(q, s, "flipped")
        + f"; `correct` ended above `flipped` on {_count(q, s, 'correct_above_flipped')}."
    )
    if "adv_neg_logp_down_fraction" in m["variants"].get("correct", {}):
        answer += f" Per update, with the correct sign {_fractions(q, s, 'correct')}"
        if "flipped" in m["variants"]:
            answer += f"; flipped, {_fractions(q, s, 'flipped')}"
        answer += "." + _loss_corr(q, s)
    evidence = _pg_evidence(q, s) + [
        f"Uniform random actions score {q(s, 'reference.random_return_mean', '.3g')} per game "
        f"(95 % CI {q(s, 'reference.random_return_ci_low', '.3g')} to "
        f"{q(s, 'reference.random_return_ci_high', '.3g')}, {q(s, 'reference.random_games', 'd')} games).",
    ]
    figures = [
        "figures/learning_curves.png",
        "figures/final_return_and_probe.png",
        "figures/logp_moves.png",
        "figures/loss_value.png",
    ]
    presets = [x for x in PRESETS if q.has(x)]
    for preset in presets:
        evidence += _pong_preset_evidence(q, preset)
    if q.has("pg_pong_factorial"):
        evidence += _factorial_evidence(q)
        figures.append("../pg_pong_factorial/figures/factorial.png")
    return Section(
        stage=s,
        title="REINFORCE loss sign on Atari Pong",
        question=_PG_QUESTION,
        answer=answer,
        evidence=evidence,
        figures=figures,
        caveats=[
            *_small_sample_caveats(q, s),
            _presets_caveat(q, presets),
            f"Variant: frameskip {q(s, 'env.frameskip', 'd')}, repeat_action_probability "
            f"{q(s, 'env.repeat_action_probability', 'g')}, actions {q(s, 'env.actions')}; input {q(s, 'env.input')}.",
            "Throughput depends on the machine and is in results/pg_pong/timing.json, not in metrics.json.",
        ],
    )


PRESETS = ("pg_pong_win", "pg_pong_fast", "pg_pong_noop", "pg_pong_recipe")


def _presets_caveat(q: Quotes, presets: list[str]) -> str:
    rules = {x: q.metrics(x)["win"].get("rule") for x in presets}
    evaluated = [f"`{x}`" for x, r in rules.items() if r == "evaluation"]
    training = [f"`{x}`" for x, r in rules.items() if r != "evaluation"]
    text = (
        "The Pong presets (`presets/pg_pong_*.yaml`) are not part of `dvc repro`; their committed results are quoted "
        "when present."
    )
    if evaluated:
        text += f" Won means evaluated for {', '.join(evaluated)}: a frozen checkpoint's fresh games, 95 % CI above 0."
    if training:
        text += f" For {', '.join(training)} the win is a 100-game training mean above 0, not an evaluation."
    return text


def _factorial_evidence(q: Quotes) -> list[str]:
    s = "pg_pong_factorial"
    m = q.metrics(s)
    out = []
    for name, a in m["arms"].items():
        progress = ", ".join("never" if g is None else str(g) for g in a["games_to_progress_per_seed"])
        won = ", ".join(
            f"yes after {g}" if w else "no" for w, g in zip(a["won_per_seed"], a["games_to_win_per_seed"], strict=True)
        )
        source = f"`{a['stage']}`" if a.get("stage") else f"the same training as `{a['same_as']}` (a constant cost)"
        out.append(
            f"Factorial arm `{name}` ({a['actions']}, move cost {a['move_cost']:g}; {source}): games until the "
            f"100-game mean reached {q(s, 'progress_mean', 'g')} per seed {progress}; evaluated win within "
            f"{q(s, 'cap_games', 'd')} games per seed: {won}."
        )
    words = {1: "faster", -1: "slower", 0: "no difference shown"}
    for key, t in m["tests"].items():
        a, b = key.split("_vs_")
        out.append(
            f"Factorial `{a}` vs `{b}`: games to -10 {words[t['flags']['faster']]} (exact Mann-Whitney p "
            f"{q(s, f'tests.{key}.games_to_progress_p', '.2g')}, smallest attainable "
            f"{q(s, f'tests.{key}.games_to_progress_p_min', '.2g')}); wins {t['won_a']} vs {t['won_b']} (Fisher p "
            f"{q(s, f'tests.{key}.won_p', '.2g')}, smallest attainable {q(s, f'tests.{key}.won_p_min', '.2g')})."
        )
    return out


def _pong_preset_evidence(q: Quotes, s: str) -> list[str]:
    win = q.metrics(s)["win"]
    evaluated = win.get("rule") == "evaluation"
    out = []
    for variant, v in win.items():
        if not (isinstance(v, dict) and "seeds_won" in v):
            continue
        line = (
            f"`{s}` `{variant}`: {v['seeds_won']} of {v['seeds']} seeds "
            + ("won an evaluation" if evaluated else "passed a training mean of 0")
            + f" within the cap of {q(s, 'win.cap_games', 'd')} games"
        )
        if v.get("median_seconds_to_win") is not None:
            line += (
                f"; median {q(s, f'win.{variant}.median_seconds_to_win', '.0f')} s "
                f"({q(s, f'win.{variant}.median_seconds_to_win', '.2f', scale=1 / 60)} min) of training and "
                f"{q(s, f'win.{variant}.median_games_to_win', '.0f')} games to the "
                + ("winning checkpoint" if evaluated else "crossing")
            )
        out.append(line + ".")
    for key, t in win.items():
        if not (isinstance(t, dict) and "won" in t):
            continue
        if t["won"] and evaluated:
            out.append(
                f"`{s}` {key}: the first checkpoint whose {q(s, 'win.evaluate_games', 'd')} fresh games scored above "
                f"0 (mean {q(s, f'win.{key}.eval_mean', '.2f')}, 95 % CI {q(s, f'win.{key}.eval_ci_low', '.2f')} to "
                f"{q(s, f'win.{key}.eval_ci_high', '.2f')}) came after {q(s, f'win.{key}.games_to_win', 'd')} "
                f"training games ({q(s, f'win.{key}.frames_to_win', '.3g')} frames, "
                f"{q(s, f'win.{key}.seconds_to_win', '.0f')} s of training)."
            )
        elif t["won"]:
            out.append(
                f"`{s}` {key}: the mean of the last {q(s, 'win.stop_window', 'd')} games passed "
                f"{q(s, 'win.stop_at_mean', 'g')} after {q(s, f'win.{key}.games_to_win', 'd')} games "
                f"({q(s, f'win.{key}.frames_to_win', '.3g')} frames, {q(s, f'win.{key}.seconds_to_win', '.0f')} s "
                "of training; a training mean, not an evaluation)."
            )
        elif evaluated:
            out.append(
                f"`{s}` {key}: no evaluated checkpoint scored above 0 within {q(s, f'win.{key}.games', 'd')} "
                "training games (the cap)."
            )
        else:
            out.append(
                f"`{s}` {key}: did not pass {q(s, 'win.stop_at_mean', 'g')} within {q(s, f'win.{key}.games', 'd')} "
                "games (the cap)."
            )
    return out
