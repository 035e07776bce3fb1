"""summary.md of a pg stage: the answer in a few sentences, every number and verdict read from the metrics.

Every verdict is a flag of ``analysis.py`` (+1 / 0 / -1, ``gradlab.stats.VERDICT_ENCODING``) stated with the
interval or exact test that decided it; a 0 is written "inconclusive". Facts about the sample ("k of n
seeds") come from ``seed_counts`` and are worded as counts, not as verdicts.
"""

from __future__ import annotations

import math

from gradlab.stats import fmt, fmt_ci, verdict_word
from gradlab.studies.pg.analysis import ALPHA, PONG_IMPROVEMENT
from gradlab.studies.pg.trial import EARLY_UPDATES


def seeds_list(xs) -> str:
    return ", ".join(fmt(x) for x in xs)


def interval(x: dict, key: str) -> str:
    """``value (95 % block-bootstrap interval over updates lo to hi)``, or the value alone without one."""
    lo, hi = x.get(f"{key}_ci_low"), x.get(f"{key}_ci_high")
    if lo is None or hi is None:
        return fmt(x[key])
    return f"{fmt(x[key])} ({fmt_ci(lo, hi)})"


def said(flags: dict, key: str, yes: str, no: str) -> str:
    """The words of the verdict ``flags[key]``: ``yes`` (+1), ``no`` (-1), "inconclusive" (0); "n/a" when the
    flag was not computed (its variants did not run)."""
    return "n/a" if flags.get(key) is None else verdict_word(flags[key], yes, no)


def counted(m: dict, key: str, n: int | None = None) -> str:
    """``k of n seeds`` from ``seed_counts``."""
    k = m.get("seed_counts", {}).get(key)
    return "n/a" if k is None else f"{k} of {m['seeds'] if n is None else n} seeds"


