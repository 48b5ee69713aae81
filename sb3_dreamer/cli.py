"""Command line: ``sb3-dreamer demo`` (also ``python -m sb3_dreamer``), ``compare`` and ``dream``.

The demo trains DreamerV2 (a small configuration) on a MinAtar game for a short budget with a
progress bar, then prints its evaluation score beside a uniformly random policy's.
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym

from sb3_dreamer.common.utils import random_policy_score
from sb3_dreamer.dreamer_v2.sizes import CONFIGURATIONS

#: The small DreamerV2 configuration for CPU runs: its constructor arguments.
SMALL_CONFIG: dict = CONFIGURATIONS["small"]


def demo(args: argparse.Namespace) -> None:
    import torch
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from sb3_dreamer import DreamerV2

    torch.set_num_threads(args.threads)
    model = DreamerV2(
        args.env, learning_starts=args.learning_starts, seed=args.seed, device=args.device, **SMALL_CONFIG
    )
    print(f"DreamerV2 (small configuration) on {args.env} for {args.steps} env steps, seed {args.seed}")
    start = time.time()
    model.learn(args.steps, progress_bar=True)
    train_seconds = time.time() - start
    eval_env = Monitor(gym.make(args.env))
    eval_env.reset(seed=args.seed + 10_000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
    rand_mean, rand_std = random_policy_score(args.env, args.eval_episodes, args.seed + 20_000)
    print(f"trained {model.num_timesteps} env steps, {model._n_updates} gradient steps in {train_seconds:.0f} s")
    print(f"evaluation over {args.eval_episodes} episodes (greedy actions):")
    print(f"  DreamerV2     {mean:7.2f} +- {std:.2f}")
    print(f"  random policy {rand_mean:7.2f} +- {rand_std:.2f}")


def dream_command(args: argparse.Namespace) -> None:
    from sb3_dreamer.dream import dream, save_dream, saved_algorithm
    from sb3_dreamer.envs import make_env, register_envs

    register_envs()
    cls = saved_algorithm(args.model)
    env = make_env(args.env)
    model = cls.load(args.model, env=env, device="cpu")
    result = dream(model, env, args.context, args.horizon, args.seed, args.key)
    save_dream(result, args.out, fps=args.fps)
    print(
        f"{cls.__name__} on {args.env}: {result.context} context frames, {len(result.errors) - result.context} dreamed"
    )
    print("step  phase    image NLL  reward  predicted reward")
    for t, (error, reward, predicted) in enumerate(
        zip(result.errors, result.rewards, result.predicted_rewards, strict=True)
    ):
        phase = "context" if t < result.context else "dream"
        print(f"{t:>4}  {phase:<7}  {error:>9.2f}  {reward:>6.2f}  {predicted:>16.2f}")
    print(f"wrote {args.out} and {args.out.rsplit('.', 1)[0]}.errors.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sb3-dreamer", description="Dreamer agents for Stable-Baselines3")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("demo", help="short DreamerV2 run on MinAtar, scored against a random policy")
    p.add_argument("--env", default="MinAtar/Breakout-v1")
    p.add_argument("--steps", type=int, default=6_000)
    p.add_argument("--learning-starts", type=int, default=1_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    c = sub.add_parser(
        "compare",
        help="run algorithms side by side (same envs, seeds, budget, evaluation): CSVs, summary.md, curves.png",
        description="Run every (env, algorithm, seed) not finished in --out, then write summary.md, curves.png "
        "and meta.json there. See docs/compare.md.",
    )
    c.add_argument("--env", nargs="+", required=True, help="gymnasium ids, e.g. MinAtar/Breakout-v1")
    c.add_argument(
        "--algo",
        nargs="+",
        default=["dreamerv2", "dqn"],
        help="dreamerv2, dreamerv3, dqn, dqn-sb3, qrdqn; a variant adds constructor arguments, e.g. "
        "'dreamerv2(train_freq=8)'",
    )
    c.add_argument("--steps", type=float, default=100_000, help="budget in env steps per run")
    c.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. n-1)")
    c.add_argument("--seed-list", type=int, nargs="+", default=None, help="explicit seeds (instead of --seeds)")
    c.add_argument("--out", default="results", help="output folder (finished runs in it are skipped)")
    c.add_argument("--eval-freq", type=int, default=None, help="env steps between evaluations (default steps/20)")
    c.add_argument("--eval-episodes", type=int, default=10)
    c.add_argument(
        "--dreamer-size",
        default=None,
        help="DreamerV2 size (default, small, atari, tiny) or preset (minatar-100k); default: the minatar-100k "
        "preset for budgets up to 1M steps, else default",
    )
    c.add_argument(
        "--dreamerv3-size",
        default=None,
        help="DreamerV3 model_size (XXS, XS, S, M, L, XL) or preset (minatar-100k); default: the minatar-100k "
        "preset for budgets up to 1M steps, else S",
    )
    c.add_argument("--device", default="auto", help="torch device for every run: auto, cpu, cuda")
    c.add_argument("--threads", type=int, default=None, help="torch threads per run (default cores / jobs)")
    c.add_argument("--jobs", type=int, default=1, help="runs in parallel (separate processes)")
    c.add_argument("--save-models", action="store_true", help="keep each run's trained model in OUT/models/")
    c.add_argument(
        "--action-repeat",
        type=int,
        default=1,
        help="repeat each action K times (SB3's MaxAndSkipEnv); --steps counts actions",
    )
    d = sub.add_parser("dream", help="video of a saved model's world-model predictions beside the real frames")
    d.add_argument("model", help="a zip saved by an sb3-dreamer algorithm")
    d.add_argument("--env", required=True, help="the gymnasium id the model was trained on")
    d.add_argument("--out", default="dream.gif", help="the video: .gif or .mp4 (errors plot beside it)")
    d.add_argument("--context", type=int, default=5, help="real frames the model sees first")
    d.add_argument("--horizon", type=int, default=15, help="frames it then imagines open-loop")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--fps", type=int, default=4)
    d.add_argument("--key", default=None, help="the image entry of a Dict observation (default: the first)")
    args = parser.parse_args(argv)
    if args.command == "dream":
        dream_command(args)
        return
    if args.command == "compare":
        from sb3_dreamer.compare import compare

        compare(
            args.env,
            args.algo,
            steps=int(args.steps),
            seeds=args.seed_list if args.seed_list else args.seeds,
            out=args.out,
            eval_freq=args.eval_freq,
            eval_episodes=args.eval_episodes,
            dreamer_size=args.dreamer_size,
            dreamerv3_size=args.dreamerv3_size,
            device=args.device,
            threads=args.threads,
            jobs=args.jobs,
            save_models=args.save_models,
            action_repeat=args.action_repeat,
            command=" ".join(["sb3-dreamer", *(argv if argv is not None else sys.argv[1:])]),
        )
        return
    if args.command in (None, "demo"):
        if args.command is None:
            args = parser.parse_args(["demo", *(argv or [])])
        demo(args)


if __name__ == "__main__":
    main()
