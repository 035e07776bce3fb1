"""``gradlab.nll``: the mdn study's safe mixture NLL, with the argument checks of the public API.

The study's ``nll(logits, mu, sigma, y)`` computes in log space and refuses bad scales and target shapes.
Called in the MDN asker's own order, ``nll(mu, sigma, alpha, y)``, it used to return finite nonsense: the
softmax weights ``alpha`` landed in ``sigma`` (positive, so accepted) and the scales in ``mu``. This wrapper
refuses that order, non-finite means and targets, and anything that is not a tensor, with one line each.
"""

from __future__ import annotations

import torch

from gradlab.arguments import require_float_tensor, rows_look_like_probabilities
from gradlab.studies.mdn.losses import nll as _nll


def nll(
    logits: torch.Tensor | None = None,
    mu: torch.Tensor | None = None,
    sigma: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    *,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample NLL of targets ``y`` [B] under B mixtures of K Normals -> [B], computed in log space.

    Pass the mixing weights as ``logits`` ([B, K], any real numbers; preferred) or as ``probs=`` ([B, K], a
    softmax output; an exactly-zero weight gets a zero, not NaN, gradient); ``mu`` and ``sigma`` [B, K]
    (``sigma > 0``: make it with :func:`gradlab.sigma_from`), ``y`` [B]. Equals
    ``-MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma)).log_prob(y)``.

    Raises ``TypeError`` for an argument that is not a floating-point tensor; ``ValueError`` for the asker's
    argument order ``nll(mu, sigma, alpha, y)`` (the weights belong in ``logits``/``probs=``, first), for a NaN
    or inf in ``mu``, ``y`` or ``logits`` (NaN), and for everything the study's ``nll`` refuses: shapes that do
    not match (a ``[B, 1]`` target), a scale that is 0, negative or NaN, both or neither of logits/probs.
    """
    named = {"logits": logits, "mu": mu, "sigma": sigma, "y": y, "probs": probs}
    for name, value in named.items():
        if value is not None:
            require_float_tensor(value, name, "nll")
    if (
        probs is None
        and sigma is not None
        and logits is not None
        and rows_look_like_probabilities(sigma)
        and not rows_look_like_probabilities(logits)
        and bool((sigma != sigma.reshape(-1)[0]).any())  # a constant scale 1/K could be meant
    ):
        raise ValueError(
            "nll: sigma looks like mixing weights (every row in [0, 1] and summing to 1) -- the asker's order "
            "nll(mu, sigma, alpha, y)? gradlab.nll takes (logits, mu, sigma, y): call "
            "nll(probs=alpha, mu=mu, sigma=sigma, y=y), or pass the logits before the softmax first"
        )
    for name in ("mu", "y"):
        value = named[name]
        if value is not None and not bool(torch.isfinite(value.detach()).all()):
            bad = int((~torch.isfinite(value.detach())).sum())
            raise ValueError(f"nll: {name} has {bad} non-finite value(s) (NaN or inf); check the batch and the head")
    if logits is not None and bool(torch.isnan(logits.detach()).any()):
        raise ValueError("nll: logits has NaN values (-inf is allowed: a masked component)")
    return _nll(logits, mu, sigma, y, probs=probs)
