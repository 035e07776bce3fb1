"""The ``mdn`` study: reproduce, explain and cure NaN in a mixture-density network's NLL.

``gradlab.studies.mdn.nll(logits, mu, sigma, y)`` (or ``nll(probs=..., mu=..., sigma=..., y=...)``) is the
safe per-sample NLL and ``sigma_from(raw, "softplus")`` makes scales that are never 0 (both imported
lazily, so that discovering stages does not import torch).
"""

from gradlab.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__, {"nll": "gradlab.studies.mdn.losses", "sigma_from": "gradlab.studies.mdn.losses"}
)
