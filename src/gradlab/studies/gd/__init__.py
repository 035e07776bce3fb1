"""Study ``gd``: update rules, the divergence threshold 2/lambda_max, and the edge of stability (names load lazily)."""

from gradlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "RULES": "gradlab.studies.gd.rules",
        "make_rule": "gradlab.studies.gd.rules",
        "find_lr_threshold": "gradlab.studies.gd.threshold",
        "top_hessian_eigenvalue": "gradlab.studies.gd.sharpness",
    },
)
