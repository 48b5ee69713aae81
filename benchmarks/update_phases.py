"""Seconds per update and page faults per update, whole and split into its two phases.

    python benchmarks/update_phases.py --config v3-S --inputs vector --precision fp32
    python benchmarks/update_phases.py --tree ../before --config v2-atari   # another checkout's sb3_dreamer
    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736 \\
        python benchmarks/update_phases.py --config v3-S

One process, one model (seed 0, replay filled with 1000 random steps as in ``throughput.py``):

- **update**: the median of ``--updates`` calls of ``model.train(1, batch_size)`` after 2 warm-up
  calls, and the minor page faults per call (``getrusage``);
- **phases** (with ``--phases``): on one fixed batch, the world-model loss and its backward, then
  the actor and critic losses in imagination and their backward (no optimizer step): medians of 7
  after 2 warm-up, and the behaviour phase's page faults;
- **optimizers** (with ``--optimizers``): the three optimizers' ``step()`` on the model's
  parameters with fixed random gradients, for torch's per-tensor loop (``foreach=False``), its
  ``foreach`` and its ``fused`` Adam: medians of 10 after 2 warm-up, each in turn, twice;
- **ops** (with ``--ops N``): one more update with every aten op timed (wall clock, a
  ``TorchDispatchMode``): the time of matrix products (``mm``, ``addmm``, ``bmm``, ``mv``, convolutions)
  against the rest, and the N ops, by name and input shapes, that took the longest.

Compare rows of one run only (alternate the checkouts or settings yourself): this machine's speed
drifts by 10-30% within an hour.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--config", default="v3-S")
    parser.add_argument("--inputs", default="vector", choices=["native", "vector", "rgb"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16-mixed"])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--phases", action="store_true")
    parser.add_argument("--optimizers", action="store_true")
    parser.add_argument("--ops", type=int, default=0, metavar="N")
    args = parser.parse_args()
    tree = os.path.abspath(args.tree)
    sys.path.insert(0, tree)
    import torch as th

    import sb3_dreamer

    if not os.path.abspath(sb3_dreamer.__file__).startswith(tree):
        raise SystemExit(f"sb3_dreamer imported from {sb3_dreamer.__file__}, not from {tree}")
    th.set_num_threads(args.threads)
    from throughput import build_model

    model = build_model(args.config, args.inputs, "cpu", 1000, args.precision)
    model.learn(1000)
    label = f"{tree} {args.config} {args.inputs} {args.precision} (sb3_dreamer {sb3_dreamer.__version__})"

    times = []
    for i in range(2 + args.updates):
        if i == 2:
            faults = minor_faults()
        start = time.perf_counter()
        model.train(1, model.batch_size)
        times.append(time.perf_counter() - start)
    per_update = (minor_faults() - faults) // args.updates
    print(f"{label}: update {statistics.median(times[2:]):.3f} s, {per_update} page faults per update", flush=True)
    if args.phases:
        phases(model, label)
    if args.ops:
        op_times(model, label, args.ops)
    if args.optimizers:  # last: its steps change the weights
        optimizer_steps(model, label)


def op_times(model, label: str, top: int) -> None:
    from collections import defaultdict

    import torch as th
    from torch.utils._python_dispatch import TorchDispatchMode

    times: dict[tuple, list] = defaultdict(lambda: [0, 0.0])

    class Timed(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, th.Tensor))[:3]
            entry = times[(str(func.overloadpacket.__name__), shapes)]
            entry[0] += 1
            entry[1] += time.perf_counter() - start
            return out

    start = time.perf_counter()
    with Timed():
        model.train(1, model.batch_size)
    total = time.perf_counter() - start
    products = ("mm", "addmm", "addmm_", "bmm", "mv", "convolution", "convolution_backward")
    in_products = sum(t for (name, _), (_, t) in times.items() if name in products)
    in_ops = sum(t for _, t in times.values())
    print(
        f"{label}: one timed update {total:.3f} s, in ops {in_ops:.3f} s, of which matrix products {in_products:.3f} s",
        flush=True,
    )
    by_name: dict[str, float] = defaultdict(float)
    for (name, _), (_, t) in times.items():
        by_name[name] += t
    print(
        "  by op: "
        + ", ".join(f"{n} {t * 1e3:.0f} ms" for n, t in sorted(by_name.items(), key=lambda kv: -kv[1])[:top])
    )
    for (name, shapes), (calls, t) in sorted(times.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"  {t * 1e3:7.1f} ms {calls:4d} x {name} {shapes}")


def optimizer_steps(model, label: str) -> None:
    import torch as th

    policy = model.policy
    th.manual_seed(0)
    for param in policy.parameters():
        param.grad = th.randn_like(param) * 1e-3 if param.requires_grad else None
    parts = [
        (policy.world_model, policy.wm_optimizer),
        (policy.actor, policy.actor_optimizer),
        (policy.critic, policy.critic_optimizer),
    ]
    times: dict[str, list[float]] = {}
    for implementation in ("foreach=False", "foreach", "fused") * 2:
        kwargs = {"foreach": False} if implementation == "foreach=False" else {implementation: True}
        optimizers = []
        for module, optimizer in parts:
            defaults = {k: v for k, v in optimizer.defaults.items() if k not in ("foreach", "fused")}
            optimizers.append(type(optimizer)(module.parameters(), **defaults, **kwargs))
        steps = []
        for _ in range(12):
            start = time.perf_counter()
            for optimizer in optimizers:
                optimizer.step()
            steps.append(time.perf_counter() - start)
        times.setdefault(implementation, []).append(statistics.median(steps[2:]))
    for param in policy.parameters():
        param.grad = None
    shown = ", ".join(f"{k} {' / '.join(f'{t * 1e3:.1f}' for t in v)} ms" for k, v in times.items())
    print(f"{label}: optimizer steps (3 optimizers, 2 rounds): {shown}", flush=True)


def phases(model, label: str) -> None:
    import torch as th

    from sb3_dreamer.common.behavior import behavior_losses

    policy, world_model = model.policy, model.policy.world_model
    th.manual_seed(0)
    batch = model.replay_buffer.sample_sequences(model.batch_size, model.sequence_length)
    world, behavior, faults = [], [], []
    for i in range(9):
        start = time.perf_counter()
        with model.autocast():
            loss, posterior, _ = world_model.loss(batch, model._kl_terms, model.loss_scales)
        loss.backward()
        middle, faults0 = time.perf_counter(), minor_faults()
        with model.autocast():
            actor_loss, critic_loss, _ = behavior_losses(
                world_model,
                policy.actor,
                policy.critic,
                policy.target_critic,
                posterior,
                batch.is_terminal,
                model.imagination_horizon,
                model.gamma,
                model.return_lambda,
                float(model.actor_grad_mix),
                model.entropy_coef,
                **model._behavior_options(),
            )
        (actor_loss + critic_loss).backward()
        end = time.perf_counter()
        for param in policy.parameters():
            param.grad = None
        if i >= 2:
            world.append(middle - start)
            behavior.append(end - middle)
            faults.append(minor_faults() - faults0)
    print(
        f"{label}: world model {statistics.median(world):.3f} s, behaviour {statistics.median(behavior):.3f} s "
        f"({int(statistics.median(faults))} page faults)",
        flush=True,
    )


if __name__ == "__main__":
    main()
