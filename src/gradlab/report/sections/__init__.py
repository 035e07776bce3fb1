"""One section per question, one module per study.

Each function receives :class:`~gradlab.report.quotes.Quotes` and quotes every
number from the study's results; a missing stage or key makes the section
say so instead of inventing a number.
"""

from __future__ import annotations

from gradlab.report.sections.gd import gd
from gradlab.report.sections.input_grad import input_grad
from gradlab.report.sections.mdn import mdn
from gradlab.report.sections.pg_cartpole import pg_cartpole
from gradlab.report.sections.pg_pong import pg_pong
from gradlab.report.sections.section import Section
from gradlab.report.sections.spearman import spearman

SECTIONS = {
    "gd": gd,
    "mdn": mdn,
    "input_grad": input_grad,
    "spearman": spearman,
    "pg_cartpole": pg_cartpole,
    "pg_pong": pg_pong,
}

__all__ = ["SECTIONS", "Section"]
