"""Train DreamerV2 on one MinAtar game under a wall-clock budget and evaluate it against a random policy.

Example (the run reported in benchmarks/results/):

    python benchmarks/minatar_run.py --env MinAtar/Breakout-v1 --size small --steps 1000000 \
        --max-minutes 75 --eval-freq 10000 --out benchmarks/results/breakout_small_cpu.csv

Evaluation: ``--eval-episodes`` greedy (deterministic) episodes on a separate env seeded apart
from training, every ``--eval-freq`` env steps; the random policy is evaluated the same way.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import sb3_dreamer
from sb3_dreamer import DreamerV2
from sb3_dreamer.common.utils import cpu_model, random_policy_score
from sb3_dreamer.dreamer_v2.sizes import SIZES


class EvalAndBudget(BaseCallback):
    def __init__(self, eval_env: gym.Env, eval_freq: int, episodes: int, rows: list, out: str, deadline: float):
        super().__init__()
        self.eval_env, self.eval_freq, self.episodes = eval_env, eval_freq, episodes
        self.rows, self.out, self.deadline, self.start = rows, out, deadline, time.time()
        self.next_eval = 0

    def _evaluate(self) -> None:
        mean, std = evaluate_policy(self.model, self.eval_env, self.episodes, deterministic=True)
        train_returns = [info["r"] for info in self.model.ep_info_buffer]
        row = {
            "env_step": self.num_timesteps,
            "eval_return_mean": float(mean),
            "eval_return_std": float(std),
            "train_return_mean_last100": float(np.mean(train_returns)) if train_returns else float("nan"),
            "wall_seconds": round(time.time() - self.start, 1),
        }
        self.rows.append(row)
        print(row, flush=True)
        with open(self.out, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self._evaluate()
            self.next_eval += self.eval_freq
        return time.time() < self.deadline

    def _on_training_end(self) -> None:
        if not self.rows or self.rows[-1]["env_step"] != self.num_timesteps:
            self._evaluate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--steps", type=float, default=1e6)
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--train-freq", type=int, default=None)
    parser.add_argument("--eval-freq", type=int, default=10_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="breakout.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kwargs, policy_kwargs = SIZES[args.size]
    if args.train_freq is not None:
        kwargs = {**kwargs, "train_freq": args.train_freq}
    model = DreamerV2(args.env, policy_kwargs=policy_kwargs, seed=args.seed, device=args.device, verbose=0, **kwargs)
    eval_env = Monitor(gym.make(args.env))
    eval_env.reset(seed=args.seed + 10_000)
    rows: list = []
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    callback = EvalAndBudget(
        eval_env, args.eval_freq, args.eval_episodes, rows, args.out, time.time() + 60 * args.max_minutes
    )
    model.learn(args.steps, callback=callback)
    rand_mean, rand_std = random_policy_score(args.env, 100, args.seed + 20_000)
    print(
        f"versions: sb3_dreamer {sb3_dreamer.__version__}, torch {torch.__version__}, "
        f"python {platform.python_version()}"
    )
    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores), threads {args.threads}, device {args.device}")
    print(f"final: {model.num_timesteps} env steps, {model._n_updates} gradient steps")
    print(
        f"DreamerV2 eval return {rows[-1]['eval_return_mean']:.2f} +- {rows[-1]['eval_return_std']:.2f} "
        f"({args.eval_episodes} greedy episodes); random policy {rand_mean:.2f} +- {rand_std:.2f} (100 episodes)"
    )


if __name__ == "__main__":
    main()
