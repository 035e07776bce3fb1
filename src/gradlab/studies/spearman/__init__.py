"""Study ``spearman``: optimising matrices for a rank correlation (soft ranks, Blondel et al. 2020).

Its public names are imported when first used, so that listing the stages does not import torch.
"""

from gradlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "Derivation": "gradlab.studies.spearman.derivation",
        "init_matrices": "gradlab.studies.spearman.derivation",
        "SoftRank": "gradlab.studies.spearman.softrank",
        "soft_rank": "gradlab.studies.spearman.softrank",
        "soft_spearman": "gradlab.studies.spearman.softrank",
        "rank_scale": "gradlab.studies.spearman.softrank",
    },
)
