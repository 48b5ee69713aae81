"""DreamerV2 with Stable-Baselines3 callbacks, the progress bar, and SubprocVecEnv.

- ``EvalCallback`` evaluates the recurrent policy (it calls ``model.predict`` with the state and
  ``episode_start``, like for RecurrentPPO) and saves the best model.
- ``CheckpointCallback(save_replay_buffer=True)`` saves the model and its sequence replay buffer.
- ``progress_bar=True`` needs ``tqdm`` and ``rich`` (dependencies of sb3-dreamer).

The second part trains on two ``SubprocVecEnv`` workers. Workers started with ``forkserver`` or
``spawn`` do not inherit the MinAtar registration done by ``import sb3_dreamer`` in this process,
so the env id is given as ``"sb3_dreamer:MinAtar/Breakout-v1"``: gymnasium imports
``sb3_dreamer`` inside each worker before making the env.

All outputs go to a temporary directory that is deleted at the end.
"""

import os
import tempfile

import torch
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

torch.set_num_threads(1)  # the networks are tiny: one thread is as fast and avoids contention

from sb3_dreamer import DreamerV2  # noqa: E402  (importing sb3_dreamer registers the MinAtar ids)

ENV_ID = "MinAtar/Breakout-v1"
TINY = dict(
    batch_size=8,
    sequence_length=16,
    learning_starts=200,
    buffer_size=10_000,  # rows; keeps the saved replay buffers small
    policy_kwargs=dict(deter_size=64, hidden_size=64, stoch_size=8, classes=8, mlp_units=64, mlp_layers=2, cnn_depth=8),
)


def make_callbacks(folder: str, n_envs: int, env_id: str = ENV_ID, vec_env_cls=None) -> list:
    # Both callbacks count calls of env.step (one call = n_envs env steps).
    eval_env = make_vec_env(env_id, n_envs=1, seed=100, vec_env_cls=vec_env_cls)
    eval_callback = EvalCallback(
        eval_env,
        eval_freq=400 // n_envs,
        n_eval_episodes=3,
        deterministic=True,
        best_model_save_path=os.path.join(folder, "best"),
        log_path=os.path.join(folder, "eval"),
    )
    checkpoint_callback = CheckpointCallback(
        save_freq=400 // n_envs,
        save_path=os.path.join(folder, "checkpoints"),
        name_prefix="dreamer",
        save_replay_buffer=True,
    )
    return [eval_callback, checkpoint_callback]


def list_outputs(folder: str) -> None:
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            print("  ", os.path.relpath(os.path.join(root, name), folder))


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        # 1. One env, built from the env id in this process.
        single = os.path.join(folder, "single")
        model = DreamerV2(ENV_ID, seed=0, **TINY)
        model.learn(total_timesteps=800, callback=make_callbacks(single, 1), progress_bar=True)
        print(f"single env: {model.num_timesteps} env steps; files written:")
        list_outputs(single)

        # 2. Two SubprocVecEnv workers; the "sb3_dreamer:" prefix registers MinAtar in each worker.
        subproc = os.path.join(folder, "subproc")
        env_id = "sb3_dreamer:" + ENV_ID
        vec_env = make_vec_env(env_id, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
        model = DreamerV2(vec_env, seed=0, **TINY)
        callbacks = make_callbacks(subproc, 2, env_id, SubprocVecEnv)  # same env type as training
        model.learn(total_timesteps=800, callback=callbacks, progress_bar=True)
        print(f"SubprocVecEnv, 2 workers: {model.num_timesteps} env steps; files written:")
        list_outputs(subproc)
        vec_env.close()

        # A checkpoint can be resumed together with its replay buffer.
        checkpoints = os.path.join(subproc, "checkpoints")
        resumed = DreamerV2.load(os.path.join(checkpoints, "dreamer_800_steps.zip"))
        resumed.load_replay_buffer(os.path.join(checkpoints, "dreamer_replay_buffer_800_steps.pkl"))
        print(f"resumed checkpoint: {resumed.num_timesteps} env steps, {resumed.replay_buffer.size()} replay rows")


if __name__ == "__main__":  # required by SubprocVecEnv (workers re-import this module)
    main()
