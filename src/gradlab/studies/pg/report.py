"""Report sections: pg_cartpole and pg_pong.

pg_cartpole. Every number is quoted from results/pg_cartpole/stats.json; every verdict is read
from its flag (+1 / 0 / -1, ``gradlab.stats.VERDICT_ENCODING``, computed in gradlab.studies.pg.analysis) and
stated with the interval or exact test that decided it, "inconclusive" where the flag is 0. Facts about the
sample ("k of n seeds") are quoted from ``seed_counts`` and worded as counts."""

from __future__ import annotations

import hashlib
import math

from gradlab.report.quotes import Quotes
from gradlab.report.section import Section
from gradlab.stats import verdict_word


def _flag(q: Quotes, s: str, key: str, yes: str = "yes", no: str = "no") -> str:
    """The words of the verdict ``flags.<key>``: ``yes`` (+1), ``no`` (-1), "inconclusive" (0); "n/a" when the
    flag was not computed (its variants did not run)."""
    value = q.metrics(s).get("flags", {}).get(key)
    return "n/a" if value is None else verdict_word(value, yes, no)


def _count(q: Quotes, s: str, key: str, of: str = "seeds") -> str:
    """``k of n seeds`` from ``seed_counts.<key>``."""
    return f"{q(s, f'seed_counts.{key}', 'd')} of {q(s, of, 'd')} seeds"


def _per_seed(q: Quotes, s: str, key: str, fmt: str = ".3g") -> str:
    """The values of the list at ``key``, each quoted: one per seed."""
    return ", ".join(q(s, f"{key}.{i}", fmt) for i in range(len(q.raw(s, key))))


def _iv(q: Quotes, s: str, key: str, fmt: str = ".2f") -> str:
    """``value (95 % block-bootstrap interval over updates: lo to hi)``; the value alone when there is none."""
    value = q(s, key, fmt)
    if q.raw(s, f"{key}_ci_low") is None:
        return value
    low, high = q(s, f"{key}_ci_low", fmt), q(s, f"{key}_ci_high", fmt)
    return f"{value} (95 % block-bootstrap interval over updates {low} to {high})"


def _exact(q: Quotes, s: str, p: str, p_min: str) -> str:
    return f"exact p = {q(s, p, '.3g')}, the smallest attainable {q(s, p_min, '.3g')}"


def _moves(q: Quotes, s: str, v: str, prefix: str = "") -> str:
    """The two fractions of a variant: real updates with their intervals, or the probe's means over seeds."""
    quote = (lambda k: q(s, k, ".2f")) if prefix else (lambda k: _iv(q, s, k))
    return (
        f"{quote(f'variants.{v}.{prefix}adv_neg_logp_down_fraction')} of the samples with A < 0 had log pi "
        f"lowered and {quote(f'variants.{v}.{prefix}adv_pos_logp_up_fraction')} of those with A > 0 raised"
    )


def _fractions(q: Quotes, s: str, v: str) -> str:
    """What the real updates of ``v`` did, with the verdict of its fractions against one half."""
    side, key = (
        ("above", "correct_update_fractions_above_half")
        if v == "correct"
        else ("below", f"{v}_update_fractions_below_half")
    )
    return (
        f"{_moves(q, s, v)}; both {side} one half (by those intervals): {_flag(q, s, key)}; per seed both {side} "
        f"on {_count(q, s, key)}"
    )


def _vs_correct(q: Quotes, s: str, v: str) -> str:
    """Per-seed differences from ``correct``, the paired exact test, the verdict."""
    return (
        f"minus `correct` per seed {_per_seed(q, s, f'variants.{v}.final_return_diff_vs_correct_per_seed')} "
        f"(below on {_count(q, s, f'{v}_below_correct')}); paired sign-flip test "
        f"{_exact(q, s, f'variants.{v}.p_exact_vs_correct', f'variants.{v}.p_exact_min')}; below `correct`: "
        + _flag(q, s, f"{v}_below_correct", "yes", "no, above")
    )


