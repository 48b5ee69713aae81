"""Training and acting speed of DreamerV2 and DreamerV3 on MinAtar Breakout, optionally against sheeprl.

    python benchmarks/throughput.py --threads 2 --out benchmarks/results/throughput_cpu
    python benchmarks/throughput.py --configs v3-XS v3-S v2-atari --inputs native vector rgb --sheeprl --out OUT
    python benchmarks/throughput.py --device cuda --out benchmarks/results/throughput_h100
    git worktree add ../before <commit> && python benchmarks/throughput.py --baseline ../before --out OUT

For each configuration, in a fresh process (so the peak memory is its own):

- **seconds per gradient step**: the median (and quartiles) of ``--repeats`` calls of
  ``model.train(1, batch_size)`` after ``--warmup`` calls, on a replay filled with random play.
  That is what ``learn`` does per update: sample B x T from the replay, world-model update, actor
  and critic in imagination, metrics;
- **achieved FLOP/s**: the matmul and convolution FLOPs of one update (counted by
  ``torch.utils.flop_counter``), divided by the median time, against the peak of a plain fp32
  matmul (1024x1024 on CPU, 8192x8192 on GPU) measured in the same process at the same threads;
- **acting**: ``model.predict`` (sampled actions, recurrent state threaded) plus ``VecEnv.step``
  with 1 and 8 envs: env steps per second and milliseconds per env step of each;
- **peak memory**: the process's peak RSS (CPU) or ``torch.cuda.max_memory_allocated`` (GPU);
- **learn(5e6) estimate**: 5 million env steps with 1 env at the configuration's own replay
  ratio, from the figures above: ``5e6 (acting s/step + updates per step x s/update)``.

Inputs: ``native`` is MinAtar's bool ``10x10xC`` planes (our CNN reads them directly); ``rgb`` is
the same game rendered to ``64x64x3`` uint8 (``minatar_inputs.py``); ``vector`` is the planes
flattened (``10*10*C`` floats), read by an MLP encoder (ours and sheeprl's).

``--baseline DIR`` times another checkout of sb3-dreamer (``DIR/sb3_dreamer``) against this one
instead, alternating fresh processes for ``--rounds`` rounds, and reports the speedup of each
configuration's seconds per update.

``--sheeprl`` also runs sheeprl 0.8.4 at the same widths (B x T, deter, hidden, stoch, MLP and
CNN widths, horizon) for the configurations that have a sheeprl preset (``v3-XS``, ``v3-S``,
``v2-atari``), with each input, in its own virtual environment (``--sheeprl-venv``, created with
pip when missing; sheeprl is never a dependency of sb3-dreamer). Its gradient step is timed by
wrapping its ``train`` (``sheeprl_launch.py``); sheeprl samples its batches outside ``train``, so
its figure excludes replay sampling while ours includes it. The ratios are its seconds per step
over ours: with each library's best MinAtar input (the faster of the inputs timed, for each) and
with identical ``vector`` and ``rgb`` inputs.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from minatar_inputs import make_minatar  # noqa: E402

ENV_ID = "MinAtar/Breakout-v1"
SHEEPRL_VERSION = "0.8.4"

#: name -> (algorithm, size); ``v2-atari`` is the DreamerV2 paper's Atari widths, sheeprl's default DV2
CONFIGS: dict[str, tuple[str, str]] = {
    "v2-default": ("dreamerv2", "default"),
    "v2-small": ("dreamerv2", "small"),
    "v2-atari": ("dreamerv2", "atari"),
    "v2-minatar-100k": ("dreamerv2", "minatar-100k"),  # a preset, DreamerV2(env, preset=...)
    "v3-XXS": ("dreamerv3", "XXS"),
    "v3-XS": ("dreamerv3", "XS"),
    "v3-S": ("dreamerv3", "S"),
    "v3-M": ("dreamerv3", "M"),
    "v3-minatar-100k": ("dreamerv3", "minatar-100k"),
}
#: sheeprl's preset at the same widths, and its sequence length (its DreamerV2 predicts no discount
#: unless asked: the paper's and ours does, so both compute the same networks)
SHEEPRL_PRESETS: dict[str, tuple[list[str], int]] = {
    "v2-atari": (["exp=dreamer_v2", "algo.per_rank_pretrain_steps=0", "algo.world_model.use_continues=True"], 50),
    "v3-XS": (["exp=dreamer_v3", "algo=dreamer_v3_XS"], 64),
    "v3-S": (["exp=dreamer_v3", "algo=dreamer_v3_S"], 64),
}


# -- our side (runs in a child process per configuration) ------------------------------------------
def build_model(config: str, obs: str, device: str, buffer_size: int, precision: str = "fp32"):
    from sb3_dreamer import DreamerV2, DreamerV3
    from sb3_dreamer.dreamer_v2.sizes import SIZES

    algo, size = CONFIGS[config]
    env_fn = functools.partial(make_minatar, ENV_ID, obs)
    common = dict(learning_starts=10**9, buffer_size=buffer_size, seed=0, device=device)
    if precision != "fp32":  # (older checkouts, timed with --baseline, have no such argument)
        common["precision"] = precision
    if size == "minatar-100k":
        return (DreamerV2 if algo == "dreamerv2" else DreamerV3)(env_fn(), preset=size, **common)
    if algo == "dreamerv2":
        kwargs, policy_kwargs = SIZES[size]
        return DreamerV2(env_fn(), policy_kwargs=policy_kwargs, **common, **kwargs)
    return DreamerV3(env_fn(), model_size=size, **common)


def synchronize(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def matmul_peak(device: th.device, dtype: th.dtype = th.float32) -> float:
    """FLOP/s of a square matmul in ``dtype``: the best of 10 after warm-up."""
    n = 8192 if device.type == "cuda" else 1024
    a, b = th.randn(n, n, device=device, dtype=dtype), th.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for i in range(13):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i >= 3:
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def update_flops(model) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    batch = model.replay_buffer.sample_sequences(model.batch_size, model.sequence_length)
    counter = FlopCounterMode(display=False)
    with counter:
        model.train_step(batch)
    return counter.get_total_flops()


def acting(model, obs: str, n_envs: int, steps: int) -> dict[str, float]:
    """Env steps per second of ``predict`` + ``env.step``, and the milliseconds per env step of each."""
    from stable_baselines3.common.env_util import make_vec_env

    env = model._wrap_env(make_vec_env(functools.partial(make_minatar, ENV_ID, obs), n_envs=n_envs, seed=0))
    observation, state, starts = env.reset(), None, np.ones(n_envs, dtype=bool)
    policy_s = env_s = 0.0
    iterations = max(steps // n_envs, 10)
    for i in range(iterations + 10):
        t0 = time.perf_counter()
        actions, state = model.predict(observation, state=state, episode_start=starts)
        t1 = time.perf_counter()
        observation, _, starts, _ = env.step(actions)
        t2 = time.perf_counter()
        if i >= 10:  # after warm-up
            policy_s += t1 - t0
            env_s += t2 - t1
    env.close()
    n = iterations * n_envs
    return {"steps_per_s": n / (policy_s + env_s), "policy_ms": 1e3 * policy_s / n, "env_ms": 1e3 * env_s / n}


def measure_ours(spec: dict[str, Any]) -> dict[str, Any]:
    th.set_num_threads(spec["threads"])
    device = th.device(spec["device"])
    precision = spec.get("precision", "fp32")
    model = build_model(spec["config"], spec["obs"], spec["device"], spec["fill"], precision)
    model.learn(spec["fill"])  # random play fills the replay; no updates (learning_starts is huge)
    peak = matmul_peak(device)
    peak_bf16 = matmul_peak(device, th.bfloat16) if precision == "bf16-mixed" else None
    times = []
    for i in range(spec["warmup"] + spec["repeats"]):
        synchronize(device)
        start = time.perf_counter()
        model.train(1, model.batch_size)
        synchronize(device)
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - start)
    flops = update_flops(model)
    median = statistics.median(times)
    policy = model.policy
    params = sum(p.numel() for m in (policy.world_model, policy.actor, policy.critic) for p in m.parameters())
    act = {n: acting(model, spec["obs"], n, spec["acting_steps"]) for n in (1, 8)}
    updates_per_step = model.gradient_steps / model.train_freq.frequency  # 1 env
    learn_5e6_h = 5e6 * (1.0 / act[1]["steps_per_s"] + updates_per_step * median) / 3600
    if device.type == "cuda":
        memory = th.cuda.max_memory_allocated(device) / 2**20
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    quartiles = statistics.quantiles(times, n=4)
    return {
        **spec,
        "batch": f"{model.batch_size} x {model.sequence_length}",
        "params": params,
        "step_s": median,
        "step_q1": quartiles[0],
        "step_q3": quartiles[2],
        "steps_timed": len(times),
        "flops": flops,
        "achieved_flops": flops / median,
        "peak_flops": peak,
        "peak_flops_bf16": peak_bf16,
        "acting": act,
        "updates_per_env_step": updates_per_step,
        "learn_5e6_h": learn_5e6_h,
        "peak_mib": memory,
    }


def run_ours(spec: dict[str, Any], pythonpath: str | None = None) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    env["PYTHONPATH"] = pythonpath or str(HERE.parent)  # this checkout, or another one (--baseline)
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- sheeprl (its own virtual environment) -----------------------------------------------------------
def ensure_sheeprl(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, f"torch=={th.__version__.split('+')[0]}"], check=True)  # the same torch first
        subprocess.run([*pip, f"sheeprl=={SHEEPRL_VERSION}", "minatar==1.0.15"], check=True)
    return python


def run_sheeprl(python: Path, config: str, obs: str, spec: dict[str, Any]) -> dict[str, Any]:
    preset, sequence_length = SHEEPRL_PRESETS[config]
    n_envs = 4
    # training starts after sequence_length iterations; then replay_ratio 1 gives n_envs updates per iteration
    iterations = sequence_length + math.ceil((spec["warmup"] + spec["repeats"]) / n_envs) + 1
    vector_keys = [
        "cnn_keys.encoder=[]",
        "cnn_keys.decoder=[]",
        "mlp_keys.encoder=[vector]",
        "mlp_keys.decoder=[vector]",
    ]
    keys = [f"algo.{key}" for key in vector_keys] if obs == "vector" else []
    args = [
        *preset,
        *keys,
        "env=gym",
        f"env.id={ENV_ID}",
        "env.wrapper._target_=minatar_inputs.make_minatar",
        f"+env.wrapper.obs_type={obs}",
        f"env.num_envs={n_envs}",
        "env.capture_video=False",
        "env.sync_env=True",
        f"fabric.accelerator={'cuda' if spec['device'].startswith('cuda') else 'cpu'}",
        f"fabric.precision={'bf16-mixed' if spec.get('precision') == 'bf16-mixed' else '32-true'}",
        "algo.run_test=False",
        "checkpoint.save_last=False",
        "checkpoint.every=0",
        "buffer.size=100000",
        "buffer.checkpoint=False",
        "algo.learning_starts=0",
        "algo.replay_ratio=1",
        f"algo.total_steps={n_envs * iterations}",
        "metric.log_level=0",
        "seed=42",
    ]
    with tempfile.TemporaryDirectory() as work:
        times_file = Path(work) / "times.json"
        env = dict(
            os.environ,
            SHEEPRL_TIMES=str(times_file),
            PYTHONPATH=str(HERE),
            OMP_NUM_THREADS=str(spec["threads"]),
            MKL_NUM_THREADS=str(spec["threads"]),
        )
        out = subprocess.run(
            [str(python), str(HERE / "sheeprl_launch.py"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0 or not times_file.exists():
            raise RuntimeError(f"sheeprl {config} {obs} failed:\n{out.stderr[-3000:]}")
        result = json.loads(times_file.read_text())
    times = result["step_seconds"][spec["warmup"] :]
    if len(times) < spec["repeats"]:
        raise RuntimeError(f"sheeprl {config} {obs}: only {len(times)} timed steps")
    quartiles = statistics.quantiles(times, n=4)
    return {
        "config": config,
        "obs": obs,
        "precision": spec.get("precision", "fp32"),
        "params": result["params"],
        "flops": result.get("flops"),
        "flops_by_op": result.get("flops_by_op"),
        "step_s": statistics.median(times),
        "step_q1": quartiles[0],
        "step_q3": quartiles[2],
        "steps_timed": len(times),
        "peak_mib": result.get("peak_gpu_mib", result["peak_rss_mib"]),
        "torch_threads": result["torch_threads"],
        "command": "sheeprl_launch.py " + " ".join(args),
    }


# -- report -------------------------------------------------------------------------------------------
def device_name(device: str) -> str:
    from sb3_dreamer.common.utils import cpu_model

    if device.startswith("cuda"):
        return th.cuda.get_device_name(th.device(device))
    return f"{cpu_model()} ({os.cpu_count()} cores)"


def command_line() -> str:
    """This run's command, with the local paths of ``--baseline`` and ``--sheeprl-venv`` as placeholders."""
    argv, placeholders = list(sys.argv[1:]), {"--baseline": "<older checkout>", "--sheeprl-venv": "<venv>"}
    for i, arg in enumerate(argv[:-1]):
        if arg in placeholders:
            argv[i + 1] = placeholders[arg]
    return "python benchmarks/throughput.py " + " ".join(argv)


