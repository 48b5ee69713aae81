"""The policy of :class:`~sb3_dreamer.WorldModels`: V, M and C in one module (so SB3 saves,
loads and moves them together), with the recurrent ``predict`` of sb3-contrib's RecurrentPPO."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from sb3_dreamer.common.networks import NetStyle
from sb3_dreamer.common.observations import as_obs_dict, observation_parts, preprocess
from sb3_dreamer.common.policies import check_action_space, check_finite_observation
from sb3_dreamer.world_models.networks import MDNRNN, VAE, Controller


class WorldModelsPolicy(BasePolicy):
    """:param z_size: Size of V's latent ``z``, 32 (paper, CarRacing)
    :param hidden_size: M's LSTM units, 256 (paper)
    :param mixtures: Gaussians in M's mixture, 5 (paper)
    :param cnn_depth: Channels of V's first convolution (doubling per stage), 32 (paper)
    :param vae_lr: V's Adam learning rate, 1e-4 (paper code)
    :param rnn_lr: M's Adam learning rate, 1e-3 (paper code)
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Any = None,
        z_size: int = 32,
        hidden_size: int = 256,
        mixtures: int = 5,
        cnn_depth: int = 32,
        vae_lr: float = 1e-4,
        rnn_lr: float = 1e-3,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__(observation_space, action_space, normalize_images=False)
        check_action_space(action_space)
        self.parts = observation_parts(observation_space, channels_last)
        if not any(part.is_image for part in self.parts):
            raise TypeError(
                f"World Models compresses frames with a VAE; the observation space {observation_space} has no image."
            )
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.action_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))  # type: ignore[attr-defined]
        self.args = dict(z_size=z_size, hidden_size=hidden_size, mixtures=mixtures, cnn_depth=cnn_depth)
        self.vae_lr, self.rnn_lr, self.channels_last = vae_lr, rnn_lr, channels_last
        self.vae = VAE(self.parts, z_size, cnn_depth, NetStyle(nn.ReLU))  # ReLU: the paper's VAE
        self.rnn = MDNRNN(z_size, self.action_dim, hidden_size, mixtures)
        self.controller = Controller(z_size + hidden_size, self.action_dim, self.discrete)
        self.register_buffer("dream_starts", th.zeros(0, z_size))  # encoded first frames, where dreams begin
        self.register_load_state_dict_pre_hook(_resize_dream_starts)
        self.vae_optimizer = th.optim.Adam(self.vae.parameters(), lr=vae_lr)
        self.rnn_optimizer = th.optim.Adam(self.rnn.parameters(), lr=rnn_lr)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.args, vae_lr=self.vae_lr, rnn_lr=self.rnn_lr, channels_last=self.channels_last)
        return data

    def inputs(self, observation: Any, batch_dims: int) -> dict[str, th.Tensor]:
        obs = as_obs_dict(observation)
        return {p.key: preprocess(p, th.as_tensor(obs[p.key], device=self.device), batch_dims) for p in self.parts}

    def step(self, inputs: dict[str, th.Tensor], state: tuple[th.Tensor, th.Tensor]) -> tuple[th.Tensor, tuple]:
        """z_t = mu(x_t) (paper: the controller sees V's mean), a_t = C(z_t, h_t), then M advances h."""
        z = self.vae.encode(inputs)[0]
        action = self.controller(z, state[0][0])
        _, state, _ = self.rnn(z[:, None], action[:, None], state)
        return action, state

    def to_env_action(self, action: th.Tensor) -> np.ndarray:
        if self.discrete:
            return action.argmax(-1).cpu().numpy()
        low, high = self.action_space.low, self.action_space.high  # type: ignore[attr-defined]
        action_np = action.cpu().numpy().reshape(-1, *self.action_space.shape)  # type: ignore[misc]
        return np.clip(low + (action_np + 1.0) * 0.5 * (high - low), low, high)

    def to_actor_action(self, env_action: np.ndarray) -> th.Tensor:
        """Env actions -> the controller's format (one-hot, or rescaled to [-1, 1])."""
        action = th.as_tensor(np.asarray(env_action), device=self.device)
        if self.discrete:
            return nn.functional.one_hot(action.long().reshape(-1), self.action_dim).float()
        low, high = (th.as_tensor(x, device=self.device) for x in (self.action_space.low, self.action_space.high))  # type: ignore[attr-defined]
        return 2.0 * (action.float().reshape(len(action), -1) - low.reshape(1, -1)) / (high - low).reshape(1, -1) - 1.0

    @th.no_grad()
    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The action and the next recurrent state ``(h, c)`` (sb3-contrib's RecurrentPPO contract).
        The controller is deterministic, so ``deterministic`` changes nothing."""
        self.set_training_mode(False)
        check_finite_observation(observation)
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        n = len(next(iter(as_obs_dict(obs_tensor).values())))
        h, c = self.rnn.initial(n, self.device)
        if state is not None:
            h = th.as_tensor(np.asarray(state[0]), dtype=th.float32, device=self.device).reshape(1, n, -1)
            c = th.as_tensor(np.asarray(state[1]), dtype=th.float32, device=self.device).reshape(1, n, -1)
        if episode_start is not None:
            keep = 1.0 - th.as_tensor(np.asarray(episode_start, dtype=np.float32), device=self.device).reshape(1, n, 1)
            h, c = h * keep, c * keep
        action, (h, c) = self.step(self.inputs(obs_tensor, 1), (h, c))
        actions = self.to_env_action(action)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, (h[0].cpu().numpy(), c[0].cpu().numpy())

    def _predict(self, observation: Any, deterministic: bool = False) -> th.Tensor:
        n = len(next(iter(as_obs_dict(observation).values())))
        action, _ = self.step(self.inputs(observation, 1), self.rnn.initial(n, self.device))
        return th.as_tensor(self.to_env_action(action), device=self.device)


def _resize_dream_starts(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """The dream starts' count is the data's: take the saved one's shape before loading into it."""
    saved = state_dict.get(f"{prefix}dream_starts")
    if saved is not None:
        module.dream_starts = th.empty_like(saved, device=module.dream_starts.device)


POLICY_ALIASES: dict[str, type[BasePolicy]] = {
    name: WorldModelsPolicy for name in ("WorldModelsPolicy", "CnnPolicy", "MultiInputPolicy")
}
