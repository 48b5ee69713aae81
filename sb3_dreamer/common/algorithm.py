"""``Dreamer``: the Stable-Baselines3 glue shared by the Dreamer algorithms.

It subclasses ``OffPolicyAlgorithm``: SB3's ``learn`` loop collects env steps (acting with the
recurrent policy and storing rows in a :class:`SequenceReplayBuffer`), and every ``train_freq``
env steps :meth:`Dreamer.train` runs ``gradient_steps`` Dreamer updates (world model, then
actor and critic in imagination).
"""

from __future__ import annotations

import io
import pathlib
import random
import warnings
from collections import defaultdict
from fractions import Fraction
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import (
    GymEnv,
    MaybeCallback,
    RolloutReturn,
    Schedule,
    TrainFreq,
    TrainFrequencyUnit,
)
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

try:  # stable-baselines3 >= 2.6
    from stable_baselines3.common.utils import FloatSchedule
except ImportError:  # pragma: no cover
    from stable_baselines3.common.utils import get_schedule_fn as FloatSchedule

from sb3_dreamer.common.behavior import behavior_losses
from sb3_dreamer.common.buffers import SequenceReplayBuffer
from sb3_dreamer.common.diagnostics import open_loop_errors
from sb3_dreamer.common.files import atomic_open, check_saved_model
from sb3_dreamer.common.observations import observation_parts
from sb3_dreamer.common.policies import (
    POLICY_ALIASES,
    DreamerPolicy,
    LatentState,
    check_action_space,
    check_finite_observation,
)

SelfDreamer = TypeVar("SelfDreamer", bound="Dreamer")

#: ``precision`` values: float32 everywhere, or the training forward passes in bfloat16 (see :meth:`Dreamer.autocast`).
PRECISIONS = ("fp32", "bf16-mixed")

#: sb3-dreamer's version, written into every saved model.
VERSION = (pathlib.Path(__file__).parents[1] / "version.txt").read_text().strip()


