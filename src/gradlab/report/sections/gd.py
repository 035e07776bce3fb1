"""Report section: gd."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


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
