"""Side-by-side comparison of algorithms on the same games, seeds, budget and evaluation protocol.

Command line (``sb3-dreamer compare --help``)::

    sb3-dreamer compare --env MinAtar/Breakout-v1 MinAtar/Asterix-v1 --algo dreamerv2 dqn \\
        --steps 100000 --seeds 3 --out results/

Python::

    from sb3_dreamer.compare import compare
    summary = compare(["MinAtar/Breakout-v1"], ["dreamerv2", "dqn"], steps=100_000, seeds=3, out="results/")

Every run sees the same env (:func:`sb3_dreamer.envs.make_env`: the id plus the shared wrappers),
the same seed (training env and algorithm seeded with ``seed``, the evaluation env with
``seed + 10000``), the same budget in env steps, and the same evaluation: every ``eval_freq``
steps (and at steps 0 and ``steps``), ``eval_episodes`` greedy episodes on the evaluation env.
Training-episode returns are recorded beside it. The output folder receives:

- ``runs/<env>__<algo>__seed<k>.csv``: one row per evaluation (:data:`CSV_COLUMNS`);
- ``summary.md``: per game and algorithm, final evaluation return (mean and 95% t-interval over
  seeds), area under the learning curve, training wall time, and ratios against DQN;
- ``curves.png``: one panel per game, mean and 95% band per algorithm against env steps;
- ``meta.json``: the protocol, commands, package versions, device, CPU/GPU model and dates.

Re-running a command skips finished runs: an interruption loses at most the runs in progress.
A folder is tied to one protocol (budget, evaluation, model size); a different protocol in the
same folder is an error.
"""

from __future__ import annotations

import ast
import csv
import datetime
import inspect
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from sb3_dreamer.envs import MINATAR_WRAPPERS, make_env, register_envs

#: Columns of every per-run CSV.
CSV_COLUMNS = (
    "env",
    "algo",
    "seed",
    "env_step",
    "eval_return_mean",
    "eval_return_std",
    "eval_sampled_return_mean",
    "eval_sampled_return_std",
    "eval_episodes",
    "train_return_mean",
    "train_episodes",
    "wall_seconds",
    "eval_seconds",
)
EVAL_SEED_OFFSET = 10_000
#: Episodes of envs registered without a time limit are truncated after this many steps (training and evaluation).
MAX_EPISODE_STEPS = 10_000
RANDOM_EPISODES = 100


# --------------------------------------------------------------------------------------------- algorithms


def warmup_steps(steps: int) -> int:
    """Random warm-up (``learning_starts``) for a budget: the MinAtar DQN paper's 5000 steps,
    capped at 5% of short budgets. ``dreamerv2`` and ``dqn`` both use it, so they start learning
    at the same step; ``dqn-sb3`` and ``qrdqn`` keep their libraries' defaults."""
    from sb3_dreamer.presets import minatar_dqn_schedule

    return minatar_dqn_schedule(steps)[0]


#: Budgets up to this many env steps use the Dreamers' ``minatar-100k`` preset when no size is given.
SMALL_BUDGET = 1_000_000


def default_size(algo: str, steps: int) -> str:
    """The DreamerV2 size or preset (``algo="dreamerv2"``) or the DreamerV3 ``model_size`` or preset
    ``compare`` uses when none is given: the ``minatar-100k`` preset for budgets up to
    :data:`SMALL_BUDGET` env steps, else the class defaults (``default``, ``S``)."""
    if steps <= SMALL_BUDGET:
        return "minatar-100k"
    return "default" if algo == "dreamerv2" else "S"


def _dreamerv2_kwargs(steps: int, sizes: dict[str, str | None]) -> dict[str, Any]:
    from sb3_dreamer.dreamer_v2.sizes import PRESETS, SIZES

    size = sizes.get("dreamerv2") or default_size("dreamerv2", steps)
    if size in PRESETS:
        return {"preset": size, "learning_starts": warmup_steps(steps)}
    if size not in SIZES:
        raise ValueError(f"Unknown DreamerV2 size or preset {size!r}; choose from {sorted({*SIZES, *PRESETS})}.")
    kwargs, policy_kwargs = SIZES[size]
    return {**kwargs, "policy_kwargs": dict(policy_kwargs), "learning_starts": warmup_steps(steps)}


