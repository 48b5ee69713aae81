"""``WorldModelAlgorithm``: the Stable-Baselines3 glue shared by the world-model algorithms.

It subclasses ``OffPolicyAlgorithm``: SB3's ``learn`` loop collects env steps (acting with the
recurrent policy and storing rows in a :class:`SequenceReplayBuffer`), and every ``train_freq``
env steps :meth:`WorldModelAlgorithm.train` runs ``gradient_steps`` updates (:meth:`train_step`:
the world model, then behaviour learning in imagination). Saving, loading and exact resumption
are :class:`~sb3_dreamer.common.resume.ExactResume`'s.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import (
    GymEnv,
    MaybeCallback,
    Schedule,
)
from stable_baselines3.common.utils import update_learning_rate

try:  # stable-baselines3 >= 2.6
    from stable_baselines3.common.utils import FloatSchedule
except ImportError:  # pragma: no cover
    from stable_baselines3.common.utils import get_schedule_fn as FloatSchedule

from sb3_dreamer.common.acting import RecurrentRollouts
from sb3_dreamer.common.behavior import behavior_losses, resolve_actor_grad_mix
from sb3_dreamer.common.buffers import SequenceReplayBuffer
from sb3_dreamer.common.diagnostics import open_loop_errors
from sb3_dreamer.common.files import VERSION
from sb3_dreamer.common.guards import GuardedUpdates
from sb3_dreamer.common.policies import (
    POLICY_ALIASES,
    DreamerPolicy,
    LatentState,
    check_spaces,
)
from sb3_dreamer.common.resume import ExactResume
from sb3_dreamer.common.rssm import RSSMState

SelfWorldModelAlgorithm = TypeVar("SelfWorldModelAlgorithm", bound="WorldModelAlgorithm")

#: ``precision`` values: float32 everywhere, or the training forward passes in bfloat16 (see
#: :meth:`WorldModelAlgorithm.autocast`).
PRECISIONS = ("fp32", "bf16-mixed")


class WorldModelAlgorithm(RecurrentRollouts, ExactResume, GuardedUpdates):
    """Shared implementation; see :class:`sb3_dreamer.DreamerV2` and :class:`sb3_dreamer.DreamerV3`
    for the arguments and their defaults (each algorithm owns its own; this class has none).
    A subclass names its world-model loss weights (:attr:`loss_scales`), its KL terms
    (:meth:`_kl_terms`) and its behaviour-learning options (:meth:`_behavior_options`); the
    policy names its optimizers (``DreamerPolicy.optimizer_learning_rates``). The actor-critic
    arguments (``actor_learning_rate`` to ``tau``) are for the default :meth:`_train_behavior`;
    an algorithm without an actor overrides it and :meth:`_after_update` and leaves them out."""

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICY_ALIASES
    policy: DreamerPolicy
    replay_buffer: SequenceReplayBuffer

    def __init__(
        self,
        env: GymEnv | str | None,
        policy: str | type[DreamerPolicy],
        *,
        learning_rate: float | Schedule,
        buffer_size: int,
        learning_starts: int,
        batch_size: int,
        sequence_length: int,
        gamma: float,
        train_freq: int | tuple[int, str],
        gradient_steps: int,
        train_ratio: float | None,
        max_grad_norm: float,
        world_model_max_grad_norm: float | None,
        actor_learning_rate: float | Schedule | None = None,
        critic_learning_rate: float | Schedule | None = None,
        imagination_horizon: int | None = None,
        return_lambda: float | None = None,
        entropy_coef: float | None = None,
        actor_grad_mix: float | str | None = None,
        target_update_interval: int | None = None,
        tau: float | None = None,
        action_noise: ActionNoise | None = None,
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
        # Accept SB3's positional order too: DreamerV2("MlpPolicy", env).
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
            action_noise=action_noise,
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
        self.entropy_coef = entropy_coef
        self.actor_grad_mix = resolve_actor_grad_mix(actor_grad_mix)
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
            if action_noise is not None and not isinstance(self.action_space, spaces.Box):
                raise ValueError(f"action_noise is for Box actions; the action space is {self.action_space}.")
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
        self.lr_schedules = {  # one per optimizer of the policy, by the argument that sets it
            key: self.lr_schedule if key == "learning_rate" else FloatSchedule(getattr(self, key))
            for key in self._policy_class().optimizer_learning_rates.values()
        }
        initial = {key: schedule(1.0) for key, schedule in self.lr_schedules.items()}
        self.policy_kwargs = {  # a copy: never mutate the dict the user passed
            **self.policy_kwargs,
            **self._policy_class().initial_learning_rates(initial),
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
            "lr_schedules",
        ]

    def _policy_class(self) -> type[DreamerPolicy]:
        policy = self.policy_class
        return self.policy_aliases[policy] if isinstance(policy, str) else policy  # type: ignore[return-value]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", *(f"policy.{name}" for name in self._policy_class().optimizer_learning_rates)], []

    @classmethod
    def saved_members(cls) -> tuple[str, ...]:
        optimizers = cls.policy_aliases["DreamerPolicy"].optimizer_learning_rates  # type: ignore[attr-defined]
        return (*super().saved_members(), *(f"policy.{name}.pth" for name in optimizers))

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        self._last_latent = None
        self._pre_step = None

    # -- training -----------------------------------------------------------------------------------
    def _update_learning_rate(self, optimizers: Any) -> None:  # type: ignore[override]
        """Set every optimizer of the policy to its schedule's learning rate and log it as ``train/<argument>``."""
        progress = self._current_progress_remaining
        for name, key in self.policy.optimizer_learning_rates.items():
            rate = self.lr_schedules[key](progress)
            self.logger.record(f"train/{key}", rate)
            update_learning_rate(getattr(self.policy, name), rate)

    @property
    def replay_ratio(self) -> float:
        """Replayed steps (B x T per gradient step) per env step, as ``train_freq``/``gradient_steps`` give it."""
        freq = self.train_freq.frequency  # a TrainFreq once the model is set up
        return self.gradient_steps * self.batch_size * self.sequence_length / (freq * self.n_envs)

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
            self._after_update()
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

    #: Updates between two open-loop checks of the prior (``train/open_loop_*``, see
    #: :func:`~sb3_dreamer.common.diagnostics.open_loop_errors`); set it on a model to change it, 0 = never.
    open_loop_interval: ClassVar[int] = 100

    def train_step(self, batch: Any) -> dict[str, th.Tensor] | None:
        """One update: the world model on ``batch``, then the behaviour (:meth:`_train_behavior`)
        from its posterior states.

        Returns the metrics, or ``None`` if a part had a non-finite loss or gradient: that part's
        weights are left as they were, and the behaviour is not trained on a world-model update
        that was skipped.
        """
        policy = self.policy
        wm = policy.world_model
        self._non_finite: list[str] = []
        with self.autocast():
            model_loss, posterior, metrics = wm.loss(batch, self._kl_terms, self.loss_scales, **self._loss_options())
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
        behavior_metrics = self._train_behavior(posterior, batch)
        if behavior_metrics is None:
            return None
        metrics.update(behavior_metrics)
        return metrics

    def _train_behavior(self, posterior: RSSMState, batch: Any) -> dict[str, th.Tensor] | None:
        """Dreamer's behaviour learning: actor and critic on trajectories imagined from every
        posterior state (DreamerV1 Sec. 3, DreamerV2 Sec. 2.2, DreamerV3 Sec. 3). Returns the
        metrics, or ``None`` if a loss or gradient was not finite. An algorithm that acts
        otherwise (a planner) overrides it, with :meth:`_after_update`."""
        policy = self.policy
        with self.autocast():
            actor_loss, critic_loss, metrics = behavior_losses(
                policy.world_model,
                policy.actor,
                policy.critic,
                policy.target_critic,
                posterior,
                batch.is_terminal,
                self.imagination_horizon,
                self.gamma,
                self.return_lambda,
                float(self.actor_grad_mix),  # type: ignore[arg-type]
                self.entropy_coef,  # type: ignore[arg-type]
                **{"continue_head": self.loss_scales["continue"] > 0.0, **self._behavior_options()},
            )
        norm = self.max_grad_norm
        actor_norm = self._optimize(actor_loss, policy.actor_optimizer, policy.actor, "actor", norm)
        critic_norm = self._optimize(critic_loss, policy.critic_optimizer, policy.critic, "critic", norm)
        if actor_norm is None or critic_norm is None:
            return None
        metrics["actor_grad_norm"] = actor_norm
        metrics["critic_grad_norm"] = critic_norm
        return metrics

    def _after_update(self) -> None:
        """After each applied update: the target critic, every ``target_update_interval`` updates."""
        if self._n_updates % self.target_update_interval == 0:  # type: ignore[operator]
            self.policy.update_target_critic(self.tau)  # type: ignore[arg-type]

    def autocast(self) -> th.autocast:
        """The context of the training forward passes. With ``precision="bf16-mixed"``, ``torch.autocast``
        to bfloat16: matrix products and convolutions (and, on CPU, the norms and activations after
        them) run in bfloat16, while the weights, their gradients, the optimizer state, the recurrent
        state ``h`` and every distribution (the heads' outputs are cast back) stay float32; the
        backward passes run outside it. Acting is always float32."""
        enabled = getattr(self, "precision", "fp32") == "bf16-mixed"  # models saved before 0.5 have none
        return th.autocast(self.device.type, dtype=th.bfloat16, enabled=enabled)

    @property
    def loss_scales(self) -> dict[str, float]:
        """The weight of each world-model loss term, by name (:data:`~sb3_dreamer.common.world_model.LOSS_TERMS`)."""
        raise NotImplementedError

    def _kl_terms(self, post_logits: th.Tensor, prior_logits: th.Tensor) -> tuple[dict[str, th.Tensor], th.Tensor]:
        """The ``dyn`` and ``rep`` KL terms before their scales, and the KL value per element
        (:data:`~sb3_dreamer.common.world_model.KLTerms`)."""
        raise NotImplementedError

    def _behavior_options(self) -> dict[str, Any]:
        """Extra arguments of :func:`~sb3_dreamer.common.behavior.behavior_losses`."""
        return {}

    def _loss_options(self) -> dict[str, Any]:
        """Extra arguments of :meth:`~sb3_dreamer.common.world_model.WorldModel.loss` (which
        heads learn from a detached latent)."""
        return {}

    def learn(
        self: SelfWorldModelAlgorithm,
        total_timesteps: int | float,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfWorldModelAlgorithm:
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
    ``WorldModelAlgorithm.replay_ratio`` gives the ratio actually used.
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
