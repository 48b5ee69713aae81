"""Train DreamerV2 on MinAtar Breakout with a small configuration, then evaluate it.

Usage::

    python examples/train_minatar.py            # 2000 env steps
    python examples/train_minatar.py 20000      # more steps

The sizes below are much smaller than the defaults so that the script finishes in about a
minute on a CPU; a few thousand steps are not enough to learn Breakout, so expect a score
close to that of a random policy. Use ``DreamerV2("MinAtar/Breakout-v1")`` (the defaults)
and millions of steps for a real run.
"""

import sys

import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

torch.set_num_threads(2)

from sb3_dreamer import DreamerV2  # noqa: E402  (importing sb3_dreamer registers the MinAtar ids)

SMALL_POLICY = dict(
    deter_size=64,
    hidden_size=64,
    stoch_size=8,
    classes=8,
    mlp_units=64,
    mlp_layers=2,
    cnn_depth=8,
)


def main(total_timesteps: int = 2000) -> None:
    model = DreamerV2(
        "MinAtar/Breakout-v1",
        batch_size=8,
        sequence_length=16,
        learning_starts=500,
        policy_kwargs=SMALL_POLICY,
        seed=0,
        verbose=0,
    )
    model.learn(total_timesteps=total_timesteps)
    print(f"trained {model.num_timesteps} env steps, {model._n_updates} gradient steps")
    # A separate, Monitor-wrapped evaluation env. evaluate_policy threads the recurrent state
    # through model.predict(obs, state=..., episode_start=...), as for RecurrentPPO.
    eval_env = make_vec_env("MinAtar/Breakout-v1", n_envs=1, seed=1)
    mean_reward, std_reward = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=True)
    eval_env.close()
    print(f"evaluation over 5 episodes: mean reward {mean_reward:.2f} +/- {std_reward:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
