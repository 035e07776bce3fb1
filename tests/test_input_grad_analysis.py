"""The Sobolev verdicts: paired exact sign-flip tests over seeds, +1 / 0 / -1, per-seed values below 10 seeds."""

from __future__ import annotations

import pytest

from gradlab.studies.input_grad import analysis
from gradlab.studies.input_grad.trial import TrialSpec


def _sobolev(value_only: list[float], with_grad: list[float]) -> dict:
    trials, results = [], []
    for seed, (a, b) in enumerate(zip(value_only, with_grad, strict=True)):
        for variant, g in (("value_only", a), ("with_grad", b)):
            trials.append(TrialSpec(variant, seed, 0.0, 4, 4, 4, 1, 0.1, "sum", 1))
            results.append({"value_rmse": g / 5, "grad_rmse": g, "train_value_rmse": g, "train_grad_rmse": g})
    return analysis.summarise_sobolev(trials, results)


def test_ten_paired_seeds_can_decide():
    s = _sobolev([0.8 + 0.01 * k for k in range(10)], [0.2 + 0.003 * k * k for k in range(10)])
    r = s["grad_rmse_ratio"]
    assert r["sign_flip_p"] == pytest.approx(2 / 2**10) and r["lowered"] == 1
    assert s["with_grad"]["grad_rmse_ci_low"] is not None and r["ci_high"] < 1


def test_five_seeds_are_inconclusive_whatever_the_gap():
    s = _sobolev([0.8, 0.7, 0.9, 0.85, 0.75], [0.2, 0.25, 0.1, 0.3, 0.15])
    r = s["grad_rmse_ratio"]
    assert r["sign_flip_p"] == pytest.approx(0.0625) == r["sign_flip_p_min"] and r["lowered"] == 0
    assert s["with_grad"]["grad_rmse_ci_low"] is None and len(s["with_grad"]["grad_rmse_per_seed"]) == 5
    assert r["ci_low"] is None and len(r["per_seed"]) == 5


def test_raising_the_error_is_minus_one():
    s = _sobolev([0.2 + 0.01 * k for k in range(10)], [0.8] * 10)
    assert s["grad_rmse_ratio"]["lowered"] == -1 and s["value_rmse_ratio"]["lowered"] == -1


def test_the_prose_says_when_the_seeds_cannot_reach_p_below_005():
    from gradlab.studies.input_grad.config import InputGradParams
    from gradlab.studies.input_grad.summary import sobolev_line

    p = InputGradParams()
    for n, reach in ((5, False), (6, True)):
        s = _sobolev([0.8 + 0.01 * k for k in range(n)], [0.2] * n)
        r = s["grad_rmse_ratio"]
        assert r["sign_flip_reachable"] is reach and s["seeds_needed"] == 6
        flags = {
            "sobolev_lowers_grad_rmse": r["lowered"],
            "sobolev_lowers_value_rmse": s["value_rmse_ratio"]["lowered"],
        }
        line = sobolev_line(s, flags, p)
        assert ("5 seeds cannot reach p < 0.05 (smallest attainable p 0.0625; this test needs at least 6)" in line) is (
            not reach
        )
        assert r["lowered"] == (1 if reach else 0)
