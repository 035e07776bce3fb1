"""Report section: pg_cartpole."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


def _pg_evidence(q: Quotes, s: str) -> list[str]:
    evidence = []
    for v, row in q.metrics(s)["variants"].items():
        ret = q.ci(s, f"variants.{v}.final_return_mean", ".4g", f"variants.{v}.final_return")
        line = f"`{v}`: final return {ret}, probe correlation "
        line += f"{q(s, f'variants.{v}.probe_corr', '+.3f')}"
        if row.get("p_vs_correct") is not None:
            line += f", Welch p vs correct {q(s, f'variants.{v}.p_vs_correct', '.2g')}"
        if row.get("episodes_to_solve_median") is not None:
            line += f", solved after a median {q(s, f'variants.{v}.episodes_to_solve_median', '.4g')} episodes"
        evidence.append(line + ".")
    return evidence


_PG_QUESTION = (
    "In REINFORCE (`loss = sum(reward * cross_entropy)`), how does a negative reward make the agent avoid an "
    "action? Does the optimiser minimise the loss's absolute value? Would `sum(pow(cross_entropy, reward))` work?"
)


def pg_cartpole(q: Quotes) -> Section:
    s = "pg_cartpole"
    answer = (
        "Minimising A * CE = -A * log pi(a|s) raises log pi of actions with positive advantage and lowers it for "
        "negative ones; the loss's value is irrelevant, only its gradient. One update on a fixed batch moved "
        f"log pi in the direction of A (correlation {q(s, 'variants.correct.probe_corr', '+.3f')}) for the correct "
        f"sign and against it ({q(s, 'variants.flipped.probe_corr', '+.3f')}) when flipped. The correct loss "
        f"reached a final return of {q(s, 'variants.correct.final_return_mean', '.4g')}; the flipped one "
        f"{'did significantly worse' if _worse(q, s, 'flipped') else 'ended at'} "
        f"({q(s, 'variants.flipped.final_return_mean', '.3g')}, Welch p = "
        f"{q(s, 'variants.flipped.p_vs_correct', '.2g')})."
    )
    variants = q.metrics(s)["variants"]
    if "abs" in variants and "pow" in variants:
        verdict = "did significantly worse" if _worse(q, s, "abs") and _worse(q, s, "pow") else "ended at"
        answer += (
            f" |loss| and pow(CE, R) {verdict} ({q(s, 'variants.abs.final_return_mean', '.3g')} and "
            f"{q(s, 'variants.pow.final_return_mean', '.3g')})."
        )
    evidence = _pg_evidence(q, s) + [
        f"References: random play lasts {q(s, 'reference.random_return_mean', '.3g')} steps, always pushing left "
        f"{q(s, 'reference.always_left_return_mean', '.3g')}.",
    ]
    return Section(
        stage=s,
        title="REINFORCE loss sign on CartPole",
        question=_PG_QUESTION,
        answer=answer,
        evidence=evidence,
        figures=["figures/learning_curves.png", "figures/final_return_and_probe.png"],
        caveats=[
            f"{q(s, 'seeds', 'd')} seeds x {q(s, 'episodes_per_trial', 'd')} episodes per variant; final return is "
            f"the mean of the last {q(s, 'final_episodes', 'd')} episodes.",
            "CartPole uses RMSProp with a larger learning rate than the Pong recipe, to fit the time budget.",
        ]
        + (_pg_probe_caveat(q, s) if "abs" in variants and "pow" in variants else []),
    )


def _pg_probe_caveat(q: Quotes, s: str) -> list[str]:
    return [
        "The probe is one small step on one fixed batch: it shows the direction of a single update, not "
        "whether training converges. `abs` and `pow` align with the advantages on that batch and still fail "
        "to learn (|sum A*CE| reverses the whole update whenever the batch sum turns negative; d CE^R = "
        "R CE^(R-1) dCE keeps the sign of R but re-weights samples by CE^(R-1)). Averaged over the real "
        "training updates their probe is "
        f"{q(s, 'variants.abs.probe_corr_train_mean', '+.3f')} (abs) and "
        f"{q(s, 'variants.pow.probe_corr_train_mean', '+.3f')} (pow) against "
        f"{q(s, 'variants.correct.probe_corr_train_mean', '+.3f')} (correct).",
    ]


def _worse(q: Quotes, s: str, variant: str) -> bool:
    """Lower final return than `correct` with Welch p < 0.01."""
    v = q.metrics(s)["variants"]
    p = v[variant].get("p_vs_correct")
    return p is not None and p < 0.01 and v[variant]["final_return_mean"] < v["correct"]["final_return_mean"]
