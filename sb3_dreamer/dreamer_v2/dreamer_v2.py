"""DreamerV2 (Hafner et al., "Mastering Atari with Discrete World Models", ICLR 2021)."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_dreamer.common.algorithm import WorldModelAlgorithm
from sb3_dreamer.common.distributions import batch_free_nats_kl, free_nats_kl
from sb3_dreamer.common.policies import LATENTS
from sb3_dreamer.common.presets import with_presets
from sb3_dreamer.dreamer_v2.policies import DreamerPolicy
from sb3_dreamer.dreamer_v2.sizes import PRESETS


class DreamerV2(WorldModelAlgorithm):
    """
    DreamerV2: a world model with discrete (categorical) latents, and an actor-critic learned
    purely from its imagined trajectories.

    Paper: https://arxiv.org/abs/2010.02193. The defaults are a MinAtar configuration: the
    paper's algorithm and loss settings with the sizes and training ratio of the published
    MinAtar DreamerV2 (RajGhugare19/dreamerv2 ``MinAtarConfig``), so ``DreamerV2("MinAtar/Breakout-v1")``
    needs no arguments. Every default and its source (paper = DreamerV2 paper / danijar/dreamerv2
    Atari config; MinAtar = RajGhugare19's MinAtar config):

    :param env: The environment (a gymnasium id, ``Env`` or ``VecEnv``). It comes first so that
        ``DreamerV2("MinAtar/Breakout-v1")`` works; SB3's ``DreamerV2(policy=..., env=...)`` and
        positional ``DreamerV2("MlpPolicy", env)`` work too.
    :param policy: ``"DreamerPolicy"`` (aliases ``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``
        are the same policy: the encoder is chosen from the observation space) or a subclass.
    :param learning_rate: World-model Adam(W) learning rate, 2e-4 (paper, MinAtar); float or schedule
    :param actor_learning_rate: 4e-5 (paper, MinAtar)
    :param critic_learning_rate: 1e-4 (paper, MinAtar)
    :param buffer_size: Replay capacity in rows (all envs together), 1e6 (MinAtar; paper 2e6)
    :param learning_starts: Uniform-random steps before training, 5000 (MinAtar 4000, paper 50k;
        5000 is the MinAtar DQN replay start, so both start learning at the same step)
    :param batch_size: Sequences per gradient step (B), 50 (MinAtar; paper 16)
    :param sequence_length: Steps per sequence (T), 50 (paper, MinAtar)
    :param imagination_horizon: H, 15 (paper; MinAtar used 10)
    :param gamma: Discount, 0.99 (MinAtar; paper 0.999 for 27k-step Atari episodes)
    :param return_lambda: lambda of the lambda-returns, 0.95 (paper, MinAtar)
    :param train_freq: Env steps between updates, 10 (MinAtar: 5 updates every 50 steps);
        with B x T = 50 x 50 this replays 250 steps per env step (paper: 16 x 50 every 16 steps)
    :param gradient_steps: Updates per ``train_freq``, 1
    :param train_ratio: Replayed steps per env step; when given it sets ``train_freq`` and
        ``gradient_steps`` (see :func:`~sb3_dreamer.common.algorithm.train_schedule`). ``None``: use them as given
    :param kl_scale: beta, the KL loss scale, 0.1 (paper Atari, MinAtar)
    :param kl_balance: alpha of KL balancing, 0.8 (paper, MinAtar)
    :param free_nats: Free nats on the batch-mean KL, 0 (paper Atari, MinAtar)
    :param discount_scale: eta_gamma, the weight of the continue ("discount") loss, 5.0 (paper Atari, MinAtar)
    :param reward_scale: Reward-loss scale, 1.0 (paper)
    :param latent: ``"categorical"`` (paper: ``policy_kwargs`` ``stoch_size`` x ``classes``
        one-hot latents) or ``"gaussian"`` (a diagonal Gaussian of ``stoch_size`` dimensions, the
        "Gaussian latents" ablation of paper Sec. 4, Figure 5)
    :param kl_balancing: ``True`` (paper Algorithm 2: ``dyn`` and ``rep`` weighted by ``kl_balance``);
        ``False`` = the plain ``KL[q || p]`` training prior and posterior alike, weighted by
        ``kl_scale``, with ``free_nats`` on its batch mean (the "no KL balancing" ablation, Figure 5)
    :param image_gradients: ``False`` trains the image decoder on ``sg(h_t, z_t)``, so the
        representation learns from rewards, continues and the KL only ("no image gradients", Figure 5)
    :param reward_gradients: ``False`` trains the reward head on ``sg(h_t, z_t)`` ("no reward
        gradients", Figure 5)
    :param entropy_coef: eta, the actor-entropy scale, 1e-3 (paper Atari, MinAtar)
    :param actor_grad_mix: rho, the REINFORCE share of the actor gradient (paper Eq. 6): a float
        in [0, 1], ``"reinforce"`` (1), ``"dynamics"`` (0, backpropagation through the dynamics), or
        ``None`` = 1 for Discrete actions and 0 for Box actions (paper)
    :param target_update_interval: Gradient steps between updates of the target critic, 100 (paper)
    :param tau: Target update ``target <- tau critic + (1 - tau) target``, 1 = hard copy (paper)
    :param max_grad_norm: Gradient-norm clip of each optimizer, 100 (paper)
    :param world_model_max_grad_norm: Clip of the world model's gradient; ``None`` = ``max_grad_norm``
    :param replay_buffer_class: A :class:`~sb3_dreamer.SequenceReplayBuffer` (sub)class
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer
    :param policy_kwargs: Network sizes and optimizer of :class:`~sb3_dreamer.DreamerPolicy`:
        ``deter_size`` 200 (MinAtar; paper 600), ``hidden_size`` 200 (MinAtar; paper 600),
        ``stoch_size`` 32 and ``classes`` 32 (paper; MinAtar 20 x 20), ``mlp_layers`` 3
        (MinAtar; paper 4), ``mlp_units`` 200 (MinAtar 100, paper 400), ``cnn_depth`` 32
        (MinAtar 16, paper 48), ``cnn_padding`` "valid" (the paper's CNN on 64x64 images),
        ``channels_last`` (``None`` = inferred), ``weight_decay`` 1e-6
        per step, decoupled from the learning rate (paper code), ``optimizer_class`` Adam with
        ``eps`` 1e-5 (paper)
    :param stats_window_size: Episodes averaged in ``rollout/`` logs
    :param tensorboard_log: TensorBoard log folder
    :param verbose: 0 silent, 1 training info, 2 debug
    :param seed: Seed of python, numpy, torch and the env
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param precision: ``"fp32"``, or ``"bf16-mixed"``: the training forward passes under bfloat16
        autocast, with float32 weights, gradients, optimizer state and distributions
        (:meth:`~sb3_dreamer.common.algorithm.WorldModelAlgorithm.autocast`; danijar's DreamerV3 computes in
        bfloat16). Fastest on GPUs and on CPUs with bfloat16 matrix units (AMX); acting stays float32.
        Opt-in: float16 mixed precision broke DreamerV2 on Enduro (danijar/dreamerv2#30)
    :param preset: A named configuration from :data:`sb3_dreamer.dreamer_v2.sizes.PRESETS` that
        replaces the defaults above (arguments passed explicitly still win; ``policy_kwargs`` are
        merged key by key). ``"minatar-100k"``: the sample-efficient setting for ~100k-step budgets
        (more updates, higher learning rates, LayerNorm; docs/defaults.md). ``None``: the defaults above.
        An unknown name raises ``ValueError`` listing the valid ones
    :param _init_setup_model: Whether to build the networks at construction

    Deviations from the paper, each deliberate:

    - **Reward alignment of the lambda-return.** ``V_t = r_{t+1} + gamma c_{t+1}(...)`` pairs
      each state with the reward for *leaving* it (as DreamerV3 does); DreamerV2's code credited
      the reward for entering ``s_t`` to ``v(s_t)``, one step late.
    - **Discount head.** It predicts ``P(not terminal)`` and imagination multiplies it by
      ``gamma``; the paper trains a Bernoulli on ``gamma (1 - terminal)``. Same fixed point.
    - **Binary observations** (bool, e.g. MinAtar) use a Bernoulli image likelihood instead of a
      unit Gaussian; uint8 images are scaled to [-0.5, 0.5] with a Gaussian as in the paper.
    - **Deterministic prediction** uses the mode of the posterior as well as of the actor, so
      ``predict(..., deterministic=True)`` is repeatable (the paper samples the latent).
    - **Box actions** use a tanh-squashed Gaussian (DreamerV1) instead of a truncated normal.
    - No reward clipping (MinAtar rewards are 0/1; the paper's Atari ``tanh`` is not applied).

    The loss defaults are the paper's Atari ones, tuned for discrete actions. For continuous
    control the paper's DMC configuration differs: ``kl_scale=1.0``, ``free_nats=1.0``,
    ``entropy_coef=1e-4``, and no continue head (use ``discount_scale=0`` for tasks that never
    terminate).

    With ``VecNormalize``, observations and rewards are stored as the policy sees them
    (normalised with the statistics of the moment), unlike SB3's own buffers.
    """

    @with_presets(PRESETS)
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
        kl_scale: float = 0.1,
        kl_balance: float = 0.8,
        free_nats: float = 0.0,
        discount_scale: float = 5.0,
        reward_scale: float = 1.0,
        latent: str = "categorical",
        kl_balancing: bool = True,
        image_gradients: bool = True,
        reward_gradients: bool = True,
        entropy_coef: float = 1e-3,
        actor_grad_mix: float | str | None = None,
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
        preset: str | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        self.preset = preset
        self.kl_scale = kl_scale
        self.kl_balance = kl_balance
        self.free_nats = free_nats
        self.discount_scale = discount_scale
        self.reward_scale = reward_scale
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}.")
        self.kl_balancing, self.image_gradients, self.reward_gradients = kl_balancing, image_gradients, reward_gradients
        policy_kwargs = {"cnn_padding": "valid", **(policy_kwargs or {})}  # the paper's 64x64 CNN
        if latent != "categorical":
            if policy_kwargs.get("latent", latent) != latent:
                raise ValueError(f"latent={latent!r} contradicts policy_kwargs latent={policy_kwargs['latent']!r}.")
            policy_kwargs["latent"] = latent
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
            target_update_interval=target_update_interval,
            tau=tau,
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

    @property
    def loss_scales(self) -> dict[str, float]:
        # Paper Eq. 2: log image, reward and discount losses; beta KL balanced by alpha (Algorithm 2)
        heads = {"reconstruction": 1.0, "reward": self.reward_scale, "continue": self.discount_scale}
        if not self.kl_balancing:  # the "no KL balancing" ablation: beta KL[q || p]
            return {**heads, "kl": self.kl_scale}
        return {**heads, "dyn": self.kl_scale * self.kl_balance, "rep": self.kl_scale * (1.0 - self.kl_balance)}

    def _kl_terms(self, post_logits: th.Tensor, prior_logits: th.Tensor) -> tuple[dict[str, th.Tensor], th.Tensor]:
        # KL[sg(q) || p] and KL[q || sg(p)], free nats on each batch mean (paper Algorithm 2)
        kl = self.policy.world_model.rssm.latent.kl
        if not self.kl_balancing:
            return free_nats_kl(post_logits, prior_logits, self.free_nats, kl)
        return batch_free_nats_kl(post_logits, prior_logits, self.free_nats, kl)

    def _loss_options(self) -> dict[str, Any]:
        return {"detach_decoder": not self.image_gradients, "detach_reward": not self.reward_gradients}
