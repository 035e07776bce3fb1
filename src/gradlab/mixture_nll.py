"""``gradlab.nll``: the mdn study's safe mixture NLL, with the argument checks of the public API.

The study's ``nll(logits, mu, sigma, y)`` computes in log space and refuses bad scales and target shapes.
Called in the MDN asker's own order, ``nll(mu, sigma, alpha, y)``, it used to return finite nonsense: the
softmax weights ``alpha`` landed in ``sigma`` (positive, so accepted) and the scales in ``mu``. The public
``nll`` is the study's function with checks in front that refuse that order, non-finite means and targets,
and anything that is not a tensor, with one line each. Its signature is the study's (``functools.wraps``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec

import torch

from gradlab.arguments import require_float_tensor, rows_look_like_probabilities
from gradlab.studies.mdn.losses import nll as _study_nll

P = ParamSpec("P")


def _check(named: dict[str, object]) -> None:
    """Refuse the arguments the study's ``nll`` would accept but that cannot be what the caller meant."""
    for name, value in named.items():
        if value is not None:
            require_float_tensor(value, name, "nll")
    tensors: dict[str, torch.Tensor] = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}
    logits, sigma = tensors.get("logits"), tensors.get("sigma")
    if (
        "probs" not in tensors
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
        value = tensors.get(name)
        if value is not None and not bool(torch.isfinite(value.detach()).all()):
            bad = int((~torch.isfinite(value.detach())).sum())
            raise ValueError(f"nll: {name} has {bad} non-finite value(s) (NaN or inf); check the batch and the head")
    if logits is not None and bool(torch.isnan(logits.detach()).any()):
        raise ValueError("nll: logits has NaN values (-inf is allowed: a masked component)")


def _checked(study_nll: Callable[P, torch.Tensor]) -> Callable[P, torch.Tensor]:
    """``study_nll`` behind :func:`_check`, with its signature; it is ``gradlab.mixture_nll.nll`` (its module and
    name: it pickles, and tracebacks name it), and an argument it does not take is a TypeError naming ``nll``."""
    signature = inspect.signature(study_nll)

    @functools.wraps(study_nll)
    def checked(*args: P.args, **kwargs: P.kwargs) -> torch.Tensor:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"nll: {e}; it takes {signature}") from None
        _check(dict(bound.arguments))
        return study_nll(*args, **kwargs)

    checked.__module__, checked.__name__, checked.__qualname__ = __name__, "nll", "nll"
    return checked


nll = _checked(_study_nll)
nll.__doc__ = """Per-sample NLL of targets ``y`` [B] under B mixtures of K Normals -> [B], computed in log space.

    ``nll(logits=None, mu=None, sigma=None, y=None, *, probs=None)``. Pass the mixing weights as ``logits``
    ([B, K], any real numbers; preferred) or as ``probs=`` ([B, K], a softmax output; an exactly-zero weight
    gets a zero, not NaN, gradient); ``mu`` and ``sigma`` [B, K] (``sigma > 0``: make it with
    :func:`gradlab.sigma_from`), ``y`` [B]. Equals
    ``-MixtureSameFamily(Categorical(logits=logits), Normal(mu, sigma)).log_prob(y)``.

    Raises ``TypeError`` for an argument that is not a floating-point tensor; ``ValueError`` for the asker's
    argument order ``nll(mu, sigma, alpha, y)`` (the weights belong in ``logits``/``probs=``, first), for a NaN
    or inf in ``mu``, ``y`` or ``logits`` (NaN), and for everything the study's ``nll`` refuses: shapes that do
    not match (a ``[B, 1]`` target), a scale that is 0, negative or NaN, both or neither of logits/probs.
    """
