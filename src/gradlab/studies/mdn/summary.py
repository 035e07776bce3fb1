"""summary.md of the mdn stage: the answer in a few sentences, every number and verdict read from the metrics."""

from __future__ import annotations

from gradlab.studies.mdn.config import MdnParams
from gradlab.studies.mdn.trial import FACTORS


def _pct(s: dict) -> str:
    return (
        f"{s['failures']}/{s['trials']} = {100 * s['rate']:.0f} % "
        f"(95 % CI {100 * s['ci_low']:.0f}-{100 * s['ci_high']:.0f} %)"
    )


def summary(m: dict, rows: list[dict], p: MdnParams) -> str:
    st, lr0, fr, c = m["stable"], m["lr0"], m["failure_rate"], m["causes"]
    worst, best = m["worst"], m["best"]
    some, every, none = (
        lr0["nonfinite_on_some_batches"],
        lr0["nonfinite_on_every_batch"],
        lr0["no_nonfinite_batch_in_first_epoch"],
    )
    shape = c["target_shape_in_log_space"]

    def fmt(x, spec=".3f"):
        return "n/a" if x is None else format(x, spec)

    lines = [
        "# mdn: why the mixture-density NLL turns NaN, even at lr 0",
        "",
        f"{m['trials']} trials ({m['design']['configurations']} configurations x {p.seeds} seeds; mixture, sigma, "
        f"target_shape and lr crossed in full, optimizer/grad_clip/dtype/batchnorm in a {p.design.fraction} fraction), "
        f"{p.train.steps} steps of batch {p.train.batch_size} on Bishop's inverse problem "
        f"({p.data.n_train} training points, {round(p.data.outlier_fraction * p.data.n_train)} of them with a "
        f"corrupted target up to {p.data.outlier_scale:g} target ranges away). {m['diverged']} trials diverged "
        f"(a non-finite loss, gradient or weight); none crashed the stage.",
        "",
        "## Causes, with numbers",
        "",
        f"1. **A scale that can be exactly 0** (`relu`): {_pct(c['zero_scale_relu'])} diverged, all by step "
        f"{c['zero_scale_relu']['first_step_max']}, in both formulations: `(y - mu) / 0` and `log 0` give "
        f"`inf - inf = NaN` in the component log-density (log space) or `0 / 0` in the density (probability space).",
        "2. **Densities computed in probability space** (`probs`, non-relu scales): "
        + ", ".join(f"{_pct(v)} in {k}" for k, v in c["probs"].items())
        + ". `exp(-z^2/2)` is exactly 0 once |z| > ~14.4 "
        "(float32) or ~38.6 (float64); when that holds for every component of a target, `log(0) = -inf` "
        "(first non-finite: `mixture_logdensity`); just before that, a sum of denormals keeps the log finite but "
        "its gradient `1/s` overflows (first non-finite: a `grad`). First non-finite quantities: "
        + ", ".join(f"`{k}` {v}" for k, v in c["probs_first_nonfinite_what"].items())
        + ".",
        "3. **The scale activation, in log space**: failures of the `logits` formulation with "
        + ", ".join(f"`{k}` {_pct(v)}" for k, v in c["logits_nonzero_scale"].items())
        + (
            ". The `exp` failures: "
            + "; ".join(
                f"`{e['variant']}` seed {e['seed']} at step {e['step']} (`{e['what']}`)"
                for e in c["logits_exp_failures"]
            )
            + f" -- in {sum(e['loss_finite'] for e in c['logits_exp_failures'])} of them the loss stayed finite while"
            " a gradient overflowed; `exp` puts no floor under the scale."
            if c["logits_exp_failures"]
            else "."
        ),
        f"4. **The [B, 1] target** (`broadcast`) scores every target against every row's mixture -- a different "
        f"objective. In log space (logits + softplus/elu1) it failed in {_pct(shape['broadcast'])} trials vs "
        f"{_pct(shape['correct'])} with `correct` -- not a NaN cause there -- but it learns the wrong thing: "
        f"validation NLL (correct pairing, trained trials) best {fmt(shape['broadcast']['val_nll_trained_min'])}, "
        f"median {fmt(shape['broadcast']['val_nll_trained_median'])} with `broadcast` vs best "
        f"{fmt(shape['correct']['val_nll_trained_min'])}, median {fmt(shape['correct']['val_nll_trained_median'])} "
        f"with `correct` (means {fmt(shape['broadcast']['val_nll_trained_mean'])} vs "
        f"{fmt(shape['correct']['val_nll_trained_mean'])}, Welch p = {fmt(shape['welch_p'], '.2g')}); a model of "
        f"the marginal p(y) = U(0, 1) scores 0 nats, and `broadcast` cannot do much better, because the mean over "
        f"all B x B pairs rewards predicting every row's y for every x. In probability space (non-relu scales): "
        f"{_pct(c['probs_by_target_shape']['broadcast'])} failures with `broadcast` vs "
        f"{_pct(c['probs_by_target_shape']['correct'])} with `correct`.",
        "",
        "Failure rate per level of every factor (all other factors pooled; chi-square test of independence):",
        "",
    ]
    for f in FACTORS:
        parts = "; ".join(f"`{lvl}` {_pct(fr[f][lvl])}" for lvl in fr[f] if lvl not in ("chi2_p", "spread"))
        lines.append(f"- **{f}** (p = {fr[f]['chi2_p']:.2g}): {parts}")
    lines += [
        "",
        f"Strongest factors: {', '.join(m['strongest_factors'])}. Worst formulation: {worst['mixture']} + "
        f"{worst['sigma']} + {worst['target_shape']} ({worst['failures']}/{worst['trials']} diverged). Best: "
        f"{best['mixture']} + {best['sigma']} + {best['target_shape']} ({best['failures']}/{best['trials']}, "
        f"validation NLL {fmt(best['val_nll_trained_mean'])} when trained).",
        "",
        "## lr = 0",
        "",
        f"{lr0['diverged']} of {lr0['trials']} lr-0 trials diverged. In {lr0['weights_unmoved_before_first_nonfinite']}"
        f" of them the weights had not moved at all before the first non-finite value (a finite gradient times 0 "
        f"changes nothing), so the trigger is the batch itself, on fixed weights:",
        "",
        f"- {every['trials']} trials are non-finite on **every** batch of an epoch on the fixed initial weights "
        f"({', '.join(f'`{k}` {v}' for k, v in every['first_nonfinite_what'].items()) or 'none'}): the weights, "
        f"not the data (a relu scale of 0 in every batch), fail at step 0.",
        f"- {some['trials']} trials are non-finite on **some** batches only (median "
        f"{100 * (some['batch_fraction_median'] or 0):.0f} % of an epoch's batches; "
        f"{', '.join(f'`{k}` {v}' for k, v in some['first_nonfinite_what'].items()) or 'none'}): a **data-dependent "
        f"underflow** -- a batch holding a target the float32 density cannot represent. Their first non-finite step "
        f"ranges from {some['first_step_min']} to {some['first_step_max']} ({some['distinct_first_steps']} distinct "
        f"values over {p.seeds} seeds, i.e. batch orders): it is wherever that batch falls in the shuffled order, "
        f"hence 'after a varying number of steps'.",
        f"- {none['trials']} trials had no non-finite batch in the first epoch on fixed weights and diverged on a "
        f"later epoch's batch ({', '.join(f'`{k}` {v}' for k, v in none['first_nonfinite_what'].items()) or 'none'};"
        f" {none['batchnorm']} of them with BatchNorm, where a row's output depends on the rest of its batch).",
        f"- Of the {lr0['first_in_epoch_one']} trials whose first non-finite value came in the first epoch, "
        f"{lr0['first_in_epoch_one_at_first_probe_batch']} came exactly at the first batch the probe flags.",
        "",
        f"What makes it a *collapse*: in {lr0['weights_nonfinite_same_step']} of {lr0['diverged']} the weights were "
        f"non-finite right after that step's optimizer update -- the NaN gradient times lr 0 is NaN (SGD "
        f"`p - 0 * NaN`, Adam `0 * m / (sqrt(v) + eps)`, and gradient clipping divides by a NaN norm) -- so every "
        f"later step is NaN too, although in the data-dependent cases most batches are finite on the fixed weights. "
        f"So the questioner's lr-0 observation needs both: a data-dependent non-finite loss or gradient on some "
        f"batch, made permanent by NaN x 0 in the optimizer step.",
        "",
        "## Recommendation",
        "",
        f"Compute the NLL in log space -- `log_softmax(logits)` plus the Normal log-density, reduced with `logsumexp` "
        f"(`gradlab.studies.mdn.nll`, equal to `-MixtureSameFamily(Categorical(logits=...), Normal(...)).log_prob(y)`) "
        f"-- with a scale bounded away from 0 (softplus or ELU + 1, plus eps = {p.model.sigma_eps:g}) and a target of "
        f"shape [B]. This **stable formulation** ({st['definition']}) had **{st['failures']} failures in "
        f"{st['trials']} trials**, validation NLL {fmt(st['val_nll_trained_mean'])} (95 % CI "
        f"{fmt(st['val_nll_trained_ci_low'])} to {fmt(st['val_nll_trained_ci_high'])}) for trained trials.",
        "",
        "Figures: `figures/failure_rates.png`, `figures/failure_heatmap.png`, `figures/nll_curves.png`, "
        "`figures/first_nonfinite_step.png`; every trial in `trials.csv`, every formulation in `formulations.csv`.",
        "",
    ]
    return "\n".join(lines)
