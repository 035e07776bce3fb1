"""Report section: mdn."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.section import Section
from gradlab.stats import MIN_CI_N, verdict_word

# observations (booleans, the same on every run of the code) and verdicts (+1 / 0 / -1 from an exact test)
VERDICTS = ("stable_beats_single_gaussian", "stable_beats_marginal", "stable_below_zero", "stable_learns")


def _signed(v: int) -> str:
    return f"{v:+d}" if v else "0"


def _per_seed(q: Quotes, s: str, key: str) -> str:
    """The per-seed values of a list in stats.json, each quoted."""
    return ", ".join(q(s, f"{key}.{i}", ".3f") for i in range(len(q.raw(s, key))))


def _mean(q: Quotes, s: str, key: str, prefix: str, per_seed: str) -> str:
    """``mean (95 % CI low to high)`` from 10 seeds up, else ``mean (per seed: ...)``."""
    if q.raw(s, prefix + "_ci_low") is None:
        return f"{q(s, key, '.3f')} (per seed: {_per_seed(q, s, per_seed)})"
    return q.ci(s, key, ".3f", prefix=prefix)


def _formulations(q: Quotes, s: str, flag: dict) -> str:
    """Each formulation against probs_log on the shared seeds: exact paired test, its p_min, the verdict."""
    parts = []
    for m, g in q.metrics(s)["compare"].items():
        if not isinstance(g, dict) or "fewer_nan_than_probs_log" not in g:
            continue
        word = verdict_word(flag[f"{m}_fewer_nan"], "fewer NaN", "more NaN")
        parts.append(
            f"`{m}` against `probs_log` on {q(s, f'compare.{m}.pairs', 'd')} shared seeds: exact paired sign-flip "
            f"(McNemar) p = {q(s, f'compare.{m}.paired_p_vs_probs_log', '.3g')} (smallest attainable "
            f"{q(s, f'compare.{m}.paired_p_min_vs_probs_log', '.3g')}): {word} "
            f"(`flags.{m}_fewer_nan` = {_signed(flag[f'{m}_fewer_nan'])})"
        )
    return "; ".join(parts)


def mdn(q: Quotes) -> Section:
    s = "mdn"
    flag = {k: (int(v) if k in VERDICTS or k.endswith("_fewer_nan") else bool(v)) for k, v in q.raw(s, "flags").items()}
    st = "stable"
    single = (f"{st}.single_gaussian_val_nll", f"{st}.single_gaussian_val_nll_per_seed")
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
        + (" (the rates are tied: not ranked). " if q.raw(s, "compare.tied") else ". ")
        + _formulations(q, s, flag)
        + ".",
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
        f"The stable loss (logits, softplus scale) over {q(s, f'{st}.seeds', 'd')} seeds: validation NLL "
        f"{_mean(q, s, f'{st}.val_nll_mean', f'{st}.val_nll', f'{st}.val_nll_per_seed')} nats vs a single Gaussian "
        f"on the same seeds {_mean(q, s, f'{st}.single_gaussian_val_nll_mean', *single)}, the marginal "
        f"{q(s, f'{st}.marginal_val_nll', '.3f')} and the uniform 0; "
        f"{q(s, f'{st}.nonfinite_events', 'd')} non-finite events.",
        _stable_tests(q, s, flag),
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
        (_search_lead(q) if q.has("mdn_search") else "")
        + "TFP's `Categorical(probs=alpha)` takes `log(alpha)`; once a softmax weight underflows to exactly 0 the loss "
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
        + {
            1: "The stable loss learns the multimodal density: below a single Gaussian, the marginal and the uniform "
            "density, each by an exact test over the seeds.",
            -1: "The stable loss did not learn the density on this run (above a baseline, or a non-finite event).",
        }.get(flag["stable_learns"], "Whether the stable loss beats every baseline is inconclusive on this run.")
    )
    if q.has("mdn_search"):
        evidence = _search_evidence(q) + evidence
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
            "Training length is a parameter (a count of steps, `asker.steps` and `asker.long_steps`); the long trial "
            "shows how the largest logit gap grows with steps, not where it ends.",
            "The TFP referee ran once by hand in a throwaway environment "
            "(`src/gradlab/studies/mdn/tfp_referee/asker_tfp.py`); the stage compares against its recorded output.",
        ],
    )


def _stable_tests(q: Quotes, s: str, flag: dict) -> str:
    """The stable loss's three comparisons, each an exact sign-flip test with its p_min and verdict flag."""
    st = "stable"
    n = len(q.raw(s, f"{st}.val_nll_per_seed"))
    pairs = q.raw(s, f"{st}.vs_single_gaussian.pairs")
    if q.raw(s, f"{st}.vs_single_gaussian.diff_ci_low") is None:
        diff = f"per seed {_per_seed(q, s, f'{st}.vs_single_gaussian.diff_per_seed')}"
    else:
        diff = (
            f"95 % CI {q(s, f'{st}.vs_single_gaussian.diff_ci_low', '.3f')} to "
            f"{q(s, f'{st}.vs_single_gaussian.diff_ci_high', '.3f')}"
        )

    def test(key: str) -> str:
        return (
            f"exact sign-flip p = {q(s, f'{st}.{key}.sign_flip_p', '.3g')}, smallest attainable "
            f"{q(s, f'{st}.{key}.sign_flip_p_min', '.3g')}"
        )

    few = " (too few seeds for a 95 % CI: the per-seed values instead)" if n < MIN_CI_N else ""
    return (
        f"Paired by seed (same data and batch order), the stable loss minus the single Gaussian: "
        f"{q(s, f'{st}.vs_single_gaussian.diff_mean', '.3f')} nats ({diff}), lower on "
        f"{q(s, f'{st}.vs_single_gaussian.seeds_better', 'd')} of {pairs} seeds, {test('vs_single_gaussian')}: "
        f"{verdict_word(flag['stable_beats_single_gaussian'], 'below it', 'above it')} "
        f"(`flags.stable_beats_single_gaussian` = {_signed(flag['stable_beats_single_gaussian'])}). Against the "
        f"marginal, below on {q(s, f'{st}.vs_marginal.seeds_below', 'd')} of {n} seeds, {test('vs_marginal')}: "
        f"{verdict_word(flag['stable_beats_marginal'], 'below it', 'above it')} "
        f"(`flags.stable_beats_marginal` = {_signed(flag['stable_beats_marginal'])}). Against the uniform "
        f"density (0 nats), below on {q(s, f'{st}.vs_uniform.seeds_below', 'd')} of {n} seeds, "
        f"{test('vs_uniform')}: {verdict_word(flag['stable_below_zero'], 'below it', 'above it')} "
        f"(`flags.stable_below_zero` = {_signed(flag['stable_below_zero'])}). `flags.stable_learns` = "
        f"{_signed(flag['stable_learns'])}{few}."
    )


