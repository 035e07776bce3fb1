"""One section per question: the question, the answer, the evidence, the key figure, the caveats.

Each function receives :class:`~gradlab.report.quotes.Quotes` and quotes every
number from the study's metrics.json; a missing stage or key makes the section
say so instead of inventing a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gradlab.report.quotes import Quotes


@dataclass
class Section:
    stage: str
    title: str
    question: str
    answer: str
    evidence: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # paths relative to results/<stage>/
    caveats: list[str] = field(default_factory=list)


def gd(q: Quotes) -> Section:
    s = "gd"
    rules = q.metrics(s)["rules"]
    evidence = [
        f"Least squares: lambda_max = {q(s, 'quadratic.lambda_max', '.5g')}, so theory puts the divergence threshold "
        f"at 2/lambda_max = {q(s, 'quadratic.lr_crit_theory', '.5g')}; bisection on real runs measured "
        f"{q(s, 'quadratic.lr_crit_empirical', '.5g')} (relative gap {q(s, 'quadratic.lr_crit_rel_error', '.2%')}).",
    ]
    for rule in rules:
        evidence.append(
            f"Rule `{rule}`: loss {q(s, f'rules.{rule}.initial_loss', '.4g')} -> "
            f"{q(s, f'rules.{rule}.final_loss', '.4g')} (descended: {q(s, f'rules.{rule}.descended')})."
        )
    evidence.append(
        f"ReLU network: best learning rate {q(s, 'mlp.best_lr', '.3g')} with final loss "
        f"{q(s, 'mlp.best_final_loss_mean', '.3g')} (95 % CI {q(s, 'mlp.best_final_loss_ci_low', '.3g')} to "
        f"{q(s, 'mlp.best_final_loss_ci_high', '.3g')}, {q(s, 'mlp.seeds', 'd')} seeds)."
    )
    for key in q.metrics(s).get("sharpness", {}):
        evidence.append(
            f"Sharpness at lr = {q(s, f'sharpness.{key}.lr', 'g')} settled at "
            f"{q(s, f'sharpness.{key}.settled_over_two_over_lr', '.2f')} x 2/lr (edge of stability)."
        )
    answer = (
        f"`w - step` is legal (broadcasting) but ignores the loss: on least squares it took the loss from "
        f"{q(s, 'rules.scalar.initial_loss', '.3g')} to {q(s, 'rules.scalar.final_loss', '.3g')}, while "
        f"`w - step * gradient` took it to {q(s, 'rules.gradient.final_loss', '.3g')}. Gradient descent itself "
        f"diverges above 2/lambda_max: predicted {q(s, 'quadratic.lr_crit_theory', '.4g')}, measured "
        f"{q(s, 'quadratic.lr_crit_empirical', '.4g')}."
    )
    return Section(
        stage=s,
        title="Gradient descent: why step x gradient, and which steps diverge",
        question="Why does gradient descent subtract step * gradient and not just step? "
        "What learning rate is too large?",
        answer=answer,
        evidence=evidence,
        figures=["figures/rules_loss.png", "figures/lr_sweep.png", "figures/sharpness.png"],
        caveats=[
            "The threshold 2/lambda_max is exact for a quadratic; on the network it holds only locally, which is what "
            "the sharpness curves show.",
            "The random rule's outcome depends on the seed; one seed is shown.",
        ],
    )


def spearman(q: Quotes) -> Section:
    s = "spearman"
    methods = q.metrics(s)["methods"]
    evidence = []
    for method, sizes in methods.items():
        for size in sizes:
            key = f"methods.{method}.{size}"
            reach = q.raw(s, f"{key}.median_evals_to_099")
            evals = (
                f"median {q(s, f'{key}.median_evals_to_099', '.4g')} evaluations to reach the target"
                if reach
                else (f"never reached the target in {q(s, f'{key}.max_evaluations', 'd')} evaluations")
            )
            evidence.append(
                f"`{method}`, n = {size[1:]}: median final spearmanr {q(s, f'{key}.median_final_spearman', '.4f')} "
                f"(95 % CI of the mean {q(s, f'{key}.final_spearman_ci_low', '.3f')} to "
                f"{q(s, f'{key}.final_spearman_ci_high', '.3f')}, {q(s, f'{key}.seeds', 'd')} seeds); {evals}."
            )
    sizes = sorted(methods["soft_rank"], key=lambda k: int(k[1:]))
    small, large = sizes[0], sizes[-1]
    ratio_key = f"acceptance.hill_climb_over_soft_rank_evals_{small}"
    bound = "at least " if q.raw(s, "acceptance.hill_climb_ratio_is_lower_bound") else ""
    answer = (
        "Yes, through a differentiable stand-in for the ranks: gradient ascent on the Pearson correlation of soft "
        f"ranks reached the target spearmanr in a median of "
        f"{q(s, f'methods.soft_rank.{small}.median_evals_to_099', '.3g')} evaluations at n = {small[1:]}, "
        f"{bound}{q(s, ratio_key, '.4g')}x fewer than the questioner's "
        f"hill climb, and at n = {large[1:]} it ended at a median spearmanr of "
        f"{q(s, f'acceptance.soft_rank_median_final_spearman_{large}', '.4f')}."
    )
    return Section(
        stage=s,
        title="Optimising matrices for a Spearman rank correlation",
        question="Can PyTorch adjust matrices so that a Spearman rank correlation computed from them reaches 1, "
        "though ranks are not differentiable?",
        answer=answer,
        evidence=evidence,
        figures=["figures/spearman_vs_evals.png", "figures/cost_vs_n.png"],
        caveats=[
            "With the default derivation list2 is linear in freq_m, so even the plain Pearson surrogate succeeds; "
            "soft ranks matter when the lists relate non-linearly.",
            "The target is spearmanr >= spearman.target of params.yaml; the hill climb's ratio is a lower bound "
            "when it never reaches it within its budget.",
            "Pairs that cannot finish in the budget (hill climbs and Nelder-Mead at large n) are skipped; "
            "see results/spearman/skipped.csv.",
        ],
    )


def input_grad(q: Quotes) -> Section:
    s = "input_grad"
    evidence = [
        f"`{m}` vs one backward per sample (float64): max abs difference {q(s, f'agreement.{m}.max_abs_diff', '.2g')}."
        for m in q.metrics(s)["agreement"]
        if m != "loop"
    ]
    evidence += [
        f"Central finite differences: max abs difference {q(s, 'fd.max_abs_diff', '.2g')}.",
        f"BatchNorm in training mode: the sum trick is off by up to "
        f"{q(s, 'batchnorm.train_sum_trick_max_abs_diff', '.3g')} (true gradients reach "
        f"{q(s, 'batchnorm.train_true_grad_max_abs', '.3g')}); it equals the column sums of the batch Jacobian to "
        f"{q(s, 'batchnorm.train_sum_trick_vs_jacobian_column_sums_max_abs_diff', '.2g')}, i.e. "
        "it returns sum_j dh(x_j)/dx_i. vmap over per-sample lanes gets the true gradient to "
        f"{q(s, 'batchnorm.train_vmap_max_abs_diff', '.2g')}.",
        f"BatchNorm in eval mode: the sum trick is off by {q(s, 'batchnorm.eval_sum_trick_max_abs_diff', '.2g')}.",
        f"Sobolev training ({q(s, 'sobolev.seeds', 'd')} seeds): held-out gradient RMSE "
        f"{q.ci(s, 'sobolev.value_only.grad_rmse')} from values only vs "
        f"{q.ci(s, 'sobolev.with_grad.grad_rmse')} with gradients; paired t-test p = "
        f"{q(s, 'sobolev.grad_rmse_ratio.paired_t_p', '.2g')}; held-out value RMSE "
        f"{q(s, 'sobolev.value_only.value_rmse', '.3g')} vs {q(s, 'sobolev.with_grad.value_rmse', '.3g')}.",
    ]
    answer = (
        "Differentiate `pred.sum()` (or pass `grad_outputs=ones`): when samples do not interact, output i depends "
        "only on input i, so the gradient of the sum is exactly the per-sample gradient (all methods agree to "
        f"{q(s, 'agreement.sum.max_abs_diff', '.2g')}). It is wrong when samples interact: with BatchNorm in "
        f"training mode it is off by up to {q(s, 'batchnorm.train_sum_trick_max_abs_diff', '.3g')}; use "
        "`torch.func.vmap(grad(...))` over per-sample lanes, or eval mode. Inside training, fitting the gradients "
        f"too (Sobolev) {'lowered' if q.raw(s, 'sobolev.sobolev_lowers_grad_rmse') else 'did not lower'} the "
        f"held-out gradient error: {q(s, 'sobolev.value_only.grad_rmse', '.3g')} -> "
        f"{q(s, 'sobolev.with_grad.grad_rmse', '.3g')}."
    )
    return Section(
        stage=s,
        title="Per-sample gradients of a network with respect to its inputs",
        question="How do I get the gradient of a network's output with respect to each input of a batch, "
        "inside a training loop?",
        answer=answer,
        evidence=evidence,
        figures=["figures/batchnorm.png", "figures/timing.png", "figures/sobolev.png"],
        caveats=[
            "`loop` and `jacrev` are capped at large N (their cost grows like N^2 in time or memory); "
            "see results/input_grad/timings.csv.",
            "Timings and peak memory (torch allocator, via the profiler) are in timings.csv, not in metrics.json, "
            "and vary with machine load.",
        ],
    )


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


def _pg_evidence(q: Quotes, s: str) -> list[str]:
    evidence = []
    for v, row in q.metrics(s)["variants"].items():
        ret = q.ci(s, f"variants.{v}.final_return_mean", ".4g", f"variants.{v}.final_return")
        line = f"`{v}`: final return {ret}, probe correlation "
        line += f"{q(s, f'variants.{v}.probe_corr', '+.3f')}"
        if row.get("p_vs_correct") is not None:
            line += f", Welch p vs correct {q(s, f'variants.{v}.p_vs_correct', '.2g')}"
        if row.get("episodes_to_solve_median") is not None:
            line += f", solved after a median {q(s, f'variants.{v}.episodes_to_solve_median', '.4g')} episodes"
        evidence.append(line + ".")
    return evidence


_PG_QUESTION = (
    "In REINFORCE (`loss = sum(reward * cross_entropy)`), how does a negative reward make the agent avoid an "
    "action? Does the optimiser minimise the loss's absolute value? Would `sum(pow(cross_entropy, reward))` work?"
)


def pg_cartpole(q: Quotes) -> Section:
    s = "pg_cartpole"
    answer = (
        "Minimising A * CE = -A * log pi(a|s) raises log pi of actions with positive advantage and lowers it for "
        "negative ones; the loss's value is irrelevant, only its gradient. One update on a fixed batch moved "
        f"log pi in the direction of A (correlation {q(s, 'variants.correct.probe_corr', '+.3f')}) for the correct "
        f"sign and against it ({q(s, 'variants.flipped.probe_corr', '+.3f')}) when flipped. The correct loss "
        f"reached a final return of {q(s, 'variants.correct.final_return_mean', '.4g')}; the flipped one "
        f"{'did significantly worse' if _worse(q, s, 'flipped') else 'ended at'} "
        f"({q(s, 'variants.flipped.final_return_mean', '.3g')}, Welch p = "
        f"{q(s, 'variants.flipped.p_vs_correct', '.2g')})."
    )
    variants = q.metrics(s)["variants"]
    if "abs" in variants and "pow" in variants:
        verdict = "did significantly worse" if _worse(q, s, "abs") and _worse(q, s, "pow") else "ended at"
        answer += (
            f" |loss| and pow(CE, R) {verdict} ({q(s, 'variants.abs.final_return_mean', '.3g')} and "
            f"{q(s, 'variants.pow.final_return_mean', '.3g')})."
        )
    evidence = _pg_evidence(q, s) + [
        f"References: random play lasts {q(s, 'reference.random_return_mean', '.3g')} steps, always pushing left "
        f"{q(s, 'reference.always_left_return_mean', '.3g')}.",
    ]
    return Section(
        stage=s,
        title="REINFORCE loss sign on CartPole",
        question=_PG_QUESTION,
        answer=answer,
        evidence=evidence,
        figures=["figures/learning_curves.png", "figures/final_return_and_probe.png"],
        caveats=[
            f"{q(s, 'seeds', 'd')} seeds x {q(s, 'episodes_per_trial', 'd')} episodes per variant; final return is "
            f"the mean of the last {q(s, 'final_episodes', 'd')} episodes.",
            "CartPole uses RMSProp with a larger learning rate than the Pong recipe, to fit the time budget.",
        ]
        + (_pg_probe_caveat(q, s) if "abs" in variants and "pow" in variants else []),
    )


def _pg_probe_caveat(q: Quotes, s: str) -> list[str]:
    return [
        "The probe is one small step on one fixed batch: it shows the direction of a single update, not "
        "whether training converges. `abs` and `pow` align with the advantages on that batch and still fail "
        "to learn (|sum A*CE| reverses the whole update whenever the batch sum turns negative; d CE^R = "
        "R CE^(R-1) dCE keeps the sign of R but re-weights samples by CE^(R-1)). Averaged over the real "
        "training updates their probe is "
        f"{q(s, 'variants.abs.probe_corr_train_mean', '+.3f')} (abs) and "
        f"{q(s, 'variants.pow.probe_corr_train_mean', '+.3f')} (pow) against "
        f"{q(s, 'variants.correct.probe_corr_train_mean', '+.3f')} (correct).",
    ]


def _worse(q: Quotes, s: str, variant: str) -> bool:
    """Lower final return than `correct` with Welch p < 0.01."""
    v = q.metrics(s)["variants"]
    p = v[variant].get("p_vs_correct")
    return p is not None and p < 0.01 and v[variant]["final_return_mean"] < v["correct"]["final_return_mean"]


def pg_pong(q: Quotes) -> Section:
    s = "pg_pong"
    m = q.metrics(s)
    flags = m.get("flags", {})
    learned = flags.get("correct_improves_every_seed")
    above = flags.get("correct_above_flipped_every_seed")
    flipped_learns = flags.get("flipped_improves_any_seed")
    answer = (
        f"The same mechanism on Pong: the probe correlation is {q(s, 'variants.correct.probe_corr', '+.3f')} for "
        f"the correct sign and {q(s, 'variants.flipped.probe_corr', '+.3f')} when flipped. Over "
        f"{q(s, 'episodes_per_trial', 'd')} games per trial, `correct` went from "
        f"{_per_seed(q, s, 'variants.correct.first_return_per_seed')} (mean of its first "
        f"{q(s, 'final_episodes', 'd')} games, per seed) to "
        f"{_per_seed(q, s, 'variants.correct.final_return_per_seed')} (its last {q(s, 'final_episodes', 'd')}): it "
        + ("learns on every seed" if learned else "does not learn on every seed by the stage's criterion")
        + "; `flipped` "
        + ("improves too" if flipped_learns else "does not improve")
        + f" (last games {_per_seed(q, s, 'variants.flipped.final_return_per_seed')}) and ends "
        + ("below `correct` on every seed." if above else "not below `correct` on every seed.")
    )
    evidence = _pg_evidence(q, s) + [
        f"Uniform random actions score {q(s, 'reference.random_return_mean', '.3g')} per game "
        f"({q(s, 'reference.random_games', 'd')} games).",
        "Exact permutation p of `flipped` vs `correct` over seeds: "
        f"{q(s, 'variants.flipped.p_exact_vs_correct', '.2g')} (the smallest attainable with these seeds: "
        f"{q(s, 'variants.flipped.p_exact_min', '.2g')}).",
    ]
    figures = ["figures/learning_curves.png", "figures/final_return_and_probe.png"]
    for preset in ("pg_pong_win", "pg_pong_recipe"):
        if q.has(preset):
            evidence += _pong_preset_evidence(q, preset)
    return Section(
        stage=s,
        title="REINFORCE loss sign on Atari Pong",
        question=_PG_QUESTION,
        answer=answer,
        evidence=evidence,
        figures=figures,
        caveats=[
            "The presets `presets/pg_pong_win.yaml` (until the agent beats the built-in AI) and "
            "`presets/pg_pong_recipe.yaml` (the question's NOOP/UP/DOWN recipe with its move cost) are not part "
            "of `dvc repro`; their committed results are quoted when present (results/pg_pong_win, "
            "results/pg_pong_recipe).",
            f"Variant: frameskip {q(s, 'env.frameskip', 'd')}, repeat_action_probability "
            f"{q(s, 'env.repeat_action_probability', 'g')}, actions {q(s, 'env.actions')}; input {q(s, 'env.input')}.",
            "Throughput depends on the machine and is in results/pg_pong/timing.json, not in metrics.json.",
        ],
    )


def _per_seed(q: Quotes, s: str, key: str) -> str:
    """The values of the list at ``key``, each quoted: one per seed."""
    return ", ".join(q(s, f"{key}.{i}", ".3g") for i in range(len(q.raw(s, key))))


def _pong_preset_evidence(q: Quotes, s: str) -> list[str]:
    win = q.metrics(s)["win"]
    out = []
    for key, t in win.items():
        if not (isinstance(t, dict) and "won" in t):
            continue
        if t["won"]:
            out.append(
                f"`{s}` {key}: the mean of the last {q(s, 'win.stop_window', 'd')} games passed "
                f"{q(s, 'win.stop_at_mean', 'g')} after {q(s, f'win.{key}.games_to_win', 'd')} games "
                f"({q(s, f'win.{key}.frames_to_win', '.3g')} frames, {q(s, f'win.{key}.seconds_to_win', '.0f')} s "
                "of training)."
            )
        else:
            out.append(
                f"`{s}` {key}: did not pass {q(s, 'win.stop_at_mean', 'g')} within {q(s, f'win.{key}.games', 'd')} "
                "games (the cap)."
            )
    return out


SECTIONS = {
    "gd": gd,
    "mdn": mdn,
    "input_grad": input_grad,
    "spearman": spearman,
    "pg_cartpole": pg_cartpole,
    "pg_pong": pg_pong,
}
