"""Sequence replay for Dreamer, as a subclass of SB3's ``ReplayBuffer`` (so ``save_replay_buffer``,
``load_replay_buffer`` and ``CheckpointCallback(save_replay_buffer=True)`` work unchanged).

Layout: one contiguous stream per environment, ``(buffer_size // n_envs, n_envs, ...)``. Each row
is one observation in Dreamer's convention (danijar/dreamerv2's driver):

    row  = (x_t, a_{t-1}, r_t, is_first_t, is_terminal_t, is_last_t)

An episode of N env steps takes N + 1 rows: its reset observation (zero action and reward,
``is_first``) and then one row per step, holding the real final observation at the end
(``terminal_observation``, so truncated episodes keep their last frame). Observations are stored
once, in their native dtype (bool stays one byte).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer

from sb3_dreamer.common.observations import OBS_KEY
from sb3_dreamer.common.world_model import SequenceBatch


class SequenceReplayBuffer(ReplayBuffer):
    """Replay of per-environment streams, sampled as B sequences of length T with ``is_first`` flags.

    :param buffer_size: Total number of rows (shared equally by the ``n_envs`` streams)
    :param observation_space: Observation space (Box or Dict of Box)
    :param action_space: Action space (Discrete or Box)
    :param device: Device of the sampled tensors
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Unused: observations are always stored once
    :param handle_timeout_termination: Unused: truncation (``TimeLimit.truncated``) is always kept
        apart from termination
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ) -> None:
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)  # rows per stream
        self.optimize_memory_usage = False
        self.handle_timeout_termination = True
        subspaces = (
            observation_space.spaces if isinstance(observation_space, spaces.Dict) else {OBS_KEY: observation_space}
        )
        self.observations: dict[str, np.ndarray] = {  # type: ignore[assignment]
            key: np.zeros((self.buffer_size, n_envs, *space.shape), dtype=space.dtype)
            for key, space in subspaces.items()
        }
        self.discrete = isinstance(action_space, spaces.Discrete)
        if self.discrete:
            self.actions = np.zeros((self.buffer_size, n_envs), dtype=np.int64)
        else:
            self.actions = np.zeros((self.buffer_size, n_envs, self.action_dim), dtype=np.float32)
        self.rewards = np.zeros((self.buffer_size, n_envs), dtype=np.float32)
        self.is_first = np.zeros((self.buffer_size, n_envs), dtype=bool)
        self.is_terminal = np.zeros((self.buffer_size, n_envs), dtype=bool)
        self.is_last = np.zeros((self.buffer_size, n_envs), dtype=bool)
        self.positions = np.zeros(n_envs, dtype=np.int64)  # next row to write, per stream
        self.stream_full = np.zeros(n_envs, dtype=bool)
        self.needs_first = np.ones(n_envs, dtype=bool)  # the next add starts a new episode

    # -- SB3 bookkeeping ------------------------------------------------------------------------
    def stored(self) -> np.ndarray:
        """Number of rows held by each stream."""
        return np.where(self.stream_full, self.buffer_size, self.positions)

    def size(self) -> int:
        return int(self.stored().sum())

    def reset(self) -> None:
        super().reset()
        if hasattr(self, "positions"):
            self.positions[:] = 0
            self.stream_full[:] = False
            self.needs_first[:] = True

    def _write(
        self,
        envs: np.ndarray,
        obs: dict[str, np.ndarray],
        action: np.ndarray | None,
        reward: np.ndarray,
        is_first: bool,
        is_terminal: np.ndarray,
        is_last: np.ndarray,
    ) -> None:
        rows = self.positions[envs]
        for key, value in obs.items():
            self.observations[key][rows, envs] = value
        self.actions[rows, envs] = 0 if action is None else action
        self.rewards[rows, envs] = reward
        self.is_first[rows, envs] = is_first
        self.is_terminal[rows, envs] = is_terminal
        self.is_last[rows, envs] = is_last
        rows = rows + 1
        self.stream_full[envs] |= rows >= self.buffer_size
        self.positions[envs] = rows % self.buffer_size
        self.full = bool(self.stream_full.all())
        self.pos = int(self.positions[0])

    def _as_dict(self, obs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return obs if isinstance(obs, dict) else {OBS_KEY: obs}

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        next_obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        episode_start: np.ndarray | None = None,
    ) -> None:
        """Store one vectorised env step: ``obs`` --``action``--> ``next_obs`` with ``reward``.

        ``next_obs`` must hold the real final observation where ``done`` (SB3's
        ``_store_transition`` swaps in ``terminal_observation``). ``episode_start`` says which
        streams begin a new episode with ``obs``; by default the buffer tracks it from ``done``.
        """
        all_envs = np.arange(self.n_envs)
        starts = self.needs_first if episode_start is None else np.asarray(episode_start, dtype=bool)
        done = np.asarray(done, dtype=bool).reshape(self.n_envs)
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos], dtype=bool) & done
        if starts.any():
            envs = all_envs[starts]
            first_obs = {k: v[envs] for k, v in self._as_dict(obs).items()}
            zeros = np.zeros(len(envs), dtype=bool)
            self._write(envs, first_obs, None, np.zeros(len(envs), np.float32), True, zeros, zeros)
        action = np.asarray(action).reshape(self.n_envs, -1)
        stored_action = action[:, 0] if self.discrete else action
        self._write(
            all_envs,
            self._as_dict(next_obs),
            stored_action,
            np.asarray(reward).reshape(self.n_envs),
            False,
            done & ~truncated,
            done,
        )
        self.needs_first = done.copy()

    # -- pickling (save_replay_buffer, checkpoints) -----------------------------------------------
    _ROW_ARRAYS = ("actions", "rewards", "is_first", "is_terminal", "is_last")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the rows written so far: a 1M-row buffer holding 20k steps saves 20k rows
        (the arrays are re-padded with zeros on load, so sampling is unchanged)."""
        state = self.__dict__.copy()
        used = int(self.stored().max())
        state["observations"] = {key: value[:used] for key, value in self.observations.items()}
        for name in self._ROW_ARRAYS:
            state[name] = state[name][:used]
        state["_rows_saved"] = used
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        used = state.pop("_rows_saved", None)
        self.__dict__.update(state)
        if used is None:  # pickled whole (sb3-dreamer 0.7.0 and earlier)
            return

        def padded(rows: np.ndarray) -> np.ndarray:
            if len(rows) != used:
                raise ValueError(f"Corrupted replay buffer: {len(rows)} rows saved where {used} were recorded.")
            full = np.zeros((self.buffer_size, *rows.shape[1:]), dtype=rows.dtype)
            full[:used] = rows
            return full

        self.observations = {key: padded(value) for key, value in self.observations.items()}
        for name in self._ROW_ARRAYS:
            setattr(self, name, padded(getattr(self, name)))

    # -- sampling ---------------------------------------------------------------------------------
    def can_sample(self, sequence_length: int) -> bool:
        return bool((self.stored() >= sequence_length).any())

    def sample(self, batch_size: int, env: Any = None) -> Any:  # type: ignore[override]
        raise NotImplementedError("SequenceReplayBuffer samples sequences: use sample_sequences(batch_size, length).")

    def sample_sequences(self, batch_size: int, sequence_length: int) -> SequenceBatch:
        """Uniformly random windows of ``sequence_length`` rows that never cross a stream's write
        position. The first row of every window is marked ``is_first`` (no state is carried)."""
        n_valid = self.stored() - sequence_length + 1
        n_valid[n_valid < 0] = 0
        if n_valid.sum() == 0:
            raise ValueError(
                f"The replay buffer holds no sequence of {sequence_length} steps yet "
                f"(rows per env: {self.stored().tolist()}); collect more steps before training."
            )
        envs = np.random.choice(self.n_envs, size=batch_size, p=n_valid / n_valid.sum())
        offsets = (np.random.random(batch_size) * n_valid[envs]).astype(np.int64)
        oldest = np.where(self.stream_full[envs], self.positions[envs], 0)
        return self.get_sequences(envs, (oldest + offsets) % self.buffer_size, sequence_length)

    def get_sequences(self, envs: np.ndarray, starts: np.ndarray, sequence_length: int) -> SequenceBatch:
        """The windows starting at rows ``starts`` of streams ``envs``, as tensors on ``device``."""
        rows = (starts[:, None] + np.arange(sequence_length)) % self.buffer_size
        cols = envs[:, None]

        def to_tensor(array: np.ndarray) -> th.Tensor:
            return th.as_tensor(array[rows, cols], device=self.device)

        observations = {key: to_tensor(value) for key, value in self.observations.items()}
        if self.discrete:
            actions = th.nn.functional.one_hot(to_tensor(self.actions), int(self.action_space.n)).float()  # type: ignore[attr-defined]
        else:
            actions = to_tensor(self.actions)
        is_first = self.is_first[rows, cols]
        is_first[:, 0] = True
        actions = actions * th.as_tensor(~is_first, device=self.device).unsqueeze(-1)
        return SequenceBatch(
            observations,
            actions,
            to_tensor(self.rewards),
            th.as_tensor(is_first, device=self.device, dtype=th.float32),
            to_tensor(self.is_terminal).float(),
            to_tensor(self.is_last).float(),
        )
