"""Report section: mdn."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


def mdn(q: Quotes) -> Section:
    s = "mdn"
    flag = {k: bool(v) for k, v in q.raw(s, "flags").items()}
    a = "asker"
    evidence = [
        f"The asker's path (`probs_log`: TFP's `Categorical(probs=)` takes the log of the softmax weights, no clamp) "
        f"on clean data in [0, 1]: {q(s, f'{a}.nan_trials', 'd')} of {q(s, f'{a}.trials', 'd')} trials had a NaN, "
        f"{q(s, f'{a}.finite_loss_nan_grad_trials', 'd')} of them with a finite loss and a NaN gradient; "
        f"{q(s, f'{a}.zero_weight_trials', 'd')} trials ever had a mixing weight of exactly 0. The largest logit gap "
        f"reached was {q(s, f'{a}.max_logit_gap', '.1f')} (the long trial: "
        f"{q(s, f'{a}.by_condition.long.max_logit_gap', '.1f')}); a float32 softmax weight is exactly 0 only above a "
        f"gap of {q(s, 'independent.underflow_gap', '.2f')}.",
        f"With corrupted targets (the `outliers` condition): {q(s, f'{a}.by_condition.outliers.nan_trials', 'd')} of "
        f"{q(s, f'{a}.by_condition.outliers.trials', 'd')}.",
        "Where it does fail (constructed, not the asker's setup: a head whose first mixing weight starts exactly 0): "
        f"`probs_log` {q(s, 'compare.saturated.probs_log.nan_trials', 'd')} of "
        f"{q(s, 'compare.saturated.probs_log.trials', 'd')} trials, "
        f"{q(s, 'compare.saturated.probs_log.finite_loss_nan_grad_trials', 'd')} of them with a finite loss and a "
        f"NaN gradient; torch's `Categorical(probs=)` {q(s, 'compare.saturated.probs_torch.nan_trials', 'd')} and "
        f"`logits` {q(s, 'compare.saturated.logits.nan_trials', 'd')} of "
        f"{q(s, 'compare.saturated.logits.trials', 'd')} each.",
        f"Formulations on the same seeds (baseline): `probs_log` {q(s, 'compare.probs_log.nan_trials', 'd')} of "
        f"{q(s, 'compare.probs_log.trials', 'd')}, torch's `Categorical(probs=)` "
        f"{q(s, 'compare.probs_torch.nan_trials', 'd')} of {q(s, 'compare.probs_torch.trials', 'd')}, `logits` "
        f"{q(s, 'compare.logits.nan_trials', 'd')} of {q(s, 'compare.logits.trials', 'd')} NaN trials"
        + (": tied, not ranked." if flag["formulations_tied"] else "."),
        f"Learning rate 0 (asker's path): {q(s, f'{a}.lr0.nan_trials', 'd')} of {q(s, f'{a}.lr0.trials', 'd')} "
        f"trials had a NaN. By cause: a non-finite input row in {q(s, f'{a}.lr0.causes.nonfinite_input', 'd')} (of "
        f"the {q(s, f'{a}.lr0.nonfinite_input_positive_scale_trials', 'd')} trials with such a row and a positive "
        f"scale; the first non-finite step was the first batch holding the row in "
        f"{q(s, f'{a}.lr0.nonfinite_input_first_at_probe_batch', 'd')}, between step "
        f"{q(s, f'{a}.lr0.nonfinite_input_first_step_min', 'd')} and "
        f"{q(s, f'{a}.lr0.nonfinite_input_first_step_max', 'd')} depending on the seed's shuffle), a ReLU scale of "
        f"exactly 0 in {q(s, f'{a}.lr0.causes.zero_scale', 'd')} (of {q(s, f'{a}.lr0.zero_scale_trials', 'd')} ReLU "
        f"trials, at step 0); clean inputs with a positive scale: "
        f"{q(s, f'{a}.lr0.clean_nonzero_scale_nan_trials', 'd')} NaN trials. In "
        f"{q(s, f'{a}.lr0.weights_nonfinite_same_step', 'd')} of {q(s, f'{a}.lr0.nan_trials', 'd')} the weights "
        "were NaN right after the first bad step (NaN gradient times a zero learning rate is NaN).",
        f"BatchNorm at learning rate 0: the evaluation-mode validation NLL changed in "
        f"{q(s, f'{a}.lr0.bn_val_changed_trials', 'd')} of {q(s, f'{a}.lr0.bn_clean_trials', 'd')} clean trials "
        f"(without BatchNorm: {q(s, f'{a}.lr0.nobn_val_changed_trials', 'd')} of "
        f"{q(s, f'{a}.lr0.nobn_clean_trials', 'd')}); running statistics were NaN at the end of "
        f"{q(s, f'{a}.lr0.running_stats_nonfinite_trials', 'd')} trials.",
        "The PyTorch port of the asker's loss "
        + ("agrees" if flag["referee_agrees"] else "does not agree")
        + f" with the asker's literal TFP code (tensorflow {q(s, 'referee.tensorflow')}, tensorflow-probability "
        f"{q(s, 'referee.tensorflow_probability')}) on loss and gradient, NaN included; torch's own "
        f"`Categorical(probs=)` gives a finite gradient where TFP's is NaN.",
        f"The stable loss (logits, softplus scale) over {q(s, 'stable.seeds', 'd')} seeds: validation NLL "
        f"{q.ci(s, 'stable.val_nll_mean', '.3f', prefix='stable.val_nll')} nats vs a single Gaussian "
        f"{q.ci(s, 'stable.single_gaussian_val_nll_mean', '.3f', prefix='stable.single_gaussian_val_nll')} and the "
        f"marginal {q(s, 'stable.marginal_val_nll', '.3f')}; exact permutation p = "
        f"{q(s, 'stable.vs_single_gaussian.permutation_p', '.2g')} (smallest attainable "
        f"{q(s, 'stable.vs_single_gaussian.p_min', '.2g')}); {q(s, 'stable.nonfinite_events', 'd')} non-finite events.",
    ]
    clean_verdict = (
        "On clean data the asker's own path did produce NaN in some trials."
        if flag["asker_nan_on_clean_data"]
        else "On clean data the asker's own path never produced NaN here: training did not push any mixing weight "
        "to an exact 0."
    ) + (
        " Built with one weight at exactly 0, it failed in every trial (finite loss, NaN gradient), while torch's "
        "clamped probabilities and the logits path trained on."
        if flag["saturated_head_probs_log_all_nan"] and flag["saturated_head_others_finite"]
        else ""
    )
    answer = (
        "TFP's `Categorical(probs=alpha)` takes `log(alpha)`; once a softmax weight underflows to exactly 0 the loss "
        "stays finite but its gradient is NaN, and any optimizer step, even at learning rate 0, turns the weights "
        "NaN. "
        + clean_verdict
        + (
            " At learning rate 0 the NaN came from what the weights cannot cause: "
            + (
                "a non-finite input row (it fails at the step where that row's batch comes, which varies with the "
                "shuffle)"
                if flag["lr0_nan_with_nonfinite_input"]
                else "no non-finite input did it"
            )
            + (" or a scale that can be exactly 0" if flag["lr0_nan_with_zero_scale"] else "")
            + (
                "; BatchNorm's running statistics change even at learning rate 0 and keep a bad batch's NaN. "
                if flag["bn_running_stats_move_at_lr0"]
                else ". "
            )
        )
        + "Pass logits (or the safe `nll(probs=...)`), check inputs, and use a softplus scale. "
        + (
            "The stable loss learns the multimodal density, clearly better than a single Gaussian and the marginal."
            if flag["stable_learns"]
            else "The stable loss was not shown to beat the baselines on this run."
        )
    )
    return Section(
        stage=s,
        title="Why a mixture density network's NLL turns NaN, even at learning rate 0",
        question="Why does an MDN's negative log-likelihood (TFP `MixtureSameFamily(Categorical(probs=alpha), "
        "Normal(mu, sigma))`) turn NaN after a varying number of steps, even with learning rate 0, other "
        "optimisers, clipping and BatchNorm, on inputs scaled to [0, 1]?",
        answer=answer,
        evidence=evidence,
        figures=[
            "figures/logit_gap.png",
            "figures/lr0_first_nonfinite.png",
            "figures/conditional_densities.png",
            "figures/stable_val_nll.png",
        ],
        caveats=[
            "The asker's scale activation, network and data are unknown: softplus, a tanh MLP and Bishop's inverse "
            "problem are assumptions; a ReLU scale is tested at learning rate 0 only.",
            "Training length is bounded by the stage's time budget; the long trial shows how the largest logit gap "
            "grows with steps, not where it ends.",
            "The TFP referee ran once by hand in a throwaway environment "
            "(`src/gradlab/studies/mdn/tfp_referee/asker_tfp.py`); the stage compares against its recorded output.",
        ],
    )
