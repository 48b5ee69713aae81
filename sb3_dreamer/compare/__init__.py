"""Side-by-side comparison of algorithms on the same games, seeds, budget and evaluation protocol.

Command line (``sb3-dreamer compare --help``)::

    sb3-dreamer compare --env MinAtar/Breakout-v1 MinAtar/Asterix-v1 --algo dreamerv2 dqn \
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

from sb3_dreamer.compare.experiment import compare
from sb3_dreamer.compare.registry import (
    ALGORITHMS,
    BASELINES,
    SMALL_BUDGET,
    Algorithm,
    algo_label,
    algorithm_kwargs,
    build_model,
    default_size,
    parse_algo,
    warmup_steps,
)
from sb3_dreamer.compare.report import plot_curves, summary_table, write_summary
from sb3_dreamer.compare.results import (
    CSV_COLUMNS,
    hardware,
    load_runs,
    read_csv,
    run_name,
    usable_cores,
    versions,
    write_csv,
)
from sb3_dreamer.compare.run import EVAL_SEED_OFFSET, MAX_EPISODE_STEPS, EvaluationCallback, run_one
from sb3_dreamer.compare.statistics import (
    RANDOM_EPISODES,
    T_975,
    area_under_curve,
    mean_interval,
    random_scores,
    summarize,
    t_quantile_975,
)

__all__ = [
    "ALGORITHMS",
    "BASELINES",
    "CSV_COLUMNS",
    "EVAL_SEED_OFFSET",
    "MAX_EPISODE_STEPS",
    "RANDOM_EPISODES",
    "SMALL_BUDGET",
    "T_975",
    "Algorithm",
    "EvaluationCallback",
    "algo_label",
    "algorithm_kwargs",
    "area_under_curve",
    "build_model",
    "compare",
    "default_size",
    "hardware",
    "load_runs",
    "mean_interval",
    "parse_algo",
    "plot_curves",
    "random_scores",
    "read_csv",
    "run_name",
    "run_one",
    "summarize",
    "summary_table",
    "t_quantile_975",
    "usable_cores",
    "versions",
    "warmup_steps",
    "write_csv",
    "write_summary",
]
