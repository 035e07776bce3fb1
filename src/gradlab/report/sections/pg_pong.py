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
    for preset in ("pg_pong_win", "pg_pong_recipe"):
        if q.has(preset):
            evidence += _pong_preset_evidence(q, preset)
    return Section(
        stage=s,
        title="REINFORCE loss sign on Atari Pong",
        question=_PG_QUESTION,
        answer=answer,
        evidence=evidence,
        figures=figures,
        caveats=[
            *_small_sample_caveats(q, s),
            "The presets `presets/pg_pong_win.yaml` (until the agent beats the built-in AI) and "
            "`presets/pg_pong_recipe.yaml` (the question's NOOP/UP/DOWN recipe with its move cost) are not part "
            "of `dvc repro`; their committed results are quoted when present (results/pg_pong_win, "
            "results/pg_pong_recipe). Their win criterion is a 100-game training mean above 0, not an evaluation.",
            f"Variant: frameskip {q(s, 'env.frameskip', 'd')}, repeat_action_probability "
            f"{q(s, 'env.repeat_action_probability', 'g')}, actions {q(s, 'env.actions')}; input {q(s, 'env.input')}.",
            "Throughput depends on the machine and is in results/pg_pong/timing.json, not in metrics.json.",
        ],
    )


def _pong_preset_evidence(q: Quotes, s: str) -> list[str]:
    win = q.metrics(s)["win"]
    evaluated = win.get("rule") == "evaluation"
    out = []
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
