"""Run sheeprl's command line with its gradient step timed (used by ``throughput.py --sheeprl``).

Runs inside sheeprl's own virtual environment, never ours:

    SHEEPRL_TIMES=times.json <venv>/bin/python sheeprl_launch.py exp=dreamer_v3 algo=dreamer_v3_XS ...

Wraps ``train`` (one gradient step: world model, then actor and critic in imagination) of
``sheeprl.algos.dreamer_v2.dreamer_v2`` and ``sheeprl.algos.dreamer_v3.dreamer_v3`` with a timer
(synchronising CUDA), counts the trained parameters from ``build_agent``, and at exit writes the
step times, the parameter count, the matmul and convolution FLOPs of one (extra, untimed) step
and the peak memory to the JSON file named by ``SHEEPRL_TIMES``.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import json
import os
import resource
import time

import torch

RESULT: dict = {"step_seconds": [], "params": None}


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed_train(train):
    @functools.wraps(train)
    def wrapper(*args, **kwargs):
        if len(RESULT["step_seconds"]) == 3 and RESULT.get("flops") is None:  # count one update, untimed
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                out = train(*args, **kwargs)
            RESULT["flops"] = counter.get_total_flops()
            RESULT["flops_by_op"] = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
            return out
        _synchronize()
        start = time.perf_counter()
        out = train(*args, **kwargs)
        _synchronize()
        RESULT["step_seconds"].append(time.perf_counter() - start)
        return out

    return wrapper


def _counted_build_agent(build_agent):
    @functools.wraps(build_agent)
    def wrapper(*args, **kwargs):
        out = build_agent(*args, **kwargs)
        world_model, actor, critic = out[:3]  # then the target critic and the player
        RESULT["params"] = sum(p.numel() for m in (world_model, actor, critic) for p in m.parameters())
        return out

    return wrapper


def _write() -> None:
    RESULT["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        RESULT["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    RESULT["torch_threads"] = torch.get_num_threads()
    with open(os.environ["SHEEPRL_TIMES"], "w") as file:
        json.dump(RESULT, file)


def main() -> None:
    for version in ("dreamer_v2", "dreamer_v3"):
        module = importlib.import_module(f"sheeprl.algos.{version}.{version}")
        module.train = _timed_train(module.train)
        module.build_agent = _counted_build_agent(module.build_agent)
    atexit.register(_write)
    from sheeprl.cli import run

    run()


if __name__ == "__main__":
    main()
