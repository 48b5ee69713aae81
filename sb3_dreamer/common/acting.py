"""Collecting experience with a recurrent world-model policy, for
:class:`~sb3_dreamer.common.algorithm.WorldModelAlgorithm`.

SB3's rollout loop calls :meth:`RecurrentRollouts._sample_action` before each ``env.step`` and
:meth:`RecurrentRollouts._store_transition` after it. Here acting filters each observation into
the latent state (also during the random warm-up, so the state is consistent when the policy takes
over), the stored rows keep the real final observation of an episode and its ``is_first`` flags,
and a rollout resumed from a checkpoint taken in its middle is shortened so the updates fall on the
same env steps as without the interruption.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv

from sb3_dreamer.common.policies import DreamerPolicy, LatentState, check_finite_observation


class RecurrentRollouts(OffPolicyAlgorithm):
    """SB3's experience collection, acting with :meth:`DreamerPolicy.step` and its recurrent state.

    ``_last_latent`` is the acting envs' state ``(h, z, a_{t-1})``; ``_pre_step`` holds what a save
    between ``env.step`` and the storing of that step needs; ``_rollout_progress`` counts the steps
    (or episodes) of the current rollout already stored. ``_acting_random_state`` is
    :class:`~sb3_dreamer.common.resume.ExactResume`'s.
    """

    policy: DreamerPolicy
    _last_latent: LatentState | None
    _pre_step: tuple[int, LatentState | None, dict[str, Any]] | None
    _rollout_progress: int
    _acting_random_state: Callable[[], dict[str, Any]]

    def _sample_action(
        self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Act with the recurrent policy (sampling from the actor); before ``learning_starts``
        act uniformly at random but still filter the observations, so the latent state and its
        previous action stay consistent when the policy takes over."""
        assert self._last_obs is not None, "self._last_obs was not set"
        # What `save` needs if a callback saves between env.step and _store_transition (SB3 calls
        # CheckpointCallback there): the state as of the last stored step.
        self._pre_step = (self.num_timesteps, self._last_latent, self._acting_random_state())
        policy = self.policy
        policy.set_training_mode(False)
        if self._last_latent is None or len(self._last_latent[0]) != n_envs:
            self._last_latent = policy.initial_state(n_envs)
        obs_tensor, _ = policy.obs_to_tensor(self._last_obs)
        starts = th.as_tensor(np.asarray(self._last_episode_starts, dtype=np.float32), device=self.device)
        forced = None
        if self.num_timesteps < learning_starts:
            random_action = np.array([self.action_space.sample() for _ in range(n_envs)])
            forced = policy.action_to_tensor(policy.to_buffer_action(random_action))
        action, self._last_latent = policy.step(
            obs_tensor, self._last_latent, starts, deterministic=False, action=forced
        )
        if action_noise is not None and forced is None:  # SB3's exploration noise (Box actions)
            noise = th.as_tensor(action_noise(), dtype=action.dtype, device=action.device).reshape(action.shape)
            action = (action + noise).clamp(-1.0, 1.0)  # in the actor's [-1, 1], as SB3's TD3 adds it
            self._last_latent = (*self._last_latent[:2], action)  # a_{t-1} is the action taken
        env_action = policy.to_env_action(action)
        return env_action, policy.to_buffer_action(env_action)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Store the step as Dreamer rows and remember which envs start a new episode."""
        if not np.isfinite(reward).all():
            raise ValueError(f"The environment returned a non-finite reward (NaN or inf): {reward}.")
        check_finite_observation(new_obs)
        next_obs = new_obs
        ended = [i for i, done in enumerate(dones) if done and infos[i].get("terminal_observation") is not None]
        if ended:  # swap in the real final observations, on a copy (new_obs is what the policy acts on next)
            next_obs = {k: v.copy() for k, v in new_obs.items()} if isinstance(new_obs, dict) else new_obs.copy()
        for i in ended:
            terminal = infos[i]["terminal_observation"]
            check_finite_observation(terminal)
            if isinstance(next_obs, dict):
                for key in next_obs:
                    next_obs[key][i] = terminal[key]
            else:
                next_obs[i] = terminal
        replay_buffer.add(  # type: ignore[call-arg]
            self._last_obs, next_obs, buffer_action, reward, dones, infos, episode_start=self._last_episode_starts
        )
        self._last_obs = new_obs
        self._last_episode_starts = dones
        self._pre_step = None
        episodes = self.train_freq.unit == TrainFrequencyUnit.EPISODE  # type: ignore[union-attr]
        self._rollout_progress += int(np.sum(dones)) if episodes else 1

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """SB3's rollout, shortened by the steps already collected when a resumed checkpoint was
        saved in the middle of one, so the updates fall on the same steps as without the interruption."""
        done = self._rollout_progress
        if 0 < done < train_freq.frequency:
            train_freq = TrainFreq(train_freq.frequency - done, train_freq.unit)
        else:
            self._rollout_progress = done = 0
        rollout = super().collect_rollouts(
            env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval
        )
        if rollout.continue_training:
            self._rollout_progress = 0
            if train_freq.unit == TrainFrequencyUnit.STEP:  # gradient_steps=-1 counts the whole rollout
                rollout = rollout._replace(episode_timesteps=rollout.episode_timesteps + done * env.num_envs)
        return rollout


def gaussian_action_noise(action_space: spaces.Space, std: float) -> NormalActionNoise | None:
    """SB3's ``NormalActionNoise`` of ``std`` (in the actor's [-1, 1] units) for a Box action space;
    ``None`` for Discrete actions (they explore by sampling) or ``std`` 0 (DreamerV1 and PlaNet,
    Appendix A of each: ``std`` 0.3)."""
    if not isinstance(action_space, spaces.Box) or std <= 0.0:
        return None
    dim = int(np.prod(action_space.shape))
    return NormalActionNoise(np.zeros(dim), np.full(dim, std))
