"""The report's sections, found in the study folders: ``gradlab/studies/<study>/report.py`` defines one
function per stage of the study, named like the stage, ``<stage>(q: Quotes) -> Section``.

Each function quotes every number from the stage's results through :class:`~gradlab.report.quotes.Quotes`;
a missing stage or key makes the section say so instead of inventing a number. Adding a study adds its
section here without editing this file (gradlab.stages, "Adding a study" in the README).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from functools import cache

from gradlab.report.quotes import Quotes
from gradlab.report.section import Section

SectionFn = Callable[[Quotes], Section]

# The report's order: the questions as the README asks them; a stage not named here follows, in the order
# its study and stage are found.
ORDER = ("gd", "mdn", "input_grad", "spearman", "pg_cartpole", "pg_pong")


@cache
def by_study() -> dict[str, dict[str, SectionFn]]:
    """Study -> {stage: its section function}, for every study with a ``report.py`` (stages without a
    function of their name, such as presets, have no section)."""
    from gradlab.stages import stages_of, studies

    found: dict[str, dict[str, SectionFn]] = {}
    for study in studies():
        name = f"gradlab.studies.{study}.report"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        fns = {stage: getattr(module, stage) for stage in stages_of(study) if callable(getattr(module, stage, None))}
        if fns:
            found[study] = fns
    return found


@cache
def sections() -> dict[str, SectionFn]:
    """Stage -> its section function, in the report's order (:data:`ORDER`)."""
    found = {stage: fn for fns in by_study().values() for stage, fn in fns.items()}
    rank = {stage: k for k, stage in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda item: rank.get(item[0], len(rank))))


__all__ = ["ORDER", "Section", "SectionFn", "by_study", "sections"]
