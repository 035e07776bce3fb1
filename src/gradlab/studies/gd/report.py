"""Report section: gd. Every number is quoted from results/gd/stats.json; every verdict word comes from a flag."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.section import Section
from gradlab.stats import verdict_word


def _rules(m: dict) -> list[str]:
    return [k for k, v in m["first_order"].items() if isinstance(v, dict)]


def _first_order(q: Quotes, s: str) -> list[str]:
    m = q.metrics(s)
    lines = []
    for rule in _rules(m):
        fo = m["first_order"][rule]
        verdict = "always went downhill" if fo["always_descends"] else "went downhill only"
        lines.append(
            f"One step of `{rule}` at lr = {q(s, 'first_order.small_lr_times_lambda_max', 'g')}/lambda_max from "
            f"{q(s, f'first_order.{rule}.starts', 'd')} random start points {verdict} at a fraction "
            f"{q(s, f'first_order.{rule}.descent_fraction', '.4f')} of them (Wilson 95 % CI "
            f"{q(s, f'first_order.{rule}.descent_fraction_ci_low', '.3f')} to "
            f"{q(s, f'first_order.{rule}.descent_fraction_ci_high', '.3f')}); near the minimum, at the rules' step, "
            f"{q(s, f'first_order.{rule}.near_optimum_fraction', '.4f')}. From the minimum itself it moved "
            f"{q(s, f'fixed_point.{rule}.step_norm', '.3g')} and changed the loss by "
            f"{q(s, f'fixed_point.{rule}.delta_loss', '.3g')} "
            f"({'a fixed point' if m['fixed_point'][rule]['stays'] else 'not a fixed point'})."
        )
    return lines


def _sharpness(q: Quotes, s: str) -> list[str]:
    lines = []
    for key, e in sorted(q.metrics(s).get("sharpness", {}).items(), key=lambda kv: kv[1]["lr"]):
        p = f"sharpness.{key}"
        eos = verdict_word(e["eos"], "at the edge of stability", "not at the edge of stability")
        catapult = verdict_word(e["catapult"], "catapults in most seeds", "no catapult in most seeds")
        rose = verdict_word(e["rose_to_band"], "most seeds rose to the band", "most seeds did not rise to the band")
        n = q(s, f"{p}.seeds", "d")
        lines.append(
            f"Sharpness at lr = {q(s, f'{p}.lr', 'g')} ({n} seeds): started at "
            f"{q(s, f'{p}.initial_ratio_mean', '.3f')} x 2/lr and settled at "
            f"{q(s, f'{p}.settled_ratio_mean', '.3f')} x 2/lr "
            f"({q.spread(s, f'{p}.settled_ratio', f'{p}.settled_ratio_per_seed', '.3f')}): edge of stability "
            f"{eos}. In the band: {q(s, f'{p}.eos_seeds', 'd')} of {n} seeds, "
            f"{q(s, f'{p}.rose_to_band_seeds', 'd')} of them after starting below it ({rose}); tail probes inside "
            f"the band: {q(s, f'{p}.tail_in_band_fraction_mean', '.0%')}. Catapult in "
            f"{q(s, f'{p}.catapult_seeds', 'd')} of {n} seeds ({catapult})." + _per_seed_rise(q, s, p, e)
        )
    return lines


def _per_seed_rise(q: Quotes, s: str, p: str, e: dict) -> str:
    """Per seed: the sharpness at step 0 in units of 2/lr, whether it rose to the band, the tail's share in it."""
    rows = e.get("per_seed", [])
    if not rows or "seed" not in rows[0]:
        return ""
    parts = [
        f"{q(s, f'{p}.per_seed.{i}.seed', 'd')}: {q(s, f'{p}.per_seed.{i}.initial_ratio', '.3f')}, "
        f"{'rose' if r['rose_to_band'] else 'did not rise'}, {q(s, f'{p}.per_seed.{i}.tail_in_band_fraction', '.0%')}"
        for i, r in enumerate(rows)
    ]
    return (
        " Per seed (sharpness at step 0 in units of 2/lr; rose to the band from below; tail probes inside the band): "
        + "; ".join(parts)
        + "."
    )


THEORY = {
    "classic": "consistent with the classic 2/lambda0 and below the catapult model's 4/lambda0",
    "catapult": "above the classic 2/lambda0 and consistent with the catapult model's 4/lambda0",
    "between": "above the classic 2/lambda0 yet below the catapult model's 4/lambda0: neither predicts it",
    "above": "above both 2/lambda0 and the catapult model's 4/lambda0: both predictions are too low",
    "below": "below even the classic 2/lambda0: neither predicts it",
    "inconclusive": "not separated from either prediction by its interval (inconclusive)",
}


