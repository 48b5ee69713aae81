"""Does ``torch.compile`` pay for the ``minatar-100k`` update on this CPU? Eager against compiled for
the update's building blocks, and the single-thread GEMM rate that bounds it.

    python benchmarks/compile_probe.py            # prints a Markdown table

Blocks (shapes from ``benchmarks/update_phases.py --config v2-minatar-100k --ops``):

- ``ln+elu``: LayerNorm then ELU on the (7680, 128) activations of a head over the imagined states;
- ``head``: a ``minatar-100k`` head MLP (384 -> 2 x 128 LayerNorm+ELU -> 1) over 7680 imagined
  states, forward and backward, the most common piece of the behaviour update;
- ``gemm``: the GRU product of imagination, (512, 256) x (256, 384), and (7680, 128) x (128, 128).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch as th
import torch.nn.functional as F
from torch import nn


def seconds(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    th.manual_seed(0)
    rows = []

    x = th.randn(7680, 128, requires_grad=True)
    weight, bias = th.ones(128, requires_grad=True), th.zeros(128, requires_grad=True)
    grad = th.randn(7680, 128)

    def ln_elu(x: th.Tensor, w: th.Tensor, b: th.Tensor) -> th.Tensor:
        return F.elu(F.layer_norm(x, (128,), w, b, 1e-3))

    head = nn.Sequential(
        nn.Linear(384, 128, bias=False), nn.LayerNorm(128, eps=1e-3), nn.ELU(),
        nn.Linear(128, 128, bias=False), nn.LayerNorm(128, eps=1e-3), nn.ELU(),
        nn.Linear(128, 1),
    )  # fmt: skip
    feats = th.randn(7680, 384)
    for name, eager, inputs, backward in (
        ("ln+elu", ln_elu, (x, weight, bias), lambda out: out.backward(grad)),
        ("head", head, (feats,), lambda out: out.sum().backward()),
    ):
        start = time.perf_counter()
        compiled = th.compile(eager, dynamic=False)
        backward(compiled(*inputs))
        compile_s = time.perf_counter() - start
        times = [seconds(lambda f=f, i=inputs, g=backward: g(f(*i)), args.repeats) for f in (eager, compiled)]
        rows.append((f"{name} forward+backward", times[0], times[1], compile_s))

    for m, k, n in ((512, 256, 384), (7680, 128, 128)):
        a, b = th.randn(m, k), th.randn(k, n)
        t = seconds(lambda a=a, b=b: a @ b, args.repeats)
        rows.append((f"gemm ({m},{k})x({k},{n}): {2 * m * k * n / t / 1e9:.1f} GFLOP/s", t, float("nan"), 0.0))

    print(f"torch {th.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s)\n")
    print("| block | eager ms | compiled ms | eager/compiled | compile s |")
    print("|---|---|---|---|---|")
    for name, eager_s, compiled_s, compile_s in rows:
        ratio = eager_s / compiled_s if compiled_s == compiled_s else float("nan")
        print(f"| {name} | {eager_s * 1e3:.2f} | {compiled_s * 1e3:.2f} | {ratio:.2f} | {compile_s:.1f} |")


if __name__ == "__main__":
    main()
