"""gd: full-batch gradient descent on the quadratic through Lightning vs a plain PyTorch loop."""

from __future__ import annotations

import torch
from harness import compare

from gradlab.studies.gd.module import FullBatchRegression
from gradlab.studies.gd.problems import make_quadratic
from gradlab.studies.gd.rules import GradientDescent

STEPS = 1000


def run() -> dict:
    problem = make_quadratic(200, 20, 100.0, 0.01, seed=0)
    lr = 1.0 / float(problem.eigenvalues()[-1])

    def lightning():
        net = torch.nn.Linear(20, 1, bias=False, dtype=torch.float64)
        FullBatchRegression(net, problem.X, problem.y.unsqueeze(1), "gradient", lr).fit(STEPS)

    def plain():
        net = torch.nn.Linear(20, 1, bias=False, dtype=torch.float64)
        opt = GradientDescent(net.parameters(), lr)
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = ((net(problem.X) - problem.y.unsqueeze(1)) ** 2).mean()
            losses.append(float(loss))
            loss.backward()
            opt.step()

    return {"lightning_vs_plain_1000_steps": {**compare(lightning, plain), "target": "(overhead, no target)"}}
