"""MinAtar observations in the forms the throughput benchmark compares: its native bool planes,
a 64x64 RGB rendering, and the flattened planes as a float vector.

This module only needs gymnasium, numpy and MinAtar, so sheeprl's environment workers import it
too (``env.wrapper._target_=minatar_inputs.make_minatar``, with this folder on ``PYTHONPATH``):
both libraries then train on exactly the same pixels.
"""

from __future__ import annotations

import colorsys

import gymnasium as gym
import numpy as np


def _palette(channels: int) -> np.ndarray:
    """One distinct colour per plane (evenly spaced hues), uint8 ``(channels + 1, 3)``; row 0 is black."""
    colours = [colorsys.hsv_to_rgb(i / channels, 0.8, 0.95) for i in range(channels)]
    return (255 * np.array([(0.0, 0.0, 0.0), *colours])).round().astype(np.uint8)


class MinAtarRGB(gym.ObservationWrapper):
    """Bool planes ``(10, 10, C)`` -> uint8 ``(size, size, 3)``: each cell takes the colour of its
    highest set plane, upscaled by nearest neighbour."""

    def __init__(self, env: gym.Env, size: int = 64) -> None:
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.colours = _palette(channels)
        self.weights = np.arange(1, channels + 1)
        self.rows = np.arange(size) * height // size
        self.cols = np.arange(size) * width // size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        index = (observation * self.weights).max(-1)  # 0 where no plane is set
        return self.colours[index[self.rows][:, self.cols]]


class MinAtarVector(gym.ObservationWrapper):
    """Bool planes ``(10, 10, C)`` -> float32 ``(100 C,)``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        size = int(np.prod(env.observation_space.shape))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation.reshape(-1).astype(np.float32)


def make_minatar(
    id: str = "MinAtar/Breakout-v1", obs_type: str = "native", size: int = 64, render_mode: str | None = None
) -> gym.Env:
    """``gym.make(id)`` with observations ``native`` (bool planes), ``rgb`` or ``vector``."""
    if id not in gym.registry:
        import minatar.gym  # registration has to happen inside every env worker

        minatar.gym.register_envs()
    env = gym.make(id, render_mode=render_mode)
    if obs_type == "rgb":
        return MinAtarRGB(env, size)
    if obs_type == "vector":
        return MinAtarVector(env)
    if obs_type != "native":
        raise ValueError(f"obs_type must be 'native', 'rgb' or 'vector', not {obs_type!r}")
    return env