def _dreamerv3_kwargs(steps: int, sizes: dict[str, str | None]) -> dict[str, Any]:
    from sb3_dreamer.dreamer_v3.sizes import PRESETS, SIZES

    size = sizes.get("dreamerv3") or default_size("dreamerv3", steps)
    if size in PRESETS:
        return {"preset": size, "learning_starts": warmup_steps(steps)}
    if size not in SIZES:
        raise ValueError(f"Unknown DreamerV3 size or preset {size!r}; choose from {[*SIZES, *PRESETS]}.")
    return {"model_size": size, "learning_starts": warmup_steps(steps)}


def _dqn_kwargs(steps: int, sizes: dict[str, str | None]) -> dict[str, Any]:
    from sb3_dreamer.presets import minatar_dqn_kwargs

    return minatar_dqn_kwargs(steps)


@dataclass(frozen=True)
class Algorithm:
    """How ``compare`` builds one algorithm: its class, policy and keyword arguments for a budget."""

    label: str
    make_class: Callable[[], type[BaseAlgorithm]]
    policy: str
    kwargs: Callable[[int, dict[str, str | None]], dict[str, Any]]  # (steps, model sizes by algorithm) -> kwargs
    description: str
    #: Also evaluated with sampled actions (the Dreamers: their actor is a stochastic policy)
    sampled_eval: bool = False


def _dreamerv2_class() -> type[BaseAlgorithm]:
    from sb3_dreamer import DreamerV2

    return DreamerV2


def _dreamerv3_class() -> type[BaseAlgorithm]:
    from sb3_dreamer import DreamerV3

    return DreamerV3


def _dqn_class() -> type[BaseAlgorithm]:
    from stable_baselines3 import DQN

    return DQN


def _qrdqn_class() -> type[BaseAlgorithm]:
    from sb3_contrib import QRDQN

    return QRDQN


#: The ``--algo`` choices.
ALGORITHMS: dict[str, Algorithm] = {
    "dreamerv2": Algorithm(
        "DreamerV2",
        _dreamerv2_class,
        "MlpPolicy",
        _dreamerv2_kwargs,
        "sb3_dreamer.DreamerV2 at the chosen --dreamer-size (size or preset; default: default_size(...)), "
        "learning_starts = warmup_steps(steps)",
        sampled_eval=True,
    ),
    "dreamerv3": Algorithm(
        "DreamerV3",
        _dreamerv3_class,
        "MlpPolicy",
        _dreamerv3_kwargs,
        "sb3_dreamer.DreamerV3 at the chosen --dreamerv3-size (model_size or preset; default: default_size(...)), "
        "learning_starts = warmup_steps(steps)",
        sampled_eval=True,
    ),
    "dqn": Algorithm(
        "DQN (MinAtar paper)",
        _dqn_class,
        "MlpPolicy",
        _dqn_kwargs,
        "stable_baselines3.DQN with sb3_dreamer.presets.minatar_dqn_kwargs(steps)",
    ),
    "dqn-sb3": Algorithm(
        "DQN (SB3 defaults)",
        _dqn_class,
        "MlpPolicy",
        lambda steps, sizes: {},
        "stable_baselines3.DQN('MlpPolicy') with SB3's default arguments",
    ),
    "qrdqn": Algorithm(
        "QR-DQN (sb3-contrib defaults)",
        _qrdqn_class,
        "MlpPolicy",
        lambda steps, sizes: {},
        "sb3_contrib.QRDQN('MlpPolicy') with sb3-contrib's default arguments",
    ),
}
#: Algorithms that ratios are taken against, in order of preference.
BASELINES = ("dqn", "dqn-sb3", "qrdqn")


def parse_algo(spec: str) -> tuple[str, dict[str, Any]]:
    """``"dreamerv2(train_freq=8, policy_kwargs={'layer_norm': False})"`` -> ``("dreamerv2", {...})``.

    An ``--algo`` entry is a name from :data:`ALGORITHMS`, optionally followed by constructor
    arguments in Python call syntax with literal values: a variant that changes those arguments
    and nothing else (``policy_kwargs`` are merged key by key into the algorithm's own).
    """
    spec = spec.strip()
    if "(" not in spec:
        base, overrides = spec, {}
    else:
        base, rest = spec[: spec.index("(")].strip(), spec[spec.index("(") :]
        try:
            call = ast.parse(f"variant{rest}", mode="eval").body
            if not isinstance(call, ast.Call) or call.args:
                raise ValueError("only keyword arguments are allowed")
            overrides = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
            if len(overrides) != len(call.keywords):
                raise ValueError("** is not allowed")
        except (SyntaxError, ValueError) as error:
            raise ValueError(
                f"Cannot read the algorithm variant {spec!r} ({error}); write NAME(key=value, ...) with literal "
                'values, e.g. "dreamerv2(train_freq=8)".'
            ) from error
    if base not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {base!r} in {spec!r}; choose from {list(ALGORITHMS)}.")
    return base, overrides


