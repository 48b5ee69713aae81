"""Stable-Baselines3 integration: env registration, callbacks, evaluate_policy, SubprocVecEnv, logger."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import FAST, TINY, fast
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import SubprocVecEnv

import sb3_dreamer
from sb3_dreamer import DreamerV2
from sb3_dreamer.envs import MINATAR_GAMES


def test_import_registers_every_minatar_id_idempotently():
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import gymnasium as gym, importlib, sb3_dreamer\n"
        "importlib.reload(sb3_dreamer); sb3_dreamer.register_envs()\n"
        f"for game in {list(MINATAR_GAMES)!r}:\n"
        "    for v in ('v0', 'v1'):\n"
        "        gym.make(f'MinAtar/{game}-{v}').reset(seed=0)\n"
        "print(sum(i.startswith('ALE/') for i in gym.registry))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 50  # ALE ids registered too


def test_minatar_action_counts():
    assert gym.make("MinAtar/Breakout-v0").action_space.n == 6  # v0: the full action set
    assert gym.make("MinAtar/Breakout-v1").action_space.n == 3


def test_evaluate_policy_threads_recurrent_state(algo):
    model = algo("MinAtar/Breakout-v1", policy_kwargs=TINY, seed=0, **fast(algo))
    calls = []
    original = model.predict

    def spy(obs, state=None, episode_start=None, deterministic=False):
        calls.append((state is None, None if episode_start is None else episode_start.copy()))
        return original(obs, state=state, episode_start=episode_start, deterministic=deterministic)

    model.predict = spy
    mean, _ = evaluate_policy(model, Monitor(gym.make("MinAtar/Breakout-v1")), n_eval_episodes=2)
    assert np.isfinite(mean)
    assert calls[0][0] and calls[0][1].all()  # starts without state, flagged as an episode start
    assert not calls[1][0]  # then threads the returned state
    assert sum(int(c[1][0]) for c in calls) == 2  # one reset per episode


def test_callbacks_and_progress_bar(algo, tmp_path):
    model = algo("MinAtar/Breakout-v1", policy_kwargs=TINY, seed=0, **fast(algo))
    eval_cb = EvalCallback(
        Monitor(gym.make("MinAtar/Breakout-v1")),
        eval_freq=50,
        n_eval_episodes=1,
        log_path=str(tmp_path / "eval"),
        best_model_save_path=str(tmp_path / "best"),
    )
    ckpt_cb = CheckpointCallback(60, str(tmp_path / "ckpt"), save_replay_buffer=True)
    model.learn(130, callback=[eval_cb, ckpt_cb], progress_bar=True)
    assert (tmp_path / "eval" / "evaluations.npz").exists()
    assert (tmp_path / "best" / "best_model.zip").exists()
    assert (tmp_path / "ckpt" / "rl_model_120_steps.zip").exists()
    assert (tmp_path / "ckpt" / "rl_model_replay_buffer_120_steps.pkl").exists()
    restored = algo.load(tmp_path / "ckpt" / "rl_model_120_steps.zip", env=gym.make("MinAtar/Breakout-v1"))
    restored.load_replay_buffer(tmp_path / "ckpt" / "rl_model_replay_buffer_120_steps.pkl")
    assert restored.replay_buffer.size() > 0
    restored.learn(20, reset_num_timesteps=False)


def test_callback_can_stop_training(algo):
    class StopAt(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < 25

    model = algo("MinAtar/Breakout-v1", policy_kwargs=TINY, **fast(algo))
    model.learn(1000, callback=StopAt())
    assert model.num_timesteps == 25


def test_subproc_vec_env_with_module_prefixed_id():  # DreamerV2 only: the VecEnv path is shared code
    venv = make_vec_env(
        "sb3_dreamer:MinAtar/Breakout-v1",
        n_envs=2,
        seed=0,
        vec_env_cls=SubprocVecEnv,
        vec_env_kwargs={"start_method": "spawn"},
    )
    try:
        model = DreamerV2(venv, policy_kwargs=TINY, **FAST)
        model.learn(100)
        assert 100 <= model.num_timesteps < 100 + 2 * FAST["train_freq"] and model._n_updates > 0
        mean, _ = evaluate_policy(model, venv, n_eval_episodes=2)
        assert np.isfinite(mean)
    finally:
        venv.close()


def test_logger_records_dreamer_keys(algo):
    model = algo("MinAtar/Breakout-v1", policy_kwargs=TINY, **fast(algo))
    logger = configure(None, [])
    model.set_logger(logger)
    recorded = {}
    original = logger.record

    def record(key, value, exclude=None):
        recorded[key] = value
        original(key, value, exclude)

    logger.record = record
    model.learn(100, log_interval=1)
    for key in (
        "model_loss",
        "reconstruction_loss",
        "reward_loss",
        "continue_loss",
        "kl",
        "dyn_loss",
        "rep_loss",
        "actor_loss",
        "critic_loss",
        "actor_entropy",
        "imagined_return",
        "learning_rate",
        "n_updates",
    ):
        assert f"train/{key}" in recorded, key
        assert np.isfinite(recorded[f"train/{key}"]), key
    for key in ("rollout/ep_rew_mean", "time/fps", "time/total_timesteps"):
        assert key in recorded
    if algo is sb3_dreamer.DreamerV3:
        assert recorded["train/return_scale"] >= 1.0


def test_set_env_and_target_update():  # DreamerV2's hard copy; DreamerV3's EMA is in test_dreamer_v3.py
    model = DreamerV2("MinAtar/Breakout-v1", policy_kwargs=TINY, target_update_interval=5, **FAST)
    model.learn(80)
    critic = model.policy.critic.state_dict()
    target = model.policy.target_critic.state_dict()
    updates_since_copy = model._n_updates % 5
    same = all(np.array_equal(critic[k].numpy(), target[k].numpy()) for k in critic)
    assert same == (updates_since_copy == 0)
    model.set_env(make_vec_env("MinAtar/Breakout-v1", n_envs=1))
    assert model._last_obs is None and model._last_latent is None
    model.learn(20, reset_num_timesteps=False)


def test_version():
    assert sb3_dreamer.__version__.count(".") == 2


@pytest.mark.parametrize("total", [50.0, 6e1])
def test_learn_accepts_floats(algo, total):
    model = algo("MinAtar/Breakout-v1", policy_kwargs=TINY, **fast(algo))
    model.learn(total)
    # SB3 collects whole train_freq chunks: total_timesteps is a lower bound (SB3 #1150)
    assert total <= model.num_timesteps < total + FAST["train_freq"]


@pytest.mark.parametrize(
    ("policy_kwargs", "fused"),  # fused: of the world model's optimizer, then of the actor's and critic's
    [
        ({}, (True, True)),  # torch's fused Adam unless an implementation is chosen
        ({"optimizer_class": torch.optim.AdamW}, (True, True)),
        ({"optimizer_kwargs": {"eps": 1e-5, "foreach": True}}, (None, None)),
        ({"optimizer_kwargs": {"eps": 1e-5, "differentiable": True}}, (None, None)),  # fused would refuse it
        ({"world_model_optimizer_kwargs": {"fused": False}}, (False, True)),
        ({"optimizer_class": torch.optim.RMSprop}, (None, None)),  # other optimizers as they are
    ],
)
def test_optimizer_implementation(algo, policy_kwargs, fused):
    model = algo("MinAtar/Breakout-v1", policy_kwargs={**TINY, **policy_kwargs}, **fast(algo))
    policy = model.policy
    assert policy.wm_optimizer.defaults.get("fused") == fused[0]
    assert policy.actor_optimizer.defaults.get("fused") == policy.critic_optimizer.defaults.get("fused") == fused[1]
    assert "fused" not in policy.optimizer_kwargs  # the saved arguments are the user's