def _pg_evidence(q: Quotes, s: str) -> list[str]:
    evidence = []
    for v, row in q.metrics(s)["variants"].items():
        line = (
            f"`{v}`: final return per seed {_per_seed(q, s, f'variants.{v}.final_return_per_seed', '.4g')} (mean "
            f"{q(s, f'variants.{v}.final_return_mean', '.4g')}); "
        )
        if "adv_neg_logp_down_fraction" in row:
            line += f"real updates: {_moves(q, s, v)}; probe step (mean over seeds): {_moves(q, s, v, 'probe_')}; "
        line += f"probe correlation per seed {_per_seed(q, s, f'variants.{v}.probe_corr_per_seed', '+.3f')}"
        if "p_exact_vs_correct" in row:
            line += "; " + _vs_correct(q, s, v)
        if row.get("episodes_to_solve_median") is not None:
            line += f"; solved after a median {q(s, f'variants.{v}.episodes_to_solve_median', '.4g')} episodes"
        evidence.append(line + ".")
    return evidence


_PG_QUESTION = (
    "In REINFORCE (`loss = sum(reward * cross_entropy)`), how does a negative reward make the agent avoid an "
    "action? Does the optimiser minimise the loss's absolute value? Would `sum(pow(cross_entropy, reward))` work?"
)


def _loss_corr(q: Quotes, s: str) -> str:
    """corr(loss value, return) across updates: raw, the trends, detrended, with their verdicts."""
    return (
        " Over real training the loss value of an update and the return of its episodes have a Spearman rank "
        f"correlation of {_iv(q, s, 'loss_value_return_corr', '+.2f')}; negative: "
        + _flag(q, s, "loss_value_return_corr_negative", "yes", "no, positive")
        + f" (negative on {_count(q, s, 'loss_value_return_corr_negative')}; across seeds "
        + _exact(
            q,
            s,
            "variants.correct.loss_value_return_corr_p_seeds",
            "variants.correct.loss_value_return_corr_p_seeds_min",
        )
        + "; a verdict needs this test and the interval over updates to agree). Beside it, each series' trend "
        f"(rank correlation with the update index): loss "
        f"{q(s, 'loss_trend_corr', '+.2f')}, return {q(s, 'return_trend_corr', '+.2f')}; on first differences, the "
        f"trend removed, the correlation is {_iv(q, s, 'loss_value_return_corr_detrended', '+.2f')}; negative: "
        + _flag(q, s, "loss_value_return_corr_detrended_negative", "yes", "no, positive")
        + f" (negative on {_count(q, s, 'loss_value_return_corr_detrended_negative')}; across seeds "
        + _exact(
            q,
            s,
            "variants.correct.loss_value_return_corr_detrended_p_seeds",
            "variants.correct.loss_value_return_corr_detrended_p_seeds_min",
        )
        + ")."
    )


def _loss_value(q: Quotes, s: str) -> str:
    """The fixed-batch experiment and corr(loss value, return), if they ran."""
    m = q.metrics(s)
    out = ""
    if "loss_after_k_steps" in m.get("fixed_batch", {}):
        out += (
            f" The optimiser does not minimise |loss|: {q(s, 'fixed_batch.steps', 'd')} steps of the correct loss on "
            f"one fixed batch took it from {q(s, 'fixed_batch.loss_before', '.3g')} to "
            f"{q(s, 'fixed_batch.loss_after_k_steps', '.3g')} (mean over seeds); it ended below zero on "
            f"{_count(q, s, 'fixed_batch_loss_below_zero', 'fixed_batch.seeds')} and was still falling at the end on "
            f"{_count(q, s, 'fixed_batch_loss_falling_at_end', 'fixed_batch.seeds')}"
        )
        if m["fixed_batch"].get("eval_return_before") is not None:
            out += (
                f", while the policy's return went from {q(s, 'fixed_batch.eval_return_before', '.3g')} to "
                f"{q(s, 'fixed_batch.eval_return_after', '.3g')} (per seed "
                f"{_per_seed(q, s, 'fixed_batch.eval_return_before_per_seed')} to "
                f"{_per_seed(q, s, 'fixed_batch.eval_return_after_per_seed')}; higher on "
                f"{_count(q, s, 'fixed_batch_return_rose', 'fixed_batch.seeds')}; a rise: "
                + _flag(q, s, "fixed_batch_return_rose", "yes", "no, a fall")
                + ", paired sign-flip test "
                + _exact(q, s, "fixed_batch.eval_return_change_p", "fixed_batch.eval_return_change_p_min")
                + ")"
            )
        out += "."
    if "loss_value_return_corr" in m:
        out += _loss_corr(q, s)
    return out


