"""SobolevRegression.fit (a Fabric loop) trains to the same bits as the Lightning Trainer's automatic optimisation."""

from __future__ import annotations

import torch

from gradlab.studies.input_grad.module import SobolevRegression
from gradlab.studies.input_grad.problems import make_points, make_smooth_mlp
from gradlab.training import fit as trainer_fit


def _module(grad_weight: float) -> SobolevRegression:
    g = torch.Generator().manual_seed(7)
    X, X_test = make_points(16, g), make_points(32, g)
    return SobolevRegression(make_smooth_mlp(8, 7), X, X_test, grad_weight, 0.01, "sum", eval_every=5)


def test_the_fabric_loop_matches_the_trainer_to_the_bit():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for weight in (0.0, 1.0):
            ours, theirs = _module(weight), _module(weight)
            ours.fit(12)
            trainer_fit(theirs, 12)
            theirs.evaluate(12)
            assert ours.losses == theirs.losses and len(ours.losses) == 12
            assert ours.eval_steps == theirs.eval_steps == [0, 5, 10, 12]
            assert ours.eval_grad_rmse == theirs.eval_grad_rmse and ours.eval_value_rmse == theirs.eval_value_rmse
            for a, b in zip(ours.net.parameters(), theirs.net.parameters(), strict=True):
                assert torch.equal(a, b)
    finally:
        torch.set_num_threads(threads)
