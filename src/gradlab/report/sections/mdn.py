"""Report section: mdn."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


def mdn(q: Quotes) -> Section:
    s = "mdn"
    m = q.metrics(s)
    evidence = [
        f"{q(s, 'trials', 'd')} trials ({q(s, 'design.configurations', 'd')} configurations x "
        f"{q(s, 'design.seeds', 'd')} seeds, {q(s, 'design.fraction')} fraction over the secondary factors); "
        f"{q(s, 'diverged', 'd')} diverged, none stopped the stage.",
        f"Stable formulation ({q(s, 'stable.definition')}): {q(s, 'stable.failures', 'd')} failures in "
        f"{q(s, 'stable.trials', 'd')} trials.",
        f"Scale through ReLU: {q(s, 'causes.zero_scale_relu.failures', 'd')} of "
        f"{q(s, 'causes.zero_scale_relu.trials', 'd')} trials failed, all by step "
        f"{q(s, 'causes.zero_scale_relu.first_step_max', 'd')} (a scale of exactly 0).",
        "Probability-space mixture with a non-ReLU scale: failure rate "
        f"{q(s, 'causes.probs.float32.rate', '.0%')} in float32 (95 % CI "
        f"{q(s, 'causes.probs.float32.ci_low', '.0%')} to {q(s, 'causes.probs.float32.ci_high', '.0%')}) and "
        f"{q(s, 'causes.probs.float64.rate', '.0%')} in float64 (95 % CI {q(s, 'causes.probs.float64.ci_low', '.0%')}"
        f" to {q(s, 'causes.probs.float64.ci_high', '.0%')}); the first non-finite quantity was the mixture "
        f"log-density in {q(s, 'causes.probs_first_nonfinite_what.mixture_logdensity', 'd')} of them.",
        f"Learning rate 0: {q(s, 'lr0.diverged', 'd')} of {q(s, 'lr0.trials', 'd')} trials diverged; in "
        f"{q(s, 'lr0.weights_unmoved_before_first_nonfinite', 'd')} of them the weights had not moved before the "
        f"first non-finite value, and in {q(s, 'lr0.weights_nonfinite_same_step', 'd')} they were non-finite right "
        "after that step's update; "
        f"{q(s, 'lr0.trials_with_nonfinite_batch_on_fixed_weights', 'd')} had a batch that is non-finite on the "
        f"fixed initial weights, and {q(s, 'lr0.first_in_epoch_one_at_first_probe_batch', 'd')} failed exactly at "
        "the first such batch.",
    ]
    for factor in m.get("strongest_factors", []):
        levels = {k: v for k, v in m["failure_rate"][factor].items() if isinstance(v, dict)}
        rates = ", ".join(f"{lvl} {q(s, f'failure_rate.{factor}.{lvl}.rate', '.0%')}" for lvl in levels)
        evidence.append(
            f"Failure rate by `{factor}`: {rates} (chi-square p = {q(s, f'failure_rate.{factor}.chi2_p', '.2g')})."
        )
    answer = (
        "The NaN comes from the formulation, not the optimiser: a scale through ReLU can be exactly 0, and a mixture "
        "computed in probability space underflows to log(0) = -inf on a target far from every component. At "
        "learning rate 0 the weights never move, yet one such batch gives a NaN gradient, and lr x NaN = NaN "
        f"poisons the weights for good ({q(s, 'lr0.weights_nonfinite', 'd')} of {q(s, 'lr0.diverged', 'd')} lr=0 "
        "failures). Computing in log space (log-softmax weights, logsumexp) with a strictly positive scale "
        f"(softplus or ELU+1) and targets of shape [B] had {q(s, 'stable.failures', 'd')} failures in "
        f"{q(s, 'stable.trials', 'd')} trials."
    )
    return Section(
        stage=s,
        title="Why a mixture density network's NLL turns NaN, even at learning rate 0",
        question="Why does an MDN's negative log-likelihood turn NaN after a varying number of steps, even with "
        "learning rate 0, other optimisers, clipping and BatchNorm?",
        answer=answer,
        evidence=evidence,
        figures=["figures/failure_rates.png", "figures/failure_heatmap.png", "figures/nll_curves.png"],
        caveats=[
            "The data-dependent failures need targets far from every component: the defaults corrupt a few "
            "targets (mdn.data outliers), as real data does.",
            "The [B,1] broadcast target failed "
            f"{q(s, 'causes.target_shape_in_log_space.broadcast.failures', 'd')} times in "
            f"{q(s, 'causes.target_shape_in_log_space.broadcast.trials', 'd')} log-space trials, but it scores "
            "every target against every row's mixture, so it learns the wrong objective.",
            "Optimiser, clipping, dtype and BatchNorm run in a documented half fraction of the full factorial.",
        ],
    )
