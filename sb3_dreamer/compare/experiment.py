"""``compare``: the whole comparison (protocol check, the runs still to do in a pool of processes, the report)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.utils import get_device

from sb3_dreamer.compare.registry import (
    ALGORITHMS,
    _presets_used,
    algo_label,
    algorithm_kwargs,
    default_size,
    parse_algo,
)
from sb3_dreamer.compare.report import plot_curves, summary_table, write_summary
from sb3_dreamer.compare.results import (
    _jsonable,
    _now,
    _write_json,
    hardware,
    load_runs,
    run_name,
    usable_cores,
    versions,
)
from sb3_dreamer.compare.run import EVAL_SEED_OFFSET, MAX_EPISODE_STEPS, _run_job
from sb3_dreamer.compare.statistics import random_scores, summarize
from sb3_dreamer.envs import MINATAR_WRAPPERS, register_envs


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
    action_repeat: int = 1,
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
    :param action_repeat: repeat each action this many times (SB3's ``MaxAndSkipEnv``, the Atari
        frame skip: rewards summed, the last two frames max-pooled), for every algorithm and in
        evaluation. ``steps`` and ``eval_freq`` count the agent's steps; the env runs
        ``action_repeat`` times as many. Recorded in the protocol when above 1.

    Every run in progress is checkpointed after each evaluation (``out/checkpoints/``); re-running
    the command continues interrupted runs exactly where their last checkpoint left them.
    """
    register_envs()
    steps, eval_episodes, jobs = int(steps), int(eval_episodes), max(1, int(jobs))
    envs, algos = list(dict.fromkeys(envs)), list(dict.fromkeys(algos))  # duplicates would collide on files
    seed_list = list(dict.fromkeys(range(seeds) if isinstance(seeds, int) else (int(s) for s in seeds)))
    eval_freq = int(eval_freq) if eval_freq is not None else max(1, steps // 20)
    action_repeat = int(action_repeat)
    checks = (
        ("steps", steps),
        ("eval_freq", eval_freq),
        ("eval_episodes", eval_episodes),
        ("action_repeat", action_repeat),
    )
    for name, value in checks:
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
        **({"action_repeat": action_repeat} if action_repeat > 1 else {}),  # older comparisons have none
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
                        action_repeat=action_repeat,
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
