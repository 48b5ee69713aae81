"""The algorithms ``compare`` can run: their names, their constructor arguments for a budget,
and ``NAME(key=value)`` variants."""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.compare.results import _jsonable


def warmup_steps(steps: int) -> int:
    """Random warm-up (``learning_starts``) for a budget: the MinAtar DQN paper's 5000 steps,
    capped at 5% of short budgets. ``dreamerv2`` and ``dqn`` both use it, so they start learning
    at the same step; ``dqn-sb3`` and ``qrdqn`` keep their libraries' defaults."""
    from sb3_dreamer.presets import minatar_dqn_schedule

    return minatar_dqn_schedule(steps)[0]


#: Budgets up to this many env steps use the Dreamers' ``minatar-100k`` preset when no size is given.
SMALL_BUDGET = 1_000_000


#: The module holding each world-model algorithm's ``CONFIGURATIONS``, ``DEFAULT_CONFIGURATION``
#: and ``PRESETS`` (one shape for every algorithm: name -> constructor arguments).
SIZE_MODULES = {
    "dreamerv1": "sb3_dreamer.dreamer_v1.sizes",
    "dreamerv2": "sb3_dreamer.dreamer_v2.sizes",
    "dreamerv3": "sb3_dreamer.dreamer_v3.sizes",
    "planet": "sb3_dreamer.planet.sizes",
}


def _sizes(algo: str) -> Any:
    return importlib.import_module(SIZE_MODULES[algo])


def default_size(algo: str, steps: int) -> str:
    """The named configuration (size or preset) of ``algo`` that ``compare`` uses when none is given:
    the ``minatar-100k`` preset for budgets up to :data:`SMALL_BUDGET` env steps, else the class
    defaults (DreamerV2 ``default``, DreamerV3 ``S``); an algorithm without that preset
    (DreamerV1) always gets its defaults."""
    sizes = _sizes(algo)
    if steps <= SMALL_BUDGET and "minatar-100k" in sizes.CONFIGURATIONS:
        return "minatar-100k"
    return sizes.DEFAULT_CONFIGURATION


def _configured_kwargs(algo: str) -> Callable[[int, dict[str, str | None]], dict[str, Any]]:
    """The constructor arguments of ``algo``'s named configuration (``sizes[algo]`` or the
    default for the budget), with ``learning_starts`` = :func:`warmup_steps`."""

    def kwargs(steps: int, sizes: dict[str, str | None]) -> dict[str, Any]:
        configurations = _sizes(algo).CONFIGURATIONS
        size = sizes.get(algo) or default_size(algo, steps)
        if size not in configurations:
            label = ALGORITHMS[algo].label
            raise ValueError(f"Unknown {label} size or preset {size!r}; choose from {sorted(configurations)}.")
        return {**copy.deepcopy(configurations[size]), "learning_starts": warmup_steps(steps)}

    return kwargs


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


def _dreamerv1_class() -> type[BaseAlgorithm]:
    from sb3_dreamer import DreamerV1

    return DreamerV1


def _planet_class() -> type[BaseAlgorithm]:
    from sb3_dreamer import PlaNet

    return PlaNet


def _world_models_class() -> type[BaseAlgorithm]:
    from sb3_dreamer import WorldModels

    return WorldModels


def _world_models_kwargs(steps: int, sizes: dict[str, str | None]) -> dict[str, Any]:
    """A tenth of the budget (at least 1000 steps) of random play for V and M; CMA-ES spends the rest."""
    return {"random_steps": max(1000, steps // 10)}


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
    "dreamerv1": Algorithm(
        "DreamerV1",
        _dreamerv1_class,
        "MlpPolicy",
        _configured_kwargs("dreamerv1"),
        "sb3_dreamer.DreamerV1 at its defaults (set model_size or others as a variant, "
        "e.g. \"dreamerv1(model_size='small')\"), learning_starts = warmup_steps(steps)",
        sampled_eval=True,
    ),
    "planet": Algorithm(
        "PlaNet",
        _planet_class,
        "MlpPolicy",
        _configured_kwargs("planet"),
        "sb3_dreamer.PlaNet at its defaults (CEM planner; set model_size or planner knobs as a variant, "
        "e.g. \"planet(model_size='small', candidates=300)\"), learning_starts = warmup_steps(steps)",
        sampled_eval=True,
    ),
    "dreamerv2": Algorithm(
        "DreamerV2",
        _dreamerv2_class,
        "MlpPolicy",
        _configured_kwargs("dreamerv2"),
        "sb3_dreamer.DreamerV2 at the chosen --dreamer-size (size or preset; default: default_size(...)), "
        "learning_starts = warmup_steps(steps)",
        sampled_eval=True,
    ),
    "dreamerv3": Algorithm(
        "DreamerV3",
        _dreamerv3_class,
        "MlpPolicy",
        _configured_kwargs("dreamerv3"),
        "sb3_dreamer.DreamerV3 at the chosen --dreamerv3-size (model_size or preset; default: default_size(...)), "
        "learning_starts = warmup_steps(steps)",
        sampled_eval=True,
    ),
    "worldmodels": Algorithm(
        "World Models",
        _world_models_class,
        "CnnPolicy",
        _world_models_kwargs,
        "sb3_dreamer.WorldModels at its defaults (controller trained in the real env), random_steps = max(1000, "
        "steps // 10); set controller_training='dream' and generations as a variant",
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


def _presets_used(kwargs: dict[str, Any], algo: str) -> dict[str, Any]:
    """The arguments of the preset a run uses (for ``meta.json``), or ``{}``."""
    base, name = parse_algo(algo)[0], kwargs.get("preset")
    presets = _sizes(base).PRESETS if base in SIZE_MODULES else {}
    return {name: _jsonable(presets[name])} if name in presets else {}
