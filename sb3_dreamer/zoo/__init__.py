"""rl-zoo3 with the sb3-dreamer algorithms: ``python -m sb3_dreamer.zoo train|enjoy ...``.

rl-zoo3's own ``train`` and ``enjoy`` entry points run unchanged, with ``dreamerv1``,
``dreamerv2`` and ``dreamerv3`` added to its algorithms, to its Optuna samplers (``-optimize``)
and, when no ``--conf-file`` is given, with the hyperparameter files shipped in this package
(``sb3_dreamer/zoo/hyperparams/<algo>.yml``: MinAtar, Atari, Pendulum). Every other rl-zoo3 flag
(``-n``, ``-f``, ``--eval-freq``, ``--hyperparams``, ``-optimize``, ``--n-trials``, ...) means
what it means there. rl-zoo3 is an optional extra: ``pip install "sb3-dreamer[zoo]"``.

    python -m sb3_dreamer.zoo train --algo dreamerv2 --env MinAtar/Breakout-v1 -n 100000 -f logs
    python -m sb3_dreamer.zoo enjoy --algo dreamerv2 --env MinAtar/Breakout-v1 -f logs --no-render
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sb3_dreamer.zoo.samplers import SAMPLERS

#: rl-zoo3 name -> sb3-dreamer class name
ALGORITHMS = {"dreamerv1": "DreamerV1", "dreamerv2": "DreamerV2", "dreamerv3": "DreamerV3"}
HYPERPARAMS = Path(__file__).resolve().parent / "hyperparams"
SCRIPTS = ("train", "enjoy")


def _rl_zoo3() -> Any:
    try:
        import rl_zoo3
    except ImportError as error:  # pragma: no cover - the extra is missing
        raise ImportError('sb3_dreamer.zoo needs rl-zoo3: pip install "sb3-dreamer[zoo]"') from error
    return rl_zoo3


def register() -> None:
    """Add the algorithms to rl-zoo3's ``ALGOS`` and their samplers to its Optuna tables (idempotent)."""
    import sb3_dreamer  # also registers the MinAtar ids

    _rl_zoo3()
    from rl_zoo3 import hyperparams_opt, utils

    for name, cls in ALGORITHMS.items():
        utils.ALGOS[name] = getattr(sb3_dreamer, cls)
        hyperparams_opt.HYPERPARAMS_SAMPLER[name] = SAMPLERS[name]
        hyperparams_opt.HYPERPARAMS_CONVERTER[name] = dict  # the samplers' names are the arguments


def with_default_config(argv: list[str]) -> list[str]:
    """``argv`` plus ``--conf-file`` of the shipped hyperparameters when it names one of our
    algorithms and no configuration of its own."""
    if any(a in ("-conf", "--conf-file") or a.startswith("--conf-file=") for a in argv):
        return argv
    algo = None
    for i, arg in enumerate(argv):
        if arg == "--algo" and i + 1 < len(argv):
            algo = argv[i + 1]
        elif arg.startswith("--algo="):
            algo = arg.split("=", 1)[1]
    if algo in ALGORITHMS:
        return [*argv, "--conf-file", str(HYPERPARAMS / f"{algo}.yml")]
    return argv


def main(argv: list[str] | None = None) -> None:
    """``python -m sb3_dreamer.zoo SCRIPT ARGS``: rl-zoo3's SCRIPT (``train`` or ``enjoy``) on ARGS."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SCRIPTS:
        raise SystemExit(f"usage: python -m sb3_dreamer.zoo {{{','.join(SCRIPTS)}}} [rl-zoo3 arguments]")
    script, args = argv[0], argv[1:]
    register()
    if script == "train":
        args = with_default_config(args)
    module = __import__(f"rl_zoo3.{script}", fromlist=[script])
    saved = sys.argv
    sys.argv = [f"sb3_dreamer.zoo {script}", *args]  # rl-zoo3's scripts parse sys.argv
    try:
        getattr(module, script)()
    finally:
        sys.argv = saved


__all__ = ["ALGORITHMS", "HYPERPARAMS", "main", "register", "with_default_config"]
