"""A comparison's report: the Markdown summary table and the learning-curve plots."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from sb3_dreamer.compare.registry import ALGORITHMS, BASELINES, algo_label
from sb3_dreamer.compare.results import load_runs
from sb3_dreamer.compare.run import EVAL_SEED_OFFSET
from sb3_dreamer.compare.statistics import RANDOM_EPISODES, _order, mean_interval


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
- Random policy: uniformly random actions, {RANDOM_EPISODES} episodes.{_describe_repeat(protocol)}
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


def _describe_repeat(protocol: dict[str, Any]) -> str:
    repeat = protocol.get("action_repeat", 1)
    if repeat == 1:
        return ""
    return (
        f"\n- Action repeat: {repeat} (SB3's `MaxAndSkipEnv`) for every algorithm, in training and evaluation; "
        f"budgets count actions ({repeat} env frames each); the random policy acts at every frame."
    )
