"""The one-step (first-order / fixed-point) analysis against hand values, the optimisers and closed forms;
the edge-of-stability, catapult and divergence criteria on made-up runs; the rules' step-size option."""

from __future__ import annotations

import math

import pytest
import torch

from gradlab.config import ConfigError, validate_section
from gradlab.studies.gd import analysis
from gradlab.studies.gd import first_order as fo
from gradlab.studies.gd.config import GDParams
from gradlab.studies.gd.problems import make_quadratic
from gradlab.studies.gd.rules import make_rule


@pytest.fixture(scope="module")
def problem():
    return make_quadratic(80, 6, 30.0, 0.01, seed=3)


def test_directions_are_the_steps_the_optimisers_take(problem):
    w = problem.w0.clone().requires_grad_(True)
    g = fo.gradients(problem, problem.w0.unsqueeze(0))
    problem.loss(w).backward()
    assert torch.allclose(w.grad, g[0], rtol=1e-12, atol=1e-14)  # the closed-form gradient is autograd's
    for rule in ("gradient", "scalar", "sign"):
        v = problem.w0.clone().requires_grad_(True)
        opt = make_rule(rule, [v], 0.1)
        problem.loss(v).backward()
        opt.step()
        expected = problem.w0 - 0.1 * fo.directions(rule, g)[0]
        assert torch.allclose(v.detach(), expected, rtol=0, atol=1e-14), rule
    d = fo.directions("random", g.repeat(5, 1), torch.Generator().manual_seed(0))
    assert torch.allclose(d.norm(dim=1), torch.ones(5, dtype=torch.float64))


def test_delta_loss_is_exactly_quadratic_in_lr(problem):
    lrs = [1e-4, 1e-2, 0.3]
    rows, summary = fo.delta_loss_vs_lr(problem, problem.w0, lrs, ["gradient", "scalar"])
    H = problem.hessian()
    g = fo.gradients(problem, problem.w0.unsqueeze(0))[0]
    for rule, d in (("gradient", g), ("scalar", torch.ones_like(g))):
        for r in (r for r in rows if r["rule"] == rule):
            exact = -r["lr"] * float(g @ d) + 0.5 * r["lr"] ** 2 * float(d @ H @ d)
            assert r["delta_loss"] == pytest.approx(exact, rel=1e-9, abs=1e-13)
            assert r["first_order"] == pytest.approx(-r["lr"] * float(g @ d), rel=1e-12)
        assert summary[rule]["descent_lr_max"] == pytest.approx(
            2 * float(g @ d) / float(d @ H @ d) if float(g @ d) > 0 else 0.0
        )
    lam_max = float(problem.eigenvalues()[-1])
    assert summary["gradient"]["descent_lr_max"] >= 2 / lam_max * (1 - 1e-12)  # ||g||^2 / g^T H g >= 1/lambda_max


