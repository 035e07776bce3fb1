"""The ``mdn`` study: reproduce, explain and cure NaN in a mixture-density network's NLL.

``gradlab.studies.mdn.nll(logits, mu, sigma, y)`` is the stable per-sample NLL (imported
lazily, so that discovering stages does not import torch).
"""

__all__ = ["nll"]


def __getattr__(name: str):
    if name == "nll":
        from gradlab.studies.mdn.losses import nll

        return nll
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
