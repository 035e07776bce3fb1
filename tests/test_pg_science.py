"""pg study: returns, standardisation, the six losses, the probe and the Pong preprocessing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradlab.config import ConfigError, validate_section
from gradlab.studies.pg.config import CartPoleParams, PongParams
from gradlab.studies.pg.losses import policy_loss, value_loss
from gradlab.studies.pg.policy import Policy
from gradlab.studies.pg.probe import dlogp_adv_corr, probe_step
from gradlab.studies.pg.returns import advantages, discounted_returns, standardize


def test_discounted_returns_reset_at_each_point():
    r = [0.0, 0.0, 1.0, 0.0, -1.0]
    assert np.allclose(discounted_returns(r, 0.5, reset_at_reward=True), [0.25, 0.5, 1.0, -0.5, -1.0])
    # without the reset the -1 of the second point leaks into the first point's actions
    assert np.allclose(discounted_returns(r, 0.5), [0.1875, 0.375, 0.75, -0.5, -1.0])
    # CartPole: +1 every step, discounting over the whole episode
    assert np.allclose(discounted_returns([1.0] * 3, 0.9), [1 + 0.9 + 0.81, 1.9, 1.0])


def test_standardize_and_advantages():
    z = standardize(np.array([1.0, 2.0, 3.0, 6.0]))
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12
    assert np.all(standardize(np.full(4, 7.0)) == 0)  # constant returns: no signal, not NaN
    a, b = np.array([1.0, 2.0]), np.array([10.0, 20.0, 30.0])
    per_batch = advantages([a, b], "batch")
    assert np.allclose(per_batch, standardize(np.concatenate([a, b])))
    per_episode = advantages([a, b], "episode")
    assert np.allclose(per_episode, [-1, 1, -math.sqrt(1.5), 0, math.sqrt(1.5)])


# a hand-made batch: two steps, pi(a_0|s_0) = 0.5 followed by A = +1, pi(a_1|s_1) = 0.25 followed by A = -1
P = torch.tensor([0.5, 0.25], dtype=torch.float64)
CE = -torch.log(P)
ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)
G = torch.tensor([2.0, 3.0], dtype=torch.float64)
V = torch.tensor([2.5, 2.5], dtype=torch.float64)


def _value_and_grad(variant):
    logp = torch.log(P).requires_grad_(True)
    values = V.clone().requires_grad_(True)
    loss = policy_loss(variant, logp, ADV, G, values)
    loss.backward()
    assert values.grad is None or torch.all(values.grad == 0)  # the policy loss never trains the baseline
    return float(loss.detach()), logp.grad


@pytest.mark.parametrize(
    "variant, value, descent_sign",
    [
        ("correct", float(CE[0] - CE[1]), [1, -1]),  # descent raises log pi where A > 0, lowers it where A < 0
        ("flipped", float(CE[1] - CE[0]), [-1, 1]),  # the opposite
        ("abs", float(abs(CE[0] - CE[1])), [-1, 1]),  # here sum(A*CE) < 0, so |.| flips the step
        ("pow", float(CE[0] ** 1 + CE[1] ** -1), [1, -1]),  # same signs as correct, other weights
        ("no_standardize", float(2 * CE[0] + 3 * CE[1]), [1, 1]),  # all G > 0: every action reinforced
        ("baseline", float(-0.5 * CE[0] + 0.5 * CE[1]), [-1, 1]),  # G - V = [-0.5, +0.5]
    ],
)
def test_loss_value_and_gradient_sign(variant, value, descent_sign):
    loss, grad = _value_and_grad(variant)
    assert loss == pytest.approx(value, rel=1e-12)
    # gradient descent moves log pi by -grad
    assert torch.equal(torch.sign(-grad), torch.tensor(descent_sign, dtype=grad.dtype))


def test_pow_gradient_weights_and_value_loss():
    _, grad = _value_and_grad("pow")
    # d/dlogp CE^A = -A * CE^(A-1)
    assert torch.allclose(grad, -ADV * CE.pow(ADV - 1))
    assert float(value_loss(V, G)) == pytest.approx(0.5 * (0.25 + 0.25))
    with pytest.raises(ValueError, match="allowed: correct, flipped"):
        policy_loss("bogus", torch.log(P), ADV, G)


def test_probe_sign_follows_the_loss_sign():
    torch.manual_seed(0)
    policy = Policy(4, 16, 2)
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.normal(size=(64, 4))).float()
    batch = {
        "obs": obs,
        "actions": torch.from_numpy(rng.integers(0, 2, 64)),
        "adv": torch.from_numpy(standardize(rng.normal(size=64))).float(),
    }
    returns = batch["adv"] + 3

    def probe(variant):
        return probe_step(policy, lambda lp: policy_loss(variant, lp, batch["adv"], returns), batch, 1e-3)

    correct, flipped = probe("correct"), probe("flipped")
    assert correct > 0.1 and flipped < -0.1
    assert flipped == pytest.approx(-correct, abs=0.02)  # first order: the exact mirror image
    assert dlogp_adv_corr(np.zeros(3), np.ones(3), np.arange(3.0)) != dlogp_adv_corr(
        np.zeros(3), np.arange(3.0), np.arange(3.0)
    )  # constant change: NaN; proportional change: 1
    assert dlogp_adv_corr(np.zeros(3), np.arange(3.0), np.arange(3.0)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def pong_frame():
    """A real Pong frame after 80 emulator frames: both paddles and the ball are on screen."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5", repeat_action_probability=0.0, frameskip=1)
    rgb, _ = env.reset(seed=0)
    for _ in range(80):
        rgb, *_ = env.step(0)
    gray = env.unwrapped.ale.getScreenGrayscale()
    env.close()
    return rgb, gray