class Dreamer(OffPolicyAlgorithm):
    """Shared implementation; see :class:`sb3_dreamer.DreamerV2` and :class:`sb3_dreamer.DreamerV3`
    for the arguments and defaults. Subclasses choose the KL term (:meth:`_kl_loss`) and the
    behaviour-learning options (:meth:`_behavior_options`)."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICY_ALIASES
    policy: DreamerPolicy
    replay_buffer: SequenceReplayBuffer

    def __init__(
        self,
        env: GymEnv | str | None = None,
        policy: str | type[DreamerPolicy] = "DreamerPolicy",
        learning_rate: float | Schedule = 2e-4,
        actor_learning_rate: float | Schedule = 4e-5,
        critic_learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5_000,
        batch_size: int = 50,
        sequence_length: int = 50,
        imagination_horizon: int = 15,
        gamma: float = 0.99,
        return_lambda: float = 0.95,
        train_freq: int | tuple[int, str] = 10,
        gradient_steps: int = 1,
        train_ratio: float | None = None,
        discount_scale: float = 1.0,
        reward_scale: float = 1.0,
        entropy_coef: float = 1e-3,
        actor_grad_mix: float | None = None,
        target_update_interval: int = 100,
        tau: float = 1.0,
        max_grad_norm: float = 100.0,
        world_model_max_grad_norm: float | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        precision: str = "fp32",
        _init_setup_model: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        # Accept SB3's positional order too: Dreamer("MlpPolicy", env).
        if (isinstance(env, str) and env in self.policy_aliases) or (
            isinstance(env, type) and issubclass(env, BasePolicy)
        ):
            env, policy = policy, env  # type: ignore[assignment]
        if env is None and _init_setup_model:
            raise ValueError(f"{type(self).__name__} needs an environment (an env id, a gymnasium Env or a VecEnv).")
        if hasattr(env, "observation_space"):  # fail before SB3's wrappers, naming the space
            check_spaces(env.observation_space, env.action_space, policy_kwargs)  # type: ignore[union-attr]
        super().__init__(
            policy=policy,
            env=env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class or SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            support_multi_env=True,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Discrete, spaces.Box),
        )
        self.actor_learning_rate = actor_learning_rate
        self.critic_learning_rate = critic_learning_rate
        self.sequence_length = sequence_length
        self.imagination_horizon = imagination_horizon
        self.return_lambda = return_lambda
        self.train_ratio = train_ratio
        self.discount_scale = discount_scale
        self.reward_scale = reward_scale
        self.entropy_coef = entropy_coef
        self.actor_grad_mix = actor_grad_mix
        self.target_update_interval = target_update_interval
        self.tau = tau
        self.max_grad_norm = max_grad_norm
        self.world_model_max_grad_norm = world_model_max_grad_norm
        self.precision = precision
        if world_model_max_grad_norm is None:
            self.world_model_max_grad_norm = max_grad_norm
        self._sb3_dreamer_algorithm = type(self).__name__  # checked on load
        self._sb3_dreamer_version = VERSION
        self._last_latent: LatentState | None = None
        self._skipped_updates = 0  # gradient steps not applied because of a non-finite loss or gradient
        self._consecutive_skips = 0
        self._rollout_progress = 0  # steps (or episodes) of the current rollout already stored
        self._pre_step: tuple[int, LatentState | None, dict[str, Any]] | None = None  # see _sample_action
        self._resume: dict[str, Any] | None = None  # random state to restore when training resumes
        if getattr(self, "observation_space", None) is not None:
            check_spaces(self.observation_space, self.action_space, policy_kwargs)
        if _init_setup_model:
            self._setup_model()

    # -- setup --------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        if not issubclass(self.replay_buffer_class, SequenceReplayBuffer):  # type: ignore[arg-type]
            raise TypeError(f"Dreamer needs a SequenceReplayBuffer, got {self.replay_buffer_class}.")
        if self.train_ratio is not None:
            self.train_freq, self.gradient_steps = train_schedule(
                self.train_ratio, self.batch_size * self.sequence_length, self.n_envs
            )
        self._setup_lr_schedule()
        self.actor_lr_schedule = FloatSchedule(self.actor_learning_rate)
        self.critic_lr_schedule = FloatSchedule(self.critic_learning_rate)
        self.policy_kwargs = {  # a copy: never mutate the dict the user passed
            **self.policy_kwargs,
            "actor_lr": self.actor_lr_schedule(1.0),
            "critic_lr": self.critic_lr_schedule(1.0),
        }
        super()._setup_model()
        if self.actor_grad_mix is None:  # DreamerV2 "auto": REINFORCE for Discrete, dynamics for Box
            self.actor_grad_mix = 1.0 if isinstance(self.action_space, spaces.Discrete) else 0.0
        self._last_latent = None

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "_last_latent",
            "_pre_step",
            "_resume",
            "_non_finite",
            "_consecutive_skips",
            "actor_lr_schedule",
            "critic_lr_schedule",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.wm_optimizer", "policy.actor_optimizer", "policy.critic_optimizer"], []

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        self._last_latent = None
        self._pre_step = None

    # -- acting -------------------------------------------------------------------------------------
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

    # -- training -----------------------------------------------------------------------------------
    def _update_learning_rate(self, optimizers: Any) -> None:  # type: ignore[override]
        progress = self._current_progress_remaining
        policy = self.policy
        for key, optimizer, schedule in (
            ("learning_rate", policy.wm_optimizer, self.lr_schedule),
            ("actor_learning_rate", policy.actor_optimizer, self.actor_lr_schedule),
            ("critic_learning_rate", policy.critic_optimizer, self.critic_lr_schedule),
        ):
            self.logger.record(f"train/{key}", schedule(progress))
            update_learning_rate(optimizer, schedule(progress))

    @property
    def replay_ratio(self) -> float:
        """Replayed steps (B x T per gradient step) per env step, as ``train_freq``/``gradient_steps`` give it."""
        freq = self.train_freq.frequency  # a TrainFreq once the model is set up
        return self.gradient_steps * self.batch_size * self.sequence_length / (freq * self.n_envs)

    def _optimize(
        self, loss: th.Tensor, optimizer: th.optim.Optimizer, module: th.nn.Module, name: str, max_norm: float
    ) -> th.Tensor | None:
        """Clip and apply the gradient of ``loss``; return its norm, or ``None`` without touching
        the weights or the optimizer state when the loss or the gradient is not finite."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = th.nn.utils.clip_grad_norm_(module.parameters(), max_norm)
        if not th.isfinite(norm):  # a non-finite loss gives a non-finite norm too
            optimizer.zero_grad(set_to_none=True)
            self._non_finite.append(f"{name} loss {loss.item():.4g} (gradient norm {norm.item():.4g})")
            return None
        optimizer.step()
        if self.policy.weight_decay > 0.0:  # decoupled, lr-independent decay (danijar/dreamerv2)
            with th.no_grad():
                params = [p for group in optimizer.param_groups for p in group["params"]]
                th._foreach_mul_(params, 1.0 - self.policy.weight_decay)
        return norm

    def train(self, gradient_steps: int, batch_size: int = 50) -> None:
        if not self.replay_buffer.can_sample(self.sequence_length):
            return
        policy = self.policy
        policy.set_training_mode(True)
        self._update_learning_rate(None)
        # metric sums and counts of finite values: some are NaN when a batch has nothing to measure
        # (no reward, no terminal) or are only computed every open_loop_interval updates
        sums: dict[str, th.Tensor] = defaultdict(lambda: th.zeros((), device=self.device))
        counts: dict[str, th.Tensor] = defaultdict(lambda: th.zeros((), device=self.device))
        for _ in range(gradient_steps):
            metrics = self.train_step(self.replay_buffer.sample_sequences(batch_size, self.sequence_length))
            if metrics is None:
                self._skip_update()
                continue
            self._consecutive_skips = 0
            for key, value in metrics.items():
                finite = th.isfinite(value)
                sums[key] = sums[key] + th.where(finite, value, th.zeros_like(value))
                counts[key] = counts[key] + finite
            self._n_updates += 1
            if self._n_updates % self.target_update_interval == 0:
                policy.update_target_critic(self.tau)
        for key, value in sums.items():
            count = counts[key].item()
            if count > 0:
                self.logger.record(f"train/{key}", (value / count).item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/skipped_updates", self._skipped_updates)
        self.logger.record(
            "train/updates_per_env_step", self.gradient_steps / (self.train_freq.frequency * self.n_envs)
        )
        self.logger.record("train/replay_ratio", self.replay_ratio)

    #: Consecutive skipped gradient steps after which training stops with an error.
    max_consecutive_skips: ClassVar[int] = 10
    #: Updates between two open-loop checks of the prior (``train/open_loop_*``, see
    #: :func:`~sb3_dreamer.common.diagnostics.open_loop_errors`); set it on a model to change it, 0 = never.
    open_loop_interval: ClassVar[int] = 100

    def _skip_update(self) -> None:
        self._skipped_updates += 1
        self._consecutive_skips += 1
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise RuntimeError(
                f"{self._consecutive_skips} consecutive {type(self).__name__} updates had a non-finite loss or "
                f"gradient (last: {', '.join(self._non_finite)}); the parts affected were not updated. "
                " Check the environment's observations and rewards for extreme values, or lower the "
                "learning rates."
            )
        warnings.warn(
            f"Skipped a {type(self).__name__} update with a non-finite {', '.join(self._non_finite)}; "
            f"{self._skipped_updates} skipped so far (logged as train/skipped_updates).",
            RuntimeWarning,
            stacklevel=2,
        )

    def train_step(self, batch: Any) -> dict[str, th.Tensor] | None:
        """One Dreamer update: the world model on ``batch``, then actor and critic in imagination.

        Returns the metrics, or ``None`` if a part had a non-finite loss or gradient: that part's
        weights are left as they were, and the actor and critic are not trained on a world-model
        update that was skipped.
        """
        policy = self.policy
        wm = policy.world_model
        self._non_finite: list[str] = []
        with self.autocast():
            model_loss, posterior, metrics = wm.loss(batch, self._kl_loss, self.discount_scale, self.reward_scale)
        model_norm = self._optimize(model_loss, policy.wm_optimizer, wm, "world-model", self.world_model_max_grad_norm)
        if model_norm is None:
            return None
        metrics["model_grad_norm"] = model_norm
        if self.open_loop_interval > 0 and self._n_updates % self.open_loop_interval == 0:
            with self.autocast():
                inputs = wm.preprocess(batch.observations, 2)
                metrics.update(
                    open_loop_errors(wm, inputs, batch.prev_actions, batch.rewards, batch.is_first, posterior)
                )
        with self.autocast():
            actor_loss, critic_loss, behavior_metrics = behavior_losses(
                wm,
                policy.actor,
                policy.critic,
                policy.target_critic,
                posterior,
                batch.is_terminal,
                self.imagination_horizon,
                self.gamma,
                self.return_lambda,
                float(self.actor_grad_mix),
                self.entropy_coef,  # type: ignore[arg-type]
                **self._behavior_options(),
            )
        metrics.update(behavior_metrics)
        norm = self.max_grad_norm
        actor_norm = self._optimize(actor_loss, policy.actor_optimizer, policy.actor, "actor", norm)
        critic_norm = self._optimize(critic_loss, policy.critic_optimizer, policy.critic, "critic", norm)
        if actor_norm is None or critic_norm is None:
            return None
        metrics["actor_grad_norm"] = actor_norm
        metrics["critic_grad_norm"] = critic_norm
        return metrics

    def autocast(self) -> th.autocast:
        """The context of the training forward passes. With ``precision="bf16-mixed"``, ``torch.autocast``
        to bfloat16: matrix products and convolutions (and, on CPU, the norms and activations after
        them) run in bfloat16, while the weights, their gradients, the optimizer state, the recurrent
        state ``h`` and every distribution (the heads' outputs are cast back) stay float32; the
        backward passes run outside it. Acting is always float32."""
        enabled = getattr(self, "precision", "fp32") == "bf16-mixed"  # models saved before 0.5 have none
        return th.autocast(self.device.type, dtype=th.bfloat16, enabled=enabled)

    def _kl_loss(self, post_logits: th.Tensor, prior_logits: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The weighted KL term of the world-model loss and the KL value per element."""
        raise NotImplementedError

    def _behavior_options(self) -> dict[str, Any]:
        """Extra arguments of :func:`~sb3_dreamer.common.behavior.behavior_losses`."""
        return {}

    # -- saving and resuming -----------------------------------------------------------------------
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
        cls: type[SelfDreamer],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfDreamer:
        """Load a model saved by :meth:`save`. Raises ``ValueError`` naming the file when it is not
        a zip, is truncated or fails a checksum, lacks a member, was saved by another algorithm, or
        holds networks this version cannot read. ``learn(..., reset_num_timesteps=False)`` then
        resumes from the saved random state (see the reliability docs)."""
        data = check_saved_model(path, cls.__name__, VERSION)
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

    def learn(
        self: SelfDreamer,
        total_timesteps: int | float,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDreamer:
        return super().learn(
            total_timesteps=int(total_timesteps),
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name or type(self).__name__,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def train_schedule(train_ratio: float, replayed_per_update: int, n_envs: int) -> tuple[tuple[int, str], int]:
    """``(train_freq, gradient_steps)`` for SB3 that replay about ``train_ratio`` steps per env step.

    One gradient step replays ``replayed_per_update`` = B x T steps; one ``train_freq`` step collects
    ``n_envs`` env steps. The updates per collection step are approximated either by a fraction
    ``gradient_steps / train_freq`` with ``train_freq`` <= 16 (so updates never come in long
    bursts) or by one update every ``round(1 / updates)`` steps, whichever is closer.
    ``Dreamer.replay_ratio`` gives the ratio actually used.
    """
    if not train_ratio > 0:
        raise ValueError(f"train_ratio must be positive, got {train_ratio}.")
    per_step = train_ratio * n_envs / replayed_per_update
    fraction = Fraction(per_step).limit_denominator(16)
    candidates = [(max(1, round(1.0 / per_step)), 1)]
    if fraction.numerator > 0:
        candidates.append((fraction.denominator, fraction.numerator))
    freq, steps = min(candidates, key=lambda c: abs(c[1] / c[0] - per_step))
    return (freq, "step"), steps


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, policy_kwargs: dict | None) -> None:
    """Raise ``TypeError`` naming any observation or action space Dreamer does not support."""
    observation_parts(observation_space, (policy_kwargs or {}).get("channels_last"))
    check_action_space(action_space)
