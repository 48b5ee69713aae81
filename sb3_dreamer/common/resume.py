"""Saving, loading and exact resumption, for :class:`~sb3_dreamer.common.algorithm.WorldModelAlgorithm`.

SB3's ``save`` writes the networks, the optimizers and the hyperparameters. A resumed run also needs
what the next steps draw from: the random states of torch, numpy, Python and the action space, and
the recurrent state of the acting envs. :class:`ExactResume` saves them beside SB3's data, writes
every file atomically, checks a file before SB3 unpickles it, and restores the random state when
``learn(..., reset_num_timesteps=False)`` continues, so the run goes on bit for bit (docs/reliability.md).
"""

from __future__ import annotations

import io
import pathlib
import random
from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from sb3_dreamer.common.files import VERSION, atomic_open, check_saved_model

SelfExactResume = TypeVar("SelfExactResume", bound="ExactResume")


class ExactResume(OffPolicyAlgorithm):
    """SB3's saving and loading, atomic and checked, with what an exact resume needs.

    The subclass keeps ``_last_latent`` (the acting envs' recurrent state), sets ``_pre_step``
    between ``env.step`` and the storing of that step, and ``_resume`` holds a loaded model's random
    state until training continues. :meth:`saved_members` names the zip members a file must hold.
    """

    _last_latent: Any
    _pre_step: tuple[int, Any, dict[str, Any]] | None
    _resume: dict[str, Any] | None

    @classmethod
    def saved_members(cls) -> tuple[str, ...]:
        """The members every zip this class saves holds: SB3's ``data`` and one ``.pth`` per saved
        state dict (those of :meth:`_get_torch_save_params`)."""
        return ("data", "policy.pth")

    def _acting_random_state(self) -> dict[str, Any]:
        """The random generators acting draws from, cheap enough to copy at every env step:
        torch's (action and latent samples) and the action space's (random actions before
        ``learning_starts``). numpy's and Python's (the replay sampler draws from numpy's, only
        during updates) are copied when ``save`` runs: np.random.get_state alone takes ~50 us."""
        state: dict[str, Any] = {"torch": th.get_rng_state().numpy()}
        if self.device.type == "cuda":
            state["cuda"] = th.cuda.get_rng_state(self.device).numpy()
        state["action_space"] = self.action_space.np_random.bit_generator.state
        return state

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """Save the model like SB3, atomically (a failed save leaves the previous file intact),
        with what an exact resume needs: the random states of torch, numpy, Python and the action
        space, and the recurrent state of the acting envs (restored by the next
        ``learn(..., reset_num_timesteps=False)``).

        Called from a callback between ``env.step`` and the storing of that step (where SB3 calls
        ``CheckpointCallback``), it saves the model as of the last stored step, which is the
        state the replay buffer saved beside it matches.
        """
        saved_steps, saved_latent = self.num_timesteps, self._last_latent
        if self._resume is not None:  # loaded and not resumed yet: keep the loaded state
            self._resume_state = self._resume
        else:
            if self._pre_step is not None:
                self.num_timesteps, self._last_latent, acting = self._pre_step
            else:
                acting = self._acting_random_state()
            latent = None if self._last_latent is None else tuple(x.cpu().numpy() for x in self._last_latent)
            self._resume_state = {
                **acting,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "latent": latent,
            }
        try:
            with atomic_open(path, "zip") as file:
                super().save(file, exclude, include)
        finally:
            self.num_timesteps, self._last_latent = saved_steps, saved_latent
            del self._resume_state

    def save_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase) -> None:
        """Save the replay buffer like SB3, atomically."""
        with atomic_open(path, "pkl") as file:
            super().save_replay_buffer(file)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        result = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if self._pre_step is not None:  # a callback stopped training after env.step: that step was never stored
            self._last_latent, self._pre_step = self._pre_step[1], None
        if reset_num_timesteps:
            self._rollout_progress = 0
        elif self._resume is not None:
            self._restore_random_state(self._resume)
        self._resume = None
        return result

    def _restore_random_state(self, state: dict[str, Any]) -> None:
        th.set_rng_state(th.as_tensor(state["torch"]))
        if "cuda" in state and self.device.type == "cuda":
            th.cuda.set_rng_state(th.as_tensor(state["cuda"]), self.device)
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        self.action_space.np_random.bit_generator.state = state["action_space"]
        if state["latent"] is not None and len(state["latent"][0]) == self.n_envs:
            self._last_latent = tuple(th.as_tensor(x, device=self.device) for x in state["latent"])  # type: ignore[assignment]

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfExactResume],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfExactResume:
        """Load a model saved by :meth:`save`. Raises ``ValueError`` naming the file when it is not
        a zip, is truncated or fails a checksum, lacks a member, was saved by another algorithm, or
        holds networks this version cannot read. ``learn(..., reset_num_timesteps=False)`` then
        resumes from the saved random state (see the reliability docs)."""
        data = check_saved_model(path, cls.__name__, VERSION, cls.saved_members())
        try:
            model = super().load(path, env, device, custom_objects, print_system_info, force_reset, **kwargs)
        except (RuntimeError, KeyError) as error:  # (SB3 turns some mismatches into KeyError 'policy.optimizer')
            if "state_dict" not in str(error) and "policy.optimizer" not in str(error):
                raise
            saved = data.get("_sb3_dreamer_version", "0.2.0 or older")
            raise ValueError(
                f"{getattr(path, 'name', path)} holds networks that do not fit {cls.__name__} of sb3-dreamer "
                f"{VERSION} (it was saved by sb3-dreamer {saved}): {error}"
            ) from error
        model._resume = model.__dict__.pop("_resume_state", None)
        return model
