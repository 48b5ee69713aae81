"""PlaNet (Hafner et al., "Learning Latent Dynamics for Planning from Pixels", ICML 2019)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_dreamer.common.acting import gaussian_action_noise
from sb3_dreamer.common.algorithm import WorldModelAlgorithm
from sb3_dreamer.common.distributions import free_nats_kl
from sb3_dreamer.common.presets import merge_policy_kwargs, with_presets
from sb3_dreamer.common.rssm import RSSMState
from sb3_dreamer.planet.policies import POLICY_ALIASES, PlaNetPolicy
from sb3_dreamer.planet.sizes import PRESETS, SIZES

#: What makes the shared world model PlaNet's: Gaussian latents (paper Sec. 3, Eq. 8 of the RSSM),
#: the 64x64 CNN's padding, Adam with eps 1e-4 and no weight decay (Appendix A).
PLANET_POLICY_KWARGS: dict[str, Any] = {
    "latent": "gaussian",
    "cnn_padding": "valid",
    "weight_decay": 0.0,
    "optimizer_kwargs": {"eps": 1e-4},
}


class PlaNet(WorldModelAlgorithm):
    """
    PlaNet: a recurrent state-space model (RSSM) with Gaussian latents learned from replayed
    sequences, and no policy network: each action comes from planning with the cross-entropy
    method over action sequences, scored by the model's predicted rewards in latent space.

    Paper: https://arxiv.org/abs/1811.04551. The world model's loss is the variational bound of
    Eq. 3 (reconstruction, reward, and the KL of posterior and prior with 3 free nats); the
    planner is Algorithm 2 of the appendix (:class:`~sb3_dreamer.planet.planner.CEM`). The replay,
    RSSM, acting, saving and resuming are ``sb3_dreamer.common``.

    :param env: The environment (a gymnasium id, ``Env`` or ``VecEnv``)
    :param policy: ``"PlaNetPolicy"`` (aliases ``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``)
    :param learning_rate: Adam learning rate of the model, 1e-3 (paper)
    :param buffer_size: Replay capacity in rows, 1e6
    :param learning_starts: Uniform-random steps before training, 5000 (paper: S = 5 seed episodes)
    :param batch_size: Sequences per gradient step (B), 50 (paper)
    :param sequence_length: Steps per sequence (L), 50 (paper)
    :param gamma: Unused by the planner (returns are undiscounted sums over the horizon); kept for SB3
    :param model_size: Widths from :data:`sb3_dreamer.planet.SIZES` (``default``: the paper's)
    :param train_freq: Env steps between training phases, 1000 (one paper episode)
    :param gradient_steps: Updates per phase, 100 (paper: C = 100)
    :param train_ratio: Replayed steps per env step instead of the two above; ``None``: use them
    :param kl_scale: Weight of the KL term, 1.0 (paper Eq. 3)
    :param free_nats: The batch-mean KL is clipped below at this, 3.0 (paper)
    :param reward_scale: Weight of the reward term, 1.0
    :param continue_scale: Weight of a continue head's term, 0.0 (the paper's tasks never end; the
        planner ignores it)
    :param exploration_noise: Std of the Gaussian noise on Box actions while collecting data, 0.3
        (paper), through SB3's ``NormalActionNoise``
    :param planning_horizon: H, 12 (paper)
    :param candidates: J, 1000 (paper)
    :param iterations: I, 10 (paper)
    :param top_k: K, 100 (paper)
    :param max_grad_norm: Gradient clip, 1000 (paper)
    :param replay_buffer_class: A :class:`~sb3_dreamer.SequenceReplayBuffer` (sub)class
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer
    :param policy_kwargs: Overrides of :class:`PlaNetPolicy`'s arguments
    :param stats_window_size: Episodes averaged in ``rollout/`` logs
    :param tensorboard_log: TensorBoard log folder
    :param verbose: 0 silent, 1 training info, 2 debug
    :param seed: Seed of python, numpy, torch and the env
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param precision: ``"fp32"`` or ``"bf16-mixed"``
    :param preset: A named configuration from :data:`sb3_dreamer.planet.sizes.PRESETS` (none yet)
    :param _init_setup_model: Whether to build the networks at construction

    Deviations from the paper, each deliberate:

    - **No latent overshooting**: the paper's final agent trains the RSSM with the one-step bound
      (its Sec. 4 found overshooting of little help for the RSSM); so does this one.
    - **Discrete actions** (not in the paper) plan with a categorical CEM: the elites' action
      frequencies per step refit the belief, and the most probable first action is taken.
    - **Action repeat** is a wrapper on the environment (``compare --action-repeat``), not an argument.
    - **Deterministic** ``predict`` plans with the prior's modes and a fixed random stream.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = POLICY_ALIASES  # type: ignore[assignment]

    @with_presets(PRESETS)
    def __init__(
        self,
        env: GymEnv | str | None = None,
        policy: str | type[PlaNetPolicy] = "PlaNetPolicy",
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5_000,
        batch_size: int = 50,
        sequence_length: int = 50,
        gamma: float = 0.99,
        model_size: str = "default",
        train_freq: int | tuple[int, str] = 1000,
        gradient_steps: int = 100,
        train_ratio: float | None = None,
        kl_scale: float = 1.0,
        free_nats: float = 3.0,
        reward_scale: float = 1.0,
        continue_scale: float = 0.0,
        exploration_noise: float = 0.3,
        planning_horizon: int = 12,
        candidates: int = 1000,
        iterations: int = 10,
        top_k: int = 100,
        max_grad_norm: float = 1000.0,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        precision: str = "fp32",
        preset: str | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        self.preset = preset
        if model_size not in SIZES:
            raise ValueError(f"Unknown PlaNet model_size {model_size!r}; choose from {list(SIZES)}.")
        if exploration_noise < 0.0:
            raise ValueError(f"exploration_noise must be >= 0, got {exploration_noise}.")
        self.model_size = model_size
        self.kl_scale, self.free_nats = kl_scale, free_nats
        self.reward_scale, self.continue_scale = reward_scale, continue_scale
        self.exploration_noise = exploration_noise
        planner = {
            "planning_horizon": planning_horizon,
            "candidates": candidates,
            "iterations": iterations,
            "top_k": top_k,
        }
        policy_kwargs = merge_policy_kwargs(PLANET_POLICY_KWARGS, SIZES[model_size], planner, policy_kwargs or {})
        super().__init__(
            env,
            policy,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            sequence_length=sequence_length,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            train_ratio=train_ratio,
            max_grad_norm=max_grad_norm,
            world_model_max_grad_norm=None,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
            precision=precision,
            _init_setup_model=_init_setup_model,
        )

    def _setup_model(self) -> None:
        super()._setup_model()
        self.action_noise = gaussian_action_noise(self.action_space, self.exploration_noise)

    @property
    def loss_scales(self) -> dict[str, float]:
        # Paper Eq. 3: ln p(o_t | s_t) + ln p(r_t | s_t) - KL[q(s_t | s_{t-1}, a_{t-1}, o_t) || p(s_t | ...)]
        return {
            "reconstruction": 1.0,
            "reward": self.reward_scale,
            "continue": self.continue_scale,
            "kl": self.kl_scale,
        }

    def _kl_terms(self, post_stats: th.Tensor, prior_stats: th.Tensor) -> tuple[dict[str, th.Tensor], th.Tensor]:
        # one KL, its batch mean clipped below at free nats (paper Sec. 3 and Appendix A)
        return free_nats_kl(post_stats, prior_stats, self.free_nats, self.policy.world_model.rssm.latent.kl)

    def _train_behavior(self, posterior: RSSMState, batch: Any) -> dict[str, th.Tensor] | None:
        """Nothing to learn: the planner acts from the model alone."""
        return {}

    def _after_update(self) -> None:
        """Nothing: no critic."""