def _gcos(q: Quotes, s: str, base: str) -> str:
    """One cosine with grad J over seeds: ``mean (95 % CI lo to hi over seeds, k of n seeds positive)``."""
    x = q.raw(s, base)
    if not x or not x.get("seeds"):
        return "n/a"
    spread = ""
    if x.get("ci_low") is not None:
        spread = f"95 % CI over seeds {q(s, f'{base}.ci_low', '+.2f')} to {q(s, f'{base}.ci_high', '+.2f')}, "
    return (
        f"{q(s, f'{base}.mean', '+.2f')} ({spread}{q(s, f'{base}.positive_seeds', 'd')} of "
        f"{q(s, f'{base}.seeds', 'd')} seeds positive)"
    )


def _ups(q: Quotes, s: str) -> list[str]:
    return [f"u{u}" for u in q.raw(s, "gradient.checkpoints")]


def _per_checkpoint(q: Quotes, s: str, base: str, fn=None) -> str:
    """``after 10 updates: ...; after 50: ...`` for the checkpoints, ``base`` formatted with ``{u}``."""
    fn = fn or (lambda key: _gcos(q, s, key))
    parts = [f"after {u[1:]} updates {fn(base.format(u=u))}" for u in _ups(q, s)]
    return "; ".join(parts)


def _flags_per_checkpoint(q: Quotes, s: str, key: str, yes: str = "yes", no: str = "no") -> str:
    return ", ".join(f"{_flag(q, s, key.format(u=u), yes, no)} (after {u[1:]})" for u in _ups(q, s))


def _gradient_answer(q: Quotes, s: str) -> str:
    """The lead: each loss's expected update direction against a high-sample grad J (gradient.py)."""
    m = q.metrics(s)
    g = m.get("gradient")
    if not g or "at_correct" not in g:
        return ""
    at = g["at_correct"]
    out = (
        "Measured directly: at the policies of the correct run after "
        + ", ".join(str(u) for u in g["checkpoints"])
        + f" updates, the cosine between each loss's expected update direction (minus its gradient, averaged over "
        f"{q(s, 'gradient.batches', 'd')} batches) and the gradient of the expected return grad J (estimated from "
        f"{q(s, 'gradient.episodes', 'd')} episodes per policy) is, for the correct loss, "
        + _per_checkpoint(q, s, "gradient.at_correct.correct.{u}")
        + "; positive: "
        + _flags_per_checkpoint(q, s, "gradient_correct_positive_{u}")
        + " (exact sign-flip test over seeds)."
    )
    if "flipped" in at:
        out += (
            " The flipped loss's is its mirror image, "
            + _per_checkpoint(q, s, "gradient.at_correct.flipped.{u}")
            + "; negative: "
            + _flags_per_checkpoint(q, s, "gradient_flipped_negative_{u}")
            + "."
        )
    if "abs" in g and "at_correct" in g["abs"]:
        out += (
            " |loss| follows the sign of the batch sum of A*CE: on batches where it is negative its direction's "
            "cosine is "
            + _per_checkpoint(q, s, "gradient.abs.at_correct.{u}.abs_cos_sum_negative")
            + " (negative: "
            + _flags_per_checkpoint(q, s, "gradient_abs_negative_when_sum_negative_{u}")
            + "), where it is positive "
            + _per_checkpoint(q, s, "gradient.abs.at_correct.{u}.abs_cos_sum_positive")
            + " (positive: "
            + _flags_per_checkpoint(q, s, "gradient_abs_positive_when_sum_positive_{u}")
            + "); averaged over all batches "
            + _per_checkpoint(q, s, "gradient.at_correct.abs.{u}")
            + "."
        )
    if "pow" in at:
        out += (
            " pow(CE, A) at the same policies: "
            + _per_checkpoint(q, s, "gradient.at_correct.pow.{u}")
            + "; below the correct loss's (paired by seed): "
            + _flags_per_checkpoint(q, s, "gradient_pow_below_correct_{u}", "yes", "no, above")
            + "."
            + _pow_failure(q, s)
        )
    return out + " "


