"""Replay memory per stored step against the floor of one byte per observation cell.

    python benchmarks/memory.py --rows 100000 --out benchmarks/results/memory.md

For MinAtar Breakout (10x10x4 bool) and a 64x64x3 uint8 image env, fills a ``SequenceReplayBuffer``
of ``--rows`` rows through ``add`` (the path training uses) and reports the bytes its arrays hold per
row and the resident memory it added per row, against the observation's own size.
"""

from __future__ import annotations

import argparse
import os
import platform

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import sb3_dreamer
from sb3_dreamer import SequenceReplayBuffer


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(name: str, observation_space: spaces.Box, action_space: spaces.Space, rows: int) -> str:
    before = resident_bytes()
    buffer = SequenceReplayBuffer(rows, observation_space, action_space, device="cpu", n_envs=1)
    obs = observation_space.sample()[None]
    action = np.array([[action_space.sample()]])
    for step in range(rows):
        done = np.array([step % 100 == 99])
        buffer.add(obs, obs, action, np.zeros(1, np.float32), done, [{}])
    assert buffer.full
    added = (resident_bytes() - before) / rows
    arrays = [*buffer.observations.values()] + [v for v in vars(buffer).values() if isinstance(v, np.ndarray)]
    held = sum(array.nbytes for array in arrays) / buffer.buffer_size
    floor = int(np.prod(observation_space.shape))
    return (
        f"| {name} | {observation_space.shape} {observation_space.dtype} | {floor} | {held:.0f} | "
        f"{added:.0f} | {held / floor:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", default="benchmarks/results/memory.md")
    args = parser.parse_args()
    minatar = gym.make("MinAtar/Breakout-v1")
    image = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    table = [
        measure("MinAtar/Breakout-v1", minatar.observation_space, minatar.action_space, args.rows),
        measure("64x64 RGB image", image, spaces.Discrete(6), args.rows),
    ]
    lines = [
        "# Replay memory per stored step",
        "",
        f"Command: `python benchmarks/memory.py --rows {args.rows} --out {args.out}`; sb3-dreamer "
        f"{sb3_dreamer.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}.",
        "",
        "Floor = one byte per observation cell. Held = bytes of the buffer's arrays per row. Added = "
        "resident memory the filled buffer added, per row (measured from /proc). One row per env step "
        "(plus one per episode for its first observation).",
        "",
        "| Env | Observation | Floor (B) | Held (B/row) | Added RSS (B/row) | Held / floor |",
        "|---|---|---|---|---|---|",
        *table,
        "",
        "Besides the observation a row holds the action (int64 for Discrete), the reward (float32) and "
        "three flags (is_first, is_terminal, is_last): 15 bytes. The next observation is not stored "
        "separately: it is the next row.",
    ]
    with open(args.out, "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
