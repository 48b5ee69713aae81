"""Baseline presets: the MinAtar paper's DQN as plain Stable-Baselines3 ``DQN`` arguments.

Young & Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible
Reinforcement Learning Experiments", arXiv:1903.03176, and its reference script
``examples/dqn.py``: one 3x3 convolution with 16 channels (stride 1, no padding), a 128-unit
layer, ReLUs, RMSprop (lr 2.5e-4, alpha 0.95, centered, eps 0.01), batch 32, replay 100k, target
network copied every 1000 updates, one update per env step, Huber loss, gamma 0.99, no gradient
clipping, 5000 random steps, then epsilon 1.0 -> 0.1 over 100k steps, for 5M steps.

>>> from stable_baselines3 import DQN
>>> from sb3_dreamer.presets import minatar_dqn_kwargs
>>> model = DQN("MlpPolicy", "MinAtar/Breakout-v1", **minatar_dqn_kwargs(total_timesteps=1_000_000))
>>> model.learn(1_000_000)

Budgets shorter than the paper's 5M steps: see :func:`minatar_dqn_schedule`.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_dreamer.common.observations import observation_parts

#: The paper's budget and schedule, in env steps (MinAtar has no frame skip: frames = env steps).
PAPER_TOTAL_TIMESTEPS = 5_000_000
PAPER_LEARNING_STARTS = 5_000
PAPER_EPSILON_DECAY = 100_000


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper's Q-network body: ``Conv2d(C, 16, 3)`` -> ReLU -> ``Linear(16 (H-2) (W-2), 128)`` -> ReLU.

    Accepts MinAtar's channels-last ``bool`` planes and any other image ``Box`` (channels first or
    last, the same layout rule as Dreamer's encoder). With ``net_arch=[]`` the DQN head is the
    paper's final ``Linear(128, n_actions)``.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128, channels: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        (part,) = observation_parts(observation_space)
        if not part.is_image:
            raise TypeError(f"MinAtarCNN needs an image observation (H, W, C) or (C, H, W), got {observation_space}.")
        self.channels_last = part.channels_last
        c, h, w = part.shape
        self.image_shape = (h, w, c) if part.channels_last else (c, h, w)
        self.conv = nn.Conv2d(c, channels, kernel_size=3, stride=1)
        self.linear = nn.Linear(channels * (h - 2) * (w - 2), features_dim)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        x = observations.reshape(-1, *self.image_shape).float()
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        x = th.relu(self.conv(x))
        return th.relu(self.linear(x.flatten(1)))


def minatar_dqn_schedule(total_timesteps: int = PAPER_TOTAL_TIMESTEPS) -> tuple[int, int]:
    """``(learning_starts, epsilon_decay_steps)`` for a budget of ``total_timesteps`` env steps.

    The paper's 5000 random steps and 100k-step epsilon decay are kept for budgets of 1M steps
    and more (at 1M the decay is 10% of the budget). Shorter budgets shrink both in proportion,
    to 5% and 10% of the budget, so that DQN still acts mostly greedily for the last 90% of a
    short run instead of exploring until its end::

        budget      learning_starts   epsilon decay (after learning_starts)
        5M, 1M      5000              100k
        500k        5000              50k
        100k        5000              10k
        50k         2500              5k
    """
    if total_timesteps <= 0:
        raise ValueError(f"total_timesteps must be positive, got {total_timesteps}.")
    learning_starts = min(PAPER_LEARNING_STARTS, total_timesteps // 20)
    decay = min(PAPER_EPSILON_DECAY, max(1, total_timesteps // 10))
    return learning_starts, decay


def minatar_dqn_kwargs(total_timesteps: int = PAPER_TOTAL_TIMESTEPS) -> dict[str, Any]:
    """Keyword arguments for ``stable_baselines3.DQN("MlpPolicy", env, **kwargs)`` reproducing the
    MinAtar paper's DQN, with the exploration schedule mapped onto ``total_timesteps``
    (:func:`minatar_dqn_schedule`). Pass the same ``total_timesteps`` to a single ``learn`` call:
    SB3's ``exploration_fraction`` is relative to it.

    The paper anneals epsilon from 1.0 at the end of the random warm-up ``ls`` to 0.1 at
    ``ls + decay``; SB3 anneals linearly from step 0. Starting SB3's line at
    ``1 + 0.9 ls / decay`` puts it exactly on the paper's: 1.0 at ``ls``, 0.1 at ``ls + decay``
    (before ``ls`` SB3 acts uniformly at random whatever epsilon says, so the values above 1 that
    ``rollout/exploration_rate`` shows during the warm-up change nothing). SB3 counts the
    target-network period in env steps; with one update per step that is the paper's 1000 updates.
    """
    learning_starts, decay = minatar_dqn_schedule(total_timesteps)
    return {
        "learning_rate": 2.5e-4,
        "buffer_size": 100_000,
        "learning_starts": learning_starts,
        "batch_size": 32,
        "tau": 1.0,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "target_update_interval": 1_000,
        "exploration_initial_eps": 1.0 + 0.9 * learning_starts / decay,  # 1.0 at learning_starts (docstring)
        "exploration_final_eps": 0.1,
        "exploration_fraction": min(1.0, (learning_starts + decay) / total_timesteps),
        "max_grad_norm": math.inf,  # the paper does not clip gradients
        "policy_kwargs": {
            "features_extractor_class": MinAtarCNN,
            "features_extractor_kwargs": {"features_dim": 128},
            "net_arch": [],
            "normalize_images": False,
            "optimizer_class": th.optim.RMSprop,
            "optimizer_kwargs": {"alpha": 0.95, "centered": True, "eps": 0.01},
        },
    }


def minatar_dqn_parameter_count(channels: int, n_actions: int, height: int = 10, width: int = 10) -> int:
    """The paper network's parameter count: conv ``16 (9 C + 1)``, hidden ``128 (16 (H-2)(W-2) + 1)``,
    output ``A (128 + 1)``. Breakout-v1 (C=4, A=3): 592 + 131,200 + 387 = 132,179."""
    conv = 16 * (9 * channels + 1)
    hidden = 128 * (16 * (height - 2) * (width - 2) + 1)
    return conv + hidden + n_actions * (128 + 1)
