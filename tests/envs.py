"""Small environments for the tests."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueEnv(gym.Env):
    """Each step shows one of two cues (one-hot); the action equal to the cue earns 1.

    Episodes last ``length`` steps and end by termination. A random policy scores ``length / 2``
    on average, the optimal one ``length``.
    """

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._cue, self._t = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2, np.float32)
        obs[self._cue] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._cue = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == self._cue)
        self._t += 1
        self._cue = int(self.np_random.integers(2))
        return self._obs(), reward, self._t >= self.length, False, {}


class SpaceEnv(gym.Env):
    """Random observations from ``observation_space``; episodes end after 3 to 8 steps, by
    termination or, every other episode, by truncation (``truncated=True``)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self._t, self._episode, self._length = 0, 0, 5

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        self._t, self._episode = 0, self._episode + 1
        self._length = int(self.np_random.integers(3, 9))
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        assert self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype)), action
        self._t += 1
        done = self._t >= self._length
        truncated = done and self._episode % 2 == 0
        return self.observation_space.sample(), float(self.np_random.random()), done and not truncated, truncated, {}


class CounterEnv(gym.Env):
    """Observation = [step index, episode index]; reward = step index; terminates after 3 steps,
    except that a ``TimeLimit`` of 2 truncates every other episode first (see ``make_counter_env``)."""

    def __init__(self, episode_length: int = 3) -> None:
        self.observation_space = spaces.Box(-1e6, 1e6, (2,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.episode_length = episode_length
        self._t, self._episode = 0, -1

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t, self._episode = 0, self._episode + 1
        return np.array([0, self._episode], np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        obs = np.array([self._t, self._episode], np.float32)
        return obs, float(self._t), self._t >= self.episode_length, False, {}


class BadValueEnv(gym.Env):
    """Emits a NaN observation or reward at step 3."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        obs, reward = np.zeros(3, np.float32), 0.0
        if self._t == 3:
            if self.where == "observation":
                obs[1] = np.nan
            else:
                reward = float("inf")
        return obs, reward, False, self._t >= 20, {}


class PatternEnv(gym.Env):
    """A fully deterministic CueEnv: the cue follows a fixed pattern, episodes last ``length`` steps
    and every reset gives the same observation, so a fresh env continues a run exactly at an
    episode boundary (what the exact-resume tests need)."""

    def __init__(self, length: int = 9) -> None:
        self.length = length
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2, np.float32)
        obs[(self._t * 7 // 3) % 2] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == (self._t * 7 // 3) % 2)
        self._t += 1
        return self._obs(), reward, self._t >= self.length, False, {}


class TargetEnv(gym.Env):
    """Each step shows a target ``x`` in [-1, 1]; the Box action ``a`` earns ``1 - |a - x|``.

    Episodes last ``length`` steps and end by truncation (a continuing task, as DMC's are).
    A uniformly random policy scores about ``length / 3`` (``E|a - x|`` = 2/3), the optimal one
    ``length``.
    """

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._x, self._t = 0.0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._x = float(self.np_random.uniform(-1.0, 1.0))
        return np.array([self._x], np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = 1.0 - (float(np.asarray(action).reshape(-1)[0]) - self._x) ** 2
        self._t += 1
        self._x = float(self.np_random.uniform(-1.0, 1.0))
        return np.array([self._x], np.float32), reward, False, self._t >= self.length, {}


class ImageCueEnv(gym.Env):
    """:class:`CueEnv` seen as a 6x6 binary image of two planes: the plane of the cue is lit.
    The action equal to the cue earns 1; 10-step episodes end by termination (random 5, optimal 10)."""

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.observation_space = spaces.Box(0, 1, (6, 6, 2), bool)
        self.action_space = spaces.Discrete(2)
        self._cue, self._t = 0, 0

    def _obs(self) -> np.ndarray:
        obs = np.zeros((6, 6, 2), bool)
        obs[:, :, self._cue] = True
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t, self._cue = 0, int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == self._cue)
        self._t += 1
        self._cue = int(self.np_random.integers(2))
        return self._obs(), reward, self._t >= self.length, False, {}


def seeded_monitor(env: gym.Env, seed: int = 123) -> gym.Env:
    """``env`` in SB3's Monitor with a fixed random stream: ``evaluate_policy`` resets it without a
    seed, so a learning test's score would otherwise change from run to run."""
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(env)
    env.reset(seed=seed)
    return env
