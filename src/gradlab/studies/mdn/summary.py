"""summary.md of the mdn stage: the answer in a few sentences, every number and verdict read from the metrics."""

from __future__ import annotations

from gradlab.stats import fmt, fmt_ci, verdict_word
from gradlab.studies.mdn.config import MdnParams


def signed(v: int) -> str:
    """A verdict as printed: +1, 0, -1."""
    return f"{v:+d}" if v else "0"


def _n(g: dict) -> str:
    return f"{g['nan_trials']}/{g['trials']}"


def _ci(g: dict) -> str:
    return (
        f"95 % CI {fmt(100 * g['rate_ci_low'], '.0f')}-{fmt(100 * g['rate_ci_high'], '.0f')} %"
        if g["trials"]
        else "n/a"
    )


def summary(m: dict, p: MdnParams) -> str:
    a, z, f, st, fl = m["asker"], m["asker"]["lr0"], m["compare"], m["stable"], m["flags"]
    ind, ref = m["independent"], m["referee"]
    gap = ind["underflow_gap"]
    lines = [
        "# mdn: why the mixture-density NLL turns NaN, even at lr 0 -- in the asker's setup",
        "",
        "## The port",
        "",
    ]
    if fl["referee_available"]:
        u = ref["underflow"]
        lines.append(
            f"The asker's literal TFP code (tensorflow {ref['tensorflow']}, tensorflow-probability "
            f"{ref['tensorflow_probability']}) and the PyTorch port `probs_log` "
            + ("**agree**" if fl["referee_agrees"] else "**disagree**")
            + f" on the recorded batches: with one softmax weight exactly 0, TF's loss {fmt(u['tf_loss'], '.5g')}"
            f" vs the port's {fmt(u['probs_log']['loss'], '.5g')}, TF's gradient "
            + ("has NaN" if u["tf_grad_nan"] else "is finite")
            + ", the port's "
            + ("has NaN" if u["probs_log"]["grad_nan"] else "is finite")
            + "; torch's own `Categorical(probs=)` clamps and gives loss "
            + f"{fmt(u['probs_torch']['loss'], '.5g')} with a "
            + ("NaN" if u["probs_torch"]["grad_nan"] else "finite")
            + " gradient, so a PyTorch port built on it differs from the asker's code."
        )
    else:
        lines.append("No TFP reference recorded (tfp_referee/tfp_reference.json missing): the port is not refereed.")
    lines += [
        "",
        "Independent check (one weight exactly 0 in float32; a float32 softmax weight is exactly 0 once its logit is "
        f"{fmt(gap, '.2f')} below the largest): `probs_log` loss "
        + ("finite" if ind["probs_log"]["loss_finite"] else "non-finite")
        + ", gradient "
        + ("NaN" if ind["probs_log"]["grad_nan"] else "finite")
        + "; `logits` loss "
        + ("finite" if ind["logits"]["loss_finite"] else "non-finite")
        + ", gradient "
        + ("finite" if ind["logits"]["grad_finite"] else "non-finite")
        + "; the safe `nll(probs=...)` gradient "
        + ("finite" if ind["safe_probs"]["grad_finite"] else "non-finite")
        + ". Check "
        + ("passes" if fl["independent_check_passes"] else "FAILS")
        + ".",
        "",
        "## The asker's path on clean data (lr > 0)",
        "",
        f"`probs_log`, clean data in [0, 1], {p.asker.seeds} seeds, {p.asker.steps} steps of batch "
        f"{p.asker.batch_size}: the Adam baseline at lr {', '.join(f'{lr:g}' for lr in p.asker.lr)}, each remedy alone "
        f"at lr {p.asker.remedy_lr:g}, and one long baseline trial of {p.asker.long_steps} steps: "
        f"**{_n(a)} trials with a NaN** ({_ci(a)}); {a['finite_loss_nan_grad_trials']} of them with a finite loss "
        f"and a NaN gradient. "
        + (
            "NaN does occur on clean data."
            if fl["asker_nan_on_clean_data"]
            else "On clean data the asker's path never produced a NaN under these conditions."
        )
        + f" Saturation: {a['zero_weight_trials']} of {a['trials']} trials ever had a mixing weight of exactly 0; the "
        f"largest logit gap any trial reached was {fmt(a['max_logit_gap'], '.1f')} (median of trials "
        f"{fmt(a['max_logit_gap_median'], '.1f')}) against the {fmt(gap, '.2f')} an exact 0 needs"
        + ("." if not fl["saturation_reached"] else " -- some trials did reach it.")
        + "",
        "",
        "Per condition (`outliers` has corrupted targets and `saturated` a head built with one weight exactly 0: "
        "neither is the asker's clean setup, so neither is in the count above):",
        "",
        "| condition | NaN trials | finite loss + NaN grad | weight exactly 0 | max logit gap | median val NLL |",
        "|---|---|---|---|---|---|",
    ]
    for c, g in a["by_condition"].items():
        lines.append(
            f"| {c} | {_n(g)} | {g['finite_loss_nan_grad_trials']} | {g['zero_weight_trials']} | "
            f"{fmt(g['max_logit_gap'], '.1f')} | {fmt(g['val_nll_median'], '.3f')} |"
        )
    lines += ["", formulations_line(f, p)]
    sat = f.get("saturated", {})
    if sat:
        lines += [
            "",
            f"Where the asker's path does fail (constructed, `saturated`: component 0's logit bias starts at "
            f"{p.asker.saturated_bias:g}, so its softmax weight is exactly 0 for every row): "
            + "; ".join(
                f"`{k}` {_n(g)} NaN trials, {g['finite_loss_nan_grad_trials']} with a finite loss and a NaN gradient"
                for k, g in sat.items()
            )
            + ". "
            + (
                "Every `probs_log` trial failed that way, by step "
                + fmt(sat.get("probs_log", {}).get("first_nonfinite_step_max"), ".0f")
                if fl["saturated_head_probs_log_all_nan"]
                else "Not every `probs_log` trial failed that way"
            )
            + (
                ", while torch's `probs` and `logits` trained on without a NaN."
                if fl["saturated_head_others_finite"]
                else "; the other formulations had NaN too."
            ),
        ]
    lines += [
        "",
        "## lr = 0",
        "",
        f"The asker's path at lr 0: **{_n(z)} trials with a NaN**. Clean inputs with a positive scale: "
        f"{z['clean_nonzero_scale_nan_trials']} NaN trials "
        + ("(NaN on clean data at lr 0)." if fl["asker_lr0_nan_on_clean_data"] else "(none on clean inputs).")
        + f" Non-finite inputs ({p.data.nonfinite_fraction:g} of rows with x = NaN): "
        f"{z['nonfinite_input_nan_trials']}/{z['nonfinite_input_trials']}; with a positive scale the first non-finite "
        f"step ranged over {fmt_ci(z['nonfinite_input_first_step_min'], z['nonfinite_input_first_step_max'], '.0f')} "
        f"({z['nonfinite_input_distinct_first_steps']} distinct steps: wherever the bad row falls in the shuffled "
        f"order) and came at the first batch holding it in {z['nonfinite_input_first_at_probe_batch']} of "
        f"{z['nonfinite_input_positive_scale_trials']}. A scale that "
        f"can be 0 (relu): {z['zero_scale_nan_trials']}/{z['zero_scale_trials']}, at step 0. In "
        f"{z['weights_nonfinite_same_step']} of {z['nan_trials']} the weights were NaN right after that step's update "
        f"(NaN gradient x lr 0 = NaN), and {z['weights_unmoved_before_first_nonfinite']} had not moved before it.",
        "",
        f"BatchNorm at lr 0: the validation NLL (eval mode) changed during training in {z['bn_val_changed_trials']} of "
        f"{z['bn_clean_trials']} clean BatchNorm trials (median change {fmt(z['bn_val_change_median'], '.3g')} nats) "
        f"and in {z['nobn_val_changed_trials']} of {z['nobn_clean_trials']} without BatchNorm: "
        + (
            "the running statistics move at lr 0"
            if fl["bn_running_stats_move_at_lr0"]
            else "the running statistics did not change the validation loss"
        )
        + f"; {z['running_stats_nonfinite_trials']} trials ended with NaN running statistics, "
        f"{z['running_stats_nonfinite_with_nonfinite_input']} of them with non-finite inputs (one bad batch poisons "
        "them for good, whatever the learning rate).",
        "",
        "## Symptom -> cause -> fix (from the trials)",
        "",
        "| symptom | cause | trials (lr 0 / lr > 0) | fix |",
        "|---|---|---|---|",
    ]
    for t in m["symptoms"]:
        src = "" if t["source"] == "trials" else f" [{t['source']}]"
        lines.append(
            f"| {t['symptom']} | `{t['cause']}`: {t['explanation']}{src} | {t['trials']} ({t['trials_lr0']} / "
            f"{t['trials_lr_positive']}) | {t['fix']} |"
        )
    lines += [
        "",
        "Every NaN trial has a recorded first non-finite tensor and a cause from the NaN doctor "
        "(`gradlab.doctor.diagnose`, the trial's first non-finite step replayed op by op): "
        + ("yes." if fl["every_nan_trial_has_cause"] else "NO."),
        "",
        "## The stable loss learns",
        "",
        stable_paragraph(st, fl, p),
        "",
        "Figures: `figures/conditional_densities.png`, `figures/stable_val_nll.png`, `figures/logit_gap.png`, "
        "`figures/lr0_first_nonfinite.png`; every trial in `trials.csv`, the table in `symptoms.csv`.",
        "",
    ]
    return "\n".join(lines)


