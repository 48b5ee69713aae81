"""One-change-at-a-time ablations of DreamerV2 on MinAtar SpaceInvaders and Breakout.

    python benchmarks/minatar_ablation.py                 # the preset study: all phases, 2 runs at a time
    python benchmarks/minatar_ablation.py --phases 1      # only its first phase
    python benchmarks/minatar_ablation.py --study paper   # the paper's ablations (below), 100k steps, 3 seeds

``--study preset`` (the default) takes the ``minatar-100k`` preset apart:

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

``--study paper`` is DreamerV2's own ablation study (paper Sec. 4, Figure 5: no KL balancing,
Gaussian latents, no image gradients, no reward gradients, no REINFORCE), each the preset with
one switch of :class:`~sb3_dreamer.DreamerV2` flipped, at the preset's budget of 100k env steps,
evaluated every 10k steps; phases: seed 0 with the full agent and no image gradients (the paper's
worst), then seed 0 with the rest, then seeds 1 and 2. Its runs go into
``benchmarks/minatar_paper_ablation/``. The paper's Atari ranking, for reference (published, mean
normalised score at 200M frames): full 0.25, no reward gradients about the same, Gaussian 0.19,
no KL balancing 0.16, no REINFORCE 0.15, no image gradients 0.01.
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

#: The paper's ablations (DreamerV2 Sec. 4, Figure 5), each one switch on the preset
PAPER_VARIANTS = {
    "full agent": "dreamerv2",
    "no image gradients": "dreamerv2(image_gradients=False)",
    "no KL balancing": "dreamerv2(kl_balancing=False)",
    "Gaussian latents": "dreamerv2(latent='gaussian')",
    "no reward gradients": "dreamerv2(reward_gradients=False)",
    "no REINFORCE (dynamics gradients)": "dreamerv2(actor_grad_mix='dynamics')",
}
PAPER_PHASES = (
    ([0], ["full agent", "no image gradients"]),
    ([0], list(PAPER_VARIANTS)[2:]),
    ([1, 2], list(PAPER_VARIANTS)),
)
#: study -> (variants, phases, steps, eval_freq, default output folder)
STUDIES = {
    "preset": (VARIANTS, PHASES, STEPS, EVAL_FREQ, OUT),
    "paper": (PAPER_VARIANTS, PAPER_PHASES, 100_000, 10_000, OUT.parent / "minatar_paper_ablation"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=list(STUDIES), default="preset")
    parser.add_argument("--phases", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=None, help="budget per run (default: the study's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="output folder (default: the study's)")
    args = parser.parse_args()
    variants, phases, steps, eval_freq, out = STUDIES[args.study]
    steps = args.steps or steps
    out = args.out or str(out)

    from sb3_dreamer.compare import compare

    for phase in args.phases:
        seeds, names = phases[phase - 1]
        compare(
            list(GAMES),
            [variants[n] for n in names],
            steps=steps,
            seeds=seeds,
            out=out,
            eval_freq=min(eval_freq, steps),
            eval_episodes=EVAL_EPISODES,
            device="cpu",
            threads=args.threads,
            jobs=args.jobs,
            # recorded without this machine's paths
            command=(
                f"python benchmarks/minatar_ablation.py --study {args.study} --steps {steps} "
                f"--out {os.path.relpath(out)}  # phase {phase}"
            ),
        )


if __name__ == "__main__":
    main()
