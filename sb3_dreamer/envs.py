"""Environment registration: MinAtar and ALE ids for ``gym.make``.

Gymnasium 1.x no longer loads the ``gymnasium.envs`` entry points that MinAtar declares, so
``gym.make("MinAtar/Breakout-v1")`` fails unless someone calls ``minatar.gym.register_envs()``.
``import sb3_dreamer`` does that once (idempotently, with no re-registration warnings). In
``SubprocVecEnv`` workers started with ``spawn``/``forkserver`` use the
``"sb3_dreamer:MinAtar/Breakout-v1"`` form, which imports this package inside each worker.
"""

from __future__ import annotations

import gymnasium as gym

MINATAR_GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")


def register_minatar_envs() -> bool:
    """Register ``MinAtar/<Game>-v0`` and ``-v1``; returns whether MinAtar is available."""
    if "MinAtar/Breakout-v1" in gym.registry:
        return True
    try:
        import minatar.gym
    except ImportError:  # pragma: no cover - minatar is a dependency
        return False
    minatar.gym.register_envs()
    return True


def register_ale_envs() -> bool:
    """Register the ``ALE/*`` ids (ale-py registers them on import)."""
    try:
        import ale_py
    except ImportError:  # pragma: no cover - ale-py is a dependency
        return False
    gym.register_envs(ale_py)
    return True


def register_envs() -> None:
    register_minatar_envs()
    register_ale_envs()
