"""Plot a learning curve written by benchmarks/minatar_run.py, with the random policy's score.

python benchmarks/plot_run.py benchmarks/results/breakout_small_cpu.csv --random 0.5
"""

from __future__ import annotations

import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--random", type=float, required=True, help="mean return of the random policy")
    parser.add_argument("--title", default="DreamerV2 (small), MinAtar Breakout-v1, 1 seed, CPU")
    args = parser.parse_args()
    with open(args.csv) as file:
        rows = list(csv.DictReader(file))
    steps = [int(r["env_step"]) for r in rows]
    mean = [float(r["eval_return_mean"]) for r in rows]
    std = [float(r["eval_return_std"]) for r in rows]
    train = [float(r["train_return_mean_last100"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, mean, label="evaluation (greedy, 10 episodes)")
    ax.fill_between(
        steps,
        [m - s for m, s in zip(mean, std, strict=True)],
        [m + s for m, s in zip(mean, std, strict=True)],
        alpha=0.2,
    )
    ax.plot(steps, train, label="training episodes (last 100)")
    ax.axhline(args.random, color="grey", linestyle="--", label="random policy")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(args.title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.csv.replace(".csv", ".png"), dpi=100)


if __name__ == "__main__":
    main()
