"""PlaNet: the CEM planner on hand-made dynamics, the SB3 contract of a policy without an actor,
and two toy tasks it solves in seconds."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from envs import CueEnv, TargetEnv, seeded_monitor
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_dreamer import DreamerV2, PlaNet
from sb3_dreamer.common.rssm import RSSMState
from sb3_dreamer.planet import CEM

FAST = dict(learning_starts=40, batch_size=4, sequence_length=8, train_freq=4, gradient_steps=1)
PLANNER = dict(planning_horizon=3, candidates=50, iterations=2, top_k=5)
LEARN = dict(
    model_size="tiny",
    learning_starts=200,
    batch_size=16,
    sequence_length=12,
    train_freq=2,
    gradient_steps=1,
    candidates=100,
    iterations=3,
    top_k=10,
    seed=0,
    policy_kwargs=dict(deter_size=32, hidden_size=32, stoch_size=4, mlp_units=64, mlp_layers=2),
)


class Integrator(th.nn.Module):
    """x_{t+1} = x_t + a_t, reward -(x - target)^2 per step: the best plan moves to the target
    in one step and stays (the first action is target - x_0)."""

    def __init__(self, target):
        super().__init__()
        self.target = th.as_tensor(target)
        self.rssm = self

    def img_step(self, state, action, sample=True):
        return RSSMState(state.deter + action, state.stoch, state.stats)

    def reward(self, feat):
        return -((feat[:, : len(self.target)] - self.target) ** 2).sum(-1)


def _state(x):
    x = th.as_tensor(x, dtype=th.float32)
    return RSSMState(x, x[:, :0], x[:, :0])


def test_cem_finds_the_best_first_action_of_a_known_model():
    planner = CEM(horizon=4, candidates=500, iterations=6, top_k=50)
    generator = th.Generator().manual_seed(0)
    first = planner.plan(Integrator([0.5, -0.3]), _state([[0.0, 0.0], [0.2, 0.1]]), 2, False, generator)
    np.testing.assert_allclose(first.numpy(), [[0.5, -0.3], [0.3, -0.4]], atol=0.08)
    assert first.abs().max() <= 1.0  # the belief lives in the actor's [-1, 1]


def test_discrete_cem_picks_the_rewarding_action():
    class Count(Integrator):
        def reward(self, feat):
            return feat[:, 2]  # one point for each time action 2 was taken

    first = CEM(horizon=3, candidates=64, iterations=3, top_k=8).plan(
        Count([0.0]), _state(th.zeros(2, 3)), 3, True, th.Generator().manual_seed(1)
    )
    np.testing.assert_array_equal(first.numpy(), [[0, 0, 1], [0, 0, 1]])


@pytest.mark.parametrize("bad", [dict(top_k=20, candidates=10), dict(horizon=0), dict(iterations=0)])
def test_bad_planner_knobs_raise(bad):
    with pytest.raises(ValueError):
        CEM(**bad)


def test_no_actor_one_optimizer_save_load_identical_plans(tmp_path):
    model = PlaNet("Pendulum-v1", model_size="tiny", seed=0, **FAST, **PLANNER)
    policy = model.policy
    assert not hasattr(policy, "actor") and not hasattr(policy, "critic")
    assert model.loss_scales == {"reconstruction": 1.0, "reward": 1.0, "continue": 0.0, "kl": 1.0}
    model.learn(80)
    assert model._n_updates > 0 and "train/kl_loss" in model.logger.name_to_value
    obs = np.array([[0.3, -0.9, 0.5]], np.float32)
    a, _ = model.predict(obs, deterministic=True)
    b, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, b)  # deterministic planning is repeatable
    path = tmp_path / "planet.zip"
    model.save(path)
    loaded = PlaNet.load(path, env=gym.make("Pendulum-v1"), device="cpu")
    assert loaded.policy.planner == model.policy.planner
    c, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a, c)
    with pytest.raises(ValueError, match="saved by sb3_dreamer's PlaNet, not by DreamerV2"):
        DreamerV2.load(path)


def test_exploration_noise_on_box_actions_only():
    assert PlaNet("Pendulum-v1", model_size="tiny", **FAST).action_noise is not None
    assert PlaNet("CartPole-v1", model_size="tiny", **FAST).action_noise is None


def test_learns_box_target_env():
    model = PlaNet(TargetEnv(), planning_horizon=3, **LEARN)
    model.learn(800)
    mean, _ = evaluate_policy(model, seeded_monitor(TargetEnv()), n_eval_episodes=10, deterministic=True)
    assert mean >= 9.0, mean  # random 3.3, optimal 10


def test_learns_discrete_cue_env():
    model = PlaNet(CueEnv(), planning_horizon=3, **LEARN)
    model.learn(500)
    mean, _ = evaluate_policy(model, seeded_monitor(CueEnv()), n_eval_episodes=10, deterministic=True)
    assert mean >= 9.5, mean  # random 5, optimal 10
