"""Report section: pg_pong."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.pg_cartpole import _PG_QUESTION, _flag, _moves, _pg_evidence
from gradlab.report.sections.section import Section


def pg_pong(q: Quotes) -> Section:
    s = "pg_pong"
    m = q.metrics(s)
    flags = m.get("flags", {})
    learned = flags.get("correct_improves_every_seed")
    above = flags.get("correct_above_flipped_every_seed")
    flipped_learns = flags.get("flipped_improves_any_seed")
    answer = (
        f"The same mechanism on Pong: the probe correlation is {q(s, 'variants.correct.probe_corr', '+.3f')} for "
        f"the correct sign and {q(s, 'variants.flipped.probe_corr', '+.3f')} when flipped. Over "
        f"{q(s, 'episodes_per_trial', 'd')} games per trial, `correct` went from "
        f"{_per_seed(q, s, 'variants.correct.first_return_per_seed')} (mean of its first "
        f"{q(s, 'final_episodes', 'd')} games, per seed) to "
        f"{_per_seed(q, s, 'variants.correct.final_return_per_seed')} (its last {q(s, 'final_episodes', 'd')}): it "
        + ("learns on every seed" if learned else "does not learn on every seed by the stage's criterion")
        + "; `flipped` "
        + ("improves too" if flipped_learns else "does not improve")
        + f" (last games {_per_seed(q, s, 'variants.flipped.final_return_per_seed')}) and ends "
        + ("below `correct` on every seed." if above else "not below `correct` on every seed.")
    )
    if "adv_neg_logp_down_fraction" in m["variants"].get("correct", {}):
        answer += (
            f" Per update, with the correct sign {_moves(q, s, 'correct')} ("
            + _flag(
                q,
                s,
                "correct_update_fractions_above_half_every_seed",
                "both above one half on every seed",
                "not both above one half on every seed",
            )
            + ")"
        )
        if "flipped" in m["variants"]:
            answer += (
                f"; flipped, {_moves(q, s, 'flipped')} ("
                + _flag(
                    q,
                    s,
                    "flipped_update_fractions_below_half_every_seed",
                    "both below one half on every seed",
                    "not both below one half on every seed",
                )
                + ")"
            )
        answer += (
            f". The loss value of an update and the return of its games correlate at "
            f"{q(s, 'loss_value_return_corr', '+.2f')} (95 % CI {q(s, 'loss_value_return_corr_ci_low', '+.2f')} to "
            f"{q(s, 'loss_value_return_corr_ci_high', '+.2f')}; zero inside the CI: "
            + _flag(q, s, "loss_value_return_corr_ci_excludes_zero", "no", "yes")
            + ")."
        )
    evidence = _pg_evidence(q, s) + [
        f"Uniform random actions score {q(s, 'reference.random_return_mean', '.3g')} per game "
        f"({q(s, 'reference.random_games', 'd')} games).",
        "Exact permutation p of `flipped` vs `correct` over seeds: "
        f"{q(s, 'variants.flipped.p_exact_vs_correct', '.2g')} (the smallest attainable with these seeds: "
        f"{q(s, 'variants.flipped.p_exact_min', '.2g')}).",
    ]
    figures = ["figures/learning_curves.png", "figures/final_return_and_probe.png"]
    if (q.results / s / "figures" / "logp_moves.png").exists():
        figures += ["figures/logp_moves.png", "figures/loss_value.png"]
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
            "The presets `presets/pg_pong_win.yaml` (until the agent beats the built-in AI) and "
            "`presets/pg_pong_recipe.yaml` (the question's NOOP/UP/DOWN recipe with its move cost) are not part "
            "of `dvc repro`; their committed results are quoted when present (results/pg_pong_win, "
            "results/pg_pong_recipe).",
            f"Variant: frameskip {q(s, 'env.frameskip', 'd')}, repeat_action_probability "
            f"{q(s, 'env.repeat_action_probability', 'g')}, actions {q(s, 'env.actions')}; input {q(s, 'env.input')}.",
            "Throughput depends on the machine and is in results/pg_pong/timing.json, not in metrics.json.",
            "The correlation between an update's loss value and its games' return is taken across the updates of "
            "a trial, so it includes the common trend of both with training time (plots/probe.csv: per update).",
        ],
    )


def _per_seed(q: Quotes, s: str, key: str) -> str:
    """The values of the list at ``key``, each quoted: one per seed."""
    return ", ".join(q(s, f"{key}.{i}", ".3g") for i in range(len(q.raw(s, key))))


def _pong_preset_evidence(q: Quotes, s: str) -> list[str]:
    win = q.metrics(s)["win"]
    out = []
    for key, t in win.items():
        if not (isinstance(t, dict) and "won" in t):
            continue
        if t["won"]:
            out.append(
                f"`{s}` {key}: the mean of the last {q(s, 'win.stop_window', 'd')} games passed "
                f"{q(s, 'win.stop_at_mean', 'g')} after {q(s, f'win.{key}.games_to_win', 'd')} games "
                f"({q(s, f'win.{key}.frames_to_win', '.3g')} frames, {q(s, f'win.{key}.seconds_to_win', '.0f')} s "
                "of training)."
            )
        else:
            out.append(
                f"`{s}` {key}: did not pass {q(s, 'win.stop_at_mean', 'g')} within {q(s, f'win.{key}.games', 'd')} "
                "games (the cap)."
            )
    return out
