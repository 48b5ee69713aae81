"""Seconds per gradient step and env steps per second of DreamerV2 on MinAtar Breakout.

    python benchmarks/cpu_speed.py --threads 2 --out benchmarks/results/cpu_speed.md

For each size: the median (and min/max) of ``--repeats`` gradient steps after 3 warm-up steps,
on batches sampled from a buffer filled with random play; acting speed (policy inference + env
step, no training) with 1 and 8 envs; and training throughput, env steps per second inside
``learn`` at the size's ``train_freq`` (acting plus its share of gradient steps), measured as
the rate implied by the two figures above: 1 / (1 / acting + seconds per step / train_freq).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env

import sb3_dreamer
from sb3_dreamer import DreamerV2
from sb3_dreamer.cli import cpu_model
from sb3_dreamer.dreamer_v2.sizes import SIZES as ALL_SIZES

SIZES = {name: ALL_SIZES[name] for name in ("default", "small")}


def grad_step_seconds(model: DreamerV2, repeats: int) -> list[float]:
    times = []
    for i in range(repeats + 3):
        batch = model.replay_buffer.sample_sequences(model.batch_size, model.sequence_length)
        start = time.perf_counter()
        model.train_step(batch)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return times


def acting_steps_per_second(model: DreamerV2, env_id: str, n_envs: int, steps: int) -> float:
    """Env steps per second of ``predict`` (sampling, recurrent state threaded) plus ``env.step``."""
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    obs, state, starts = env.reset(), None, np.ones(n_envs, dtype=bool)
    for i in range(steps // n_envs + 10):
        if i == 10:  # after warm-up
            start = time.perf_counter()
        actions, state = model.predict(obs, state=state, episode_start=starts)
        obs, _, starts, _ = env.step(actions)
    return (steps // n_envs) * n_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        f"command: python benchmarks/cpu_speed.py --threads {args.threads} --repeats {args.repeats}",
        f"versions: sb3_dreamer {sb3_dreamer.__version__}, torch {torch.__version__}, "
        f"python {platform.python_version()}",
        f"cpu: {cpu_model()} ({os.cpu_count()} cores), torch threads {args.threads}",
        "",
        "| size | B x T | params | s / gradient step (median [min, max]) | train_freq | acting env steps/s (1 env) "
        "| acting env steps/s (8 envs) | training env steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in args.sizes:
        kwargs, policy_kwargs = SIZES[size]
        model = DreamerV2(args.env, policy_kwargs=policy_kwargs, learning_starts=10**9, seed=0, **kwargs)
        model.learn(3000)
        times = grad_step_seconds(model, args.repeats)
        params = sum(p.numel() for p in model.policy.parameters())
        med = statistics.median(times)
        act1 = acting_steps_per_second(model, args.env, 1, 2000)
        act8 = acting_steps_per_second(model, args.env, 8, 8000)
        train_freq = model.train_freq.frequency
        training = 1.0 / (1.0 / act1 + med / train_freq)
        lines.append(
            f"| {size} | {model.batch_size} x {model.sequence_length} | {params / 1e6:.2f}M | {med:.3f} "
            f"[{min(times):.3f}, {max(times):.3f}] | {train_freq} | {act1:.0f} | {act8:.0f} | {training:.1f} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as file:
            file.write(text)


if __name__ == "__main__":
    main()
