"""Save and load a DreamerV2 model, and act with the recurrent state by hand.

``predict`` follows sb3-contrib's ``RecurrentPPO`` contract: pass the state it returned last time
and ``episode_start`` (True on the first step of an episode, where the state is reset). The state
is a tuple of numpy arrays ``(h, z, previous action)`` with one row per environment.

With ``deterministic=True`` the policy uses the mode of the posterior and of the actor, so the
original and the loaded model choose identical actions.
"""

import os
import tempfile

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env

torch.set_num_threads(1)  # the networks are tiny: one thread is as fast and avoids contention

from sb3_dreamer import DreamerV2  # noqa: E402  (importing sb3_dreamer registers the MinAtar ids)

TINY_POLICY = dict(
    deter_size=64,
    hidden_size=64,
    stoch_size=8,
    classes=8,
    mlp_units=64,
    mlp_layers=2,
    cnn_depth=8,
)


def run_episode(model: DreamerV2, seed: int, max_steps: int = 500) -> tuple[list[int], float]:
    """One episode on a fresh env, threading the recurrent state through ``predict``."""
    env = make_vec_env("MinAtar/Breakout-v1", n_envs=1, seed=seed)
    obs = env.reset()
    state = None  # None = the all-zero initial state
    starts = np.ones((env.num_envs,), dtype=bool)  # the first step starts an episode
    actions, total_reward = [], 0.0
    for _ in range(max_steps):
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
        obs, rewards, dones, _ = env.step(action)
        actions.append(int(action[0]))
        total_reward += float(rewards[0])
        starts = dones  # reset the latent state of envs whose episode just ended
        if dones[0]:
            break
    env.close()
    return actions, total_reward


def main() -> None:
    model = DreamerV2(
        "MinAtar/Breakout-v1",
        batch_size=8,
        sequence_length=16,
        learning_starts=200,
        buffer_size=10_000,  # rows; keeps the saved replay buffer small
        policy_kwargs=TINY_POLICY,
        seed=0,
    )
    model.learn(total_timesteps=600)

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "dreamer_breakout.zip")
        buffer_path = os.path.join(folder, "dreamer_breakout_buffer.pkl")
        model.save(path)  # networks, the three optimizers and the counters (not the replay buffer)
        model.save_replay_buffer(buffer_path)
        loaded = DreamerV2.load(path, env=make_vec_env("MinAtar/Breakout-v1", n_envs=1, seed=0))
        loaded.load_replay_buffer(buffer_path)
        print(f"loaded: {loaded.num_timesteps} env steps, replay buffer of {loaded.replay_buffer.size()} rows")

    h, z, prev_action = model.predict(np.zeros((10, 10, 4), dtype=bool))[1]
    print(f"state shapes: h {h.shape}, z {z.shape}, previous action {prev_action.shape}")

    original_actions, original_reward = run_episode(model, seed=123)
    loaded_actions, loaded_reward = run_episode(loaded, seed=123)
    print(f"original model: {len(original_actions)} steps, reward {original_reward}, actions {original_actions[:20]}")
    print(f"loaded model:   {len(loaded_actions)} steps, reward {loaded_reward}, actions {loaded_actions[:20]}")
    assert original_actions == loaded_actions, "the loaded model acted differently"
    print("identical actions from the original and the loaded model")

    # Continue training the loaded model with its restored replay buffer.
    loaded.learn(total_timesteps=100, reset_num_timesteps=False)
    print(f"continued training: {loaded.num_timesteps} env steps in total")


if __name__ == "__main__":
    main()
