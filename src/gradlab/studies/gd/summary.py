"""summary.md of the gd stage: the answer in a few sentences, every number and verdict read from the metrics."""

from __future__ import annotations

from gradlab.stats import fmt, fmt_ci, fmt_spread, verdict_word
from gradlab.studies.gd.analysis import threshold_theory as analysis_theory
from gradlab.studies.gd.config import GDParams


def _pct(v) -> str:
    return fmt(None if v is None else 100 * v, ".1f") + " %"


def _first_order(m: dict, p: GDParams) -> list[str]:
    fo, fp, line, sign = m["first_order"], m["fixed_point"], m["scalar_line"], m["sign_stall"]
    lines = [
        "**The answer: the minimum is a fixed point of `w - step * gradient` and of no rule that ignores the "
        "gradient.** One step w -> w - lr d changes the loss by dL = -lr g.d + (lr^2/2) d^T H d (exact on least "
        "squares). With d = g the first-order term -lr ||g||^2 is never positive, and at the minimum g = 0, so the "
        "step is 0 and the rule stays there. `w - step` (d = 1) has a first-order term -lr sum(g) of either sign, "
        "and at the minimum it still moves by lr sqrt(d).",
        "",
        f"- From {fo[next(iter(k for k in fo if isinstance(fo[k], dict)))]['starts']} random start points "
        f"(w ~ N(0, I), like w0), one step of lr = {fmt(fo['small_lr_times_lambda_max'], 'g')}/lambda_max lowered the "
        "loss at this fraction of them (Wilson 95 % CI):",
    ]
    for rule, v in fo.items():
        if not isinstance(v, dict):
            continue
        verdict = "always downhill" if v["always_descends"] else "not always downhill"
        lines.append(
            f"  - `{rule}`: {fmt(v['descent_fraction'], '.4f')} "
            f"({fmt_ci(v['descent_fraction_ci_low'], v['descent_fraction_ci_high'], '.3f')}; "
            f"{verdict}); lr -> 0 limit {fmt(v['descent_fraction_limit'], '.4f')}; from points near the minimum "
            f"(w* + {p.one_step.near_radius:g} N(0, I)) at the rules' lr: {fmt(v['near_optimum_fraction'], '.4f')}."
        )
    lines.append(f"- One step from the minimum w* at the rules' {p.rules.describe()}:")
    for rule, v in fp.items():
        stays = "stays (a fixed point)" if v["stays"] else "moves away"
        lines.append(
            f"  - `{rule}`: step length {fmt(v['step_norm'], '.3g')}, dL = {fmt(v['delta_loss'], '.3g')} ({stays}); "
            f"along the gradient-descent run its step went downhill from {_pct(v['along_run_descent_fraction'])} of "
            f"the iterates, dL at the last one {fmt(v['along_run_delta_loss_last'], '.3g')}."
        )
    lines += [
        f"- `w0 - t * 1` moves on one line whatever t is: the best t = {fmt(line['best_t'], '.4g')} gives a loss of "
        f"{fmt(line['best_loss'], '.4g')} (closed form L0 - (1.g)^2 / (2 1^T H 1); a line search finds "
        f"{fmt(line['line_search_loss'], '.4g')} at t = {fmt(line['line_search_t'], '.4g')}), against the optimum "
        f"L(w*) = {fmt(line['optimum_loss'], '.3g')} ({fmt(line['best_over_optimum'], '.3g')} times higher), from "
        f"L0 = {fmt(line['initial_loss'], '.4g')}.",
        "- `sign` reads the gradient, so the exact minimum is a fixed point of it too (sign 0 = 0) and a small "
        "step goes downhill from every point; but its step never shrinks, so from points near the minimum it goes "
        f"uphill and it stalls; the "
        f"excess loss over the last quarter of {p.one_step.sign_steps} steps grows with lr with log-log slope "
        f"{fmt(sign['stall_slope'], '.3g')} (over the {sign['stalled_lrs']} lrs that stalled):",
    ]
    for v in sign.values():
        if isinstance(v, dict):
            state = "stalled" if v["stalled"] else "still falling"
            lines.append(
                f"  - lr = {fmt(v['lr_times_lambda_max'], 'g')}/lambda_max: loss {fmt(v['stall_loss'], '.4g')}, "
                f"excess {fmt(v['stall_excess'], '.3g')} ({state})."
            )
    return lines


