"""pg tools on any policy: probe_step / probe_update / logp_moves / fixed_batch_descent on a plain nn.Sequential
or with a log_prob_fn, policy_loss without the inputs a variant does not read, batch validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradlab.studies.pg.losses import policy_loss
from gradlab.studies.pg.policy import Policy
from gradlab.studies.pg.probe import (
    dlogp_adv_corr,
    fixed_batch_descent,
    logits_log_prob,
    logp_moves,
    probe_step,
    probe_update,
)
from gradlab.studies.pg.returns import standardize


def _batch(n=64, obs_dim=4, n_actions=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "obs": torch.from_numpy(rng.normal(size=(n, obs_dim))).float(),
        "actions": torch.from_numpy(rng.integers(0, n_actions, n)),
        "adv": torch.from_numpy(standardize(rng.normal(size=n))).float(),
    }


def test_probe_step_on_a_plain_sequential_equals_the_projects_policy():
    torch.manual_seed(0)
    policy = Policy(4, 16, 2)
    plain = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    plain.load_state_dict(policy.net.state_dict())
    batch = _batch()
    for variant in ("correct", "flipped"):
        ours = probe_step(policy, variant, batch, 1e-3)
        theirs = probe_step(plain, variant, batch, 1e-3)
        assert theirs == pytest.approx(ours, abs=1e-6)
    assert probe_step(plain, "correct", batch) > 0.1 > -0.1 > probe_step(plain, "flipped", batch)
    # a callable loss gives the same as the variant's name
    by_fn = probe_step(plain, lambda lp: policy_loss("correct", lp, batch["adv"]), batch)
    assert by_fn == pytest.approx(probe_step(plain, "correct", batch), abs=1e-9)


def test_probe_with_a_log_prob_fn_for_a_policy_that_does_not_return_logits():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3), nn.Softmax(dim=-1))  # returns probabilities

    def log_prob(policy, obs, actions):
        return torch.log(policy(obs).gather(1, actions.long().unsqueeze(1)).squeeze(1))

    batch = _batch(n_actions=3)
    r = probe_update(net, "correct", batch, 1e-3, log_prob_fn=log_prob)
    f = probe_update(net, "flipped", batch, 1e-3, log_prob_fn=log_prob)
    assert r["corr"] > 0 and f["corr"] == pytest.approx(-r["corr"], abs=0.02)
    # first order: flipped's change is minus correct's, so its fractions are the complements
    assert f["adv_neg_logp_down_fraction"] == pytest.approx(1 - r["adv_neg_logp_down_fraction"], abs=0.05)
    assert r["adv_weighted_right_fraction"] > 0.5 > f["adv_weighted_right_fraction"]
    with pytest.raises(ValueError, match=r"logits \[T, n_actions\]"):
        probe_step(nn.Sequential(nn.Linear(4, 1), nn.Flatten(0)), "correct", batch)


def test_policy_loss_takes_only_what_the_variant_reads():
    logp = torch.log(torch.tensor([0.5, 0.25]))
    adv = torch.tensor([1.0, -1.0])
    assert float(policy_loss("correct", logp, adv)) == pytest.approx(math.log(2) - math.log(4))
    assert float(policy_loss("no_standardize", logp, returns=np.array([2.0, 3.0]))) == pytest.approx(
        2 * math.log(2) + 3 * math.log(4)
    )
    with pytest.raises(ValueError, match="'no_standardize' needs returns"):
        policy_loss("no_standardize", logp, adv)
    with pytest.raises(ValueError, match="'baseline' needs values"):
        policy_loss("baseline", logp, returns=torch.ones(2))
    with pytest.raises(ValueError, match=r"adv must have the shape of logp, \[2\].*got \(2, 1\)"):
        policy_loss("correct", logp, adv[:, None])
    with pytest.raises(ValueError, match=r"logp must be a 1-D tensor"):
        policy_loss("correct", logp[:, None], adv)


def test_batch_validation_names_the_key():
    net = nn.Sequential(nn.Linear(4, 2))
    b = _batch(n=8)
    with pytest.raises(ValueError, match="batch needs the key 'adv'"):
        probe_step(net, "correct", {k: v for k, v in b.items() if k != "adv"})
    with pytest.raises(ValueError, match=r"batch\['adv'\] must have shape \[8\]"):
        probe_step(net, "correct", {**b, "adv": b["adv"][:5]})
    with pytest.raises(ValueError, match="needs the key 'returns'"):
        probe_step(net, "no_standardize", b)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 2\)"):
        logits_log_prob(net, b["obs"], b["actions"] + 5)


def test_logp_moves_counts_by_the_sign_of_a():
    before = np.zeros(6)
    after = np.array([-1.0, -1.0, 1.0, 1.0, 1.0, -1.0])
    adv = np.array([-2.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    m = logp_moves(before, after, adv)
    assert m["adv_neg_logp_down_fraction"] == pytest.approx(2 / 3)
    assert m["adv_pos_logp_up_fraction"] == pytest.approx(2 / 3)
    assert m["adv_weighted_right_fraction"] == pytest.approx((2 + 1 + 1 + 1) / 7)
    assert (m["n_adv_neg"], m["n_adv_pos"]) == (3, 3)
    assert math.isnan(logp_moves(before, after, np.ones(6))["adv_neg_logp_down_fraction"])  # no A < 0 sample
    # tensors with a graph are accepted too
    assert dlogp_adv_corr(torch.zeros(3, requires_grad=True), torch.arange(3.0), torch.arange(3.0)) == pytest.approx(1)


def test_fixed_batch_descent_drives_the_correct_loss_below_zero_and_abs_to_zero():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    batch = _batch(n=40)
    opt = lambda params: torch.optim.RMSprop(params, lr=0.01, alpha=0.99, eps=1e-5)  # noqa: E731
    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses, stepped = fixed_batch_descent(net, "correct", batch, 60, optimizer=opt)
    assert len(losses) == 61 and losses[-1] < 0 and losses[-1] < losses[-10] < losses[0]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the policy itself is untouched
    assert not torch.equal(stepped.state_dict()["0.weight"], before["0.weight"])
    abs_losses, _ = fixed_batch_descent(net, "abs", batch, 60, optimizer=opt)
    assert min(abs_losses) >= 0 and abs_losses[-1] < abs(losses[-1])