def test_gradient_always_descends_for_small_steps_and_scalar_does_not(problem):
    W = torch.randn(500, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam_max = float(problem.eigenvalues()[-1])
    f = fo.descent_fractions(problem, W, [1e-3 / lam_max, 1.0 / lam_max, 3.0 / lam_max], ["gradient", "scalar"])
    assert f["gradient"]["by_lr"][:2] == [500, 500] and f["gradient"]["limit"] == 1.0
    assert f["gradient"]["by_lr"][2] < 500  # above 2/lambda_max even the gradient step can overshoot
    s = f["scalar"]
    G = fo.gradients(problem, W)
    assert s["limit"] == pytest.approx(float((G.sum(dim=1) > 0).double().mean()))  # the sign of -lr sum(g)
    assert 0 < s["by_lr"][0] < 500


def test_the_minimum_is_a_fixed_point_of_the_rules_that_read_the_gradient(problem):
    lam_max = float(problem.eigenvalues()[-1])
    lr = 0.5 / lam_max
    fixed = fo.fixed_point(problem, lr, ["gradient", "scalar", "sign", "random"])
    assert fixed["gradient"]["gradient_norm_at_computed_optimum"] < 1e-10  # w* is the minimum, up to rounding
    assert fixed["gradient"]["step_norm"] == 0.0 and fixed["gradient"]["delta_loss"] == 0.0
    assert fixed["sign"]["step_norm"] == 0.0  # sign(0) = 0
    assert fixed["scalar"]["step_norm"] == pytest.approx(lr * math.sqrt(6), rel=1e-12)
    assert fixed["random"]["step_norm"] == pytest.approx(lr, rel=1e-12) and fixed["random"]["delta_loss"] > 0
    curvature = float(torch.ones(6, dtype=torch.float64) @ problem.hessian() @ torch.ones(6, dtype=torch.float64))
    assert fixed["scalar"]["delta_loss"] == pytest.approx(0.5 * lr**2 * curvature, rel=1e-6)
    m = analysis.fixed_point_metrics(fixed, {k: {"descent_fraction": 0, "delta_loss_last": 0} for k in fixed}, 1.0)
    assert m["gradient"]["stays"] and m["sign"]["stays"] and not m["scalar"]["stays"] and not m["random"]["stays"]


def test_along_a_run_the_gradient_step_tends_to_zero_and_scalar_to_a_positive_constant(problem):
    lam_max = float(problem.eigenvalues()[-1])
    lr = 1.0 / lam_max
    W = fo.gd_trajectory(problem, problem.w0, lr, 400)
    _, s = fo.along_run(problem, W, lr, ["gradient", "scalar"])
    ones = torch.ones(6, dtype=torch.float64)
    assert s["gradient"]["descent_fraction"] > 0.95 and abs(s["gradient"]["delta_loss_last"]) < 1e-8
    assert s["scalar"]["delta_loss_last"] == pytest.approx(
        0.5 * lr**2 * float(ones @ problem.hessian() @ ones), rel=1e-3
    )


def test_scalar_line_closed_form_matches_a_brute_force_scan(problem):
    line = fo.scalar_line(problem, problem.w0)
    ts = torch.linspace(line["best_t"] - 1, line["best_t"] + 1, 20001, dtype=torch.float64)
    scan = fo.losses(problem, problem.w0.unsqueeze(0) - ts.unsqueeze(1) * torch.ones(6, dtype=torch.float64))
    assert float(scan.min()) == pytest.approx(line["best_loss"], rel=1e-8)
    assert line["line_search_loss"] == pytest.approx(line["best_loss"], rel=1e-10)
    assert line["line_search_t"] == pytest.approx(line["best_t"], rel=1e-5)
    assert line["optimum_loss"] < line["best_loss"] < line["initial_loss"]
    w_star, opt = fo.optimum(problem)
    assert opt == pytest.approx(float(problem.loss(w_star)), rel=1e-12)


def test_sign_stall_matches_the_optimiser_and_grows_with_lr(problem):
    lam_max = float(problem.eigenvalues()[-1])
    lrs = [0.05 / lam_max, 0.5 / lam_max]
    rows, curves = fo.sign_stall(problem, problem.w0, lrs, 3000)
    v = problem.w0.clone().requires_grad_(True)
    opt = make_rule("sign", [v], lrs[1])
    for k in range(5):  # the batched loop is the SignDescent optimiser
        opt.zero_grad()
        loss = problem.loss(v)
        assert float(loss.detach()) == pytest.approx(curves[1][k], rel=1e-12)
        loss.backward()
        opt.step()
    assert rows[0]["stall_excess"] < rows[1]["stall_excess"]
    assert fo.loglog_slope([1, 10, 100], [2, 200, 20000]) == pytest.approx(2.0)
    assert math.isnan(fo.loglog_slope([1], [1]))


def test_divergence_definition():
    assert not analysis.diverged([1.0, 0.5])
    assert analysis.diverged([0.3, 18.0])  # a finite loss above the start counts
    assert analysis.diverged([0.3, math.inf]) and analysis.diverged([0.3, math.nan])
    row = analysis.mlp_row(1.0, 0, [0.3, 45.0], 0.05)
    table = analysis.summarise_grid([row, analysis.mlp_row(1.0, 1, [0.3, 0.1], 0.05)], [1.0])
    assert table[0]["diverged_seeds"] == 1 and not table[0]["diverged"]
    assert table[0]["final_loss_mean"] == 0.1 and table[0]["final_loss_ci_low"] is None  # one seed left: n/a


def test_edge_of_stability_and_catapult_criteria():
    lr, band = 0.4, (0.9, 1.1)
    at_edge = [2 / lr * r for r in (0.5, 0.8, 0.95, 1.05, 0.97, 1.02)]
    s = analysis.sharpness_seed(lr, list(range(6)), at_edge, [1.0, 0.8, 0.5, 0.4], tail=4, band=band)
    assert s["eos"] and not s["catapult"] and not s["below"]
    catapult = [2 / lr * r for r in (1.9, 0.4, 0.6, 0.9, 1.0, 1.0)]
    c = analysis.sharpness_seed(lr, list(range(6)), catapult, [0.3, 6.5, 0.25, 0.2], tail=3, band=band)
    assert c["catapult"] and c["eos"] and c["loss_spike"]
    low = analysis.sharpness_seed(lr, list(range(3)), [2 / lr * 0.7] * 3, [0.3, 0.2, 0.1], tail=3, band=band)
    assert low["below"] and not low["eos"] and not low["catapult"]
    bad = analysis.sharpness_seed(lr, [0, 1], [2 / lr * 2, 2 / lr * 3], [0.3, 5.0, math.inf], tail=2, band=band)
    assert bad["diverged"] and not bad["eos"] and not bad["catapult"]
    entry = analysis.sharpness_entry(lr, [s, c, low])
    assert entry["eos_seeds"] == 2 and entry["catapult_seeds"] == 1 and entry["rose_to_band_seeds"] == 1
    assert entry["eos"] == 0 and entry["settled_ratio_ci_low"] is None  # 3 seeds: no interval, no verdict
    one = analysis.sharpness_entry(lr, [s])
    assert one["eos"] == 0 and one["settled_ratio_per_seed"] == [s["settled_ratio"]]
    # ten seeds: the interval decides; inside the band +1, outside -1, straddling it 0
    assert analysis.sharpness_entry(lr, [s] * 5 + [c] * 5, band)["eos"] == 1
    assert analysis.sharpness_entry(lr, [low] * 10, band)["eos"] == -1
    straddle = [dict(s, settled_ratio=v) for v in (0.8, 1.0, 0.85, 1.05, 0.95, 0.8, 1.0, 0.9, 0.85, 1.0)]
    assert analysis.sharpness_entry(lr, straddle, band)["eos"] == 0
    # a catapult in 10 of 10 seeds: Wilson interval above one half; 5 of 10: inconclusive
    assert analysis.sharpness_entry(lr, [c] * 10, band)["catapult"] == 1
    assert analysis.sharpness_entry(lr, [c] * 5 + [s] * 5, band)["catapult"] == 0


def test_absolute_step_size_is_exclusive_with_the_relative_one():
    base = GDParams().model_dump()
    base["rules"]["lr"] = 0.01
    p = validate_section("gd", GDParams, base)
    assert p.rules.step_size(2.0) == 0.01 and "0.01 (absolute)" in p.rules.describe()
    assert GDParams().rules.step_size(2.0) == 0.5  # neither set: 1 / lambda_max
    base["rules"]["lr_times_lambda_max"] = 1.0
    with pytest.raises(ConfigError, match=r"^gd\.rules: lr \(0\.01\) and lr_times_lambda_max \(1\) are exclusive"):
        validate_section("gd", GDParams, base)
