"""DreamerV1 (Hafner et al., "Dream to Control: Learning Behaviors by Latent Imagination", ICLR 2020)."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_dreamer.common.acting import gaussian_action_noise
from sb3_dreamer.common.algorithm import WorldModelAlgorithm
from sb3_dreamer.common.distributions import free_nats_kl
from sb3_dreamer.common.presets import merge_policy_kwargs, with_presets
from sb3_dreamer.dreamer_v1.policies import DreamerPolicy
from sb3_dreamer.dreamer_v1.sizes import PRESETS, SIZES

#: The policy settings that make a :class:`DreamerPolicy` a DreamerV1 one: Gaussian latents
#: (paper Sec. 3, Eq. 8), ELU MLPs without LayerNorm, the 64x64 CNN's padding, no weight decay.
V1_POLICY_KWARGS: dict[str, Any] = {"latent": "gaussian", "cnn_padding": "valid", "weight_decay": 0.0}


class DreamerV1(WorldModelAlgorithm):
    """
    DreamerV1: a recurrent state-space model with Gaussian latents (PlaNet's RSSM), and an
    actor and a value model learned by backpropagating analytic value gradients through
    imagined trajectories of that model.

    Paper: https://arxiv.org/abs/1912.01603. The defaults are the paper's, as in its code
    (danijar/dreamer ``dreamer.py``): the world model of Sec. 3 (reconstruction, reward and KL,
    Eq. 10), the value model regressing ``V_lambda`` (Eq. 6, 8) and the actor maximising it
    through the dynamics (Eq. 7, 9). Everything else (replay, RSSM, imagination, acting, saving)
    is ``sb3_dreamer.common``, shared with :class:`~sb3_dreamer.DreamerV2` and DreamerV3.

    :param env: The environment (a gymnasium id, ``Env`` or ``VecEnv``); first, so that
        ``DreamerV1("Pendulum-v1")`` works (SB3's ``DreamerV1("MlpPolicy", env)`` too).
    :param policy: ``"DreamerPolicy"`` (or the aliases ``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``)
    :param learning_rate: World-model Adam learning rate, 6e-4 (paper)
    :param actor_learning_rate: Action model, 8e-5 (paper)
    :param critic_learning_rate: Value model, 8e-5 (paper)
    :param buffer_size: Replay capacity in rows, 1e6
    :param learning_starts: Uniform-random steps before training, 5000 (paper: S = 5 seed episodes
        of 1000 steps; code ``prefill``)
    :param batch_size: Sequences per gradient step (B), 50 (paper)
    :param sequence_length: Steps per sequence (L), 50 (paper)
    :param imagination_horizon: H, 15 (paper)
    :param gamma: Discount, 0.99 (paper)
    :param return_lambda: lambda of ``V_lambda``, 0.95 (paper)
    :param model_size: Named widths from :data:`sb3_dreamer.dreamer_v1.SIZES` (``default``: the
        paper code's; ``small``, ``tiny``); ``policy_kwargs`` override single entries
    :param train_freq: Env steps between training phases, 1000 (paper: one episode per collect
        phase; code ``train_every``)
    :param gradient_steps: Updates per training phase, 100 (paper: collect interval C = 100)
    :param train_ratio: Replayed steps per env step; sets ``train_freq`` and ``gradient_steps``
        instead (:func:`~sb3_dreamer.common.algorithm.train_schedule`). ``None`` (default): use them
    :param kl_scale: beta, the weight of the KL term, 1.0 (paper Eq. 10)
    :param free_nats: The batch-mean KL is clipped below at this, 3.0 (paper Appendix A)
    :param reward_scale: Weight of the reward term, 1.0 (paper Eq. 10)
    :param continue_scale: Weight of a continue ("discount", code ``pcont``) head's term. 0.0
        (paper, DMC, which never terminates): no continue head, the imagined discount is ``gamma``;
        set it (e.g. 1.0) for tasks that terminate, as the paper's code does for Atari
    :param exploration_noise: Std of the Gaussian noise added to Box actions while collecting
        data, in the actor's [-1, 1] units, 0.3 (paper; code ``expl_amount``), through SB3's
        ``NormalActionNoise``. Discrete actions explore by sampling the actor
    :param entropy_coef: Weight of the actor's entropy bonus, 0.0 (the paper has none)
    :param actor_grad_mix: rho, the REINFORCE share of the actor gradient, 0.0 (paper: value
        gradients through the dynamics for every action space; Discrete actions pass them
        through a straight-through one-hot sample)
    :param max_grad_norm: Gradient clip of every part, 100 (paper)
    :param world_model_max_grad_norm: Gradient clip of the world model; ``None`` = ``max_grad_norm``
    :param replay_buffer_class: A :class:`~sb3_dreamer.SequenceReplayBuffer` (sub)class
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer
    :param policy_kwargs: Overrides of :class:`~sb3_dreamer.DreamerPolicy`'s arguments on top of
        :data:`V1_POLICY_KWARGS` and the ``model_size`` widths
    :param stats_window_size: Episodes averaged in ``rollout/`` logs
    :param tensorboard_log: TensorBoard log folder
    :param verbose: 0 silent, 1 training info, 2 debug
    :param seed: Seed of python, numpy, torch and the env
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param precision: ``"fp32"`` or ``"bf16-mixed"`` (see :meth:`WorldModelAlgorithm.autocast`)
    :param preset: A named configuration from :data:`sb3_dreamer.dreamer_v1.sizes.PRESETS`
        (none yet); an unknown name raises ``ValueError``
    :param _init_setup_model: Whether to build the networks at construction

    Deviations from the paper, each deliberate:

    - **No target network**: the value model's own predictions bootstrap ``V_lambda`` (paper);
      the policy still holds a target critic, which DreamerV1 never uses.
    - **One MLP depth** for the reward, value and action models (the code's are 2, 3 and 4).
    - **Binary observations** (bool, e.g. MinAtar) use a Bernoulli likelihood, and images of any
      size from 5x5 use our CNN (the paper's needs 64x64), as in our DreamerV2.
    - **Discrete actions** are not in the paper's experiments; the actor is a categorical with
      straight-through samples, so the value gradients still reach it. Action repeat is a wrapper
      on the environment (the paper repeats each action twice on DMC).
    """

    @with_presets(PRESETS)
    def __init__(
        self,
        env: GymEnv | str | None = None,
        policy: str | type[DreamerPolicy] = "DreamerPolicy",
        learning_rate: float | Schedule = 6e-4,
        actor_learning_rate: float | Schedule = 8e-5,
        critic_learning_rate: float | Schedule = 8e-5,
        buffer_size: int = 1_000_000,
        learning_starts: int = 5_000,
        batch_size: int = 50,
        sequence_length: int = 50,
        imagination_horizon: int = 15,
        gamma: float = 0.99,
        return_lambda: float = 0.95,
        model_size: str = "default",
        train_freq: int | tuple[int, str] = 1000,
        gradient_steps: int = 100,
        train_ratio: float | None = None,
        kl_scale: float = 1.0,
        free_nats: float = 3.0,
        reward_scale: float = 1.0,
        continue_scale: float = 0.0,
        exploration_noise: float = 0.3,
        entropy_coef: float = 0.0,
        actor_grad_mix: float = 0.0,
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
        preset: str | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        self.preset = preset
        if model_size not in SIZES:
            raise ValueError(f"Unknown DreamerV1 model_size {model_size!r}; choose from {list(SIZES)}.")
        if exploration_noise < 0.0:
            raise ValueError(f"exploration_noise must be >= 0, got {exploration_noise}.")
        self.model_size = model_size
        self.kl_scale, self.free_nats = kl_scale, free_nats
        self.reward_scale, self.continue_scale = reward_scale, continue_scale
        self.exploration_noise = exploration_noise
        policy_kwargs = merge_policy_kwargs(V1_POLICY_KWARGS, SIZES[model_size], policy_kwargs or {})
        super().__init__(
            env,
            policy,
            learning_rate=learning_rate,
            actor_learning_rate=actor_learning_rate,
            critic_learning_rate=critic_learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            sequence_length=sequence_length,
            imagination_horizon=imagination_horizon,
            gamma=gamma,
            return_lambda=return_lambda,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            train_ratio=train_ratio,
            entropy_coef=entropy_coef,
            actor_grad_mix=actor_grad_mix,
            max_grad_norm=max_grad_norm,
            world_model_max_grad_norm=world_model_max_grad_norm,
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
        # Paper Eq. 10: ln q(o|s) + ln q(r|s) - beta KL(p(s|s', a, o) || q(s|s', a)); code pcont_scale
        return {
            "reconstruction": 1.0,
            "reward": self.reward_scale,
            "continue": self.continue_scale,
            "kl": self.kl_scale,
        }

    def _kl_terms(self, post_stats: th.Tensor, prior_stats: th.Tensor) -> tuple[dict[str, th.Tensor], th.Tensor]:
        # the plain KL of posterior and prior, its batch mean clipped at free nats (paper Appendix A)
        return free_nats_kl(post_stats, prior_stats, self.free_nats, self.policy.world_model.rssm.latent.kl)

    def _behavior_options(self) -> dict[str, Any]:
        # V_lambda bootstraps from the value model itself: the paper has no target network (Eq. 6)
        return {"bootstrap_critic": self.policy.critic}

    def _after_update(self) -> None:
        """Nothing: no target network to update (paper Sec. 3)."""