def formulations_line(f: dict, p: MdnParams) -> str:
    """The formulations on the same seeds: counts, each against probs_log by the exact paired test, its verdict."""
    counts = "; ".join(
        f"`{k}` {_n(g)}"
        for k, g in f.items()
        if isinstance(g, dict) and "trials" in g and k not in ("saturated", "lr0")
    )
    tests = [
        f"`{k}` against `probs_log` on the {g['pairs']} shared seeds: NaN only with `probs_log` on "
        f"{g['pairs_only_probs_log_nan']}, only with `{k}` on {g['pairs_only_this_nan']}, exact paired sign-flip "
        f"(McNemar) p = {fmt(g['paired_p_vs_probs_log'], '.2g')} (smallest attainable with {g['pairs']} pairs: "
        f"{fmt(g['paired_p_min_vs_probs_log'], '.2g')}): fewer NaN than `probs_log`: "
        f"**{verdict_word(g['fewer_nan_than_probs_log'], 'yes', 'no, more')}**"
        for k, g in f.items()
        if isinstance(g, dict) and "fewer_nan_than_probs_log" in g
    ]
    tie = " The rates are tied (reported as a tie, not ranked)." if f["tied"] else ""
    return (
        "Formulations on the same seeds (baseline, lr > 0; `probs_log` at every lr, the others at "
        f"{p.asker.remedy_lr:g}): "
        f"{counts}.{tie} " + "; ".join(tests) + ("." if tests else "")
    )


