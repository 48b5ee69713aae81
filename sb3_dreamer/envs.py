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


class MinAtarTimeoutAsTruncation(gym.Wrapper):
    """Report MinAtar's hidden episode timer as truncation, not termination.

    MinAtar Freeway ends every episode after 2500 steps through a ``terminate_timer`` that is not
    part of the observation, and reports it as ``terminated=True``. A value function (DQN's
    target, Dreamer's continue head) trained on that signal learns to predict an end it cannot
    see. This wrapper turns exactly those ends into ``truncated=True`` (SB3 then bootstraps
    through them); ends caused by the game itself are left alone. Games without such a timer
    pass through unchanged.
    """

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated and getattr(_minatar_game(self.env), "terminate_timer", 0) < 0:
            terminated, truncated = False, True
        return obs, reward, terminated, truncated, info


def _minatar_game(env: gym.Env) -> object:
    environment = getattr(env.unwrapped, "game", None)  # minatar.Environment
    return getattr(environment, "env", None)  # the game module's Env


#: The wrappers :func:`make_env` applies to MinAtar ids, in order (recorded by ``sb3-dreamer compare``).
MINATAR_WRAPPERS = ("MinAtarTimeoutAsTruncation",)


def make_env(env_id: str, **kwargs) -> gym.Env:  # type: ignore[no-untyped-def]
    """``gym.make(env_id)`` plus the shared wrappers every algorithm in a comparison sees: for
    MinAtar ids, :class:`MinAtarTimeoutAsTruncation`."""
    env = gym.make(env_id, **kwargs)
    if env_id.startswith("MinAtar/"):
        env = MinAtarTimeoutAsTruncation(env)
    return env