def summary(m: dict, p: GDParams) -> str:
    q, r, mlp = m["quadratic"], m["rules"], m["mlp"]
    c = m["criteria"]
    lines = [
        "# gd: why subtract step x gradient, and which step sizes diverge?",
        "",
        *_first_order(m, p),
        "",
        "**Divergence** (definition: the final loss is above the initial loss, or not finite).",
        "",
        f"- Least squares (n={p.quadratic.n}, d={p.quadratic.d}, condition number "
        f"{fmt(q['condition_number'], '.3g')}): "
        f"lambda_max = {fmt(q['lambda_max'], '.5g')}, so theory says gradient descent diverges above "
        f"2/lambda_max = {fmt(q['lr_crit_theory'], '.5g')}. Bisection on real runs finds "
        f"{fmt(q['lr_crit_empirical'], '.5g')} ({fmt(100 * q['lr_crit_rel_error'], '.2f')} % apart, "
        f"{q['threshold_probes']} runs of {p.threshold.steps} steps).",
    ]
    for rule, v in r.items():
        verdict = "diverged" if v["diverged"] else "descended"
        lines.append(
            f"- Rule `{rule}` trained at {p.rules.describe()}: loss {fmt(v['initial_loss'], '.4g')} -> "
            f"{fmt(v['final_loss'], '.4g')} after {p.rules.steps} steps, lowest {fmt(v['min_loss'], '.4g')} "
            f"({verdict})."
        )
    lines.append(f"- ReLU network (H={p.mlp.hidden}, {p.mlp.steps} full-batch steps, {mlp['seeds']} seeds per lr):")
    for g in mlp["grid"].values():
        state = "diverged" if g["diverged"] else ("some seeds diverged" if g["diverged_seeds"] else "trained")
        lines.append(
            f"  - lr = {fmt(g['lr'], '.3g')}: {g['diverged_seeds']} of {g['seeds']} seeds diverged ({state}); "
            f"final loss of the seeds that did not diverge {fmt(g['final_loss_mean'], '.4g')} "
            f"({fmt_spread(g['final_loss_ci_low'], g['final_loss_ci_high'])}), initial "
            f"{fmt(g['initial_loss_mean'], '.3g')}."
        )
    b = m["mlp_best_vs_next"]
    if b.get("next_lr") is not None:
        verdict = verdict_word(b["best_lower"], "lower by an exact test", "higher by an exact test")
        lines.append(
            f"- Best lr {fmt(mlp['best_lr'], '.3g')} against the runner-up {fmt(b['next_lr'], '.3g')}: {verdict} "
            f"(exact permutation p = {fmt(b['permutation_p'], '.3g')}, exact Mann-Whitney p = "
            f"{fmt(b['mann_whitney_p'], '.3g')}, "
            f"smallest attainable p = {fmt(b['p_min'], '.3g')}; Welch p = {fmt(b['welch_p'], '.2g')}; Cohen's d = "
            f"{fmt(b['cohens_d'], '.2f')}, 95 % CI {fmt_ci(b['cohens_d_ci_low'], b['cohens_d_ci_high'], '.2f')})."
        )
    lines += [
        "",
        f"**Edge of stability** (criterion: the median of sharpness x lr/2 over the last {c['tail_probes']} "
        f"probes, one every {c['every']} steps, lies in [{fmt(c['eos_low'], 'g')}, {fmt(c['eos_high'], 'g')}]; "
        "catapult: the sharpness "
        "at step 0 is above 2/lr, the loss rises above its starting value, and the run still ends below it with the "
        f"sharpness at most {fmt(c['eos_high'], 'g')} x 2/lr).",
        "",
    ]
    for s in m["sharpness"].values():
        n = s["seeds"]
        eos = verdict_word(s["eos"], "at the edge of stability", "not at the edge of stability")
        cat = verdict_word(s["catapult"], "a catapult in most seeds", "no catapult in most seeds")
        rose = verdict_word(
            s["rose_to_band"], "rose to the band in most seeds", "did not rise to the band in most seeds"
        )
        spread = fmt_spread(s["settled_ratio_ci_low"], s["settled_ratio_ci_high"], s["settled_ratio_per_seed"], ".3f")
        lines.append(
            f"- lr = {fmt(s['lr'], 'g')} ({n} seed{'s' if n != 1 else ''}): sharpness settled at "
            f"{fmt(s['settled_ratio_mean'], '.3f')} x 2/lr ({spread}), started at "
            f"{fmt(s['initial_ratio_mean'], '.3f')} x 2/lr. Edge of stability: {eos} (interval against the band); "
            f"in the band {s['eos_seeds']} of {n} seeds, of which {s['rose_to_band_seeds']} rose to it from "
            f"below ({rose}); catapult in {s['catapult_seeds']} of {n} seeds ({cat}, Wilson interval against one "
            f"half); diverged in {s['diverged_seeds']}. Of the tail probes, "
            f"{_pct(s['tail_in_band_fraction_mean'])} lie inside the band on their own. Per seed (started at x 2/lr; "
            "rose to the band from below; tail probes in the band): "
            + "; ".join(
                f"{r.get('seed', i)}: {fmt(r['initial_ratio'], '.3f')}, {'rose' if r['rose_to_band'] else 'no'}, "
                f"{_pct(r['tail_in_band_fraction'])}"
                for i, r in enumerate(s["per_seed"])
            )
            + "."
        )
    t = m.get("mlp_threshold")
    if t:
        lines += [
            "",
            f"**Where the network diverges** ({t['seeds']} seeds; per seed the divergence learning rate bisected "
            f"in log space to {_pct(t['rel_tol'])} between a training and a diverging lr, against lambda0, the "
            "sharpness at initialisation): divergence lr "
            f"{fmt(t['lr_mean'], '.3g')} ({fmt_spread(t['lr_ci_low'], t['lr_ci_high'], t['lr_per_seed'])}), "
            f"lambda0 {fmt(t['lambda0_mean'], '.3g')} "
            f"({fmt_spread(t['lambda0_ci_low'], t['lambda0_ci_high'], t['lambda0_per_seed'])}). "
            f"In units of 2/lambda0: {fmt(t['ratio_classic_mean'], '.3g')} "
            f"({fmt_spread(t['ratio_classic_ci_low'], t['ratio_classic_ci_high'], t['ratio_classic_per_seed'])}); "
            f"of 4/lambda0 (the catapult model, Lewkowycz et al. 2020): {fmt(t['ratio_catapult_mean'], '.3g')} "
            f"({fmt_spread(t['ratio_catapult_ci_low'], t['ratio_catapult_ci_high'], t['ratio_catapult_per_seed'])}). "
            f"The data favour: "
            f"{analysis_theory(t['flags'])}. Bracket above 2/lambda0 in {t['above_classic_seeds']} of {t['seeds']} "
            f"seeds, above 4/lambda0 in {t['above_catapult_seeds']}.",
            "",
            "| seed | lambda0 | 2/lambda0 | 4/lambda0 | divergence lr | x 2/lambda0 |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['seed']} | {fmt(r['lambda0'], '.4g')} | {fmt(r['two_over_lambda0'], '.3g')} | "
                f"{fmt(r['four_over_lambda0'], '.3g')} | {fmt(r['lr'], '.3g')} | {fmt(r['ratio_classic'], '.3g')} |"
                for r in t["per_seed"]
            ),
        ]
    lines += [
        "",
        "Figures: `figures/one_step.png`, `figures/scalar_line_sign_stall.png`, `figures/rules_loss.png`, "
        "`figures/lr_sweep.png`, `figures/sharpness.png`, `figures/mlp_threshold.png`.",
        "",
    ]
    return "\n".join(lines)
