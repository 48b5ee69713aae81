"""World Models: the MDN's likelihood and temperature, V's KL floor, the stages of learn() in the
real env and in the dream, save/load, bad input and non-finite fitness."""

import math

import numpy as np
import pytest
import torch as th
from envs import CueEnv, ImageCueEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_dreamer import DreamerV2, WorldModels
from sb3_dreamer.world_models import stages
from sb3_dreamer.world_models.networks import MDNRNN

TOY = dict(
    random_steps=500,
    vae_epochs=10,
    vae_batch_size=32,
    rnn_epochs=30,
    rnn_batch_size=16,
    rnn_sequence_length=10,
    population_size=8,
    rollouts_per_candidate=2,
    dream_length=10,
    generations=8,
    seed=0,
    policy_kwargs=dict(z_size=4, hidden_size=16, mixtures=2, cnn_depth=4, vae_lr=1e-3, rnn_lr=3e-3),
)


def test_mdn_likelihood_hand_values():
    # one dimension, two components: pi = (0.25, 0.75), N(0, 1) and N(2, 0.5^2), at x = 1
    log_pi = th.log(th.tensor([[0.25, 0.75]]))
    mean, log_std = th.tensor([[[0.0], [2.0]]]), th.log(th.tensor([[[1.0], [0.5]]]))
    density = 0.25 * math.exp(-0.5) / math.sqrt(2 * math.pi) + 0.75 * math.exp(-2.0) / (0.5 * math.sqrt(2 * math.pi))
    assert MDNRNN.nll(log_pi, mean, log_std, th.tensor([[1.0]])).item() == pytest.approx(-math.log(density), rel=1e-6)


def test_temperature_scales_the_dream():
    th.manual_seed(0)
    log_pi = th.zeros(20000, 1)
    mean, log_std = th.full((20000, 1, 1), 1.0), th.full((20000, 1, 1), math.log(0.5))
    cold = MDNRNN.sample(log_pi, mean, log_std, 1.0)
    hot = MDNRNN.sample(log_pi, mean, log_std, 4.0)
    assert cold.mean().item() == pytest.approx(1.0, abs=0.02) and cold.std().item() == pytest.approx(0.5, abs=0.02)
    assert hot.std().item() == pytest.approx(1.0, abs=0.03)  # sigma * sqrt(tau)


def test_vae_kl_is_floored_at_the_tolerance():
    model = WorldModels(ImageCueEnv(), **TOY, _init_setup_model=True)
    vae = model.policy.vae
    inputs = model.policy.inputs({"obs": np.zeros((4, 6, 6, 2), bool)}, 1)
    _, metrics = vae.loss(inputs, kl_tolerance=0.5)
    floor = 0.5 * vae.z_size
    assert metrics["vae_kl"] < floor  # an untrained encoder is near the prior
    assert metrics["vae_loss"].item() == pytest.approx(metrics["vae_reconstruction"].item() + floor, rel=1e-6)


@pytest.mark.parametrize("training", ["real", "dream"])
def test_learns_the_image_cue_task(training):
    seen = []

    class Count(BaseCallback):
        def _on_step(self):
            seen.append(self.num_timesteps)
            return True

    model = WorldModels(ImageCueEnv(), controller_training=training, **TOY)
    model.learn(100_000, callback=Count())
    assert model.models_trained and model._n_updates == 8
    assert seen and seen[-1] == model.num_timesteps  # every real step reached the callbacks
    if training == "dream":
        assert model.num_timesteps == 500 + 8 * 10  # random play, then one real episode per generation
    mean, _ = evaluate_policy(model, Monitor(ImageCueEnv()), n_eval_episodes=20)
    assert mean >= 9.0, mean  # random 5, optimal 10


def test_save_load_identical_predictions(tmp_path):
    model = WorldModels(ImageCueEnv(), **{**TOY, "generations": 2})
    model.learn(100_000)
    path = tmp_path / "wm.zip"
    model.save(path)
    loaded = WorldModels.load(path, env=ImageCueEnv(), device="cpu")
    assert loaded.models_trained and len(loaded.policy.dream_starts) == len(model.policy.dream_starts)
    env = ImageCueEnv()
    obs, _ = env.reset(seed=1)
    state_a = state_b = None
    for t in range(6):
        a, state_a = model.predict(obs, state=state_a, episode_start=np.array([t == 0]))
        b, state_b = loaded.predict(obs, state=state_b, episode_start=np.array([t == 0]))
        assert a == b
        np.testing.assert_array_equal(state_a[0], state_b[0])
        obs, *_ = env.step(a)
    with pytest.raises(ValueError, match="saved by another algorithm"):
        DreamerV2.load(path)


def test_non_finite_fitness_is_ranked_last_and_counted(monkeypatch):
    calls = iter(range(10_000))
    monkeypatch.setattr(stages, "dream_return", lambda model, episodes: float("nan") if next(calls) % 4 == 0 else 1.0)
    model = WorldModels(ImageCueEnv(), controller_training="dream", **{**TOY, "generations": 2})
    model.learn(100_000)
    assert model.rejected_candidates == 4  # 2 generations x 8 candidates, every 4th not finite
    assert np.isfinite(model.policy.controller.vector().numpy()).all()


def test_bad_input():
    with pytest.raises(TypeError, match="has no image"):
        WorldModels(CueEnv())
    with pytest.raises(ValueError, match="controller_training"):
        WorldModels(ImageCueEnv(), controller_training="imagined")