def _theory(flags: dict) -> str:
    """The verdict on which prediction of the network's divergence learning rate holds, from the two flags."""
    bc, bk = flags["beyond_classic"], flags["beyond_catapult"]
    if bc == -1:
        return THEORY["below"]
    if bk == 1:
        return THEORY["above"]
    if bc == 1:
        return THEORY["between"] if bk == -1 else THEORY["catapult"]
    return THEORY["classic"] if bk == -1 else THEORY["inconclusive"]


def _threshold(q: Quotes, s: str) -> str:
    m = q.metrics(s)["mlp_threshold"]
    p = "mlp_threshold"
    seeds = "; ".join(
        f"{q(s, f'{p}.per_seed.{i}.seed', 'd')}: {q(s, f'{p}.per_seed.{i}.lr', '.3g')} "
        f"(2/lambda0 {q(s, f'{p}.per_seed.{i}.two_over_lambda0', '.3g')}, 4/lambda0 "
        f"{q(s, f'{p}.per_seed.{i}.four_over_lambda0', '.3g')})"
        for i in range(len(m["per_seed"]))
    )
    return (
        f"ReLU network, divergence learning rate per seed ({q(s, f'{p}.seeds', 'd')} seeds, bisected in log space "
        f"to {q(s, f'{p}.rel_tol', '.0%')}; diverged as in the grid): mean {q(s, f'{p}.lr_mean', '.3g')} "
        f"({q.spread(s, f'{p}.lr', f'{p}.lr_per_seed')}); lambda0, the sharpness at initialisation, "
        f"{q(s, f'{p}.lambda0_mean', '.3g')} ({q.spread(s, f'{p}.lambda0', f'{p}.lambda0_per_seed')}). The "
        f"divergence lr is {q(s, f'{p}.ratio_classic_mean', '.3g')} x 2/lambda0 "
        f"({q.spread(s, f'{p}.ratio_classic', f'{p}.ratio_classic_per_seed')}) and "
        f"{q(s, f'{p}.ratio_catapult_mean', '.3g')} x 4/lambda0 "
        f"({q.spread(s, f'{p}.ratio_catapult', f'{p}.ratio_catapult_per_seed')}): {_theory(m['flags'])}. Its bracket "
        f"lies above 2/lambda0 in {q(s, f'{p}.above_classic_seeds', 'd')} and above 4/lambda0 in "
        f"{q(s, f'{p}.above_catapult_seeds', 'd')} of the seeds. Per seed: {seeds}."
    )


def _divergence(q: Quotes, s: str) -> str:
    grid = q.metrics(s)["mlp"]["grid"]
    parts = []
    for key, row in sorted(grid.items(), key=lambda kv: kv[1]["lr"]):
        p = f"mlp.grid.{key}"
        state = "diverged" if row["diverged"] else "trained"
        parts.append(
            f"lr {q(s, f'{p}.lr', '.3g')}: {q(s, f'{p}.diverged_seeds', 'd')} of {q(s, f'{p}.seeds', 'd')} ({state})"
        )
    return "ReLU network, seeds diverged per learning rate: " + "; ".join(parts) + "."


