"""The asker's loss, literally, in TensorFlow Probability: the referee for the PyTorch port (``probs_log``).

Not imported by the stage (it needs tensorflow and tensorflow-probability, which gradlab does not
install). Run it in an environment that has them, e.g. a throwaway venv:

    python -m venv /tmp/tfpvenv
    /tmp/tfpvenv/bin/pip install "tensorflow-cpu==2.18.*" "tf-keras==2.18.*" "tensorflow-probability==0.25.0"
    /tmp/tfpvenv/bin/python src/gradlab/studies/mdn/tfp_referee/asker_tfp.py
    /tmp/tfpvenv/bin/python src/gradlab/studies/mdn/tfp_referee/asker_tfp.py --underflow   # tf_underflow.json

It writes ``tfp_reference.json`` beside this file: the inputs (made here with numpy, seeded) and, per
case, TF's loss and the gradients with respect to the softmax logits, mu and sigma. The stage
(``referee.py``) feeds the same inputs to the port and compares.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def nll_loss(mu, sigma, alpha, y):  # the asker's function, as posted
    gm = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(probs=alpha),
        components_distribution=tfd.Normal(loc=mu, scale=sigma),
    )
    log_likelihood = gm.log_prob(tf.transpose(y))
    return -tf.reduce_mean(log_likelihood, axis=-1)


def cases() -> dict:
    """Batches of B = 6 rows, K = 3 components, float32; 'underflow' has one row whose softmax weight is exactly 0."""
    rng = np.random.default_rng(20261201)
    b, k = 6, 3
    base = {
        "logits": rng.normal(0.0, 1.0, (b, k)).astype(np.float32),
        "mu": rng.uniform(0.0, 1.0, (b, k)).astype(np.float32),
        "sigma": rng.uniform(0.05, 0.3, (b, k)).astype(np.float32),
        "y": rng.uniform(0.0, 1.0, (b, 1)).astype(np.float32),  # [B, 1], as the asker's y
    }
    under = {name: v.copy() for name, v in base.items()}
    under["logits"][2] = np.array([0.0, 110.0, 5.0], dtype=np.float32)  # softmax weight 0 is exactly 0 in float32
    return {"benign": base, "underflow": under}


def underflow_gap() -> float:
    """The smallest logit gap (to 0.01) at which TF's float32 softmax gives a weight of exactly 0 on this CPU (TF
    flushes denormals to 0 on CPU, so expect ~87.3, where a weight falls below float32's smallest normal, not the
    ~103.97 of gradual underflow)."""
    gaps = np.arange(60.0, 120.0, 0.01).astype(np.float32)
    logits = tf.stack([tf.zeros_like(gaps), tf.constant(gaps)], axis=-1)
    weight = tf.nn.softmax(logits, axis=-1).numpy()[:, 0]
    return float(gaps[np.flatnonzero(weight == 0)[0]])


def run() -> dict:
    out = {"tensorflow": tf.__version__, "tensorflow_probability": tfp.__version__, "cases": {}}
    for name, c in cases().items():
        logits, mu, sigma = (tf.Variable(c[n]) for n in ("logits", "mu", "sigma"))
        y = tf.constant(c["y"])
        with tf.GradientTape() as tape:
            alpha = tf.nn.softmax(logits, axis=-1)  # the network's softmax output layer
            loss = nll_loss(mu, sigma, alpha, y)  # shape [1]
            total = tf.reduce_sum(loss)
        grads = tape.gradient(total, [logits, mu, sigma])
        out["cases"][name] = {
            "inputs": {n: np.asarray(v).tolist() for n, v in c.items()},
            "alpha_zero": int(np.sum(alpha.numpy() == 0)),
            "loss": float(total.numpy()),
            "grad": {n: np.asarray(g).tolist() for n, g in zip(("logits", "mu", "sigma"), grads, strict=True)},
        }
    return out


def _json(value):
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)  # "nan", "inf", "-inf"
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def underflow() -> dict:
    """TF's own underflow threshold on this CPU (tf_underflow.json, read by the mdn_search preset)."""
    return {
        "tensorflow": tf.__version__,
        "underflow_gap": underflow_gap(),
        # does a float32 denormal survive a TF multiply here? (0: TF flushed it to zero)
        "denormal_survives": int(float((tf.constant(1e-40, tf.float32) * tf.constant(1.0)).numpy()) != 0.0),
    }


if __name__ == "__main__":
    import sys

    if "--underflow" in sys.argv:  # only the threshold; tfp_reference.json (the port's referee) stays as it is
        path = Path(__file__).with_name("tf_underflow.json")
        path.write_text(json.dumps(underflow(), indent=1) + "\n")
    else:
        path = Path(__file__).with_name("tfp_reference.json")
        path.write_text(json.dumps(_json(run()), indent=1) + "\n")
    print("wrote", path)
