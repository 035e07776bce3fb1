"""pg: the streaming Pong rollout, the win criterion, the question's move cost, and small-sample statistics."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy import stats

from gradlab.config import ConfigError, validate_section
from gradlab.stats import bootstrap_mean_ci, permutation_test
from gradlab.studies.pg.config import PongParams
from gradlab.studies.pg.policy import Policy
from gradlab.studies.pg.stream import PongStream
from gradlab.studies.pg.trial import running_mean


def random_act(obs, rng):
    return rng.integers(0, 2, obs.shape[0])


def play(seed: int, games: int, groups: int) -> tuple[list[dict], PongStream, list[int]]:
    env = PongStream(4, groups=groups, points_per_episode=1, threads=1)
    env.start(seed)
    rows = []  # games stepped per call of the policy: every step the emulator takes

    def act(obs, rng):
        rows.append(obs.shape[0])
        return random_act(obs, rng)

    return env.play(act, games), env, rows


@pytest.mark.parametrize("groups", [1, 2])
def test_stream_is_deterministic_and_keeps_every_step(groups):
    first, env, rows = play(3, 6, groups)
    steps_in_progress = sum(len(s[1]) for s in env.steps)  # games still being played
    steps_in_progress += sum(len(e["actions"]) for e in env.finished)  # ended, kept for the next call
    env.close()
    again, env2, _ = play(3, 6, groups)
    env2.close()
    assert [len(e["rewards"]) for e in first] == [len(e["rewards"]) for e in again]
    assert all(np.array_equal(a["obs"], b["obs"]) for a, b in zip(first, again, strict=True))
    for e in first:  # one point per episode: it ends with its reward, the first observation has no previous frame
        assert e["rewards"][-1] != 0 and (e["rewards"][:-1] == 0).all()
        assert not e["obs"][0].any() and e["obs"].shape[1] == 1600
        assert len(e["obs"]) == len(e["actions"]) == len(e["rewards"])
    # nothing thrown away: every step sent is in a finished episode or in a game still in progress
    assert sum(len(e["actions"]) for e in first) + steps_in_progress == sum(rows)


def test_stream_games_go_on_across_calls():
    env = PongStream(2, groups=2, points_per_episode=1, threads=1)
    env.start(0)
    a = env.play(random_act, 2)
    b = env.play(random_act, 3)
    env.close()
    assert len(a) == 2 and len(b) == 3


class _InterruptAfter:
    """An emulator handle whose ``method`` does its work and then raises KeyboardInterrupt on call ``at``: what
    Ctrl-C does, since Python raises it as the C call returns, before the next line."""

    def __init__(self, ale, method: str, at: int):
        self.ale, self.method, self.at, self.calls = ale, method, at, 0

    def __getattr__(self, name):
        real = getattr(self.ale, name)
        if name != self.method:
            return real

        def call(*args):
            out = real(*args)
            self.calls += 1
            if self.calls == self.at:
                raise KeyboardInterrupt
            return out

        return call


@pytest.mark.parametrize("where", ["after_recv", "in_act", "recv_returns", "send_returns"])
def test_close_after_an_interrupt_mid_play_does_not_hang(where):
    """Ctrl-C can land between receiving a group's step and sending the next: close() must not wait for a step
    that was already received (it blocked forever before in_flight was cleared on receipt)."""
    import threading

    env = PongStream(4, groups=2, points_per_episode=1, threads=1)
    env.start(0)
    calls = {"n": 0}

    def interrupting_act(obs, rng):
        calls["n"] += 1
        if where == "in_act" and calls["n"] == 5:
            raise KeyboardInterrupt
        return random_act(obs, rng)

    if where == "after_recv":
        frames = env._frames
        seen = {"n": 0}

        def interrupting_frames(raw):
            seen["n"] += 1
            if seen["n"] == 5:  # after start()'s two resets: a step already received, not yet processed
                raise KeyboardInterrupt
            return frames(raw)

        env._frames = interrupting_frames
    if where in ("recv_returns", "send_returns"):
        env.envs[1].ale = _InterruptAfter(env.envs[1].ale, where.split("_")[0], at=3)
    with pytest.raises(KeyboardInterrupt):
        env.play(interrupting_act, 100)
    closer = threading.Thread(target=env.close, daemon=True)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive(), "PongStream.close() blocked after an interrupt"


def test_policy_act_samples_the_softmax():
    torch.manual_seed(0)
    policy = Policy(5, 4, 3)
    obs = np.tile(np.array([[1, -1, 0, 1, 0]], dtype=np.int8), (20000, 1))
    with torch.no_grad():
        probs = torch.softmax(policy(torch.from_numpy(obs[:1]).float()).double(), -1).numpy()[0]
    counts = np.bincount(policy.act(obs, np.random.default_rng(0)), minlength=3)
    assert stats.chisquare(counts, probs / probs.sum() * counts.sum()).pvalue > 1e-3


def test_sparse_act_follows_the_weights_after_each_step_and_copy():
    """Pong's int8 path (sparse first layer on a cached transposed copy) samples what the float path samples,
    after an optimiser step, a load_state_dict and a deepcopy (a stale copy would sample the old policy)."""
    import copy

    torch.manual_seed(0)
    policy = Policy(64, 16, 3)
    rng = np.random.default_rng(1)
    obs = rng.choice(np.array([-1, 0, 0, 0, 1], dtype=np.int8), size=(500, 64))

    def same_actions(pol):
        a = pol.act(obs, np.random.default_rng(7))
        b = pol.act(obs.astype(np.float32), np.random.default_rng(7))
        return (a == b).mean()

    assert same_actions(policy) == 1.0
    opt = torch.optim.SGD(policy.parameters(), lr=1.0)
    for _ in range(3):
        policy(torch.from_numpy(obs).float())[:, 0].sum().backward()
        opt.step()
        opt.zero_grad()
        assert same_actions(policy) == 1.0
    other = Policy(64, 16, 3)
    policy.load_state_dict(other.state_dict())
    assert same_actions(policy) == 1.0
    twin = copy.deepcopy(policy)
    with torch.no_grad():
        twin.net[0].weight.mul_(-3.0)
    assert same_actions(twin) == 1.0 and same_actions(policy) == 1.0


def test_sparse_batch_gives_the_dense_loss_and_gradients():
    from gradlab.studies.pg.rollout import observations

    rng = np.random.default_rng(2)
    x = rng.choice(np.array([-1, 0, 0, 0, 0, 0, 1], dtype=np.int8), size=(300, 100))
    x[[0, 7, -1]] = 0  # empty rows (a game's first step)
    sparse, dense = observations(x), torch.from_numpy(x).float()
    assert sparse.layout == torch.sparse_csr and torch.equal(sparse.to_dense(), dense)
    torch.manual_seed(0)
    policy = Policy(100, 8, 2)
    actions = torch.from_numpy(rng.integers(0, 2, 300))
    grads = []
    for obs in (sparse, dense):
        policy.zero_grad()
        loss = (policy.log_prob(obs, actions) * torch.linspace(-1, 1, 300)).sum()
        loss.backward()
        grads.append([q.grad.clone() for q in policy.parameters()])
    for g_sparse, g_dense in zip(*grads, strict=True):
        torch.testing.assert_close(g_sparse, g_dense, rtol=1e-5, atol=1e-6)


def test_move_cost_lowers_the_probability_of_moving():
    from gradlab.studies.pg.module import Reinforce
    from gradlab.studies.pg.rollout import make_collector

    p = PongParams(actions="noop_up_down", move_cost=1.0, updates=1, episodes_per_update=2, final_episodes=1, hidden=8)
    collector = make_collector("pong", p)
    module = Reinforce(p, "pong", "correct", 0, collector)
    collector.close()
    obs = torch.randint(-1, 2, (50, 1600)).float()
    batch = {
        "obs": obs,
        "actions": torch.zeros(50, dtype=torch.long),
        "adv": torch.zeros(50),
        "returns": torch.zeros(50),
    }
    move = lambda: float((1 - torch.softmax(module.policy(obs), -1)[:, 0]).sum())  # noqa: E731
    before = move()
    loss, _ = module.losses(batch)  # A = 0: only the move cost has a gradient
    loss.backward()
    with torch.no_grad():
        for q in module.policy.parameters():
            q -= 0.01 * q.grad
    assert move() < before


def test_config_refuses_a_move_cost_without_noop():
    with pytest.raises(ConfigError, match="move_cost needs actions: noop_up_down"):
        validate_section("pg_pong", PongParams, {"move_cost": 0.01})
    with pytest.raises(ConfigError, match="needs rollout: stream"):
        validate_section("pg_pong", PongParams, {"actions": "noop_up_down", "rollout": "episodes"})


def test_stop_criterion_is_the_first_game_above_the_target():
    from types import SimpleNamespace

    from gradlab.studies.pg.loop import Training, first_game_above

    training = Training.__new__(Training)
    training.p = PongParams(stop_at_mean=0.0, stop_window=4, updates=2, episodes_per_update=4, final_episodes=1)
    training.stopped_at_game = -1
    training.module = SimpleNamespace(episodes={"return": [-3.0, 1.0, 1.0, 1.0, 1.0, 5.0]})
    assert training.stop_reached(first_new=0)  # window (1, 1, 1, 1) after game 5: mean 1 > 0
    assert training.stopped_at_game == 5
    assert first_game_above([-3.0, 1.0, 1.0, 1.0, 1.0, 5.0], 5, 0.0, 4) == 6  # only games after the first_new-th
    assert first_game_above([-3.0, 1.0, 1.0, 1.0], 0, 0.0, 4) == -1
    assert running_mean([-3.0, 1.0, 1.0, 1.0, 1.0], 4)[-1] == pytest.approx(1.0)


def test_permutation_test_is_exact_and_states_its_floor():
    a, b = [3.0, 4.0, 5.0], [0.0, 1.0, 2.0]
    r = permutation_test(a, b)
    assert r["exact"] and r["p"] == pytest.approx(0.1) and r["p_min"] == pytest.approx(0.1)
    # against a brute-force enumeration on uneven groups
    a, b = [1.2, 3.4, 0.5, 2.2], [0.1, 0.3, 1.9]
    pooled = np.array(a + b)
    observed = abs(np.mean(a) - np.mean(b))
    diffs = [abs(pooled[list(i)].mean() - np.delete(pooled, list(i)).mean()) for i in combinations(range(7), 4)]
    assert permutation_test(a, b)["p"] == pytest.approx(np.mean(np.array(diffs) >= observed - 1e-12))


def test_bootstrap_interval_stays_in_range_and_fewer_than_ten_values_have_none():
    returns = [-21.0, -21.0, -20.0, -21.0, -19.0, -21.0, -21.0, -20.0, -21.0, -21.0]
    mean, lo, hi = bootstrap_mean_ci(returns, -21, 21)
    assert -21 <= lo <= mean <= hi <= 21
    assert bootstrap_mean_ci([0.5], -1, 1) == (0.5, None, None)
    assert bootstrap_mean_ci([-21.0, -21.0, -20.0], -21, 21)[1:] == (None, None)  # 3 seeds: no "95 % CI"
    m, lo, hi = bootstrap_mean_ci([0.99, 1.0, 0.98, 1.0] * 3, -1.0, 1.0)
    assert hi <= 1.0 and not math.isnan(m)


@pytest.mark.slow
def test_child_run_is_running_and_growing_while_the_trial_trains(store, monkeypatch):
    from gradlab.studies.pg import trial as trial_module
    from gradlab.tracking import Run, Tracker
    from gradlab.trials import Child, Runs, run_trials

    monkeypatch.setattr(Run, "LIVE_EVERY", 0.0)  # send after every update
    tracker = Tracker(store)
    parent = tracker.start_run("gradlab/pg_pong", "pg_pong")
    p = PongParams(updates=3, episodes_per_update=2, final_episodes=2, points_per_episode=1, hidden=8)
    seen = []
    original = trial_module._Games.__call__

    def spy(self, module, first_new):
        original(self, module, first_new)  # the trial's own streaming, then what a reader sees
        (run,) = tracker.runs("gradlab/pg_pong", f"tags.mlflow.parentRunId = '{parent.id}'")
        history = tracker.client.get_metric_history(run.info.run_id, "episode/return")
        seen.append((run.info.status, len(history), len(module.episodes["return"])))

    monkeypatch.setattr(trial_module._Games, "__call__", spy)
    spec = trial_module.TrialSpec("pong", p, "correct", 0)
    runs = Runs(store, "gradlab/pg_pong", parent.id)
    (result,) = run_trials(
        trial_module.run_trial, [spec], workers=1, runs=runs, child=lambda s: Child(s.variant, s.seed), tracker=tracker
    )
    assert [s for s, _, _ in seen] == ["RUNNING"] * 3
    assert [n for _, n, _ in seen] == [g for _, _, g in seen] == [2, 4, 6]  # the curve grows with the games
    (run,) = tracker.runs("gradlab/pg_pong", f"tags.mlflow.parentRunId = '{parent.id}'")
    assert run.info.status == "FINISHED" and run.info.run_name == "correct__seed0"
    assert run.data.metrics["eval/final_return"] == result["summary"]["final_return"]
