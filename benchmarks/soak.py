"""Soak benchmark: resident memory of a long DreamerV2/DreamerV3 run, before and after the replay
buffer is full. Once the buffer is full nothing should grow; the summary gives the growth.

    python benchmarks/soak.py --algo dreamerv2 --minutes 30 --out benchmarks/results/soak_dreamerv2

writes ``<out>.csv`` (one row per sample: seconds, env steps, updates, buffer rows, RSS in MiB,
Python objects) and ``<out>.md`` (the command, machine, versions and the growth after the buffer
filled). A short version of the same check runs in tests/test_reliability.py.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import platform
import sys
import time

import torch as th
from stable_baselines3.common.callbacks import BaseCallback

import sb3_dreamer

#: A small model: big enough to exercise every code path, small enough for a 2-core CPU.
SMALL = dict(deter_size=64, hidden_size=64, stoch_size=8, classes=8, mlp_units=64, mlp_layers=2, cnn_depth=8)


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Sampler(BaseCallback):
    """Records memory every ``every`` seconds and stops training after ``minutes``."""

    def __init__(self, every: float, minutes: float, writer: csv.writer) -> None:
        super().__init__()
        self.every, self.limit, self.writer = every, minutes * 60, writer
        self.start = self.last = time.time()
        self.rows: list[tuple[float, ...]] = []

    def sample(self) -> None:
        gc.collect()
        row = (
            round(time.time() - self.start, 1),
            self.model.num_timesteps,
            self.model._n_updates,
            self.model.replay_buffer.size(),
            round(resident_mib(), 2),
            len(gc.get_objects()),
        )
        self.rows.append(row)
        self.writer.writerow(row)
        print(*row, flush=True)

    def _on_training_start(self) -> None:
        self.sample()

    def _on_step(self) -> bool:
        if time.time() - self.last >= self.every:
            self.last = time.time()
            self.sample()
        return time.time() - self.start < self.limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["dreamerv2", "dreamerv3"], default="dreamerv2")
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--buffer-size", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/soak_dreamerv2")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    cls = sb3_dreamer.DreamerV2 if args.algo == "dreamerv2" else sb3_dreamer.DreamerV3
    schedule = dict(train_ratio=8) if args.algo == "dreamerv3" else dict(train_freq=16)
    model = cls(
        args.env,
        policy_kwargs=SMALL,
        buffer_size=args.buffer_size,
        learning_starts=500,
        batch_size=8,
        sequence_length=16,
        imagination_horizon=15,
        seed=0,
        device="cpu",
        **schedule,
    )
    with open(args.out + ".csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["seconds", "env_steps", "updates", "buffer_rows", "rss_mib", "python_objects"])
        sampler = Sampler(args.every, args.minutes, writer)
        model.learn(10**9, callback=sampler)
        sampler.sample()
    rows = sampler.rows
    full = next(i for i, row in enumerate(rows) if row[3] >= model.replay_buffer.buffer_size)
    at_full, end = rows[full], rows[-1]
    peak = max(row[4] for row in rows[full:])
    growth = 100 * (end[4] - at_full[4]) / at_full[4]
    lines = [
        f"# Soak: {cls.__name__} on {args.env}",
        "",
        f"Command: `python {' '.join(sys.argv)}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {th.__version__}, sb3-dreamer {sb3_dreamer.__version__}, Python {platform.python_version()}; "
        f"{args.threads} torch thread(s). Model: {SMALL}, batch 8 x 16, buffer {args.buffer_size} rows.",
        "",
        f"- Ran {end[0] / 60:.1f} min: {end[1]} env steps, {end[2]} updates.",
        f"- Buffer full at {at_full[0] / 60:.1f} min ({at_full[1]} env steps): RSS {at_full[4]:.1f} MiB, "
        f"{at_full[5]} Python objects.",
        f"- End: RSS {end[4]:.1f} MiB ({growth:+.2f}% since the buffer filled; peak {peak:.1f} MiB), "
        f"{end[5]} Python objects ({end[5] - at_full[5]:+d}).",
        "",
        f"Samples every {args.every:.0f} s: `{os.path.basename(args.out)}.csv`.",
    ]
    with open(args.out + ".md", "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