def stable_paragraph(st: dict, fl: dict, p: MdnParams) -> str:
    """The stable loss against the single Gaussian (paired), the marginal and the uniform: per-seed values where
    fewer than 10 seeds give no interval, exact tests with their smallest attainable p, each verdict from its flag."""
    vs1, vm, vu = st["vs_single_gaussian"], st["vs_marginal"], st["vs_uniform"]

    def values(xs: list) -> str:
        return ", ".join(fmt(x, ".3f") for x in xs) or "none"

    def spread(mean, lo, hi, per_seed) -> str:
        if lo is None:  # fewer than 10 seeds: no 95 % interval, the values themselves
            return f"{fmt(mean, '.3f')} (per seed: {values(per_seed)})"
        return f"{fmt(mean, '.3f')} (bootstrap 95 % CI {fmt_ci(lo, hi, '.3f')})"

    diff = f"paired difference {fmt(vs1['diff_mean'], '.3f')} nats" + (
        f" (95 % CI {fmt_ci(vs1['diff_ci_low'], vs1['diff_ci_high'], '.3f')})"
        if vs1["diff_ci_low"] is not None
        else f" (per seed: {values(vs1['diff_per_seed'])})"
    )

    def test(v: dict, n: int) -> str:
        return (
            f"exact sign-flip p = {fmt(v['sign_flip_p'], '.2g')}, smallest attainable with {n} seeds "
            f"{fmt(v['sign_flip_p_min'], '.2g')}"
        )

    n = len(st["val_nll_per_seed"])
    mdn = spread(st["val_nll_mean"], st["val_nll_ci_low"], st["val_nll_ci_high"], st["val_nll_per_seed"])
    one = spread(
        st["single_gaussian_val_nll_mean"],
        st["single_gaussian_val_nll_ci_low"],
        st["single_gaussian_val_nll_ci_high"],
        st["single_gaussian_val_nll_per_seed"],
    )
    return (
        f"Logits + softplus, K = {st['components']}, {st['seeds']} seeds, {p.stable.steps} Adam steps: validation NLL "
        f"{mdn} vs a single Gaussian on the same seeds {one}, the marginal (KDE) "
        f"{fmt(st['marginal_val_nll'], '.3f')} and the uniform 0; {st['nonfinite_events']} "
        f"non-finite events. Below the single Gaussian on {vs1['seeds_better']} of {vs1['pairs']} seeds, {diff}, "
        f"{test(vs1, vs1['pairs'])}: **{verdict_word(fl['stable_beats_single_gaussian'], 'below', 'above')}**. "
        f"Below the marginal on {vm['seeds_below']} of {n} seeds, {test(vm, n)}: "
        f"**{verdict_word(fl['stable_beats_marginal'], 'below', 'above')}**. Below 0 on {vu['seeds_below']} of {n} "
        f"seeds, {test(vu, n)}: **{verdict_word(fl['stable_below_zero'], 'below', 'above')}**. Verdict: "
        + {
            1: "**it learns the multimodal density** (below all three, no non-finite event)",
            -1: "**it does not learn it** (above a baseline, or a non-finite event)",
        }.get(fl["stable_learns"], "**inconclusive** (not every comparison excludes the other outcome)")
        + f" (flag `stable_learns` = {signed(fl['stable_learns'])})."
    )
