"""Does the PyTorch port of the asker's loss (``probs_log``) agree with TFP? And the independent underflow check.

``tfp_referee/tfp_reference.json`` holds what the asker's literal TensorFlow Probability code
(``tfp_referee/asker_tfp.py``, tensorflow 2.18.1, tensorflow-probability 0.25.0) returned on two batches:
the loss and the gradients with respect to the softmax logits, mu and sigma, NaN included. Here the
same inputs go through the port and through torch's own ``Categorical(probs=)``; the numbers are
compared entry by entry (NaN where TF has NaN, close elsewhere).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gradlab.studies.mdn.losses import mixture_loss, nll

REFERENCE = Path(__file__).with_name("tfp_referee") / "tfp_reference.json"


def _arr(v) -> np.ndarray:
    return np.array(v, dtype=object).astype(float)  # "nan" strings -> NaN


def port(inputs: dict, mixture: str) -> tuple[float, dict]:
    """Loss (the asker's ``-reduce_mean``) and gradients of one formulation on the recorded inputs."""
    logits, mu, sigma = (
        torch.tensor(_arr(inputs[n]), dtype=torch.float32, requires_grad=True) for n in ("logits", "mu", "sigma")
    )
    y = torch.tensor(_arr(inputs["y"]), dtype=torch.float32).reshape(-1)
    loss = mixture_loss(logits, mu, sigma, y, mixture)
    grads = torch.autograd.grad(loss, [logits, mu, sigma])
    return float(loss.detach()), {
        n: g.numpy().astype(float) for n, g in zip(("logits", "mu", "sigma"), grads, strict=True)
    }


def _agree(tf_grad: np.ndarray, ours: np.ndarray, rtol: float = 1e-4, atol: float = 1e-6) -> tuple[bool, float]:
    same_nan = bool((np.isnan(tf_grad) == np.isnan(ours)).all())
    ok = ~np.isnan(tf_grad) & ~np.isnan(ours)
    diff = float(np.max(np.abs(tf_grad[ok] - ours[ok]))) if ok.any() else 0.0
    close = bool(np.allclose(tf_grad[ok], ours[ok], rtol=rtol, atol=atol))
    return same_nan and close, diff


def referee(path: Path = REFERENCE) -> dict:
    """Per recorded case: TF's loss and NaN gradient vs the port's and torch's ``Categorical(probs=)``'s."""
    if not path.exists():
        return {"available": False}
    ref = json.loads(path.read_text())
    out: dict = {
        "available": True,
        "tensorflow": ref["tensorflow"],
        "tensorflow_probability": ref["tensorflow_probability"],
    }
    agree_all = True
    for name, case in ref["cases"].items():
        tf_loss = float(case["loss"])
        tf_grads = {n: _arr(v) for n, v in case["grad"].items()}
        row = {"tf_loss": tf_loss, "tf_grad_nan": int(any(np.isnan(g).any() for g in tf_grads.values()))}
        for mixture in ("probs_log", "probs_torch", "logits"):
            loss, grads = port(case["inputs"], mixture)
            checks = [_agree(tf_grads[n], grads[n]) for n in tf_grads]
            agree = bool(abs(loss - tf_loss) <= 1e-5 * max(1.0, abs(tf_loss))) and all(c[0] for c in checks)
            row[mixture] = {
                "loss": loss,
                "loss_abs_diff": abs(loss - tf_loss),
                "grad_nan": int(any(np.isnan(g).any() for g in grads.values())),
                "grad_max_abs_diff": max(c[1] for c in checks),
                "agrees_with_tfp": agree,
            }
        agree_all &= row["probs_log"]["agrees_with_tfp"]
        out[name] = row
    out["port_agrees"] = agree_all
    return out


def underflow_gap(low: float = 80.0, high: float = 120.0) -> float:
    """The smallest logit gap (to 0.01, searched in [low, high)) at which float32 softmax gives a weight of exactly 0
    (about 104 as is; about 87 where denormals are flushed to 0: ``torch.set_flush_denormal(True)``, TF on CPU)."""
    gaps = torch.arange(low, high, 0.01)
    logits = torch.stack([torch.zeros_like(gaps), gaps], dim=-1)
    zero = torch.softmax(logits, dim=-1)[:, 0] == 0
    return float(gaps[zero.nonzero()[0, 0]])


def independent_check() -> dict:
    """One mixing weight underflowed to exactly 0 (float32): the loss and gradient of each formulation.

    Independent of the trials: a [1, 3] batch, logits (0, 110, 5) -> softmax (0, 1, 0) exactly.
    """
    logits = torch.tensor([[0.0, 110.0, 5.0]])
    mu = torch.tensor([[0.2, 0.5, 0.8]])
    sigma = torch.tensor([[0.1, 0.1, 0.1]])
    y = torch.tensor([0.45])
    out = {"weights_exactly_zero": int((torch.softmax(logits, -1) == 0).sum())}
    for mixture in ("probs_log", "probs_torch", "logits"):
        lg = logits.clone().requires_grad_()
        loss = mixture_loss(lg, mu, sigma, y, mixture)
        (g,) = torch.autograd.grad(loss, [lg])
        out[mixture] = {
            "loss": float(loss.detach()),
            "loss_finite": bool(torch.isfinite(loss)),
            "grad_finite": bool(torch.isfinite(g).all()),
            "grad_nan": bool(torch.isnan(g).any()),
        }
    lg = logits.clone().requires_grad_()
    loss = nll(probs=torch.softmax(lg, -1), mu=mu, sigma=sigma, y=y).mean()
    (g,) = torch.autograd.grad(loss, [lg])
    out["safe_probs"] = {
        "loss": float(loss.detach()),
        "loss_finite": bool(torch.isfinite(loss)),
        "grad_finite": bool(torch.isfinite(g).all()),
        "grad_nan": bool(torch.isnan(g).any()),
    }
    out["underflow_gap"] = underflow_gap()
    out["passes"] = bool(
        out["probs_log"]["loss_finite"]
        and out["probs_log"]["grad_nan"]
        and out["logits"]["loss_finite"]
        and out["logits"]["grad_finite"]
    )
    return out