def algorithm_kwargs(spec: str, steps: int, sizes: dict[str, str | None]) -> dict[str, Any]:
    """The constructor arguments ``compare`` passes for ``spec`` (see :func:`parse_algo`)."""
    from sb3_dreamer.common.presets import merge_policy_kwargs

    base, overrides = parse_algo(spec)
    kwargs = ALGORITHMS[base].kwargs(steps, sizes)
    for key, value in overrides.items():
        if key == "policy_kwargs" and isinstance(value, dict):
            kwargs[key] = merge_policy_kwargs(kwargs.get(key), value)
        else:
            kwargs[key] = value
    if overrides:  # fail before any run starts, naming the arguments the class does not take
        accepted = inspect.signature(ALGORITHMS[base].make_class().__init__).parameters
        unknown = sorted(set(overrides) - set(accepted))
        if unknown:
            raise ValueError(f"{spec!r}: {ALGORITHMS[base].make_class().__name__} takes no argument(s) {unknown}.")
    return kwargs


def algo_label(spec: str) -> str:
    """A readable name for tables and plots: the algorithm's label, then the variant's arguments."""
    base, overrides = parse_algo(spec)
    label = ALGORITHMS[base].label
    return f"{label} {spec[spec.index('(') :]}" if overrides else label


def build_model(spec: str, env: VecEnv, steps: int, sizes: dict[str, str | None], seed: int, device: str) -> Any:
    algorithm = ALGORITHMS[parse_algo(spec)[0]]
    cls = algorithm.make_class()
    return cls(algorithm.policy, env, seed=seed, device=device, verbose=0, **algorithm_kwargs(spec, steps, sizes))


# --------------------------------------------------------------------------------------------- one run


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


def run_name(env_id: str, algo: str, seed: int) -> str:
    """The file name of a run; a variant's arguments (see :func:`parse_algo`) become ``_``-separated."""
    algo_part = re.sub(r"[^A-Za-z0-9.=+-]+", "_", algo).strip("_")
    return f"{env_id.replace('/', '-')}__{algo_part}__seed{seed}"


