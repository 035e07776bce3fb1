"""Study ``spearman``: optimising matrices for a rank correlation (soft ranks, Blondel et al. 2020)."""

from gradlab.studies.spearman.derivation import Derivation, init_matrices
from gradlab.studies.spearman.softrank import SoftRank, soft_rank

__all__ = ["Derivation", "SoftRank", "init_matrices", "soft_rank"]