def _pow_failure(q: Quotes, s: str) -> str:
    """What pow's own training did, measured: its per-sample factors CE^(A-1), their share, its policies'
    entropy, and its cosine at its own policies."""
    g = q.metrics(s)["gradient"]
    if "own" not in g.get("pow", {}):
        return ""
    ups = _ups(q, s)
    return (
        " What pow's own training did, measured on its own policies: minus its gradient weights each sample by "
        "A CE^(A-1); the samples with A < 0 carry "
        + ", ".join(q(s, f"gradient.pow.own.{u}.pow_weight_share_adv_neg.mean", ".3f") for u in ups)
        + " of the total weight (per checkpoint, mean over seeds; the correct loss: "
        + ", ".join(q(s, f"gradient.pow.own.{u}.correct_weight_share_adv_neg.mean", ".2f") for u in ups)
        + "), their median factor CE^(A-1) being "
        + ", ".join(q(s, f"gradient.pow.own.{u}.pow_factor_adv_neg_q50.mean", ".3g") for u in ups)
        + " (99th percentile "
        + ", ".join(q(s, f"gradient.pow.own.{u}.pow_factor_adv_neg_q99.mean", ".3g") for u in ups)
        + ") against "
        + ", ".join(q(s, f"gradient.pow.own.{u}.pow_factor_adv_pos_q50.mean", ".3g") for u in ups)
        + " for A > 0; at the correct run's more confident policies those samples carry "
        + ", ".join(q(s, f"gradient.pow.at_correct.{u}.pow_weight_share_adv_neg.mean", ".3f") for u in ups)
        + " of it. Its own policies' entropy is "
        + ", ".join(q(s, f"gradient.policies.pow.{u}.entropy.mean", ".3f") for u in ups)
        + " nats (uniform play: ln 2 = "
        + f"{math.log(2):.3f}"
        + ") against the correct run's "
        + ", ".join(q(s, f"gradient.policies.correct.{u}.entropy.mean", ".3f") for u in ups)
        + " (higher: "
        + _flags_per_checkpoint(q, s, "pow_entropy_above_correct_{u}", "yes", "no, lower")
        + "), their return "
        + ", ".join(q(s, f"gradient.policies.pow.{u}.return_mean.mean", ".3g") for u in ups)
        + "; there its direction's cosine with grad J is "
        + _per_checkpoint(q, s, "gradient.own.pow.{u}")
        + ", the correct loss's direction at the same policies "
        + _per_checkpoint(q, s, "gradient.at_pow.correct.{u}")
        + "."
    )


