"""input_grad: each per-sample input-gradient method vs one plain batched backward, N = 10^4 (float32, 1 thread).

The reference is what a training step already pays: a forward of the batch and one
backward of its sum to the parameters. ``sum``/``grad_outputs``/``vmap`` should cost
about one such backward; ``loop`` and ``jacrev`` are O(N^2) (N backward passes of the
batch, or the [N, N, d] Jacobian), so they are timed once (``rounds: 1``), jacrev with
``chunk_size`` rows at a time so that it fits in memory.
"""

from __future__ import annotations

import statistics

import torch
from harness import compare, time_once

from gradlab.studies.input_grad import per_sample_input_grad
from gradlab.studies.input_grad.problems import make_network, make_points
from gradlab.studies.input_grad.timing import reference_backward

N = 10_000
JACREV_CHUNK = 256


def run() -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = make_network(32, seed=0).float()
        X = make_points(N, torch.Generator().manual_seed(0), torch.float32)

        def reference():
            return reference_backward(net, X)

        out = {}
        for method in ["sum", "grad_outputs", "vmap"]:
            result = compare(lambda method=method: per_sample_input_grad(net, X, method), reference)
            out[f"{method}_vs_backward_n{N}"] = {**result, "target": "(about 1: one backward pass)"}
        for method, kwargs in [("loop", {}), ("jacrev", {"chunk_size": JACREV_CHUNK})]:
            per_sample_input_grad(net, X[:100], method, **kwargs)  # warm-up
            subject = time_once(lambda method=method, kwargs=kwargs: per_sample_input_grad(net, X, method, **kwargs))
            ref = statistics.median(time_once(reference) for _ in range(5))
            out[f"{method}_vs_backward_n{N}"] = {
                "subject_s": subject,
                "reference_s": ref,
                "ratio": subject / ref,
                "rounds": 1,
                "target": "(O(N^2): expect ~N x)",
            }
        return out
    finally:
        torch.set_num_threads(threads)
