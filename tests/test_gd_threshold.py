"""The network's divergence learning rate: log-space bisection, the plain GD loop against the stage's trials,
lambda0, and the verdicts on 2/lambda0 against 4/lambda0."""

from __future__ import annotations

import math

import pytest

from gradlab.studies.gd.analysis import diverged, threshold_metrics, threshold_seed, threshold_theory
from gradlab.studies.gd.config import Mlp, MlpThreshold
from gradlab.studies.gd.problems import make_mlp, make_mlp_data
from gradlab.studies.gd.report import THEORY, _theory
from gradlab.studies.gd.sharpness import top_hessian_eigenvalue
from gradlab.studies.gd.threshold import bisect_log, mlp_gd_losses
from gradlab.studies.gd.trial import ThresholdSpec, TrialSpec, run_any, run_threshold, run_trial

TINY = Mlp(hidden=8, n=64, steps=40, target_loss=0.2)


@pytest.mark.parametrize("true", [0.37, 0.5, 0.99, 1.7, 0.05])
def test_bisection_brackets_the_threshold_to_the_tolerance(true):
    out = bisect_log(lambda lr: lr >= true, 0.3, 1.0, rel_tol=0.02)
    assert out["lo"] < true <= out["hi"]
    assert out["hi"] / out["lo"] - 1 < 0.02
    assert out["lo"] <= out["lr"] <= out["hi"]
    assert out["probes"] == len(out["trace"])
    assert all(d == (lr >= true) for lr, d in out["trace"])


def test_bisection_checks_both_ends_first():
    out = bisect_log(lambda lr: lr >= 0.5, 0.3, 1.0, rel_tol=0.1)
    assert [lr for lr, _ in out["trace"][:2]] == [0.3, 1.0]


@pytest.mark.parametrize("lo, hi, tol", [(1.0, 0.5, 0.02), (0.0, 1.0, 0.02), (0.1, 1.0, 0.0), (0.1, 1.0, 1.0)])
def test_bisection_refuses_a_bad_bracket(lo, hi, tol):
    with pytest.raises(ValueError):
        bisect_log(lambda lr: lr > 0.5, lo, hi, tol)


def test_bisection_says_when_nothing_diverges():
    with pytest.raises(RuntimeError, match="no divergence"):
        bisect_log(lambda lr: False, 0.1, 1.0, max_expand=3)


@pytest.mark.parametrize("lr", [0.3, 2.0, 50.0])
def test_plain_loop_is_the_stage_trial_float_for_float(lr):
    x, y = make_mlp_data(TINY.n, 0)
    plain = mlp_gd_losses(make_mlp(TINY.hidden, 3), x, y, lr, TINY.steps, seed=3)
    trial = run_trial(TrialSpec("gradient", lr, TINY.steps, 3, TINY, 0))["losses"]
    assert len(plain) == len(trial)
    assert all(a == b or (math.isinf(a) and math.isinf(b)) for a, b in zip(plain, trial, strict=True))


def test_run_threshold_on_a_tiny_network():
    t = MlpThreshold(lo=0.3, hi=1.0, rel_tol=0.2, power_iters=50)
    spec = ThresholdSpec(1, TINY, 0, t)
    out = run_threshold(spec)
    assert run_any(spec) == out  # the pool's dispatcher
    x, y = make_mlp_data(TINY.n, 0)
    net = make_mlp(TINY.hidden, 1)
    lam = top_hessian_eigenvalue(lambda: ((net(x) - y) ** 2).mean(), list(net.parameters()), 50, 1)
    assert out["lambda0"] == pytest.approx(lam)
    assert out["lambda0"] > 0
    # the final bracket: lo trains, hi diverges, by the stage's own definition
    for lr, expect in ((out["lo"], False), (out["hi"], True)):
        losses = run_trial(TrialSpec("gradient", lr, TINY.steps, 1, TINY, 0))["losses"]
        assert diverged(losses) is expect
    assert out["hi"] / out["lo"] - 1 < 0.2


def _seed(seed: int, lam: float, lr: float) -> dict:
    return threshold_seed(seed, {"lambda0": lam, "lr": lr, "lo": lr / 1.01, "hi": lr * 1.01, "probes": 7})


def _metrics(ratios: list[float]) -> dict:
    return threshold_metrics([_seed(k, 10.0, r * 2 / 10.0) for k, r in enumerate(ratios)], 0.02)


def test_per_seed_ratios():
    s = _seed(0, 10.0, 0.5)
    assert s["ratio_classic"] == pytest.approx(2.5) and s["ratio_catapult"] == pytest.approx(1.25)
    assert s["two_over_lambda0"] == pytest.approx(0.2) and s["four_over_lambda0"] == pytest.approx(0.4)
    assert s["above_classic"] and s["above_catapult"] and not s["below_catapult"]


@pytest.mark.parametrize(
    "ratios, classic, catapult, word",
    [
        ([1.0 + 0.01 * (k - 4.5) for k in range(10)], 0, -1, "classic"),
        ([2.0 + 0.01 * (k - 4.5) for k in range(10)], 1, 0, "catapult"),
        ([1.5 + 0.01 * (k - 4.5) for k in range(10)], 1, -1, "between"),
        ([4.0 + 0.5 * (k - 4.5) for k in range(10)], 1, 1, "above"),
        ([0.5 + 0.01 * (k - 4.5) for k in range(10)], -1, -1, "below"),
        ([1.5 + 0.4 * (k - 4.5) for k in range(10)], 0, 0, "inconclusive"),
        ([1.5, 1.6, 1.4], 0, 0, "inconclusive"),  # fewer than 10 seeds: no interval, no verdict
    ],
)
def test_verdicts_come_from_the_ratio_interval(ratios, classic, catapult, word):
    m = _metrics(ratios)
    assert m["flags"] == {"beyond_classic": classic, "beyond_catapult": catapult}
    assert m["ratio_classic_mean"] == pytest.approx(sum(ratios) / len(ratios))
    assert m["ratio_catapult_mean"] == pytest.approx(m["ratio_classic_mean"] / 2)
    assert _theory(m["flags"]) == THEORY[word]
    assert threshold_theory(m["flags"])  # the summary's sentence exists for every combination


def test_tiny_params_keep_the_bisection_small():
    import yaml

    from gradlab.stages import quick_params_file
    from gradlab.studies.gd.config import GDParams

    p = GDParams(**yaml.safe_load(quick_params_file("gd").read_text())["gd"])
    assert (p.mlp_threshold.seeds or p.seeds) <= 2 and p.mlp_threshold.rel_tol >= 0.1
    assert p.mlp.steps <= 50


def test_params_yaml_measures_at_least_ten_seeds():
    import yaml
    from conftest import ROOT

    from gradlab.studies.gd.config import GDParams

    p = GDParams(**yaml.safe_load((ROOT / "params.yaml").read_text())["gd"])
    assert min(p.mlp_threshold.seeds or p.seeds, p.seeds) >= 10


def test_tiny_bisection_takes_few_probes():
    """Tiny runs stay seconds: a few probes of a few steps per seed (counts, not seconds: the machine is shared)."""
    t = MlpThreshold(lo=0.3, hi=1.0, rel_tol=0.3, power_iters=5, seeds=2)
    assert all(run_threshold(ThresholdSpec(seed, TINY, 0, t))["probes"] <= 6 for seed in (0, 1))
