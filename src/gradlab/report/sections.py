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
                f"median {q(s, f'{key}.median_evals_to_099', '.4g')} evaluations to reach 0.99"
                if reach
                else (f"never reached 0.99 in {q(s, f'{key}.max_evaluations', 'd')} evaluations")
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
        f"ranks reached spearmanr >= 0.99 in a median of "
        f"{q(s, f'methods.soft_rank.{small}.median_evals_to_099', '.3g')} evaluations at n = {small[1:]}, "
        f"{bound}{q(s, ratio_key, '.4g')}x fewer than the questioner's "
        f"+-0.01 hill climb, and at n = {large[1:]} it ended at a median spearmanr of "
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
            "The hill climb's ratio is a lower bound when it never reaches 0.99 within its budget.",
            "Pairs that cannot finish in the budget (hill climbs and Nelder-Mead at large n) are skipped; "
            "see results/spearman/skipped.csv.",
        ],
    )


SECTIONS = {"gd": gd, "spearman": spearman}