def _commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"commit {out.stdout.strip()}" if out.returncode == 0 else str(path)


def speedup_report(args: argparse.Namespace, pairs: list[tuple[dict, list[float], list[float]]]) -> str:
    lines = [
        f"command: {command_line()}",
        f"device: {device_name(args.device)}; torch threads {args.threads}; {args.rounds} rounds, before and after "
        "alternating, each a fresh process timing the median of "
        f"{args.repeats} updates after {args.warmup} warm-up",
        "",
        f"before: {_commit(Path(args.baseline))}; after: {_commit(HERE.parent)} (plus any uncommitted changes)",
        "",
        "| config | input | precision | before: s / update (median of rounds) | after | speedup before / after |",
        "|---|---|---|---|---|---|",
    ]
    for spec, before, after in pairs:
        b, a = statistics.median(before), statistics.median(after)
        lines.append(f"| {spec['config']} | {spec['obs']} | {spec['precision']} | {b:.3f} | {a:.3f} | {b / a:.2f}x |")
    return "\n".join(lines) + "\n"


def report(args: argparse.Namespace, ours: list[dict], theirs: list[dict]) -> str:
    import sb3_dreamer

    lines = [
        f"command: {command_line()}",
        f"versions: sb3_dreamer {sb3_dreamer.__version__} ({_commit(HERE.parent)}), torch {th.__version__}, "
        f"python {platform.python_version()}"
        + (f", sheeprl {SHEEPRL_VERSION} (its own venv, same torch)" if theirs else ""),
        f"device: {device_name(args.device)}; torch threads {args.threads}; precision "
        + " and ".join(args.precision)
        + ' (bf16-mixed: ours `precision="bf16-mixed"`, sheeprl `fabric.precision=bf16-mixed`)',
        f"task: {ENV_ID}; gradient steps: median of {args.repeats} after {args.warmup} warm-up "
        f"(quartiles in brackets); replay filled with {args.fill} random steps",
        "",
        "| config | input | precision | B x T | params | s / update | matmul+conv GFLOP / update | achieved "
        "GFLOP/s (% of the fp32 matmul peak; of the bf16 one) | acting 1 env: steps/s (policy ms + env ms) | acting "
        "8 envs: steps/s (policy ms + env ms per env step) | peak memory MiB | learn(5e6) estimate, 1 env |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ours:
        a1, a8 = r["acting"]["1"], r["acting"]["8"]
        achieved, bf16_peak = r["achieved_flops"], r.get("peak_flops_bf16")
        share = f"{100 * achieved / r['peak_flops']:.0f}% of {r['peak_flops'] / 1e9:.0f}"
        if bf16_peak:
            share += f"; {100 * achieved / bf16_peak:.0f}% of {bf16_peak / 1e9:.0f}"
        lines.append(
            f"| {r['config']} | {r['obs']} | {r.get('precision', 'fp32')} | {r['batch']} | {r['params'] / 1e6:.2f}M "
            f"| {r['step_s']:.3f} [{r['step_q1']:.3f}, {r['step_q3']:.3f}] | {r['flops'] / 1e9:.1f} | "
            f"{achieved / 1e9:.1f} ({share}) | "
            f"{a1['steps_per_s']:.0f} ({a1['policy_ms']:.2f} + {a1['env_ms']:.3f}) | {a8['steps_per_s']:.0f} "
            f"({a8['policy_ms']:.3f} + {a8['env_ms']:.3f}) | {r['peak_mib']:.0f} | {r['learn_5e6_h']:.1f} h "
            f"({r['updates_per_env_step']:.3g} updates / step) |"
        )
    if theirs:
        lines += [
            "",
            "sheeprl at the same widths (its `train`, timed; excludes replay sampling):",
            "",
            "| config | sheeprl input | precision | params | sheeprl s / update | peak memory MiB |",
            "|---|---|---|---|---|---|",
        ]
        for r in theirs:
            lines.append(
                f"| {r['config']} | {r['obs']} | {r['precision']} | {r['params'] / 1e6:.2f}M | {r['step_s']:.3f} "
                f"[{r['step_q1']:.3f}, {r['step_q3']:.3f}] | {r['peak_mib']:.0f} |"
            )
        lines += [
            "",
            "Speed ratio, sheeprl s / update over ours (> 1: we are faster):",
            "",
            "| config | precision (both) | best input each (the faster input of each library) | identical 400-d "
            "vector | identical 64x64 RGB |",
            "|---|---|---|---|---|",
        ]
        for config, precision in dict.fromkeys((r["config"], r["precision"]) for r in theirs):
            key = (config, precision)
            mine = {r["obs"]: r["step_s"] for r in ours if (r["config"], r.get("precision", "fp32")) == key}
            other = {r["obs"]: r["step_s"] for r in theirs if (r["config"], r["precision"]) == key}
            cells = []
            if mine and other:
                my_obs, their_obs = min(mine, key=mine.get), min(other, key=other.get)
                cells.append(
                    f"{other[their_obs] / mine[my_obs]:.2f}x (sheeprl {their_obs} {other[their_obs]:.2f} s vs "
                    f"ours {my_obs} {mine[my_obs]:.2f} s)"
                )
            else:
                cells.append("-")
            for obs in ("vector", "rgb"):
                if obs in mine and obs in other:
                    cells.append(f"{other[obs] / mine[obs]:.2f}x ({other[obs]:.2f} s vs {mine[obs]:.2f} s)")
                else:
                    cells.append("-")
            lines.append(f"| {config} | {precision} | {' | '.join(cells)} |")
        lines += ["", "sheeprl commands (run in a temporary folder, `PYTHONPATH=benchmarks`):", ""]
        lines += [f"    {r['command']}" for r in theirs]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configs", nargs="+", default=["v2-default", "v2-small", "v3-XXS", "v3-XS"], choices=list(CONFIGS)
    )
    parser.add_argument("--inputs", nargs="+", default=["native"], choices=["native", "vector", "rgb"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16-mixed"], help="each one, for both libraries"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fill", type=int, default=3000, help="random env steps in the replay before timing")
    parser.add_argument("--acting-steps", type=int, default=2000)
    parser.add_argument("--sheeprl", action="store_true", help="also time sheeprl (configs with a sheeprl preset)")
    parser.add_argument("--sheeprl-inputs", nargs="+", default=["vector", "rgb"], choices=["vector", "rgb"])
    parser.add_argument("--sheeprl-venv", type=Path, default=Path(tempfile.gettempdir()) / "sb3_dreamer_sheeprl_venv")
    parser.add_argument("--baseline", default=None, help="an older checkout: time it against this one instead")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: alternating rounds")
    parser.add_argument("--out", default=None, help="writes OUT.md and OUT.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_ours(json.loads(args.one))))
        return
    base = {k: getattr(args, k) for k in ("device", "threads", "repeats", "warmup", "fill", "acting_steps")}
    if args.baseline:
        pairs = []
        for config in args.configs:
            for obs, precision in itertools.product(args.inputs, args.precision):
                spec = {**base, "config": config, "obs": obs, "precision": precision}
                before, after = [], []
                for _ in range(args.rounds):
                    before.append(run_ours(spec, str(Path(args.baseline).resolve()))["step_s"])
                    after.append(run_ours(spec)["step_s"])
                    print(config, obs, precision, before[-1], after[-1], flush=True)
                pairs.append((spec, before, after))
        text = speedup_report(args, pairs)
        print(text)
        if args.out:
            Path(args.out + ".md").write_text(text)
        return
    ours, theirs = [], []
    python = ensure_sheeprl(args.sheeprl_venv) if args.sheeprl else None
    inputs = list(dict.fromkeys([*args.inputs, *(args.sheeprl_inputs if args.sheeprl else [])]))
    for config in args.configs:  # each sheeprl row right after ours on the same input: the machine's
        for obs, precision in itertools.product(inputs, args.precision):  # speed drifts over an hour
            if obs in args.inputs:
                ours.append(run_ours({**base, "config": config, "obs": obs, "precision": precision}))
                print(json.dumps(ours[-1]), flush=True)
            if python is not None and config in SHEEPRL_PRESETS and obs in args.sheeprl_inputs:
                theirs.append(run_sheeprl(python, config, obs, {**base, "precision": precision}))
                print(json.dumps(theirs[-1]), flush=True)
    text = report(args, ours, theirs)
    print(text)
    if args.out:
        Path(args.out + ".md").write_text(text)
        Path(args.out + ".json").write_text(json.dumps({"ours": ours, "sheeprl": theirs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
