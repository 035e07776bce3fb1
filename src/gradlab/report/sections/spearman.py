"""Report section: spearman."""

from __future__ import annotations

from gradlab.report.quotes import Quotes
from gradlab.report.sections.section import Section


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
