"""The cosine with grad J (gradient.py): NumPy CartPole = gymnasium's, closed-form gradients = autograd, the
leave-one-out baseline, and the verdicts over seeds (analysis.gradient_metrics / gradient_flags)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gradlab.studies.pg import analysis
from gradlab.studies.pg.envs import CartPoleEnvs
from gradlab.studies.pg.gradient import (
    episode_grads,
    forward,
    log_probs,
    numpy_params,
    play,
    reward_to_go_weights,
    variant_weights,
)
from gradlab.studies.pg.losses import policy_loss
from gradlab.studies.pg.policy import Policy, Value
from gradlab.studies.pg.returns import advantages, discounted_returns


def test_numpy_cartpole_is_gymnasium_bit_for_bit_until_each_end():
    gym = pytest.importorskip("gymnasium")
    n = 4
    ref = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    mine = CartPoleEnvs(n)
    for seed, balance in ((3, False), (7, True)):  # random pushes (early ends), a balancing rule (truncation at 500)
        rng = np.random.default_rng(seed)
        o1, _ = ref.reset(seed=seed)
        o2 = mine.reset(seed)
        assert np.array_equal(o1, o2)
        alive = np.ones(n, bool)
        for _ in range(501):
            a = (o2[:, 2] + 0.3 * o2[:, 3] > 0).astype(np.int64) if balance else rng.integers(0, 2, n)
            o1, r1, term, trunc, _ = ref.step(a)
            o2, r2, done = mine.step(a)
            assert np.array_equal(o1[alive], o2[alive]) and np.array_equal((term | trunc)[alive], done[alive])
            assert np.array_equal(r1[alive], r2[alive])
            alive &= ~done
            if not alive.any():
                break
        assert not alive.any()
    ref.close()


def test_closed_form_directions_equal_minus_the_autograd_gradient_of_every_loss():
    torch.manual_seed(0)
    pol, val = Policy(4, 8, 2), Value(4, 8)
    P = numpy_params(pol.state_dict())
    roll = play(pol, 6, 3)
    logp, _ = log_probs(P, roll["obs"], roll["actions"])
    values = forward(numpy_params(val.state_dict()), roll["obs"].astype(np.float64))[1][..., 0]
    weights, _ = variant_weights(roll, logp, 3, 0.99, "batch", values)
    per_episode = episode_grads(P, roll, weights)
    pol64 = Policy(4, 8, 2).double()
    pol64.load_state_dict({k: v.double() for k, v in pol.state_dict().items()})
    lengths = roll["lengths"]
    for b in range(2):
        eps = range(3 * b, 3 * b + 3)
        obs = torch.cat([torch.from_numpy(roll["obs"][: lengths[n], n]).double() for n in eps])
        act = torch.cat([torch.from_numpy(roll["actions"][: lengths[n], n]) for n in eps])
        rets = [discounted_returns(np.ones(int(lengths[n])), 0.99) for n in eps]
        adv, G = torch.from_numpy(advantages(rets, "batch")), torch.from_numpy(np.concatenate(rets))
        V = torch.cat([torch.from_numpy(values[: lengths[n], n]) for n in eps])
        for v in ("correct", "flipped", "abs", "pow", "no_standardize", "baseline"):
            pol64.zero_grad()
            policy_loss(v, pol64.log_prob(obs, act), adv, G, V).backward()
            expected = -torch.cat([q.grad.reshape(-1) for q in pol64.parameters()]).numpy()
            got = per_episode[v][3 * b : 3 * b + 3].sum(0)
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10, err_msg=v)


def test_reward_to_go_minus_the_leave_one_out_mean_of_the_other_running_episodes():
    alive = np.zeros((4, 3), bool)
    alive[:2, 0], alive[:4, 1], alive[:3, 2] = True, True, True  # lengths 2, 4, 3
    w = reward_to_go_weights(alive)
    # t = 0: R = (2, 4, 3); episode 0's baseline is the mean of 4 and 3
    np.testing.assert_allclose(w[0], [2 - 3.5, 4 - 2.5, 3 - 3.0])
    # t = 3: only episode 1 runs: no other episode, no baseline
    np.testing.assert_allclose(w[3], [0.0, 1.0, 0.0])
    assert (w[~alive] == 0).all()


def _fake_results(seeds: int, cos: dict[str, float], noise: float = 0.05) -> list[dict]:
    """Trials whose measurements have the given cosines (plus noise) at checkpoints 0 and 5."""
    rng = np.random.default_rng(0)
    results = []
    for v in ("correct", "pow", "abs"):
        for s in range(seeds):
            ms = []
            for u in (0, 5):
                c = {d: x + noise * rng.standard_normal() for d, x in cos.items()}
                c["flipped"] = -c["correct"]
                ms.append(
                    {
                        "update": u,
                        "cos": c,
                        "direction_rel_se": dict.fromkeys(c, 0.1),
                        "return_mean": 20.0,
                        "entropy": 0.6 if v == "correct" else 0.3,
                        "grad_j_rel_se": 0.1,
                        "grad_j_split_half_cos": 0.9,
                        "grad_j_norm": 5.0,
                        "abs_cos_sum_negative": -0.5 + noise * rng.standard_normal(),
                        "abs_cos_sum_positive": 0.5 + noise * rng.standard_normal(),
                        "sum_negative_batch_fraction": 0.5,
                        "pow_weight_share_adv_neg": 0.9,
                    }
                )
            results.append({"variant": v, "seed": s, "gradient": ms})
    return results


def test_gradient_verdicts_over_ten_seeds_and_inconclusive_with_three():
    p = SimpleNamespace(variants=["correct", "flipped", "abs", "pow"], gradient_episodes=10, gradient_batches=4)
    g = analysis.gradient_metrics(_fake_results(10, {"correct": 0.8, "pow": -0.3, "abs": 0.1}), p)
    x = g["at_correct"]["correct"]["u5"]
    assert x["seeds"] == 10 and -1.0 <= x["ci_low"] < x["mean"] < x["ci_high"] <= 1.0
    assert x["p"] == pytest.approx(2 / 2**10)
    flags, counts = analysis.gradient_flags(g)
    assert flags["gradient_correct_positive_u5"] == 1 and counts["gradient_correct_positive_u5"] == 10
    assert flags["gradient_flipped_negative_u5"] == 1
    assert flags["gradient_pow_below_correct_u5"] == 1
    assert flags["gradient_abs_negative_when_sum_negative_u0"] == 1
    assert flags["gradient_abs_positive_when_sum_positive_u0"] == 1
    assert flags["pow_entropy_above_correct_u0"] == -1  # pow's policies: lower entropy here
    assert "flipped" not in g["own"] or all(math.isnan(v) for v in g["own"]["flipped"]["u0"]["per_seed"])
    small = analysis.gradient_metrics(_fake_results(3, {"correct": 0.8, "pow": -0.3, "abs": 0.1}), p)
    assert small["at_correct"]["correct"]["u0"]["ci_low"] is None  # no interval below 10 seeds
    assert analysis.gradient_flags(small)[0]["gradient_correct_positive_u0"] == 0  # p_min 0.25: inconclusive


def test_summary_leads_with_every_cosine_and_states_each_verdict():
    from gradlab.studies.pg.summary import gradient_lines

    p = SimpleNamespace(
        variants=["correct", "flipped", "abs", "pow"], gradient_episodes=10, gradient_batches=4, episodes_per_update=5
    )
    g = analysis.gradient_metrics(_fake_results(10, {"correct": 0.8, "pow": -0.3, "abs": 0.1}), p)
    flags, _ = analysis.gradient_flags(g)
    text = "\n".join(gradient_lines({"gradient": g, "flags": flags}, p))
    assert text.startswith("## Does each loss move the policy up the true gradient?")
    assert "| `pow` | -0.3" in text and "after 5: yes" in text  # pow's row; correct positive after 5 updates
    assert not any(word in text for word in ("nan", "None", "inf"))