def _gradient_evidence(q: Quotes, s: str) -> list[str]:
    g = q.metrics(s).get("gradient")
    if not g:
        return []
    out = []
    for v in g.get("own", {}):
        out.append(
            f"`{v}` at its own policies, cosine of its expected direction with grad J: "
            + _per_checkpoint(q, s, f"gradient.own.{v}" + ".{u}")
            + "; those policies' return "
            + ", ".join(q(s, f"gradient.policies.{v}.{u}.return_mean.mean", ".3g") for u in _ups(q, s))
            + " and entropy "
            + ", ".join(q(s, f"gradient.policies.{v}.{u}.entropy.mean", ".3f") for u in _ups(q, s))
            + " nats."
        )
    if "correct" in g.get("policies", {}):
        out.append(
            "grad J's own noise at the correct run's policies (per checkpoint, mean over seeds): standard error "
            "relative to its length "
            + ", ".join(q(s, f"gradient.policies.correct.{u}.grad_j_rel_se.mean", ".2f") for u in _ups(q, s))
            + "; cosine between the estimates of two disjoint halves of its episodes "
            + ", ".join(q(s, f"gradient.policies.correct.{u}.grad_j_split_half_cos.mean", ".2f") for u in _ups(q, s))
            + ". Noise in either estimate pulls a cosine towards 0."
            + (
                " Seeds whose policy reached the episode cap (`max_episode_steps`) in every episode "
                "(grad J's estimate exactly 0, no "
                "cosine): "
                + ", ".join(q(s, f"gradient.policies.correct.{u}.grad_j_zero_seeds", "d") for u in _ups(q, s))
                + "."
                if all("grad_j_zero_seeds" in g["policies"]["correct"][u] for u in _ups(q, s))
                else ""
            )
        )
    return out


def pg_cartpole(q: Quotes) -> Section:
    s = "pg_cartpole"
    variants = q.metrics(s)["variants"]
    answer = (
        _gradient_answer(q, s)
        + "Minimising A * CE = -A * log pi(a|s) raises log pi of actions with positive advantage and lowers it for "
        "negative ones; only the gradient's direction matters, not the loss's value." + _loss_value(q, s)
    )
    if "gradient" not in q.metrics(s):  # without the cosines, the per-sample fractions are all there is
        answer += " What the real updates did, averaged over updates and seeds: with the correct sign " + _fractions(
            q, s, "correct"
        )
        answer += f"; flipped, {_fractions(q, s, 'flipped')}." if "flipped" in variants else "."
    if "flipped" in variants:
        answer += (
            " The correct loss reached a final return of "
            f"{_per_seed(q, s, 'variants.correct.final_return_per_seed', '.4g')} (per seed), the flipped one "
            f"{_per_seed(q, s, 'variants.flipped.final_return_per_seed', '.3g')}: " + _vs_correct(q, s, "flipped") + "."
        )
    if "abs" in variants and "pow" in variants:
        answer += (
            f" |loss| and pow(CE, R) ended at {q(s, 'variants.abs.final_return_mean', '.3g')} and "
            f"{q(s, 'variants.pow.final_return_mean', '.3g')} (means over seeds; below `correct` on "
            f"{_count(q, s, 'abs_below_correct')} and {_count(q, s, 'pow_below_correct')}; below `correct`: "
            + _flag(q, s, "abs_below_correct", "yes", "no, above")
            + " and "
            + _flag(q, s, "pow_below_correct", "yes", "no, above")
            + f", each with the paired sign-flip test's smallest attainable p "
            f"{q(s, 'variants.pow.p_exact_min', '.3g')})."
        )
    evidence = (
        _gradient_evidence(q, s)
        + _pg_evidence(q, s)
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
            *(["figures/gradient_cosine.png"] if "gradient" in q.metrics(s) else []),
            "figures/loss_value.png",
            "figures/logp_moves.png",
            "figures/learning_curves.png",
            "figures/final_return_and_probe.png",
        ],
        caveats=[
            f"{q(s, 'seeds', 'd')} seeds x {q(s, 'episodes_per_trial', 'd')} episodes per variant; final return is "
            f"the mean of the last {q(s, 'final_episodes', 'd')} episodes.",
            *_small_sample_caveats(q, s),
            "CartPole uses RMSProp with a larger learning rate than the Pong recipe, to fit the time budget.",
            "The per-sample fractions (what share of the samples with A < 0 had log pi lowered, and of A > 0 raised) "
            "do not discriminate between the losses and are kept only for reference; the cosine with grad J is the "
            "test. The fractions count the sign of each sample's change: a small step of the correct loss raises "
            "sum A_t * (change of log pi_t) (first order), not every sample's log pi in the direction of its A; with "
            "CartPole's four inputs the samples of a batch share almost every parameter, and the optimiser's real "
            "steps are far from first order. The real updates' correlation between the change of log pi and A was "
            f"{q(s, 'variants.correct.probe_corr_train_mean', '+.3f')} for the correct loss.",
        ]
        + (_pg_probe_caveat(q, s) if "abs" in variants and "pow" in variants else []),
    )


