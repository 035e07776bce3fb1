"""Report section: pg_cartpole. Every number is quoted from results/pg_cartpole/stats.json, every verdict read
from a flag computed in gradlab.studies.pg.analysis."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


def _flag(q: Quotes, s: str, key: str, yes: str, no: str) -> str:
    """The words of ``flags.<key>``; "n/a" when the flag was not computed (its variants did not run)."""
    value = q.metrics(s).get("flags", {}).get(key)
    return "n/a" if value is None else (yes if value else no)


def _moves(q: Quotes, s: str, v: str, prefix: str = "") -> str:
    return (
        f"{q(s, f'variants.{v}.{prefix}adv_neg_logp_down_fraction', '.2f')} of the samples with A < 0 had log pi "
        f"lowered and {q(s, f'variants.{v}.{prefix}adv_pos_logp_up_fraction', '.2f')} of those with A > 0 raised"
    )


def _pg_evidence(q: Quotes, s: str) -> list[str]:
    evidence = []
    for v, row in q.metrics(s)["variants"].items():
        ret = q.ci(s, f"variants.{v}.final_return_mean", ".4g", f"variants.{v}.final_return")
        line = f"`{v}`: final return {ret}; "
        if "adv_neg_logp_down_fraction" in row:
            line += f"real updates: {_moves(q, s, v)} (mean over updates and seeds); probe step: "
            line += f"{_moves(q, s, v, 'probe_')}; "
        line += "probe correlation "
        line += f"{q(s, f'variants.{v}.probe_corr', '+.3f')}"
        if row.get("p_vs_correct") is not None:
            line += (
                f"; vs correct: exact permutation p {q(s, f'variants.{v}.p_exact_vs_correct', '.2g')} (smallest "
                f"attainable {q(s, f'variants.{v}.p_exact_min', '.2g')}), Welch p "
                f"{q(s, f'variants.{v}.p_vs_correct', '.2g')}"
            )
        if row.get("final_return_diff_vs_correct_ci_low") is not None:
            line += (
                f", difference {q(s, f'variants.{v}.final_return_diff_vs_correct', '.3g')} (95 % CI "
                f"{q(s, f'variants.{v}.final_return_diff_vs_correct_ci_low', '.3g')} to "
                f"{q(s, f'variants.{v}.final_return_diff_vs_correct_ci_high', '.3g')})"
            )
        if row.get("episodes_to_solve_median") is not None:
            line += f"; solved after a median {q(s, f'variants.{v}.episodes_to_solve_median', '.4g')} episodes"
        evidence.append(line + ".")
    return evidence


_PG_QUESTION = (
    "In REINFORCE (`loss = sum(reward * cross_entropy)`), how does a negative reward make the agent avoid an "
    "action? Does the optimiser minimise the loss's absolute value? Would `sum(pow(cross_entropy, reward))` work?"
)


def _loss_value(q: Quotes, s: str) -> str:
    """The fixed-batch experiment and corr(loss value, return), if they ran."""
    m = q.metrics(s)
    out = ""
    if "loss_after_k_steps" in m.get("fixed_batch", {}):
        out += (
            f" The optimiser does not minimise |loss|: {q(s, 'fixed_batch.steps', 'd')} steps of the correct loss on "
            f"one fixed batch took it from {q(s, 'fixed_batch.loss_before', '.3g')} to "
            f"{q(s, 'fixed_batch.loss_after_k_steps', '.3g')} (mean over seeds); it "
            + _flag(
                q,
                s,
                "fixed_batch_loss_below_zero_every_seed",
                "ended below zero on every seed",
                "did not end below zero on every seed",
            )
            + " and "
            + _flag(q, s, "fixed_batch_loss_falling_at_end_every_seed", "was still falling", "had stopped falling")
        )
        if m["fixed_batch"].get("eval_return_rose_every_seed") is not None:
            out += (
                f", while the policy's return went from {q(s, 'fixed_batch.eval_return_before', '.3g')} to "
                f"{q(s, 'fixed_batch.eval_return_after', '.3g')} ("
                + _flag(q, s, "fixed_batch_return_rose_every_seed", "higher on every seed", "not higher on every seed")
                + ")"
            )
        out += "."
    if "loss_value_return_corr" in m:
        out += (
            " Over real training the loss value of an update and the return of its episodes correlate at "
            f"{q(s, 'loss_value_return_corr', '+.2f')} (95 % CI {q(s, 'loss_value_return_corr_ci_low', '+.2f')} to "
            f"{q(s, 'loss_value_return_corr_ci_high', '+.2f')}; zero inside the CI: "
            + _flag(q, s, "loss_value_return_corr_ci_excludes_zero", "no", "yes")
            + ")."
        )
    return out


def pg_cartpole(q: Quotes) -> Section:
    s = "pg_cartpole"
    variants = q.metrics(s)["variants"]
    answer = (
        "Minimising A * CE = -A * log pi(a|s) raises log pi of actions with positive advantage and lowers it for "
        "negative ones; only the gradient's direction matters, not the loss's value."
        + _loss_value(q, s)
        + " What the real updates did, averaged over updates and seeds: with the correct sign "
        + _moves(q, s, "correct")
        + " ("
        + _flag(
            q,
            s,
            "correct_update_fractions_above_half_every_seed",
            "both above one half on every seed",
            "not both above one half on every seed",
        )
        + ")"
    )
    if "flipped" in variants:
        answer += (
            f"; flipped, {_moves(q, s, 'flipped')} ("
            + _flag(
                q,
                s,
                "flipped_update_fractions_below_half_every_seed",
                "both below one half on every seed",
                "not both below one half on every seed",
            )
            + f"). The correct loss reached a final return of {q(s, 'variants.correct.final_return_mean', '.4g')}, "
            f"the flipped one {q(s, 'variants.flipped.final_return_mean', '.3g')} ("
            + _flag(q, s, "flipped_below_correct", "below correct", "not shown below correct")
            + f": exact p = {q(s, 'variants.flipped.p_exact_vs_correct', '.2g')}, the smallest attainable with these "
            f"seeds {q(s, 'variants.flipped.p_exact_min', '.2g')})."
        )
    else:
        answer += "."
    if "abs" in variants and "pow" in variants:
        answer += (
            f" |loss| and pow(CE, R) ended at {q(s, 'variants.abs.final_return_mean', '.3g')} and "
            f"{q(s, 'variants.pow.final_return_mean', '.3g')} ("
            + _flag(q, s, "abs_below_correct", "abs below correct", "abs not shown below correct")
            + ", "
            + _flag(q, s, "pow_below_correct", "pow below correct", "pow not shown below correct")
            + ")."
        )
    evidence = (
        _pg_evidence(q, s)
        + _abs_pow_evidence(q, s, variants)
        + [
            f"References: random play lasts {q(s, 'reference.random_return_mean', '.3g')} steps, always pushing left "
            f"{q(s, 'reference.always_left_return_mean', '.3g')}.",
        ]
    )
    return Section(
        stage=s,
        title="REINFORCE loss sign on CartPole",
        question=_PG_QUESTION,
        answer=answer,
        evidence=evidence,
        figures=[
            "figures/loss_value.png",
            "figures/logp_moves.png",
            "figures/learning_curves.png",
            "figures/final_return_and_probe.png",
        ],
        caveats=[
            f"{q(s, 'seeds', 'd')} seeds x {q(s, 'episodes_per_trial', 'd')} episodes per variant; final return is "
            f"the mean of the last {q(s, 'final_episodes', 'd')} episodes.",
            "CartPole uses RMSProp with a larger learning rate than the Pong recipe, to fit the time budget.",
            "The fractions count the sign of each sample's change: a small step of the correct loss raises "
            "sum A_t * (change of log pi_t) (first order), not every sample's log pi in the direction of its A; with "
            "CartPole's four inputs the samples of a batch share almost every parameter, and the optimiser's real "
            "steps are far from first order. The real updates' correlation between the change of log pi and A was "
            f"{q(s, 'variants.correct.probe_corr_train_mean', '+.3f')} for the correct loss.",
        ]
        + (_pg_probe_caveat(q, s) if "abs" in variants and "pow" in variants else []),
    )


def _abs_pow_evidence(q: Quotes, s: str, variants: dict) -> list[str]:
    out = []
    if "pow" in variants and "correct" in variants:
        out.append(
            "`pow`: likely actions (pi above one half) with A < 0 carry "
            f"{q(s, 'variants.pow.share_likely_adv_neg', '.2f')} of "
            f"the per-sample weights |dL/dlog pi| of its updates, against "
            f"{q(s, 'variants.correct.share_likely_adv_neg', '.2f')} for the correct loss ("
            + _flag(
                q,
                s,
                "pow_share_likely_adv_neg_above_correct_every_seed",
                "more on every seed",
                "not more on every seed",
            )
            + "): the CE^(R-1) reweighting, measured."
        )
    if "abs" in variants:
        out.append(
            f"`abs`: the batch sum of A*CE was negative on {q(s, 'variants.abs.sum_negative_update_fraction', '.2f')} "
            f"of its updates; on those, {q(s, 'variants.abs.adv_neg_logp_down_fraction_sum_negative', '.2f')} of the "
            f"A < 0 samples had log pi lowered and {q(s, 'variants.abs.adv_pos_logp_up_fraction_sum_negative', '.2f')} "
            "of the A > 0 samples raised ("
            + _flag(
                q,
                s,
                "abs_fractions_below_half_when_sum_negative",
                "both below one half: the whole step reversed",
                "not both below one half",
            )
            + f"); on the others {q(s, 'variants.abs.adv_neg_logp_down_fraction_sum_positive', '.2f')} and "
            f"{q(s, 'variants.abs.adv_pos_logp_up_fraction_sum_positive', '.2f')}."
        )
    return out


def _pg_probe_caveat(q: Quotes, s: str) -> list[str]:
    return [
        "The probe is one small step on one fixed batch: it shows the direction of a single update, not "
        "whether training converges; to first order the flipped loss's change is exactly minus the correct one's, "
        "so its correlation and fractions mirror correct's by construction. `abs` equals `correct` on a batch "
        "whose A*CE sum is positive. Averaged over the real training updates the correlation is "
        f"{q(s, 'variants.abs.probe_corr_train_mean', '+.3f')} (abs) and "
        f"{q(s, 'variants.pow.probe_corr_train_mean', '+.3f')} (pow) against "
        f"{q(s, 'variants.correct.probe_corr_train_mean', '+.3f')} (correct).",
    ]
