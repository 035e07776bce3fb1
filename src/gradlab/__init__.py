"""gradlab as a library: the tools behind the five studies, for use on your own models.

``pip install gradlab`` (no extras) installs torch, numpy and scipy only; every name below
imports nothing else (no MLflow, DVC, Lightning, gymnasium, Ray or pandas). The names are
loaded on first use, so ``import gradlab`` itself imports no torch.

Gradient descent (``gd``)
    ``make_rule(name, params, lr, seed=0)``
        an update rule as a ``torch.optim.Optimizer``: ``"gradient"`` (``w -= lr * grad``),
        ``"scalar"`` (``w -= lr``, the asker's idea), ``"sign"``, ``"random"``.
    ``find_lr_threshold(diverges, start, rel_tol=1e-3)``
        bracketing and bisection for the learning rate at which ``diverges(lr)`` turns true;
        returns ``(threshold, number_of_probes)``.
    ``top_hessian_eigenvalue(loss_fn, params, iters=20, seed=0)``
        the sharpness ``lambda_max`` by power iteration on Hessian-vector products
        (gradient descent on a quadratic diverges above ``lr = 2 / lambda_max``).

Per-sample input gradients (``input_grad``)
    ``per_sample_input_grad(model, X, method="auto")``
        ``G[i] = d model(X)[i] / d X[i]`` for inputs of any shape ``[N, *]``; exact also when the
        model couples samples (BatchNorm in training mode, or its own code: found by a run-time
        probe), where the ``pred.sum()`` trick is wrong.
    ``per_sample_input_grad_and_outputs(model, X, method="auto")``
        ``(G, model(X))`` from one computation: replaces a training loop's ``pred = model(X)``.
    ``couples_samples(model)``
        does some layer mix the samples of a batch right now?

Mixture-density networks (``mdn``)
    ``nll(logits, mu, sigma, y)`` or ``nll(probs=alpha, mu=mu, sigma=sigma, y=y)``
        per-sample negative log-likelihood of a 1-D Gaussian mixture, computed in log space; refuses
        the asker's argument order ``nll(mu, sigma, alpha, y)``, non-finite means/targets, zero scales.
    ``sigma_from(raw, kind)``
        a positive scale from an unconstrained output (``"softplus"``, ``"exp"``, ...).

Non-finite values: the NaN doctor
    ``nan_doctor(model=None, optimizer=None, mode="cheap")`` -> ``NanDoctor``
        ``@doctor.step`` around a training step (cheap checks; the first bad step is replayed op by
        op), ``with nan_doctor(mode="trace"):`` around a block, ``doctor.lightning_callback()``.
        At the first NaN/inf it raises ``NonFiniteError`` whose ``.report`` (a ``NonFiniteReport``)
        names the step, phase, op, module, your own ``file:line``, facts about the op's inputs,
        the cause class and its fix. ``python -m gradlab doctor SCRIPT [ARGS]`` runs an unmodified
        script under it (``diagnose_script`` from Python; ``diagnose(fn)`` traces one call).
    ``nan_causes()``
        the cause classes (symptom, why, fix) the reports use, shared with the mdn study.
    ``NonFiniteWatch(model)``
        follows a training loop and records the first module output, gradient or weight
        that turns NaN or inf (module level; the doctor goes down to the op).

Rank correlation (``spearman``)
    ``soft_rank(x, regularization_strength=1.0)``
        differentiable ranks (Blondel et al. 2020); tends to the hard ranks as the strength -> 0.
    ``soft_spearman(a, b, strength)``
        Pearson correlation of soft ranks: a differentiable Spearman correlation.
    ``rank_scale(x)``
        rescale values before soft-ranking.

Policy gradients (``pg``)
    ``discounted_returns(rewards, gamma)``, ``standardize(x)``
        the return processing of the Pong REINFORCE recipe (numpy).
    ``policy_loss(...)``
        the REINFORCE loss ``sum(advantage * cross_entropy)`` and its sign/shape variants.
    ``probe_step(policy, loss_fn, batch, step_length)``, ``dlogp_adv_corr(logp_before, logp_after, adv)``
        take one small step and measure whether each action's log-probability moved with its advantage.
    ``probe_update(...)``, ``logp_moves(logp_before, logp_after, adv)``
        the same step with the fractions of actions whose log-probability moved the right way.
    ``fixed_batch_descent(policy, loss, batch, steps)``
        many optimiser steps on one fixed batch: the loss has no floor.

Each function documents its arguments and shapes in its own docstring (``help(gradlab.nll)``).

The library is the names above. ``help(gradlab)`` also lists, under PACKAGE CONTENTS, the pipeline's own
modules (``cli``, ``runner``, ``tracking``, ``training``, ``sweep``, ``report``, ``browse``, ...): they need
``pip install 'gradlab[pipeline]'`` and are not part of the library; the ``studies`` package holds the science
that the names above come from.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> the module that defines it (a tuple: the modules tried in order, the first that has it wins).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "make_rule": ("gradlab.studies.gd.rules",),
    "find_lr_threshold": ("gradlab.studies.gd.threshold",),
    "top_hessian_eigenvalue": ("gradlab.studies.gd.sharpness",),
    "per_sample_input_grad": ("gradlab.studies.input_grad.methods",),
    "per_sample_input_grad_and_outputs": ("gradlab.studies.input_grad.methods",),
    "couples_samples": ("gradlab.studies.input_grad.batchnorm",),
    "nll": ("gradlab.mixture_nll",),
    "sigma_from": ("gradlab.studies.mdn.losses",),
    "NonFiniteWatch": ("gradlab.forensics",),
    "nan_doctor": ("gradlab.doctor.doctor",),
    "NanDoctor": ("gradlab.doctor.doctor",),
    "NonFiniteError": ("gradlab.doctor.report",),
    "NonFiniteReport": ("gradlab.doctor.report",),
    "diagnose": ("gradlab.doctor.doctor",),
    "diagnose_script": ("gradlab.doctor.script",),
    "nan_causes": ("gradlab.doctor.causes",),
    "soft_rank": ("gradlab.studies.spearman.softrank",),
    "soft_spearman": ("gradlab.studies.spearman.softrank",),
    "rank_scale": ("gradlab.studies.spearman.softrank",),
    "discounted_returns": ("gradlab.studies.pg.returns",),
    "standardize": ("gradlab.studies.pg.returns",),
    "policy_loss": ("gradlab.studies.pg.losses",),
    "probe_step": ("gradlab.studies.pg.probe",),
    "dlogp_adv_corr": ("gradlab.studies.pg.probe",),
    "probe_update": ("gradlab.studies.pg.probe",),
    "logp_moves": ("gradlab.studies.pg.probe",),
    "fixed_batch_descent": ("gradlab.studies.pg.probe",),
}

__all__ = [
    "make_rule",
    "find_lr_threshold",
    "top_hessian_eigenvalue",
    "per_sample_input_grad",
    "per_sample_input_grad_and_outputs",
    "couples_samples",
    "nll",
    "sigma_from",
    "NonFiniteWatch",
    "nan_doctor",
    "NanDoctor",
    "NonFiniteError",
    "NonFiniteReport",
    "diagnose",
    "diagnose_script",
    "nan_causes",
    "soft_rank",
    "soft_spearman",
    "rank_scale",
    "discounted_returns",
    "standardize",
    "policy_loss",
    "probe_step",
    "dlogp_adv_corr",
    "probe_update",
    "logp_moves",
    "fixed_batch_descent",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from gradlab.doctor.causes import nan_causes
    from gradlab.doctor.doctor import NanDoctor, diagnose, nan_doctor
    from gradlab.doctor.report import NonFiniteError, NonFiniteReport
    from gradlab.doctor.script import diagnose_script
    from gradlab.forensics import NonFiniteWatch
    from gradlab.mixture_nll import nll
    from gradlab.studies.gd.rules import make_rule
    from gradlab.studies.gd.sharpness import top_hessian_eigenvalue
    from gradlab.studies.gd.threshold import find_lr_threshold
    from gradlab.studies.input_grad.batchnorm import couples_samples
    from gradlab.studies.input_grad.methods import per_sample_input_grad, per_sample_input_grad_and_outputs
    from gradlab.studies.mdn.losses import sigma_from
    from gradlab.studies.pg.losses import policy_loss
    from gradlab.studies.pg.probe import dlogp_adv_corr, fixed_batch_descent, logp_moves, probe_step, probe_update
    from gradlab.studies.pg.returns import discounted_returns, standardize
    from gradlab.studies.spearman.softrank import rank_scale, soft_rank, soft_spearman


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use, then keep it as a plain attribute."""
    modules = _EXPORTS.get(name)
    if modules is None:
        raise AttributeError(f"module 'gradlab' has no attribute {name!r}")
    for module in modules:
        value = getattr(_importlib.import_module(module), name, None)
        if value is not None:
            globals()[name] = value
            return value
    raise AttributeError(f"gradlab.{name}: none of {', '.join(modules)} defines it")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