def _small_sample_caveats(q: Quotes, s: str) -> list[str]:
    """What the seed count allows: paired exact tests and their floor; intervals over updates, not seeds."""
    out = []
    if "flipped" in q.metrics(s)["variants"]:
        out.append(
            f"Comparisons between variants are paired (seed k gives every variant the same initial policy and first "
            f"batch) and use the exact sign-flip test of the per-seed differences: with {q(s, 'seeds', 'd')} seeds "
            f"its smallest attainable p is {q(s, 'variants.flipped.p_exact_min', '.3g')}, against the verdicts' "
            f"threshold {q(s, 'alpha', 'g')}. A verdict that the test cannot reach is inconclusive, however the "
            "seeds line up; the per-seed values are the evidence. No interval over seeds is given below 10 seeds."
        )
    out.append(
        "The intervals of what the updates did (fractions, correlations) are moving-block bootstraps over the updates "
        f"within each seed (blocks of {q(s, 'variants.correct.block_length', 'd')} consecutive updates, "
        f"{q(s, 'bootstrap_replicates', 'd')} replicates): they describe these trials' updates, not the spread over "
        "seeds; correlations across updates are also given on first differences, where the common trend with "
        "training time is removed."
    )
    return out


def _abs_pow_evidence(q: Quotes, s: str, variants: dict) -> list[str]:
    out = []
    if "pow" in variants and "correct" in variants:
        out.append(
            "`pow`: likely actions (pi above one half) with A < 0 carry "
            f"{q(s, 'variants.pow.share_likely_adv_neg', '.2f')} of "
            f"the per-sample weights |dL/dlog pi| of its updates, against "
            f"{q(s, 'variants.correct.share_likely_adv_neg', '.2f')} for the correct loss (more on "
            f"{_count(q, s, 'pow_share_likely_adv_neg_above_correct')}; more in general: "
            + _flag(q, s, "pow_share_likely_adv_neg_above_correct", "yes", "no, less")
            + ", paired sign-flip test "
            + _exact(
                q,
                s,
                "variants.pow.share_likely_adv_neg_vs_correct_p",
                "variants.pow.share_likely_adv_neg_vs_correct_p_min",
            )
            + "): the CE^(R-1) reweighting, measured."
        )
    if "abs" in variants:
        out.append(
            f"`abs`: the batch sum of A*CE was negative on {q(s, 'variants.abs.sum_negative_update_fraction', '.2f')} "
            f"of its updates; on those, {_iv(q, s, 'variants.abs.adv_neg_logp_down_fraction_sum_negative')} of the "
            f"A < 0 samples had log pi lowered and {_iv(q, s, 'variants.abs.adv_pos_logp_up_fraction_sum_negative')} "
            "of the A > 0 samples raised (both below one half, the whole step reversed: "
            + _flag(q, s, "abs_fractions_below_half_when_sum_negative")
            + f"); on the others {_iv(q, s, 'variants.abs.adv_neg_logp_down_fraction_sum_positive')} and "
            f"{_iv(q, s, 'variants.abs.adv_pos_logp_up_fraction_sum_positive')} (both above one half: "
            + _flag(q, s, "abs_fractions_above_half_when_sum_positive")
            + ")."
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


# pg_pong: Numbers quoted from results/pg_pong/stats.json; every verdict read from its flag
# (+1 / 0 / -1) with its exact test or interval, "inconclusive" where it is 0; seed counts worded as counts.


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
        if q.has(f"pong_confirm/{preset}"):
            evidence.append(_confirm_evidence(q, preset))
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


PRESETS = ("pg_pong_win", "pg_pong_fast", "pg_pong_tuned", "pg_pong_noop", "pg_pong_recipe")


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
        source = f"`{a['stage']}`" if a.get("stage") else f"the same training as `{a['same_as']}`: a constant cost"
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


def _confirm_evidence(q: Quotes, preset: str) -> str:
    """Did each winning policy of ``preset`` win again on new games (tools/pong_confirm.py)?"""
    c = f"pong_confirm/{preset}"
    m = q.metrics(c)
    policies = {f.stem: f for f in (q.results / preset / "policies").glob("*.pt")}
    confirmed = {t: v.get("policy_sha256") for t, v in m["trials"].items()}
    if confirmed != {t: hashlib.sha256(f.read_bytes()).hexdigest() for t, f in policies.items()}:
        return (
            f"`{preset}` on new games: `results/{c}/` replayed other policies than `results/{preset}/policies/` "
            f"holds (an earlier run): rerun `python tools/pong_confirm.py {preset}`."
        )
    per = []
    for trial, v in m["trials"].items():
        k = f"trials.{trial}"
        chance = q(preset, f"win.{trial}.evaluations", "d")
        per.append(
            f"{trial} (won at evaluation {chance}) {q(c, f'{k}.mean', '.2f')} "
            f"({q(c, f'{k}.ci_low', '.2f')} to {q(c, f'{k}.ci_high', '.2f')})" + ("" if v["won"] else ", not above 0")
        )
    actions = "greedy" if m["greedy"] else "sampled"
    return (
        f"`{preset}` on new games (`tools/pong_confirm.py`: each winning policy plays "
        f"{q(c, 'games_per_policy', 'd')} more games, {actions} actions, emulator seeds disjoint from training's and "
        f"the evaluations'; mean score, 95 % CI): {q(c, 'won', 'd')} of {q(c, 'policies', 'd')} won again; "
        + "; ".join(per)
        + "."
    )


def _final_return(q: Quotes, s: str, trial: str) -> str:
    """Trial ``<variant>__seed<k>``'s mean return over its final games: its place in the variant's seeds, in order."""
    variant, seed = trial.rsplit("__seed", 1)
    seeds = sorted(int(k.rsplit("__seed", 1)[1]) for k in q.metrics(s)["win"] if k.startswith(f"{variant}__seed"))
    return q(s, f"variants.{variant}.final_return_per_seed.{seeds.index(int(seed))}", ".3g")


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
    speeds = {key: t["frames_per_second"] for key, t in win.items() if isinstance(t, dict) and "frames_per_second" in t}
    if speeds and max(speeds.values()) > 1.25 * min(speeds.values()):
        slow, fast = min(speeds, key=speeds.get), max(speeds, key=speeds.get)
        out.append(
            f"`{s}`: its trials ran at {q(s, f'win.{slow}.frames_per_second', '.3g')} ({slow}) to "
            f"{q(s, f'win.{fast}.frames_per_second', '.3g')} ({fast}) frames/s (another machine, or other work beside "
            "it), so their seconds do not compare; frames and games to win do not depend on it."
        )
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
                f"training games (the cap); its last {q(s, 'final_episodes', 'd')} training games averaged "
                f"{_final_return(q, s, key)}."
            )
        else:
            out.append(
                f"`{s}` {key}: did not pass {q(s, 'win.stop_at_mean', 'g')} within {q(s, f'win.{key}.games', 'd')} "
                "games (the cap)."
            )
    return out