def gd(q: Quotes) -> Section:
    s = "gd"
    m = q.metrics(s)
    fo = m["first_order"]
    scalar_always = fo.get("scalar", {}).get("always_descends", False)
    answer = (
        "Because the minimum is a fixed point of `w - step * gradient` and of nothing that ignores the gradient. One "
        "step changes the loss by -lr g.d to first order: with d = g that is never positive, and at the minimum g = 0, "
        "so the rule stops there. "
    )
    if "scalar" in fo and "gradient" in fo:
        answer += (
            f"Measured on least squares from random start points, one small step of `w - step * gradient` went "
            f"downhill at a fraction {q(s, 'first_order.gradient.descent_fraction', '.4f')} of them; `w - step` "
            f"{'at all of them' if scalar_always else 'at only'} {q(s, 'first_order.scalar.descent_fraction', '.4f')}, "
            f"and from the minimum it moved away (loss change {q(s, 'fixed_point.scalar.delta_loss', '.3g')}). "
        )
    answer += (
        f"`w0 - t * 1` can only slide along one line: its best t reaches a loss of "
        f"{q(s, 'scalar_line.best_loss', '.4g')} (closed form; a line search finds "
        f"{q(s, 'scalar_line.line_search_loss', '.4g')}), against an optimum of "
        f"{q(s, 'scalar_line.optimum_loss', '.3g')}. "
        f"Gradient descent itself diverges above 2/lambda_max: predicted {q(s, 'quadratic.lr_crit_theory', '.4g')}, "
        f"measured {q(s, 'quadratic.lr_crit_empirical', '.4g')}."
    )
    if "mlp_threshold" in m:
        answer += (
            f" On the ReLU network the learning rate at which it diverges, bisected per seed, is "
            f"{q(s, 'mlp_threshold.ratio_classic_mean', '.3g')} x 2/lambda0 "
            f"({q.spread(s, 'mlp_threshold.ratio_classic', 'mlp_threshold.ratio_classic_per_seed')}; lambda0 the "
            f"sharpness at initialisation): {_theory(m['mlp_threshold']['flags'])}."
        )
    c = "criteria"
    evidence = _first_order(q, s)
    if "sign_stall" in m:
        evidence.append(
            "`sign` (`w - step * sign(gradient)`) goes downhill for small steps but never shrinks its step, so it "
            f"stalls: its excess loss over the optimum grows with the step with log-log slope "
            f"{q(s, 'sign_stall.stall_slope', '.3g')} (at lr = "
            f"{q(s, 'sign_stall.lr_1.lr_times_lambda_max', 'g')}/lambda_max it stalls at "
            f"{q(s, 'sign_stall.lr_1.stall_loss', '.3g')})."
            if "lr_1" in m["sign_stall"]
            else f"`sign` stalls; log-log slope of its stall level against lr: {q(s, 'sign_stall.stall_slope', '.3g')}."
        )
    evidence.append(
        f"Least squares: lambda_max = {q(s, 'quadratic.lambda_max', '.5g')}, so theory puts the divergence threshold "
        f"at 2/lambda_max = {q(s, 'quadratic.lr_crit_theory', '.5g')}; bisection on real runs measured "
        f"{q(s, 'quadratic.lr_crit_empirical', '.5g')} (relative gap {q(s, 'quadratic.lr_crit_rel_error', '.2%')})."
    )
    for rule in m["rules"]:
        state = "diverged" if m["rules"][rule]["diverged"] else "descended"
        evidence.append(
            f"Rule `{rule}` trained: loss {q(s, f'rules.{rule}.initial_loss', '.4g')} -> "
            f"{q(s, f'rules.{rule}.final_loss', '.4g')} ({state})."
        )
    evidence.append(_divergence(q, s))
    if "mlp_threshold" in m:
        evidence.append(_threshold(q, s))
    best = m.get("mlp_best_vs_next", {})
    line = (
        f"Best learning rate {q(s, 'mlp.best_lr', '.3g')}: final loss {q(s, 'mlp.best_final_loss_mean', '.3g')} "
        f"({q.spread(s, 'mlp.best_final_loss')})"
    )
    if best.get("next_lr") is not None:
        verdict = verdict_word(
            best["best_lower"],
            "lower by an exact test than",
            "higher by an exact test than",
        )
        if best["best_lower"] == 0:
            verdict = "not separated by an exact test from"
        line += (
            f", {verdict} the runner-up {q(s, 'mlp_best_vs_next.next_lr', '.3g')} (exact permutation p = "
            f"{q(s, 'mlp_best_vs_next.permutation_p', '.3g')}, the smallest attainable "
            f"{q(s, 'mlp_best_vs_next.p_min', '.3g')}; Welch p = {q(s, 'mlp_best_vs_next.welch_p', '.2g')})"
        )
    evidence.append(line + ".")
    evidence += _sharpness(q, s)
    return Section(
        stage=s,
        title="Gradient descent: why step x gradient, and which steps diverge",
        question="Why does gradient descent subtract step * gradient and not just step? "
        "What learning rate is too large?",
        answer=answer,
        evidence=evidence,
        figures=[
            "figures/one_step.png",
            "figures/scalar_line_sign_stall.png",
            "figures/lr_sweep.png",
            "figures/sharpness.png",
            *(["figures/mlp_threshold.png"] if "mlp_threshold" in m else []),
        ],
        caveats=[
            "A run counts as diverged when its final loss is above its initial loss, or not finite.",
            f"Edge of stability at a learning rate means: the 95 % CI over seeds of the settled ratio (the median "
            f"of sharpness x lr/2 over the last {q(s, f'{c}.tail_probes', 'd')} probes, one every "
            f"{q(s, f'{c}.every', 'd')} steps) lies inside [{q(s, f'{c}.eos_low', 'g')}, "
            f"{q(s, f'{c}.eos_high', 'g')}]; outside it: not at the edge; otherwise inconclusive. A catapult: the "
            "sharpness at the start is above 2/lr, the loss rises above its starting value, and the run still ends "
            "below it, with the sharpness back at or under the band's top; a verdict needs the Wilson interval of "
            "the share of seeds with a catapult to exclude one half.",
            "The threshold 2/lambda_max is exact for a quadratic; on the network it holds only locally, which is what "
            "the sharpness curves show.",
            "The network's divergence learning rate assumes divergence is monotone in the learning rate (bisection "
            "probes only the bracket's midpoints) and depends on the run's length (`mlp.steps`): a longer run can "
            "diverge at a smaller rate. 4/lambda0 is the catapult model's upper bound (Lewkowycz et al.), "
            "derived for a wide two-layer linear network with a squared loss; the network here is a narrow ReLU "
            "network, so the comparison tests how far that bound carries, not the derivation.",
            f"The network results rest on {q(s, 'mlp.seeds', 'd')} seeds per learning rate: an exact two-sample test "
            "cannot go below the smallest attainable p quoted above, whatever the data.",
        ],
    )
