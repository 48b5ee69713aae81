"""Statistics over seeds: 95% t-intervals, the area under the learning curve, the random-policy
baseline and the per-game summaries."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_dreamer.compare.registry import ALGORITHMS, BASELINES
from sb3_dreamer.compare.results import _write_json, load_runs
from sb3_dreamer.compare.run import EVAL_SEED_OFFSET

RANDOM_EPISODES = 100


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