def write_csv(path: str, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows atomically (a temporary file beside ``path``, then a rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv(path: str) -> list[dict[str, Any]]:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        for key in row:
            if key not in ("env", "algo"):
                row[key] = float(row[key]) if row[key] not in ("", "nan") else float("nan")
    return rows


def _make_capped_env(env_id: str) -> gym.Env:
    env = make_env(env_id)
    if env.spec is None or env.spec.max_episode_steps is None:
        # MinAtar registers no time limit, and a greedy policy can live forever (Seaquest: stay at the surface)
        env = TimeLimit(env, MAX_EPISODE_STEPS)
    return env


def _vec_env(env_id: str, n: int) -> DummyVecEnv:
    return DummyVecEnv([lambda: Monitor(_make_capped_env(env_id)) for _ in range(n)])


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
        "run": [env_id, algo, seed, steps, eval_freq, eval_episodes],
        "kwargs": _jsonable(algorithm_kwargs(algo, steps, sizes)),
    }
    record = run_checkpoint.read_checkpoint(checkpoint_path, identity) if checkpoints else None
    algorithm = ALGORITHMS[parse_algo(algo)[0]]
    if record is not None:
        model, env, eval_env, progress = run_checkpoint.restore(record, algorithm.make_class(), device)
        log(f"resuming from the checkpoint at step {model.num_timesteps}")
    else:
        env = _vec_env(env_id, 1)
        eval_env = _vec_env(env_id, min(eval_episodes, 16))
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


# --------------------------------------------------------------------------------------------- metadata


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def hardware(device: str = "auto") -> dict[str, Any]:
    """CPU model and cores, and the GPU model when ``device`` uses one."""
    from sb3_dreamer.common.utils import cpu_model

    torch_device = get_device(device)
    gpu = th.cuda.get_device_name(torch_device) if torch_device.type == "cuda" else None
    return {"cpu": cpu_model(), "cpu_cores": usable_cores(), "gpu": gpu}


def _git_commit(path: str) -> str | None:
    """The commit of the git checkout holding ``path`` (with ``+dirty`` for uncommitted changes), if any."""
    import subprocess

    try:
        run = dict(cwd=path, capture_output=True, text=True, timeout=10, check=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import sb3_dreamer

    # the package's own version from the source (an editable install's metadata keeps the version it was installed at)
    found = {"python": platform.python_version(), "sb3-dreamer": sb3_dreamer.__version__}
    commit = _git_commit(os.path.dirname(os.path.abspath(sb3_dreamer.__file__)))
    if commit:
        found["sb3-dreamer-commit"] = commit
    for package in ("stable-baselines3", "sb3-contrib", "torch", "gymnasium", "numpy", "minatar"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


def _presets_used(kwargs: dict[str, Any], algo: str) -> dict[str, Any]:
    """The arguments of the preset a run uses (for ``meta.json``), or ``{}``."""
    from sb3_dreamer.dreamer_v2.sizes import PRESETS as V2_PRESETS
    from sb3_dreamer.dreamer_v3.sizes import PRESETS as V3_PRESETS

    name = kwargs.get("preset")
    presets = {"dreamerv2": V2_PRESETS, "dreamerv3": V3_PRESETS}.get(parse_algo(algo)[0], {})
    return {name: _jsonable(presets[name])} if name in presets else {}


def _write_json(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- statistics


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (the standard table to
    df 30, a Cornish-Fisher expansion beyond: error below 0.001)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}.")
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


#: Student's t 97.5% quantiles for 1 .. 30 degrees of freedom.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval ``(mean, low, high)`` over seeds; the interval is NaN for one seed."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = t_quantile_975(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def area_under_curve(steps: Sequence[float], returns: Sequence[float]) -> float:
    """Trapezoidal area under the evaluation curve divided by the budget: the mean evaluation
    return over the run (same units as returns; rewards learning early as well as finishing high)."""
    x, y = np.asarray(steps, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    span = x[-1] - x[0]
    if span <= 0:
        return float(y[-1])
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / span)


def random_scores(envs: Sequence[str], out: str, episodes: int = RANDOM_EPISODES) -> dict[str, list[float]]:
    """Mean and std of a uniformly random policy per env (``episodes`` episodes, cached in ``random.json``)."""
    from sb3_dreamer.common.utils import random_policy_score

    path = os.path.join(out, "random.json")
    cache: dict[str, list[float]] = {}
    if os.path.exists(path):
        with open(path) as file:
            cache = json.load(file)
    for env_id in envs:
        if env_id in cache:
            continue
        cache[env_id] = list(random_policy_score(env_id, episodes, EVAL_SEED_OFFSET))
    _write_json(path, cache)
    return cache


# --------------------------------------------------------------------------------------------- summary


def load_runs(out: str) -> dict[tuple[str, str], dict[int, list[dict[str, Any]]]]:
    """Finished runs in ``out/runs``: ``{(env, algo): {seed: rows}}``."""
    runs: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    runs_dir = os.path.join(out, "runs")
    for file_name in sorted(os.listdir(runs_dir)) if os.path.isdir(runs_dir) else []:
        if not file_name.endswith(".csv") or file_name.endswith(".partial.csv"):
            continue
        rows = read_csv(os.path.join(runs_dir, file_name))
        if rows:
            runs.setdefault((rows[0]["env"], rows[0]["algo"]), {})[int(rows[0]["seed"])] = rows
    return runs


def _order(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    return sorted(set(names), key=lambda n: (preferred.index(n) if n in preferred else len(preferred), n))


def summarize(out: str, envs: Sequence[str] = (), algos: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One record per (env, algorithm) over the finished runs in ``out``: final return, AUC and
    training wall time as means with 95% intervals over seeds, and ratios against the baseline."""
    runs = load_runs(out)
    env_order = _order([e for e, _ in runs], list(envs))
    algo_order = _order([a for _, a in runs], [*algos, *ALGORITHMS])
    records: list[dict[str, Any]] = []
    for env_id in env_order:
        for algo in algo_order:
            seeds = runs.get((env_id, algo))
            if not seeds:
                continue
            curves = {
                kind: [
                    ([r["env_step"] for r in rows], [r.get(column, math.nan) for r in rows]) for rows in seeds.values()
                ]
                for kind, column in (("", "eval_return_mean"), ("_sampled", "eval_sampled_return_mean"))
            }
            minutes = [(rows[-1]["wall_seconds"] - rows[-1]["eval_seconds"]) / 60 for rows in seeds.values()]
            record = {
                "env": env_id,
                "algo": algo,
                "seeds": sorted(seeds),
                "steps": int(next(iter(seeds.values()))[-1]["env_step"]),
                "train_minutes": mean_interval(minutes),
            }
            for kind, runs_xy in curves.items():  # greedy ("final", "auc"), sampled ("final_sampled", ...)
                finals = [y[-1] for _, y in runs_xy]
                if all(math.isfinite(v) for _, y in runs_xy for v in y):
                    record[f"final{kind}"] = mean_interval(finals)
                    record[f"auc{kind}"] = mean_interval([area_under_curve(x, y) for x, y in runs_xy])
                else:  # not evaluated that way (DQN: greedy only), or runs made before sampled evaluation
                    record[f"final{kind}"] = record[f"auc{kind}"] = (math.nan, math.nan, math.nan)
            records.append(record)
    for record in records:
        baseline = next(
            (r for name in BASELINES for r in records if r["env"] == record["env"] and r["algo"] == name), None
        )
        record["baseline"] = baseline["algo"] if baseline is not None and baseline is not record else None
        for key in ("final", "auc", "final_sampled", "auc_sampled", "train_minutes"):
            ratio = float("nan")
            # a ratio of means is only meaningful against a positive baseline; otherwise "n/a"
            # (the baseline's greedy figure: DQN is evaluated greedily, as SB3's evaluate_policy does)
            base_key = key.replace("_sampled", "")
            if record["baseline"] is not None and baseline[base_key][0] > 0:
                ratio = record[key][0] / baseline[base_key][0]
            record[f"{key}_ratio"] = ratio
    return records


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _fmt_interval(stat: tuple[float, float, float], digits: int = 2) -> str:
    mean, low, high = stat
    if not math.isfinite(low):
        return _fmt(mean, digits)
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_table(records: Sequence[dict[str, Any]], random: dict[str, list[float]] | None = None) -> str:
    """The summary as a markdown table (also printed by the command line). "greedy" is the
    deterministic policy, "sampled" the stochastic one (the Dreamers only); ratios divide by the
    baseline's greedy figure."""
    lines = [
        "| Game | Algorithm | Seeds | Final return, greedy | Final return, sampled | AUC, greedy | AUC, sampled "
        "| Train minutes | Random policy | Ratio vs baseline: final greedy / sampled, AUC greedy / sampled, time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        rand = random.get(r["env"]) if random else None
        ratio = "-"
        if r["baseline"] is not None:
            ratio = (
                f"{_fmt(r['final_ratio'])} / {_fmt(r['final_sampled_ratio'])}, {_fmt(r['auc_ratio'])} / "
                f"{_fmt(r['auc_sampled_ratio'])}, {_fmt(r['train_minutes_ratio'])} (vs {r['baseline']})"
            )
        lines.append(
            f"| {r['env']} | {r['algo']} | {len(r['seeds'])} | {_fmt_interval(r['final'])} "
            f"| {_fmt_interval(r['final_sampled'])} | {_fmt_interval(r['auc'])} | {_fmt_interval(r['auc_sampled'])} "
            f"| {_fmt_interval(r['train_minutes'], 2)} | {_fmt(rand[0]) if rand else 'n/a'} | {ratio} |"
        )
    return "\n".join(lines)


def _describe_hardware(run: dict[str, Any]) -> str:
    text = f"{run['device']} on {run['cpu']} ({run['cpu_cores']} cores, {run['threads']} torch threads per run)"
    return text + (f", {run['gpu']}" if run.get("gpu") else "")


def _describe_sizes(protocol: dict[str, Any], meta: dict[str, Any]) -> str:
    text = f"DreamerV2 size or preset: `{protocol['dreamer_size']}`"
    v3 = meta.get("algorithms", {}).get("dreamerv3")
    if v3 is not None:
        text += f"; DreamerV3 size or preset: `{v3['kwargs'].get('preset') or v3['kwargs'].get('model_size')}`"
    presets = {k: v for a in meta.get("algorithms", {}).values() for k, v in a.get("presets", {}).items()}
    if presets:
        text += " (presets as in `meta.json`, `algorithms`)"
    return text


def write_summary(out: str, records: Sequence[dict[str, Any]], random: dict[str, list[float]], meta: dict) -> str:
    protocol = meta["protocol"]
    commands = "\n".join(f"    {c['command']}" for c in meta["commands"])
    hardware_lines = sorted({_describe_hardware(r) for r in meta["runs"].values()})
    text = f"""# Comparison summary

Produced by `sb3-dreamer compare` (sb3-dreamer {meta["versions"].get("sb3-dreamer")}); details in `meta.json`.

- Budget: {protocol["steps"]} env steps per run; seeds per row as listed (training env and algorithm seeded
  with the seed, the evaluation env with seed + {EVAL_SEED_OFFSET}).
- Evaluation: every {protocol["eval_freq"]} env steps (and at 0 and the end), {protocol["eval_episodes"]} episodes with
  greedy (deterministic) actions on the separate evaluation env, and for the Dreamers as many with sampled actions
  and latents ("sampled": the stochastic policy they learn; DQN's greedy policy is the one it learns). Env
  wrappers: {", ".join(protocol["wrappers"])}.
- Final eval return: the last evaluation, mean over seeds and 95% t-interval [low, high].
- AUC: area under the evaluation curve divided by the budget (the mean evaluation return over the run).
- Train minutes: wall time per run with evaluation time excluded, mean over seeds.
- Ratio: this row's mean divided by the baseline's greedy mean ({", ".join(BASELINES)}, first present) for the
  same game.
- Random policy: uniformly random actions, {RANDOM_EPISODES} episodes.
- {_describe_sizes(protocol, meta)}. Hardware: {"; ".join(hardware_lines) or "n/a"}.

Commands:

{commands}

{summary_table(records, random)}
"""
    with open(os.path.join(out, "summary.md"), "w") as file:
        file.write(text)
    return text


def _label(algo: str) -> str:
    try:
        return algo_label(algo)
    except ValueError:  # a run of an algorithm this version does not know
        return algo


def plot_curves(out: str, random: dict[str, list[float]] | None = None, envs: Sequence[str] = ()) -> str:
    """``curves.png``: one panel per game, mean and 95% band over seeds per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load_runs(out)
    env_order = _order([e for e, _ in runs], list(envs))
    algo_order = _order([a for _, a in runs], list(ALGORITHMS))
    n = max(1, len(env_order))
    cols = min(3, n)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.5 * cols, 3.4 * rows_), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, env_id in enumerate(env_order):
        ax = axes[index // cols][index % cols]
        for k, algo in enumerate(algo_order):
            seeds = runs.get((env_id, algo))
            if not seeds:
                continue
            length = min(len(rows) for rows in seeds.values())
            x = np.array([r["env_step"] for r in next(iter(seeds.values()))[:length]])
            color = colors[k % len(colors)]
            for column, style, suffix in (
                ("eval_return_mean", "-", ""),
                ("eval_sampled_return_mean", "--", ", sampled"),
            ):
                values = [[rows[i].get(column, math.nan) for rows in seeds.values()] for i in range(length)]
                if not all(math.isfinite(v) for step in values for v in step):
                    continue  # not evaluated that way
                mean, low, high = np.array([mean_interval(step) for step in values]).T
                ax.plot(x, mean, style, color=color, label=f"{_label(algo)}{suffix} ({len(seeds)})")
                if len(seeds) > 1:
                    ax.fill_between(x, low, high, color=color, alpha=0.15)
        if random and env_id in random:
            ax.axhline(random[env_id][0], color="grey", linestyle="--", linewidth=1, label="random policy")
        ax.set_title(env_id)
        ax.set_xlabel("env steps")
        ax.set_ylabel("eval return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for index in range(len(env_order), rows_ * cols):
        axes[index // cols][index % cols].axis("off")
    fig.suptitle(
        "Evaluation return (solid: greedy, dashed: sampled): mean over seeds, 95% t-interval band", fontsize=10
    )
    fig.tight_layout()
    path = os.path.join(out, "curves.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- entry point


def compare(
    envs: Sequence[str],
    algos: Sequence[str] = ("dreamerv2", "dqn"),
    steps: int = 100_000,
    seeds: int | Sequence[int] = 3,
    out: str = "results",
    eval_freq: int | None = None,
    eval_episodes: int = 10,
    dreamer_size: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    jobs: int = 1,
    command: str | None = None,
    dreamerv3_size: str | None = None,
    save_models: bool = False,
) -> list[dict[str, Any]]:
    """Run every (env, algorithm, seed) not already finished in ``out``, then write ``summary.md``,
    ``curves.png`` and ``meta.json``; returns the summary records (see :func:`summarize`).

    :param envs: Gymnasium ids (MinAtar ids get the shared wrappers of :func:`sb3_dreamer.envs.make_env`).
    :param algos: names from :data:`ALGORITHMS`, each optionally with constructor arguments that make
        a variant, e.g. ``"dreamerv2(train_freq=8)"`` (:func:`parse_algo`).
    :param steps: budget in env steps per run.
    :param seeds: a number of seeds (``0 .. n-1``) or the seeds themselves.
    :param out: output folder; finished runs in it are skipped.
    :param eval_freq: env steps between evaluations (default: ``steps // 20``).
    :param eval_episodes: greedy evaluation episodes per evaluation.
    :param dreamer_size: DreamerV2 size from :data:`sb3_dreamer.dreamer_v2.sizes.SIZES` or preset
        from its ``PRESETS``; ``None``: :func:`default_size` (the ``minatar-100k`` preset up to 1M steps).
    :param dreamerv3_size: DreamerV3 ``model_size`` from :data:`sb3_dreamer.dreamer_v3.SIZES` or
        preset from :data:`sb3_dreamer.dreamer_v3.sizes.PRESETS`; ``None``: :func:`default_size`
        (recorded in the algorithm's arguments, not in the protocol).
    :param device: torch device for every run (``auto``: CUDA if available).
    :param threads: torch CPU threads per run (default: CPU cores divided by ``jobs``).
    :param jobs: runs in parallel (separate processes when more than one).
    :param command: the command line to record in ``meta.json`` (default: ``sys.argv``).
    :param save_models: keep each finished run's model as ``out/models/<run>.zip``.

    Every run in progress is checkpointed after each evaluation (``out/checkpoints/``); re-running
    the command continues interrupted runs exactly where their last checkpoint left them.
    """
    register_envs()
    steps, eval_episodes, jobs = int(steps), int(eval_episodes), max(1, int(jobs))
    envs, algos = list(dict.fromkeys(envs)), list(dict.fromkeys(algos))  # duplicates would collide on files
    seed_list = list(dict.fromkeys(range(seeds) if isinstance(seeds, int) else (int(s) for s in seeds)))
    eval_freq = int(eval_freq) if eval_freq is not None else max(1, steps // 20)
    for name, value in (("steps", steps), ("eval_freq", eval_freq), ("eval_episodes", eval_episodes)):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}.")
    if not envs or not algos or not seed_list:
        raise ValueError("compare needs at least one env, one algorithm and one seed.")
    for algo in algos:
        parse_algo(algo)  # ValueError naming an unknown algorithm or a malformed variant
    for env_id in envs:
        if env_id not in gym.registry:
            raise ValueError(f"Unknown environment id {env_id!r}.")
    if threads is None:
        threads = max(1, usable_cores() // jobs)
    dreamer_size = dreamer_size or default_size("dreamerv2", steps)
    dreamerv3_size = dreamerv3_size or default_size("dreamerv3", steps)
    sizes = {"dreamerv2": dreamer_size, "dreamerv3": dreamerv3_size}
    algorithms = {}
    for algo in algos:
        kwargs = algorithm_kwargs(algo, steps, sizes)  # also validates sizes and variants
        algorithm = ALGORITHMS[parse_algo(algo)[0]]
        algorithms[algo] = {
            "label": algo_label(algo),
            "description": algorithm.description,
            "policy": algorithm.policy,
            "kwargs": _jsonable(kwargs),
            "presets": _presets_used(kwargs, algo),
        }

    protocol = {
        "steps": steps,
        "eval_freq": eval_freq,
        "eval_episodes": eval_episodes,
        "eval_seed_offset": EVAL_SEED_OFFSET,
        "dreamer_size": dreamer_size,
        "wrappers": [f"MinAtar: {w}" for w in MINATAR_WRAPPERS],
        "max_episode_steps": MAX_EPISODE_STEPS,
    }
    meta_path = os.path.join(out, "meta.json")
    meta: dict[str, Any] = {"protocol": protocol, "commands": [], "algorithms": {}, "runs": {}}
    if os.path.exists(meta_path):
        with open(meta_path) as file:
            meta = json.load(file)
        differ = {k: (meta["protocol"].get(k), v) for k, v in protocol.items() if meta["protocol"].get(k) != v}
        if differ:
            detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in differ.items())
            raise ValueError(f"{out} holds a comparison with a different protocol ({detail}); use another --out.")
        finished_algos = {algo for _, algo in load_runs(out)}
        changed = [
            a
            for a in algos
            if a in finished_algos and meta["algorithms"].get(a, {}).get("kwargs") != algorithms[a]["kwargs"]
        ]
        if changed:
            raise ValueError(
                f"{out} holds finished {changed} runs made with other arguments (see its meta.json; a different "
                "sb3-dreamer version?); use another --out or delete those runs."
            )
    elif load_runs(out):
        raise ValueError(f"{out}/runs holds runs but {meta_path} is missing: cannot check their protocol.")
    os.makedirs(out, exist_ok=True)
    invocation = {
        "command": command or " ".join(sys.argv),
        "date": _now(),
        "device": device,
        "threads_per_run": threads,
        "jobs": jobs,
        **hardware(device),
        "versions": versions(),
    }
    meta["commands"].append(invocation)
    meta.update({k: invocation[k] for k in ("command", "date", "versions", "cpu", "gpu")})
    meta["torch_device"] = str(get_device(device))
    meta["algorithms"].update(algorithms)
    _write_json(meta_path, meta)

    pending = []
    for env_id in envs:
        for algo in algos:
            for seed in seed_list:
                if os.path.exists(os.path.join(out, "runs", f"{run_name(env_id, algo, seed)}.csv")):
                    print(f"[{env_id} {algo} seed {seed}] finished earlier: skipped", flush=True)
                    continue
                pending.append(
                    dict(
                        env_id=env_id,
                        algo=algo,
                        seed=seed,
                        steps=steps,
                        eval_freq=eval_freq,
                        eval_episodes=eval_episodes,
                        out=out,
                        dreamer_size=dreamer_size,
                        dreamerv3_size=dreamerv3_size,
                        device=device,
                        threads=threads,
                        save_model=save_models,
                    )
                )
    print(f"{len(pending)} run(s) to do, {jobs} at a time, {threads} torch thread(s) each", flush=True)

    def finished(name: str, record: dict[str, Any]) -> None:
        meta["runs"][name] = record
        _write_json(meta_path, meta)

    failures: list[str] = []
    if jobs == 1:
        previous_threads = th.get_num_threads()
        try:
            for job in pending:
                finished(*_run_job(job))
        finally:
            th.set_num_threads(previous_threads)
    elif pending:
        # separate processes (spawn): a script calling compare(jobs > 1) needs ``if __name__ == "__main__":``
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
        futures = {pool.submit(_run_job, job): run_name(job["env_id"], job["algo"], job["seed"]) for job in pending}
        try:
            for future in as_completed(futures):
                try:
                    finished(*future.result())
                except Exception as error:  # keep the other runs going; reported below
                    failures.append(f"{futures[future]}: {type(error).__name__}: {error}")
                    print(f"[{futures[future]}] failed: {error}", flush=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    random = random_scores(sorted({e for e, _ in load_runs(out)} | set(envs)), out)
    records = summarize(out, envs, algos)
    write_summary(out, records, random, meta)
    plot_curves(out, random, envs)
    print(summary_table(records, random), flush=True)
    print(f"wrote summary.md, curves.png, meta.json and runs/ in {out}", flush=True)
    if failures:
        raise RuntimeError(f"{len(failures)} run(s) failed (rerun the command to retry them):\n" + "\n".join(failures))
    return records