def exact(p, p_min) -> str:
    return f"exact p = {fmt(p)}, smallest attainable {fmt(p_min)}"


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
                f"per seed {seeds_list(f['loss_after_k_steps_per_seed'])}). It ended below zero on "
                f"{counted(m, 'fixed_batch_loss_below_zero', f['seeds'])} and was still falling at the end on "
                f"{counted(m, 'fixed_batch_loss_falling_at_end', f['seeds'])} (fraction of steps that lowered it: "
                f"{fmt(f['decreasing_step_fraction'])}): the loss has no floor, minimising it is not driving it to "
                "zero."
            )
            if f.get("eval_return_before") is not None:
                out.append(
                    f"- Meanwhile the policy's return over {p.fixed_batch_eval_episodes} evaluation episodes "
                    f"(same starts before and after) went from {fmt(f['eval_return_before'])} to "
                    f"{fmt(f['eval_return_after'])} "
                    f"(per seed {seeds_list(f['eval_return_before_per_seed'])} -> "
                    f"{seeds_list(f['eval_return_after_per_seed'])}; higher on "
                    f"{counted(m, 'fixed_batch_return_rose', f['seeds'])}). Did the return rise? "
                    + said(flags, "fixed_batch_return_rose", "yes", "no, it fell")
                    + " (paired sign-flip test over seeds: "
                    + exact(f["eval_return_change_p"], f["eval_return_change_p_min"])
                    + ")."
                )
        rows = []
        for v, x in f["variants"].items():
            rows.append(
                f"| `{v}` | {fmt(x['loss_before'])} | {fmt(x['loss_after_k_steps'])} "
                f"| {x['loss_below_zero_seeds']} of {x['seeds']} | {fmt(x['eval_return_before'])} "
                f"| {fmt(x['eval_return_after'])} |"
            )
        out += [
            "",
            f"| variant | loss before | loss after {steps} steps | seeds below zero | return before | return after |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    if "loss_value_return_corr" in m:
        c = m["variants"]["correct"]
        out.append(
            "- Over real training, across the updates of each trial, `correct`'s loss value and the mean return of "
            "the update's episodes have a Spearman rank correlation of "
            f"{interval(m, 'loss_value_return_corr')} raw (mean over seeds, 95 % block-bootstrap interval over "
            f"updates; per seed {seeds_list(c['loss_value_return_corr_per_seed'])}). Both series trend with "
            f"training time (corr with the update index: loss {fmt(m['loss_trend_corr'])}, return "
            f"{fmt(m['return_trend_corr'])}); on first differences (update-to-update changes, the trend removed) "
            f"the correlation is {interval(m, 'loss_value_return_corr_detrended')} (per seed "
            f"{seeds_list(c['loss_value_return_corr_detrended_per_seed'])}; after a linear trend instead: "
            f"{fmt(c['loss_value_return_corr_resid'])}). Verdicts (the interval over updates and the exact "
            "sign-flip test across seeds must agree): negative raw: "
            + said(flags, "loss_value_return_corr_negative", "yes", "no, positive")
            + f" (negative on {counted(m, 'loss_value_return_corr_negative')}; across seeds, "
            + exact(c["loss_value_return_corr_p_seeds"], c["loss_value_return_corr_p_seeds_min"])
            + "); negative detrended: "
            + said(flags, "loss_value_return_corr_detrended_negative", "yes", "no, positive")
            + f" (negative on {counted(m, 'loss_value_return_corr_detrended_negative')}; across seeds, "
            + exact(c["loss_value_return_corr_detrended_p_seeds"], c["loss_value_return_corr_detrended_p_seeds_min"])
            + "). "
            "The loss of an update is not a score of the policy: with standardised returns it is a sum of A*CE over "
            "a batch whose A sums to zero."
        )
        out.append("")
    return out


def _cos(x: dict) -> str:
    """``mean (95 % CI lo to hi; k/n seeds > 0)`` of one cosine over seeds (the CI only from 10 seeds on)."""
    if not x["seeds"]:
        return "n/a"
    spread = f"95 % CI {fmt_ci(x['ci_low'], x['ci_high'])}; " if x["ci_low"] is not None else ""
    return f"{fmt(x['mean'], '.2g')} ({spread}{x['positive_seeds']}/{x['seeds']} > 0)"


def gradient_lines(m: dict, p) -> list[str]:
    """The lead: the cosine of each variant's expected update direction with a high-sample grad J (gradient.py)."""
    g = m.get("gradient")
    if not g:
        return []
    flags, ups = m["flags"], [f"u{u}" for u in g["checkpoints"]]
    after = ", ".join(str(u) for u in g["checkpoints"])
    head = " | ".join(f"after {u} updates" for u in g["checkpoints"])
    out = [
        "## Does each loss move the policy up the true gradient?",
        "",
        f"At the policies after {after} updates of each seed's training, grad J (the gradient of the expected "
        f"undiscounted return, from {g['episodes']} fresh episodes: sum_t (R_t - b_t) grad log pi, R_t the return "
        "to go, b_t a leave-one-out mean) is compared with each variant's expected update direction (minus the "
        f"gradient of its loss on a batch of {p.episodes_per_update} episodes, returns discounted and standardised "
        f"as in training, averaged over {g['batches']} batches of their own) by their cosine: +1 the loss climbs "
        "J, -1 it descends it, 0 it ignores it. Mean over seeds, 95 % t interval over seeds, how many seeds were "
        "positive. Verdicts: exact sign-flip test over seeds, p < 0.05.",
        "",
        "At the **`correct` run's** policies (every variant's direction at the same policy):",
        "",
        f"| direction of | {head} |",
        "|---|" + "---|" * len(ups),
    ]
    at = g.get("at_correct", {})
    for d, x in at.items():
        out.append(f"| `{d}` | " + " | ".join(_cos(x[u]) for u in ups) + " |")
    out += [
        "",
        "At **each variant's own** policies (its own training run, same seeds):",
        "",
        f"| variant | {head} | return of those policies | entropy of those policies (nats) |",
        "|---|" + "---|" * (len(ups) + 2),
    ]
    pol = g["policies"]
    for v, x in g["own"].items():
        rets = ", ".join(fmt(pol[v][u]["return_mean"]["mean"]) for u in ups)
        ents = ", ".join(fmt(pol[v][u]["entropy"]["mean"]) for u in ups)
        out.append(f"| `{v}` | " + " | ".join(_cos(x[u]) for u in ups) + f" | {rets} | {ents} |")
    out.append("")
    c = pol.get("correct")
    if c:
        out.append(
            "- grad J's own noise at `correct`'s policies (mean over seeds, per checkpoint): standard error relative "
            "to its length "
            + ", ".join(fmt(c[u]["grad_j_rel_se"]["mean"], ".2g") for u in ups)
            + "; cosine between the estimates of two disjoint halves of the episodes "
            + ", ".join(fmt(c[u]["grad_j_split_half_cos"]["mean"], ".2g") for u in ups)
            + " (1 = the two halves agree). Noise in either estimate pulls a cosine towards 0: its sign over seeds "
            "is the evidence, its size a lower estimate of the agreement."
            + (
                " Seeds whose policy reached the episode cap (`max_episode_steps`) in every one of those episodes "
                "(grad J's estimate "
                "exactly 0: no cosine, not counted): " + ", ".join(str(c[u]["grad_j_zero_seeds"]) for u in ups) + "."
                if all("grad_j_zero_seeds" in c[u] for u in ups)
                else ""
            )
        )
    for d, word in (("correct", "positive"), ("flipped", "negative"), ("no_standardize", "positive")):
        if d in at:
            out.append(
                f"- `{d}` {word} at every checkpoint? "
                + "; ".join(f"after {u[1:]}: " + said(flags, f"gradient_{d}_{word}_{u}", "yes", "no") for u in ups)
                + " (exact p "
                + ", ".join(fmt(at[d][u]["p"]) for u in ups)
                + f"; smallest attainable {fmt(at[d][ups[0]]['p_min'])})."
            )
    a = g.get("abs", {}).get("at_correct")
    if a:
        out.append(
            "- `abs` (|sum A*CE|) flips with the sign of the batch sum: on the batches where sum A*CE < 0 its "
            "direction's cosine with grad J is "
            + ", ".join(_cos(a[u]["abs_cos_sum_negative"]) for u in ups)
            + ", where it is > 0 "
            + ", ".join(_cos(a[u]["abs_cos_sum_positive"]) for u in ups)
            + " (per checkpoint; share of batches with a negative sum "
            + ", ".join(fmt(a[u]["sum_negative_batch_fraction"]["mean"], ".2g") for u in ups)
            + "). Negative where the sum is negative: "
            + "; ".join(
                f"after {u[1:]}: " + said(flags, f"gradient_abs_negative_when_sum_negative_{u}", "yes", "no")
                for u in ups
            )
            + ". Positive where it is positive: "
            + "; ".join(
                f"after {u[1:]}: " + said(flags, f"gradient_abs_positive_when_sum_positive_{u}", "yes", "no")
                for u in ups
            )
            + "."
        )
    pw = g.get("pow")
    if pw and "cos_minus_correct" in pw:
        own, atc = pw["own"], pw["at_correct"]
        out.append(
            "- `pow` (sum CE^A): minus its gradient is sum A CE^(A-1) grad log pi, so each sample's weight is A "
            "times CE^(A-1). Measured on the batches of `pow`'s own policies (medians over the samples, mean over "
            "seeds, per checkpoint): CE^(A-1) = "
            + ", ".join(fmt(own[u]["pow_factor_adv_neg_q50"]["mean"]) for u in ups)
            + " for A < 0 (90th percentile "
            + ", ".join(fmt(own[u]["pow_factor_adv_neg_q90"]["mean"]) for u in ups)
            + ", 99th "
            + ", ".join(fmt(own[u]["pow_factor_adv_neg_q99"]["mean"]) for u in ups)
            + ") against "
            + ", ".join(fmt(own[u]["pow_factor_adv_pos_q50"]["mean"]) for u in ups)
            + " for A > 0 (90th "
            + ", ".join(fmt(own[u]["pow_factor_adv_pos_q90"]["mean"]) for u in ups)
            + "); the samples with A < 0 carry "
            + ", ".join(fmt(own[u]["pow_weight_share_adv_neg"]["mean"], ".3g") for u in ups)
            + " of sum |weight| (`correct`'s weights |A|: "
            + ", ".join(fmt(own[u]["correct_weight_share_adv_neg"]["mean"], ".2g") for u in ups)
            + "). At `correct`'s policies the A < 0 share is "
            + ", ".join(fmt(atc[u]["pow_weight_share_adv_neg"]["mean"], ".3g") for u in ups)
            + "."
        )
        out.append(
            "- `pow`'s cosine minus `correct`'s at `correct`'s policies (paired by seed): "
            + ", ".join(_cos(pw["cos_minus_correct"][u]) for u in ups)
            + "; below `correct`: "
            + "; ".join(
                f"after {u[1:]}: " + said(flags, f"gradient_pow_below_correct_{u}", "yes", "no, above") for u in ups
            )
            + ". At `pow`'s own policies its direction's cosine is "
            + ", ".join(_cos(g["own"]["pow"][u]) for u in ups)
            + ", `correct`'s direction there "
            + ", ".join(_cos(g["at_pow"]["correct"][u]) for u in ups)
            + ". Entropy of `pow`'s own policies minus `correct`'s (nats, paired by seed): "
            + ", ".join(_cos(pw["entropy_minus_correct"][u]) for u in ups)
            + "; higher than `correct`'s: "
            + "; ".join(
                f"after {u[1:]}: " + said(flags, f"pow_entropy_above_correct_{u}", "yes", "no, lower") for u in ups
            )
            + f". Uniform play over the two actions has entropy ln 2 = {fmt(math.log(2))} nats; `pow`'s own "
            "policies: "
            + ", ".join(fmt(pol["pow"][u]["entropy"]["mean"]) for u in ups)
            + ", their return "
            + ", ".join(fmt(pol["pow"][u]["return_mean"]["mean"]) for u in ups)
            + "."
        )
        if all(flags.get(f"pow_entropy_above_correct_{u}") == 1 for u in ups) and all(
            flags.get(f"gradient_pow_below_correct_{u}") == 1 for u in ups
        ):
            out.append(
                "- Read together: at the more confident policies `correct` reaches, the samples with A < 0 carry "
                + ", ".join(fmt(atc[u]["pow_weight_share_adv_neg"]["mean"], ".3g") for u in ups)
                + " of `pow`'s weight (small CE, so a large CE^(A-1)) and its direction is below `correct`'s at "
                "every checkpoint; `pow`'s own runs keep a higher entropy than `correct`'s at every checkpoint, and "
                "there its direction's cosine with grad J is the one in the table above."
            )
    out.append("")
    return out


def moves_lines(m: dict, p) -> list[str]:
    """Item: what an update does to the actions with A < 0 and A > 0, per variant."""
    v, flags = m["variants"], m["flags"]
    out = [
        "## Caveat: what an update does to each sample's log pi (these fractions do not discriminate)",
        "",
        "Counting, per sample, which way log pi moved does not separate the losses: the correct loss raises "
        "sum A_t * (change of log pi_t), not each sample's log pi, and with CartPole's four inputs the samples share "
        "almost every parameter. The cosine with grad J above is the test; the fractions are kept for reference. "
        "Of the samples with A < 0, the fraction whose log pi(a|s) went down, and of those with A > 0 the fraction "
        "whose log pi went up: after the probe's small step on the first batch (one value per seed: mean over "
        "seeds), and after each real update (mean over updates, then over seeds; 95 % block-bootstrap interval "
        "over updates, inside [0, 1]). 0.5 = as many moved either way. "
        "'Weighted by abs(A)': the share of sum abs(A_t) on samples that moved the way their A says (a small step of "
        "`correct` raises sum A_t dlog pi_t, not each sample's). "
        "'Share on likely A < 0' is the share of the update's per-sample weights abs(dL/dlog pi(a_t|s_t)) carried by "
        "samples with A < 0 whose action had pi > 0.5; 'ΣA·CE < 0' the fraction of updates where the batch sum "
        "was negative (where `abs` reverses the whole step).",
        "",
        "| variant | probe: A<0 down | probe: A>0 up | probe: weighted by abs(A) | updates: A<0 down "
        "| updates: A>0 up | updates: weighted by abs(A) | share on likely A<0 | samples likely A<0 "
        "| ΣA·CE < 0 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, x in v.items():
        out.append(
            f"| `{name}` | {fmt(x['probe_adv_neg_logp_down_fraction'])} | {fmt(x['probe_adv_pos_logp_up_fraction'])} "
            f"| {fmt(x['probe_adv_weighted_right_fraction'])} "
            f"| {interval(x, 'adv_neg_logp_down_fraction')} | {interval(x, 'adv_pos_logp_up_fraction')} "
            f"| {fmt(x['adv_weighted_right_fraction'])} "
            f"| {fmt(x['share_likely_adv_neg'])} | {fmt(x['likely_adv_neg_samples'])} "
            f"| {fmt(x['sum_negative_update_fraction'])} |"
        )
    out.append("")
    for name, key, side in (
        ("correct", "correct_{}_fractions_above_half", "above"),
        ("flipped", "flipped_{}_fractions_below_half", "below"),
    ):
        if name not in v:
            continue
        x = v[name]
        out.append(
            f"- `{name}`: both fractions of the real updates {side} 0.5? "
            + said(flags, key.format("update"), "yes", "no")
            + " (by the intervals above; both "
            + side
            + f" 0.5 per seed on {counted(m, key.format('update'))}). Of the probe's step? "
            + said(flags, key.format("probe"), "yes", "no")
            + f" (exact sign-flip test of the per-seed fractions minus 0.5, smallest attainable p "
            f"{fmt(2.0 / 2 ** x['seeds'])} with {x['seeds']} seeds; per seed "
            f"{seeds_list(x['probe_adv_neg_logp_down_fraction_per_seed'])} (A<0 down) and "
            f"{seeds_list(x['probe_adv_pos_logp_up_fraction_per_seed'])} (A>0 up); both {side} 0.5 on "
            f"{counted(m, key.format('probe'))})."
        )
    if "flipped" in v:
        out.append(
            "- To first order the probe's change of log pi for `flipped` is exactly minus that of `correct`, "
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
        x = v["pow"]
        out.append(
            f"- `pow`: likely actions with A < 0 carry {fmt(x['share_likely_adv_neg'])} of its update "
            f"against {fmt(v['correct']['share_likely_adv_neg'])} of `correct`'s (d CE^A / d CE = A CE^(A-1): large "
            f"where CE is small and A < 0); more than `correct`'s on "
            f"{counted(m, 'pow_share_likely_adv_neg_above_correct')}. More in general? "
            + said(flags, "pow_share_likely_adv_neg_above_correct", "yes", "no, less")
            + " (paired sign-flip test over seeds: "
            + exact(x["share_likely_adv_neg_vs_correct_p"], x["share_likely_adv_neg_vs_correct_p_min"])
            + ")."
        )
    if "abs" in v:
        a = v["abs"]
        out.append(
            f"- `abs`: the batch sum ΣA·CE was negative on {fmt(a['sum_negative_update_fraction'])} of its updates. On "
            f"those, the fractions were {interval(a, 'adv_neg_logp_down_fraction_sum_negative')} (A<0 down) and "
            f"{interval(a, 'adv_pos_logp_up_fraction_sum_negative')} (A>0 up): both below 0.5, the whole step "
            "reversed? "
            + said(flags, "abs_fractions_below_half_when_sum_negative", "yes", "no")
            + f"; on the updates with a positive sum {interval(a, 'adv_neg_logp_down_fraction_sum_positive')} and "
            f"{interval(a, 'adv_pos_logp_up_fraction_sum_positive')}: both above 0.5, as `correct`? "
            + said(flags, "abs_fractions_above_half_when_sum_positive", "yes", "no")
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
        *gradient_lines(m, p),
        f"Setup: {p.seeds} seeds x {len(p.variants)} variants, {m['episodes_per_trial']} episodes per trial "
        f"({p.episodes_per_update} per update), {p.optimizer.name} lr {p.optimizer.lr:g} decay {p.optimizer.decay:g}, "
        f"gamma {p.gamma:g}, returns standardised per {p.standardize_per}. Final return = mean of the last "
        f"{p.final_episodes} episodes, first return = mean of the first {p.final_episodes}. Seed k gives every "
        "variant the same initial policy and first batch, so a comparison with `correct` is paired: the exact "
        "sign-flip test of the per-seed differences, with the smallest p it can give at this seed count. Verdicts "
        f"need p < {ALPHA:g} (or an interval that excludes the boundary); otherwise they are inconclusive.",
    ]
    if kind == "pong":
        e, ref = m["env"], m["reference"]
        lines += [
            "",
            f"Pong variant: {e['id']}, frameskip {e['frameskip']}, sticky actions (repeat_action_probability) "
            f"{e['repeat_action_probability']}, actions {e['actions']}, move cost {fmt(e['move_cost'])}, input "
            f"{e['input']}, an episode = {e['points_per_episode']} points at most, rollout `{e['rollout']}`. "
            f"Uniform random actions score {fmt(ref['random_return_mean'])} per game "
            f"(95 % CI {fmt_ci(ref['random_return_ci_low'], ref['random_return_ci_high'])}, "
            f"{ref['random_games']} games). "
            f"Throughput (timing.json, this run): {fmt(timing['frames_per_second'], '.4g')} frames/s per trial "
            f"process, {timing['workers']} processes.",
        ]
    lines += [
        "",
        "| variant | first return per seed | final return per seed | final return, mean | minus `correct`, per seed "
        "| exact p vs correct (smallest attainable) | below `correct`? | probe corr per seed | real-update corr |"
        + (" episodes to solve (median) |" if kind == "cartpole" else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if kind == "cartpole" else ""),
    ]
    for name, x in v.items():
        paired = "final_return_diff_vs_correct_per_seed" in x
        row = (
            f"| `{name}` | {seeds_list(x['first_return_per_seed'])} | {seeds_list(x['final_return_per_seed'])} "
            f"| {fmt(x['final_return_mean'])} "
            f"| {seeds_list(x['final_return_diff_vs_correct_per_seed']) if paired else '–'} "
            f"| {(fmt(x.get('p_exact_vs_correct')) + ' (' + fmt(x.get('p_exact_min')) + ')') if paired else '–'} "
            f"| {said(m['flags'], f'{name}_below_correct', 'yes', 'no, above') if paired else '–'} "
            f"| {seeds_list(x['probe_corr_per_seed'])} | {fmt(x['probe_corr_train_mean'])} |"
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
            f"- `correct` vs `flipped`: final return {fmt(c['final_return_mean'])} vs {fmt(f['final_return_mean'])}; "
            f"`flipped` ended below `correct` on {counted(m, 'flipped_below_correct')}. Below `correct` in general? "
            + said(m["flags"], "flipped_below_correct", "yes", "no, above")
            + f" ({exact(f['p_exact_vs_correct'], f['p_exact_min'])}"
            + (
                f": with {p.seeds} seeds the sign-flip test cannot reach {ALPHA:g})"
                if f["p_exact_min"] >= ALPHA
                else ")"
            )
            + f". The probe correlation is {fmt(c['probe_corr'])} vs {fmt(f['probe_corr'])}: flipping the sign makes "
            "each update raise the probability of the actions that were followed by the worst returns."
        )
    if kind == "cartpole":
        ref = m["reference"]
        lines.append(
            f"- Reference policies: always pushing left lasts {fmt(ref['always_left_return_mean'])} steps on average "
            f"(the shortest episodes), a uniform random policy {fmt(ref['random_return_mean'])}."
        )
    for name, x in v.items():
        if name in ("flipped",) or "final_return_diff_vs_correct" not in x:
            continue
        lines.append(
            f"- `{name}` minus `correct`, final return: {fmt(x['final_return_diff_vs_correct'])} (mean of the per-seed "
            f"differences {seeds_list(x['final_return_diff_vs_correct_per_seed'])}); below on "
            f"{counted(m, f'{name}_below_correct')}; {exact(x['p_exact_vs_correct'], x['p_exact_min'])}: below "
            "`correct`? "
            + said(m["flags"], f"{name}_below_correct", "yes", "no, above")
            + "."
            + (f" {x['diverged_seeds']} seed(s) hit a non-finite loss." if x["diverged_seeds"] else "")
        )
    lines += ["", *loss_value_lines(m, p), *moves_lines(m, p)]
    lines += [
        "",
        "The probe: on the first batch of each seed (the same batch for every variant), one gradient step of "
        f"length {p.probe_step:g} in parameter space, then the Pearson correlation between the change of "
        "log pi(a_t|s_t) and A_t. 'Real-update corr' is the same correlation for the optimiser's actual updates "
        "during training (mean over updates).",
        "",
        "Intervals over updates are moving-block bootstraps within each seed (blocks of "
        f"{fmt(v[next(iter(v))]['block_length'])} consecutive updates, {m['bootstrap_replicates']} replicates): "
        "intervals for these trials' updates, not over seeds. No interval over seeds is given below 10 seeds; "
        "the per-seed values are listed instead.",
        "",
        "Figures: `figures/learning_curves.png`, `figures/final_return_and_probe.png`, `figures/logp_moves.png`, "
        "`figures/loss_value.png`. Tables: `episodes.csv`, `trials.csv`, `plots/*.csv` (`plots/probe.csv`: every "
        "update's loss, batch return and fractions)"
        + ("; `gradient.csv`: every cosine with grad J, per seed, checkpoint and variant." if "gradient" in m else ".")
        + "",
        "",
    ]
    return "\n".join(lines)


def pong_verdicts(m: dict, p) -> list[str]:
    """Sentences from ``metrics['flags']`` and ``seed_counts`` (``analysis.pong_flags``)."""
    flags, v = m["flags"], m["variants"]
    out = []
    for name in ("correct", "flipped"):
        if f"{name}_improves" not in flags:
            continue
        x = v[name]
        out.append(
            f"- `{name}`: gains (mean of its last {p.final_episodes} games minus its first {p.final_episodes}) per "
            f"seed {seeds_list(x['improvement_per_seed'])} points; at least {fmt(PONG_IMPROVEMENT)} points on "
            f"{counted(m, f'{name}_improves')}. Improves in general? "
            + said(flags, f"{name}_improves", "yes", "no, gets worse")
            + f" (sign-flip test of the gains over seeds: {exact(x['improvement_p'], x['improvement_p_min'])})."
        )
    if "correct_above_flipped" in m.get("seed_counts", {}):
        out.append(
            f"- `correct`'s final return is above `flipped`'s on {counted(m, 'correct_above_flipped')} (same seed, "
            "same first batch)."
        )
    return out


def win_summary(w: dict, m: dict, timing: dict, p, stage: str) -> str:
    """summary.md of the win presets: per seed, whether and when it beat the built-in AI (evaluated or by the
    running training mean, as ``w['rule']`` says)."""
    if p.actions == "noop_up_down":
        recipe = "the question's recipe" if p.move_cost else "the question's three actions (no move cost)"
    else:
        recipe = "vanilla REINFORCE"
    evaluated = w.get("rule") == "evaluation"
    if evaluated:
        rule = " ".join(
            [
                f"Every {p.evaluate_every} updates, once the mean of the last {p.stop_window} training games reached",
                f"{fmt(p.evaluate_from_mean)}, the frozen policy played {w['evaluate_games']} fresh games",
                "(sampled actions, emulator seeds training never used); a trial stops at the first checkpoint whose",
                "95 % t interval of the mean score lies above 0 (it beats the built-in AI),",
                f"or at the cap of {w['cap_games']} games. Time to win is training seconds until that checkpoint;",
                "evaluation time is reported apart.",
            ]
        )
    else:
        rule = (
            f"Each trial stops at the end of the first game after which the mean return of the last {p.stop_window} "
            f"games is above {fmt(w['stop_at_mean'])}"
            f"{' (more points won than lost)' if w['stop_at_mean'] == 0 else ''}, "
            f"or at the cap of {w['cap_games']} games."
        )
    lines = [
        f"# {stage}: {recipe} against Pong's built-in AI",
        "",
        f"{rule} Network: {80 // p.downsample}x{80 // p.downsample} frame difference, {p.hidden} "
        f"hidden units, actions {m['env']['actions']}, move cost {fmt(p.move_cost)}; {p.optimizer.name} lr "
        f"{p.optimizer.lr:g} decay {p.optimizer.decay:g}; {p.episodes_per_update} games per update; rollout "
        f"`{p.rollout}`. Uniform random actions score {fmt(m['reference']['random_return_mean'])} per game.",
        "",
    ]
    progress = w.get("progress_mean")
    head = ["trial", "won", "games to win", "frames to win", "minutes to win"]
    if progress is not None:
        head.append(f"games to a mean of {fmt(progress)}")
    if evaluated:
        head += ["evaluated mean (95 % CI), sampled", "greedy", "evaluations", "evaluation minutes"]
    head += ["games played", "frames/s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, t in w.items():
        if not (isinstance(t, dict) and "won" in t):
            continue
        minutes = None if t["seconds_to_win"] is None else t["seconds_to_win"] / 60
        row = [
            key,
            "yes" if t["won"] else "no",
            fmt(t["games_to_win"], ".5g"),
            fmt(t["frames_to_win"], ".4g"),
            fmt(minutes),
        ]
        if progress is not None:
            row.append(fmt(t.get("games_to_progress"), ".5g"))
        if evaluated:
            row += [
                f"{fmt(t['eval_mean'])} ({fmt(t['eval_ci_low'])} to {fmt(t['eval_ci_high'])})"
                if t.get("eval_mean") is not None
                else "n/a",
                f"{fmt(t['eval_greedy_mean'])} ({fmt(t['eval_greedy_ci_low'])} to {fmt(t['eval_greedy_ci_high'])})"
                if t.get("eval_greedy_mean") is not None
                else "n/a",
                str(t["evaluations"]),
                fmt(t["eval_seconds"] / 60),
            ]
        row += [str(t["games"]), fmt(t["frames_per_second"], ".4g")]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    for v in p.variants:
        s = w[v]
        med = s["median_seconds_to_win"]
        lines.append(
            f"- `{v}`: {s['seeds_won']} of {s['seeds']} seeds won within the cap; median time to win "
            f"{fmt(None if med is None else med / 60)} minutes, median games {fmt(s['median_games_to_win'], '.5g')} "
            "(a seed that did not win counts as never; n/a when half or more did not win)."
        )
    lines += [
        "",
        f"Wall-clock: training seconds of each trial, one trial at a time on the machine ({timing['machine']}); "
        "frames counted are those of finished games. Figures: `figures/win_curves.png`, "
        "`figures/learning_curves.png`. Per-game returns: `episodes.csv` (`return_mean100` is the running mean)."
        + (
            " Per-game evaluation scores: `evaluation_games.csv`; the winning policies: `policies/<trial>.pt` "
            "(a `Policy` state_dict)."
            if evaluated
            else ""
        ),
        "",
    ]
    return "\n".join(lines)