def _outcome_words(name: str) -> str:
    return "stayed finite" if name == "finite" else f"turned NaN from `{name}`"


def _search_lead(q: Quotes) -> str:
    """The answer's first sentence: what the search saw, in order of how often it happened (results/mdn_search)."""
    s = "mdn_search"
    m = q.metrics(s)
    parts = [
        f"{q(s, f'outcomes.{o}.trials', 'd')} of {q(s, 'trials', 'd')} {_outcome_words(o)}" for o in m["outcome_order"]
    ]
    return (
        f"Searched for where the asker's NaN could occur (their loss on clean data in [0, 1], "
        f"{q(s, 'steps', 'd')} steps, K up to {max(m['by']['components'], key=int)}, three scale functions, two "
        f"learning rates, two data sets, denormals flushed as TensorFlow does): "
        + "; ".join(parts)
        + f". The largest logit gap reached was {q(s, 'max_logit_gap', '.1f')}, against "
        f"{q(s, 'thresholds.torch_flushed', '.1f')} for a weight of exactly 0 with denormals flushed "
        f"({q(s, 'thresholds.torch', '.1f')} without). "
    )


def _search_evidence(q: Quotes) -> list[str]:
    s = "mdn_search"
    m = q.metrics(s)
    out = []
    for o in m["outcome_order"]:
        out.append(
            f"`mdn_search`: {q(s, f'outcomes.{o}.trials', 'd')} of {q(s, 'trials', 'd')} trials {_outcome_words(o)} "
            f"({q(s, f'outcomes.{o}.share', '.2f')}, 95 % Wilson {q(s, f'outcomes.{o}.ci_low', '.2f')} to "
            f"{q(s, f'outcomes.{o}.ci_high', '.2f')})."
        )
    tf = m["thresholds"].get("tensorflow")
    out.append(
        f"`mdn_search`: a float32 softmax weight is exactly 0 from a logit gap of {q(s, 'thresholds.torch', '.2f')} "
        f"in torch, {q(s, 'thresholds.torch_flushed', '.2f')} with denormals flushed"
        + (f" and {q(s, 'thresholds.tensorflow', '.2f')} in TensorFlow itself" if tf is not None else "")
        + f"; {q(s, 'gap_over_flushed_threshold_trials', 'd')} trials reached the flushed threshold, "
        f"{q(s, 'zero_weight_trials', 'd')} had a weight of exactly 0; the smallest scale was "
        f"{q(s, 'min_scale', '.3g')}."
    )
    for dataset, b in m["by"]["dataset"].items():
        out.append(
            f"`mdn_search` on `{dataset}`: {b['nan_trials']} of {b['trials']} trials NaN; largest logit gap "
            f"{q(s, f'by.dataset.{dataset}.max_logit_gap', '.1f')}, smallest scale "
            f"{q(s, f'by.dataset.{dataset}.min_scale', '.3g')}."
        )
    return out
