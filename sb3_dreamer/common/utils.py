"""Helpers of the command line, ``compare`` and the benchmarks that are not part of any model."""

from __future__ import annotations

import platform

import gymnasium as gym
import numpy as np


def random_policy_score(env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean and standard deviation of the return of uniformly random actions."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    returns = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        done, total = False, 0.0
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns)), float(np.std(returns))


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for results files."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
