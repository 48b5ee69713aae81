"""One run of a comparison: the envs, the evaluation callback (greedy and sampled) and a checkpointed ``learn``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.atari_wrappers import MaxAndSkipEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_dreamer.compare.registry import ALGORITHMS, algorithm_kwargs, build_model, parse_algo
from sb3_dreamer.compare.results import _jsonable, _now, hardware, run_name, versions, write_csv
from sb3_dreamer.envs import make_env, register_envs

EVAL_SEED_OFFSET = 10_000


#: Episodes of envs registered without a time limit are truncated after this many steps (training and evaluation).
MAX_EPISODE_STEPS = 10_000


class EvaluationCallback(BaseCallback):
    """Evaluates at step 0, every ``eval_freq`` steps and at the end of training, and collects the
    training episodes' returns in between; each row is written to ``partial_path``.

    Every evaluation runs ``eval_episodes`` greedy episodes (``deterministic=True``: for DQN its
    argmax, for the Dreamers the modes of the actor and of the posterior) and, with ``sampled``,
    as many episodes with sampled actions and latents (the policy the Dreamers learn; danijar's
    DreamerV3 evaluates it so). With ``checkpoint`` (a callable that saves the run), the run is
    checkpointed at the first rollout start after each evaluation but the last.
    """

    def __init__(
        self,
        eval_env: VecEnv,
        eval_freq: int,
        eval_episodes: int,
        steps: int,
        row_prefix: dict[str, Any],
        partial_path: str | None = None,
        log: Callable[[str], None] | None = None,
        sampled: bool = False,
        checkpoint: Callable[[EvaluationCallback], None] | None = None,
    ) -> None:
        super().__init__()
        self.eval_env, self.eval_freq, self.eval_episodes, self.steps = eval_env, eval_freq, eval_episodes, steps
        self.row_prefix, self.partial_path, self.log = row_prefix, partial_path, log
        self.sampled, self.checkpoint = sampled, checkpoint
        self.rows: list[dict[str, Any]] = []
        self.train_returns: list[float] = []
        self.next_eval = 0
        self.start = 0.0
        self.eval_seconds = 0.0
        self.resumed_elapsed: float | None = None  # set by resume(): wall seconds before the interruption
        self._checkpoint_due = False

    # -- what a checkpoint keeps -----------------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "train_returns": self.train_returns,
            "next_eval": self.next_eval,
            "eval_seconds": self.eval_seconds,
            "elapsed": time.perf_counter() - self.start,
        }

    def resume(self, progress: dict[str, Any]) -> None:
        self.rows, self.train_returns = list(progress["rows"]), list(progress["train_returns"])
        self.next_eval, self.eval_seconds = progress["next_eval"], progress["eval_seconds"]
        self.resumed_elapsed = progress["elapsed"]

    def _on_training_start(self) -> None:
        if self.resumed_elapsed is not None:  # continuing a checkpointed run: its clock and rows go on
            self.start = time.perf_counter() - self.resumed_elapsed
            return
        self.start = time.perf_counter()
        self._evaluate(0)
        self.next_eval = self.eval_freq

    def _on_rollout_start(self) -> None:
        # every transition so far is stored and the previous update is done: a consistent point
        if self._checkpoint_due and self.checkpoint is not None and self.num_timesteps < self.steps:
            self.checkpoint(self)
        self._checkpoint_due = False

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self.train_returns.append(float(info["episode"]["r"]))
        if self.num_timesteps >= self.next_eval or self.num_timesteps >= self.steps:
            self._evaluate(self.num_timesteps)
            self.next_eval += self.eval_freq
        # stop exactly at the budget: SB3 collects whole ``train_freq`` chunks and would overshoot it
        return self.num_timesteps < self.steps

    def _on_training_end(self) -> None:
        if self.rows[-1]["env_step"] != self.num_timesteps:
            self._evaluate(self.num_timesteps)

    def _episodes(self, deterministic: bool) -> list[float]:
        returns, _ = evaluate_policy(
            self.model, self.eval_env, self.eval_episodes, deterministic=deterministic, return_episode_rewards=True
        )
        return [float(r) for r in returns]

    def _evaluate(self, step: int) -> None:
        began = time.perf_counter()
        returns = self._episodes(deterministic=True)
        sampled = self._episodes(deterministic=False) if self.sampled else []
        self.eval_seconds += time.perf_counter() - began
        train = self.train_returns
        nan = float("nan")
        row = {
            **self.row_prefix,
            "env_step": step,
            "eval_return_mean": float(np.mean(returns)),
            "eval_return_std": float(np.std(returns)),
            "eval_sampled_return_mean": float(np.mean(sampled)) if sampled else nan,
            "eval_sampled_return_std": float(np.std(sampled)) if sampled else nan,
            "eval_episodes": len(returns),
            "train_return_mean": float(np.mean(train)) if train else nan,
            "train_episodes": len(train),
            "wall_seconds": time.perf_counter() - self.start,
            "eval_seconds": self.eval_seconds,
        }
        self.train_returns = []
        self.rows.append(row)
        self._checkpoint_due = True
        if self.partial_path is not None:
            write_csv(self.partial_path, self.rows)
        if self.log is not None:
            train_text = f"{row['train_return_mean']:.2f} ({len(train)} ep)" if train else "-"
            sampled_text = f", sampled {row['eval_sampled_return_mean']:.2f}" if sampled else ""
            self.log(
                f"step {step:>{len(str(self.steps))}}/{self.steps}: eval {row['eval_return_mean']:.2f} "
                f"+- {row['eval_return_std']:.2f}{sampled_text}, train {train_text}, {row['wall_seconds']:.0f} s"
            )


def _make_capped_env(env_id: str, action_repeat: int = 1) -> gym.Env:
    env = make_env(env_id)
    if env.spec is None or env.spec.max_episode_steps is None:
        # MinAtar registers no time limit, and a greedy policy can live forever (Seaquest: stay at the surface)
        env = TimeLimit(env, MAX_EPISODE_STEPS)
    if action_repeat > 1:
        # SB3's frame skip: each action repeated, rewards summed, the last two frames max-pooled
        # (the Atari convention; DreamerV1/V2 repeat actions 2 or 4 times). Monitor wraps it, so
        # episode returns are the env's own.
        env = MaxAndSkipEnv(env, skip=action_repeat)
    return env


def _vec_env(env_id: str, n: int, action_repeat: int = 1) -> DummyVecEnv:
    return DummyVecEnv([lambda: Monitor(_make_capped_env(env_id, action_repeat)) for _ in range(n)])


def run_one(
    env_id: str,
    algo: str,
    seed: int,
    steps: int,
    eval_freq: int,
    eval_episodes: int,
    out: str,
    dreamer_size: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    dreamerv3_size: str | None = None,
    checkpoints: bool = True,
    save_model: bool = False,
    action_repeat: int = 1,
) -> dict[str, Any]:
    """Train and evaluate one (env, algorithm, seed) and write ``out/runs/<name>.csv``.

    With ``checkpoints``, the run is checkpointed after every evaluation in
    ``out/checkpoints/<name>.ckpt`` (:mod:`sb3_dreamer.run_checkpoint`), and a run that finds its
    checkpoint continues from it exactly as if it had not been interrupted; the checkpoint is
    deleted when the run finishes. With ``save_model``, the trained model is kept as
    ``out/models/<name>.zip``. Returns a record for ``meta.json`` (device, hardware, wall time).
    """
    from sb3_dreamer import run_checkpoint

    register_envs()
    if threads is not None:
        th.set_num_threads(threads)
    name = run_name(env_id, algo, seed)
    runs_dir = os.path.join(out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    partial = os.path.join(runs_dir, f"{name}.partial.csv")
    checkpoint_path = os.path.join(out, "checkpoints", f"{name}.ckpt")

    def log(message: str) -> None:
        print(f"[{env_id} {algo} seed {seed}] {message}", flush=True)

    sizes = {"dreamerv2": dreamer_size, "dreamerv3": dreamerv3_size}
    identity = {
        "sb3-dreamer": versions()["sb3-dreamer"],
        "run": [env_id, algo, seed, steps, eval_freq, eval_episodes, *([action_repeat] if action_repeat > 1 else [])],
        "kwargs": _jsonable(algorithm_kwargs(algo, steps, sizes)),
    }
    record = run_checkpoint.read_checkpoint(checkpoint_path, identity) if checkpoints else None
    algorithm = ALGORITHMS[parse_algo(algo)[0]]
    if record is not None:
        model, env, eval_env, progress = run_checkpoint.restore(record, algorithm.make_class(), device)
        log(f"resuming from the checkpoint at step {model.num_timesteps}")
    else:
        env = _vec_env(env_id, 1, action_repeat)
        eval_env = _vec_env(env_id, min(eval_episodes, 16), action_repeat)
        eval_env.seed(seed + EVAL_SEED_OFFSET)
        model = build_model(algo, env, steps, sizes, seed, device)

    def save(callback: EvaluationCallback) -> None:
        run_checkpoint.save_checkpoint(checkpoint_path, model, env, eval_env, callback.progress(), identity)

    callback = EvaluationCallback(
        eval_env,
        eval_freq,
        eval_episodes,
        steps,
        {"env": env_id, "algo": algo, "seed": seed},
        partial,
        log,
        sampled=algorithm.sampled_eval,
        checkpoint=save if checkpoints else None,
    )
    if record is not None:
        callback.resume(progress)
        model.learn(steps - model.num_timesteps, callback=callback, reset_num_timesteps=False)
    else:
        model.learn(steps, callback=callback)
    if save_model:
        model.save(os.path.join(out, "models", f"{name}.zip"))
    write_csv(os.path.join(runs_dir, f"{name}.csv"), callback.rows)
    os.remove(partial)
    if os.path.exists(checkpoint_path):
        os.remove(checkpoint_path)
    env.close()
    eval_env.close()
    return {
        "date": _now(),
        "device": str(model.device),
        "threads": th.get_num_threads(),
        **hardware(device),
        "wall_seconds": round(callback.rows[-1]["wall_seconds"], 1),
    }


def _run_job(job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return run_name(job["env_id"], job["algo"], job["seed"]), run_one(**job)