def test_pong_preprocessing_on_a_real_frame(pong_frame):
    from gradlab.studies.pg.envs import preprocess_pong, preprocess_pong_rgb

    rgb, gray = pong_frame
    assert rgb.shape == (210, 160, 3)
    x = preprocess_pong_rgb(rgb[None])[0]
    assert x.shape == (80, 80) and set(np.unique(x)) == {0, 1}
    ys, xs = np.nonzero(x)
    cols = {int(c): (int(ys[xs == c].min()), int((xs == c).sum())) for c in np.unique(xs)}
    # opponent paddle (2 x 8 after halving 4 x 16), our paddle (2 x 8), the ball (1 x 2); score and walls cropped
    assert [c for c, (_, n) in cols.items() if n == 8] == [8, 9, 70, 71]
    assert [n for c, (_, n) in cols.items() if c not in (8, 9, 70, 71)] == [2]
    assert x.sum() == 8 * 4 + 2
    # the grayscale path used for training gives the same image, and its 40x40 version keeps every object
    y = preprocess_pong(gray[None], 1)[0].reshape(80, 80)
    assert np.array_equal(y, x)
    z = preprocess_pong(gray[None], 2)[0].reshape(40, 40)
    assert np.array_equal(z, x.reshape(40, 2, 40, 2).max(axis=(1, 3)))
    assert z[:, 14].sum() >= 1  # the ball (column 29 -> 14) survives the 2x2 max-pooling


def test_pong_envs_frame_difference_and_points():
    from gradlab.studies.pg.envs import PongEnvs

    env = PongEnvs(2, points_per_episode=1, threads=1)
    obs = env.reset(seed=3)
    assert obs.shape == (2, 1600) and not obs.any()  # first observation: no previous frame
    done_at, moved = [None, None], False
    for t in range(400):
        obs, reward, done = env.step(np.array([0, 1]))
        moved |= bool(obs.any())
        assert set(np.unique(obs)) <= {-1, 0, 1}
        for i in range(2):
            if done[i] and done_at[i] is None:
                done_at[i] = (t, float(reward[i]))
        if all(d is not None for d in done_at):
            break
    env.close()
    assert moved
    assert all(d is not None and d[1] != 0 for d in done_at)  # an episode of 1 point ends with its reward


def test_config_refuses_bad_values():
    with pytest.raises(ConfigError, match=r"pg_cartpole\.variants\.0: must be one of"):
        validate_section("pg_cartpole", CartPoleParams, {"variants": ["nope"]})
    with pytest.raises(ConfigError, match="variants must be distinct"):
        validate_section("pg_cartpole", CartPoleParams, {"variants": ["correct", "correct"]})
    with pytest.raises(ConfigError, match="pg_pong: .*GiB"):
        validate_section("pg_pong", PongParams, {"downsample": 1, "episodes_per_update": 256})
    with pytest.raises(ConfigError, match=r"pg_pong\.bogus: unknown key"):
        validate_section("pg_pong", PongParams, {"bogus": 1})
