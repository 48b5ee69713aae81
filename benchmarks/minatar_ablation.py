"""One-change-at-a-time ablation of DreamerV2's ``minatar-100k`` preset on MinAtar.

    python benchmarks/minatar_ablation.py                 # all phases, 2 runs at a time, 1 thread each
    python benchmarks/minatar_ablation.py --phases 1      # only the first phase

Each variant is the preset with exactly one of its changes undone (``sb3-dreamer compare``'s
``NAME(key=value)`` variants), plus ``small``, the configuration the preset replaced (all three
undone). Every run is evaluated greedily and with sampled actions (20 episodes each, every 2000 env
steps). The runs go into ``benchmarks/minatar_ablation/`` through ``compare``, so an interrupted
ablation continues where it stopped when the same command is run again (each run in progress is
checkpointed after every evaluation), and ``summary.md`` / ``curves.png`` cover whatever has finished.

Phases, in the order they run (the cheapest comparisons that answer the most first):

1. seed 0: the preset and ``small`` on both games;
2. seed 0: the three single-change variants;
3. seed 1: everything again.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

OUT = Path(__file__).resolve().parent / "minatar_ablation"
GAMES = ("MinAtar/SpaceInvaders-v1", "MinAtar/Breakout-v1")
STEPS, EVAL_FREQ, EVAL_EPISODES = 20_000, 2_000, 20

#: variant name -> compare algorithm spec (the preset is compare's default for this budget)
VARIANTS = {
    "preset": "dreamerv2",
    "train_freq=8 (replay ratio 64, as small)": "dreamerv2(train_freq=8)",
    "paper learning rates 2e-4/4e-5/1e-4": (
        "dreamerv2(learning_rate=2e-4, actor_learning_rate=4e-5, critic_learning_rate=1e-4)"
    ),
    "no LayerNorm": "dreamerv2(policy_kwargs={'layer_norm': False})",
    "small (all three undone)": (
        "dreamerv2(train_freq=8, learning_rate=2e-4, actor_learning_rate=4e-5, critic_learning_rate=1e-4, "
        "policy_kwargs={'layer_norm': False})"
    ),
}
PHASES = (
    ([0], ["preset", "small (all three undone)"]),
    ([0], ["train_freq=8 (replay ratio 64, as small)", "paper learning rates 2e-4/4e-5/1e-4", "no LayerNorm"]),
    ([1], list(VARIANTS)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    from sb3_dreamer.compare import compare

    for phase in args.phases:
        seeds, names = PHASES[phase - 1]
        compare(
            list(GAMES),
            [VARIANTS[n] for n in names],
            steps=STEPS,
            seeds=seeds,
            out=args.out,
            eval_freq=EVAL_FREQ,
            eval_episodes=EVAL_EPISODES,
            device="cpu",
            threads=args.threads,
            jobs=args.jobs,
            # recorded without this machine's paths
            command=f"python benchmarks/minatar_ablation.py --out {os.path.relpath(args.out)}  # phase {phase}",
        )


if __name__ == "__main__":
    main()
