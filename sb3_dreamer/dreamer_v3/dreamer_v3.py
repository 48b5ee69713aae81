"""DreamerV3 (Hafner et al., "Mastering Diverse Domains through World Models", arXiv:2301.04104, 2023)."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from torch import nn

from sb3_dreamer.common.algorithm import WorldModelAlgorithm
from sb3_dreamer.common.distributions import step_free_bits_kl
from sb3_dreamer.common.presets import merge_policy_kwargs, with_presets
from sb3_dreamer.dreamer_v3.policies import DreamerPolicy
from sb3_dreamer.dreamer_v3.sizes import PRESETS, SIZES

#: The policy settings that make a :class:`DreamerPolicy` a DreamerV3 one (paper Appendix B).
V3_POLICY_KWARGS: dict[str, Any] = {
    "activation_fn": nn.SiLU,
    "layer_norm": True,
    "symlog_inputs": True,
    "unimix": 0.01,
    "bins": 255,
    "learned_initial": True,
    "weight_decay": 0.0,
    "optimizer_kwargs": {"eps": 1e-5},  # actor and critic
    "world_model_optimizer_kwargs": {"eps": 1e-8},
}


class DreamerV3(WorldModelAlgorithm):
    """
    DreamerV3: DreamerV2's world model and imagination training made robust enough to use one set
    of hyperparameters everywhere (symlog inputs, two-hot rewards and values, free bits, return
    normalisation, unimix categoricals, LayerNorm + SiLU networks).

    Paper: https://arxiv.org/abs/2301.04104 (the 2023 version; its code is danijar/dreamerv3 up
    to commit 8fa35f8). Every default is the paper's; only ``train_ratio`` and ``model_size``
    depend on the compute you want to spend. It shares everything else with :class:`DreamerV2`
    (``sb3_dreamer.common``): the replay, the RSSM, the SB3 glue, the acting and saving.

    :param env: The environment (a gymnasium id, ``Env`` or ``VecEnv``); first, so that
        ``DreamerV3("MinAtar/Breakout-v1")`` works (SB3's ``DreamerV3("MlpPolicy", env)`` too).
    :param policy: ``"DreamerPolicy"`` (or the aliases ``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``)
    :param learning_rate: World-model Adam learning rate, 1e-4 (paper; eps 1e-8)
    :param actor_learning_rate: 3e-5 (paper; eps 1e-5)
    :param critic_learning_rate: 3e-5 (paper; eps 1e-5)
    :param buffer_size: Replay capacity in rows, 1e6 (paper)
    :param learning_starts: Uniform-random steps before training, 1024 (one batch of 16 x 64; the paper
        starts as soon as a batch can be sampled)
    :param batch_size: Sequences per gradient step (B), 16 (paper)
    :param sequence_length: Steps per sequence (T), 64 (paper)
    :param imagination_horizon: H, 15 (paper)
    :param gamma: Discount, 1 - 1/333 (paper: a horizon of 333 steps)
    :param return_lambda: lambda of the lambda-returns, 0.95 (paper)
    :param model_size: Named widths from :data:`sb3_dreamer.dreamer_v3.SIZES`: ``XS``, ``S``
        (default), ``M``, ``L``, ``XL``, and our CPU size ``XXS``. ``policy_kwargs`` override single entries.
    :param train_ratio: Replayed steps (B x T per gradient step) per env step, the one knob for
        data against compute (paper Fig. 6). 64 is the paper's Atari (200M frames) value; the
        paper uses 512 for DMC and Crafter and 1024 for Atari 100k. It sets ``train_freq`` and
        ``gradient_steps`` (:func:`~sb3_dreamer.common.algorithm.train_schedule`); pass
        ``train_ratio=None`` to set those two directly.
    :param train_freq: Env steps between updates, only with ``train_ratio=None`` (default 1)
    :param gradient_steps: Updates per ``train_freq``, only with ``train_ratio=None`` (default 1)
    :param dyn_scale: beta_dyn, weight of the dynamics KL ``max(1, KL[sg(post) || prior])``, 0.5 (paper)
    :param rep_scale: beta_rep, weight of the representation KL ``max(1, KL[post || sg(prior)])``, 0.1 (paper)
    :param free_bits: Free bits of both KL terms, per time step, 1.0 (paper)
    :param entropy_coef: eta, the actor-entropy scale, 3e-4 (paper)
    :param return_norm_decay: EMA decay of the return percentiles, 0.99 (paper)
    :param return_norm_percentiles: The range S is measured over, (5, 95) (paper)
    :param return_norm_limit: S is at least this, 1.0 (paper: small returns are not amplified)
    :param tau: EMA rate of the target ("slow") critic, 0.02 (paper)
    :param target_update_interval: Gradient steps between EMA updates, 1 (paper)
    :param critic_target_regularizer: Weight of the critic's loss towards the EMA critic's
        prediction, 1.0 (paper code ``slowreg``); the lambda-returns bootstrap from the online critic
    :param actor_grad_mix: rho, the REINFORCE share of the actor gradient; ``None`` = 1 for Discrete
        actions and 0 (backpropagation through the dynamics) for Box actions (paper)
    :param max_grad_norm: Gradient clip of actor and critic, 100 (paper)
    :param world_model_max_grad_norm: Gradient clip of the world model, 1000 (paper)
    :param replay_buffer_class: A :class:`~sb3_dreamer.SequenceReplayBuffer` (sub)class
    :param replay_buffer_kwargs: Keyword arguments of the replay buffer
    :param policy_kwargs: Overrides of :class:`~sb3_dreamer.DreamerPolicy`'s arguments on top of
        :data:`V3_POLICY_KWARGS` and the ``model_size`` widths
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
    :param preset: A named configuration from :data:`sb3_dreamer.dreamer_v3.sizes.PRESETS` that
        replaces the defaults above (arguments passed explicitly still win). ``"minatar-100k"``:
        ``train_ratio`` 256 at the ``XXS`` widths, for ~100k-step budgets. ``None``: the defaults.
        An unknown name raises ``ValueError`` listing the valid ones
    :param _init_setup_model: Whether to build the networks at construction

    Deviations from the paper, each deliberate (the first four shared with our DreamerV2):

    - **Binary observations** (bool, e.g. MinAtar) use a Bernoulli image likelihood instead of
      the paper's mean squared error; uint8 images are scaled to [-0.5, 0.5] with a unit
      Gaussian (squared error / 2). Float vectors use the paper's symlog squared error.
    - **Images of any size from 5x5** use our CNN (3x3 stride-1 first layer, then 4x4 stride-2
      stages while the side is 8 or more); the paper's encoder needs 64x64 inputs.
    - **Deterministic prediction** uses the modes of the posterior and the actor.
    - **Box actions** use the tanh-squashed Gaussian of our DreamerV2 (initial pre-tanh std 5)
      instead of the paper's bounded normal with a std in [0.1, 1].
    - **The actor's baseline is detached**: ``sg(v(s_t))``, so with dynamics backpropagation the
      actor maximises ``V^lambda_t / S`` only.
    """

    @with_presets(PRESETS)
    def __init__(
        self,
        env: GymEnv | str | None = None,
        policy: str | type[DreamerPolicy] = "DreamerPolicy",
        learning_rate: float | Schedule = 1e-4,
        actor_learning_rate: float | Schedule = 3e-5,
        critic_learning_rate: float | Schedule = 3e-5,
        buffer_size: int = 1_000_000,
        learning_starts: int = 1024,
        batch_size: int = 16,
        sequence_length: int = 64,
        imagination_horizon: int = 15,
        gamma: float = 1.0 - 1.0 / 333.0,
        return_lambda: float = 0.95,
        model_size: str = "S",
        train_ratio: float | None = 64.0,
        train_freq: int | tuple[int, str] | None = None,
        gradient_steps: int | None = None,
        dyn_scale: float = 0.5,
        rep_scale: float = 0.1,
        free_bits: float = 1.0,
        entropy_coef: float = 3e-4,
        return_norm_decay: float = 0.99,
        return_norm_percentiles: tuple[float, float] = (5.0, 95.0),
        return_norm_limit: float = 1.0,
        tau: float = 0.02,
        target_update_interval: int = 1,
        critic_target_regularizer: float = 1.0,
        actor_grad_mix: float | None = None,
        max_grad_norm: float = 100.0,
        world_model_max_grad_norm: float | None = 1000.0,
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
            raise ValueError(f"Unknown DreamerV3 model_size {model_size!r}; choose from {list(SIZES)}.")
        if train_ratio is not None and (train_freq is not None or gradient_steps is not None):
            raise ValueError(
                "DreamerV3 sets train_freq and gradient_steps from train_ratio; pass train_ratio=None to set them."
            )
        self.model_size = model_size
        self.dyn_scale, self.rep_scale, self.free_bits = dyn_scale, rep_scale, free_bits
        self.return_norm_decay = return_norm_decay
        self.return_norm_percentiles = tuple(return_norm_percentiles)
        self.return_norm_limit = return_norm_limit
        self.critic_target_regularizer = critic_target_regularizer
        policy_kwargs = merge_policy_kwargs(V3_POLICY_KWARGS, SIZES[model_size], policy_kwargs or {})
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
            train_freq=1 if train_freq is None else train_freq,
            gradient_steps=1 if gradient_steps is None else gradient_steps,
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
        # Paper Eq. 3-5: the prediction losses unweighted, beta_dyn L_dyn + beta_rep L_rep
        return {"reconstruction": 1.0, "reward": 1.0, "continue": 1.0, "dyn": self.dyn_scale, "rep": self.rep_scale}

    def _kl_terms(self, post_logits: th.Tensor, prior_logits: th.Tensor) -> tuple[dict[str, th.Tensor], th.Tensor]:
        # max(1, KL[sg(q) || p]) and max(1, KL[q || sg(p)]), free bits per time step (paper Eq. 5)
        return step_free_bits_kl(post_logits, prior_logits, self.free_bits, self.policy.world_model.rssm.latent.kl)

    def _return_scale(self, returns: th.Tensor) -> th.Tensor:
        """S = max(1, EMA(Per(R, 95) - Per(R, 5))) after updating the EMAs with this batch (paper Eq. 7)."""
        normalizer = self.policy.return_normalizer
        normalizer.update(returns, self.return_norm_decay, self.return_norm_percentiles)  # type: ignore[arg-type]
        return normalizer.scale(self.return_norm_limit)

    def _behavior_options(self) -> dict[str, Any]:
        return {
            "bootstrap_critic": self.policy.critic,  # the online critic bootstraps (paper Eq. 8)
            "return_scale": self._return_scale,
            "target_regularizer": self.critic_target_regularizer,
            "continue_mode": True,  # imagination continues with the continue head's mode (paper code)
        }
