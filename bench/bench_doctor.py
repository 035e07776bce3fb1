"""doctor: what the NaN doctor costs on a clean training loop, as ratios to the same loop without it.

Two identical runs (same model, same batches, Adam, one thread) alternate step by step, one plain, one under the
doctor; the ratio is the median step time of the doctored run over the plain one's (``ratio``: CPU time of the
thread, what the doctor adds whatever else runs on the machine; ``wall_ratio``: wall clock), and the losses must
be identical:

* ``off``: the step decorated by ``gradlab.nan_doctor(mode="off")`` -- must cost nothing;
* ``cheap``: the default mode -- the loss, the gradients and the buffers checked before ``optimizer.step()``,
  the parameters after it, Adam's state every 10th step (on the CPU one sum per tensor, read back as one number;
  no per-op hooks); target <= 1.15 on the mdn study's model, on a small CNN and on the MLP (width 256, batch 64;
  the configuration the project's non-finite check was measured on);
* ``trace``: every op of every step traced (the replay of a bad step runs this way, once), on the mdn study's
  model (its default trial: MLP of width 64, 5 components, batch 128, the asker's ``probs_log`` loss) and on
  the small CNN: a ratio, for the record.

``load_average`` (1, 5, 15 minutes, taken at the end) says how busy the shared machine was.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import gradlab
from gradlab.studies.mdn.losses import mixture_loss, sigma_from

STEPS = 40


class MdnNet(nn.Module):
    """The mdn study's network (gradlab.studies.mdn.module.MDN, without importing Lightning): tanh MLP + 3K head."""

    def __init__(self, hidden: int = 64, layers: int = 2, components: int = 5):
        super().__init__()
        blocks, width = [], 1
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width, 3 * components)
        self.k = components

    def forward(self, x):
        logits, mu, raw = self.head(self.body(x.reshape(-1, 1))).split(self.k, dim=-1)
        return logits, mu, sigma_from(raw, "softplus")


def _mlp():
    return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1))


def _cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 10),
    )


def _task(kind: str):
    """(make_model, batches, loss(model, batch)) for ``mlp``, ``cnn`` or ``mdn``."""
    g = torch.Generator().manual_seed(0)
    if kind == "mlp":
        batches = [(torch.randn(64, 32, generator=g), torch.randn(64, 1, generator=g)) for _ in range(STEPS)]
        return _mlp, batches, lambda m, b: F.mse_loss(m(b[0]), b[1])
    if kind == "cnn":
        batches = [
            (torch.randn(32, 1, 16, 16, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(STEPS)
        ]
        return _cnn, batches, lambda m, b: F.cross_entropy(m(b[0]), b[1])
    batches = [(torch.rand(128, generator=g), torch.rand(128, generator=g)) for _ in range(STEPS)]

    def mdn_loss(m, b):
        logits, mu, sigma = m(b[0])
        return mixture_loss(logits, mu, sigma, b[1], "probs_log")

    return MdnNet, batches, mdn_loss


def make_step(kind: str, mode: str | None):
    """A training step of ``kind`` (fresh model, seeded), plain (``mode=None``) or decorated by the doctor."""
    make, batches, loss_fn = _task(kind)
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch):
        opt.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()
        return loss.detach()

    if mode is not None:
        step = gradlab.nan_doctor(model, opt, mode=mode).step(step)
    return step, batches


def compare_steps(kind: str, mode: str, epochs: int) -> dict:
    """Plain and doctored steps of two identical runs, alternating step by step (which goes first alternates too)
    on the same batches.

    The ratio is the median doctored step time over the median plain step time (per-step alternation keeps a
    shared machine's load changes out of the ratio): ``ratio`` in the CPU time of this thread (all of a step's
    work: torch runs on this one thread here, backward included), ``wall_ratio`` in wall-clock time, the same as
    ``ratio`` on an idle machine but not on a shared one, where the time other jobs hold the core lands in the step
    times, more often in the longer one; ``identical_losses``: both runs gave the same losses.
    """
    plain, batches = make_step(kind, None)
    doctored, _ = make_step(kind, mode)
    wall: dict = {plain: [], doctored: []}
    cpu: dict = {plain: [], doctored: []}
    same = True
    for epoch in range(epochs):
        for k, batch in enumerate(batches):
            losses = []
            for step in (plain, doctored) if (epoch + k) % 2 == 0 else (doctored, plain):
                w0, c0 = time.perf_counter(), time.thread_time()
                losses.append(step(batch))
                c1, w1 = time.thread_time(), time.perf_counter()
                wall[step].append(w1 - w0)
                cpu[step].append(c1 - c0)
            same = same and float(losses[0]) == float(losses[1])
    ca, cb = statistics.median(cpu[doctored]), statistics.median(cpu[plain])
    wa, wb = statistics.median(wall[doctored]), statistics.median(wall[plain])
    return {
        "subject_s": ca,
        "reference_s": cb,
        "ratio": ca / cb,
        "wall_subject_s": wa,
        "wall_reference_s": wb,
        "wall_ratio": wa / wb,
        "steps": len(wall[plain]),
        "identical_losses": same,
    }


def run() -> dict:
    torch.set_num_threads(1)
    out = {}
    cases = [
        ("off_vs_plain_mlp", "mlp", "off", 10, "~1.00 (nothing runs)"),
        ("cheap_vs_plain_mlp", "mlp", "cheap", 10, "<= 1.15"),
        ("cheap_vs_plain_cnn", "cnn", "cheap", 10, "<= 1.15"),
        ("cheap_vs_plain_mdn", "mdn", "cheap", 10, "<= 1.15 (tiny steps: the fixed cost per step shows)"),
        ("trace_vs_plain_mdn", "mdn", "trace", 1, "(full op tracing, for the record)"),
        ("trace_vs_plain_cnn", "cnn", "trace", 1, "(full op tracing, for the record)"),
    ]
    for name, kind, mode, epochs, target in cases:
        r = compare_steps(kind, mode, epochs)
        r["ms_per_step_plain"] = 1000 * r["reference_s"]
        r["target"] = target
        out[name] = r
    out["load_average"] = list(os.getloadavg())  # 1, 5, 15 min, at the end: the machine is shared
    out["cpus"] = os.cpu_count()
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
