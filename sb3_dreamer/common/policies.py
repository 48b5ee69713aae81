"""``DreamerPolicy``: one SB3 policy object that owns the world model, the actor, the critic, the
target critic and their three optimizers, so ``save``/``load`` carry all of them.

Acting follows sb3-contrib's ``RecurrentPPO`` contract: ``predict(obs, state, episode_start,
deterministic) -> (actions, state)``, where ``state = (h, z, a_prev)`` as numpy arrays with one
row per environment, reset to zeros where ``episode_start`` is set.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_dreamer.common.behavior import Actor, ReturnNormalizer
from sb3_dreamer.common.latents import GaussianLatent
from sb3_dreamer.common.networks import NetStyle, ScalarHead, init_weights
from sb3_dreamer.common.observations import as_obs_dict, observation_parts
from sb3_dreamer.common.rssm import RSSMState
from sb3_dreamer.common.world_model import WorldModel

#: ``latent`` values of :class:`DreamerPolicy`.
LATENTS = ("categorical", "gaussian")

#: The recurrent state threaded through ``predict``: (h, z, previous action), one row per env.
LatentState = tuple[th.Tensor, th.Tensor, th.Tensor]


def check_action_space(action_space: spaces.Space) -> None:
    if isinstance(action_space, spaces.Discrete):
        return
    if (
        isinstance(action_space, spaces.Box)
        and np.all(np.isfinite(action_space.low))
        and np.all(np.isfinite(action_space.high))
    ):
        return
    raise TypeError(f"Dreamer supports Discrete and bounded Box action spaces, but got {action_space}.")


class DreamerPolicy(BasePolicy):
    """World model + actor-critic of Dreamer.

    :param observation_space: Box (image or vector) or Dict of Box
    :param action_space: Discrete or bounded Box
    :param lr_schedule: Learning-rate schedule of the world model
    :param actor_lr: Initial learning rate of the actor
    :param critic_lr: Initial learning rate of the critic
    :param deter_size: Size of the GRU state h
    :param hidden_size: Width of the RSSM's hidden layers
    :param stoch_size: Number of categorical latent variables in z
    :param classes: Classes per latent variable
    :param mlp_layers: Hidden layers of every MLP (vector encoder/decoder, heads, actor, critic)
    :param mlp_units: Width of every MLP
    :param cnn_depth: Channels of the first convolution (doubled at each stride-2 stage, up to 8x)
    :param cnn_padding: "same" (DreamerV3's CNN, any image size) or "valid": DreamerV1/V2's CNN for
        64x64 images (to 2x2, and a decoder from 1x1 with 5, 5, 6, 6 kernels; other sizes get "same").
        :class:`~sb3_dreamer.DreamerV2` passes "valid".
    :param channels_last: Layout of 3-D non-uint8 image observations; ``None`` infers it (see docs)
    :param activation_fn: Activation of every hidden layer (DreamerV2: ELU; DreamerV3: SiLU)
    :param layer_norm: LayerNorm before every hidden activation (DreamerV3)
    :param symlog_inputs: symlog vector observations, so their reconstruction is in symlog space (DreamerV3)
    :param unimix: Uniform share mixed into the latent and actor categoricals (DreamerV3: 0.01)
    :param bins: Reward and critic heads: 0 = unit Gaussian (DreamerV2), N = two-hot over N bins
        evenly spaced in symlog space, output layers initialised to zero (DreamerV3: 255)
    :param learned_initial: Start episodes from a learned latent state instead of zeros (DreamerV3)
    :param latent: The distribution of ``z``: ``"categorical"`` (``stoch_size`` variables of ``classes``
        classes; DreamerV2, V3) or ``"gaussian"`` (a diagonal Gaussian of ``stoch_size`` dimensions,
        ``classes`` unused; PlaNet, DreamerV1), see :mod:`~sb3_dreamer.common.latents`
    :param weight_decay: Decoupled weight decay, applied as ``w <- (1 - weight_decay) w`` after
        every optimizer step, independently of the learning rate (danijar/dreamerv2's optimizer)
    :param optimizer_class: Optimizer of all three parts
    :param optimizer_kwargs: Extra optimizer arguments
    :param world_model_optimizer_kwargs: Overrides of ``optimizer_kwargs`` for the world model
        (DreamerV3: Adam ``eps`` 1e-8 for the model, 1e-5 for actor and critic)
    """

    #: The policy's optimizers (attribute names), each with the algorithm argument that sets its
    #: learning rate: saving, loading, resuming and learning-rate schedules follow this mapping, so a
    #: policy with other optimizers (one, or an extra one for a dual variable) declares them here.
    optimizer_learning_rates: ClassVar[dict[str, str]] = {
        "wm_optimizer": "learning_rate",
        "actor_optimizer": "actor_learning_rate",
        "critic_optimizer": "critic_learning_rate",
    }

    @classmethod
    def initial_learning_rates(cls, rates: dict[str, float]) -> dict[str, Any]:
        """Constructor arguments that give the optimizers their first learning rates, from the
        algorithm's (``rates``: argument name -> rate; the world model's comes as ``lr_schedule``)."""
        return {"actor_lr": rates["actor_learning_rate"], "critic_lr": rates["critic_learning_rate"]}

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        actor_lr: float = 4e-5,
        critic_lr: float = 1e-4,
        deter_size: int = 200,
        hidden_size: int = 200,
        stoch_size: int = 32,
        classes: int = 32,
        mlp_layers: int = 3,
        mlp_units: int = 200,
        cnn_depth: int = 32,
        cnn_padding: str = "same",
        channels_last: bool | None = None,
        activation_fn: type[nn.Module] = nn.ELU,
        layer_norm: bool = False,
        symlog_inputs: bool = False,
        unimix: float = 0.0,
        bins: int = 0,
        learned_initial: bool = False,
        latent: str = "categorical",
        weight_decay: float = 1e-6,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        world_model_optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if optimizer_kwargs is None:
            optimizer_kwargs = {"eps": 1e-5}
        super().__init__(
            observation_space,
            action_space,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            normalize_images=False,  # the world model scales pixels itself
        )
        check_action_space(action_space)
        self.parts = observation_parts(observation_space, channels_last)
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.action_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))  # type: ignore[attr-defined]
        self.net_args = dict(
            deter_size=deter_size,
            hidden_size=hidden_size,
            stoch_size=stoch_size,
            classes=classes,
            mlp_layers=mlp_layers,
            mlp_units=mlp_units,
            cnn_depth=cnn_depth,
            cnn_padding=cnn_padding,
        )
        self.channels_last = channels_last
        self.style = NetStyle(activation_fn, layer_norm, symlog_inputs)
        self.unimix, self.bins, self.learned_initial = unimix, bins, learned_initial
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}.")
        self.latent = latent
        self.world_model_optimizer_kwargs = world_model_optimizer_kwargs or {}
        self.weight_decay = weight_decay
        self.actor_lr, self.critic_lr = actor_lr, critic_lr
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        """The world model, then the behaviour (actor, critic, target critic) and one optimizer per
        part. A policy without an actor (a planner, say) overrides this with the world-model half:
        :meth:`_build_world_model`, :meth:`_init_weights`, ``wm_optimizer`` from :meth:`_optimizer`,
        and declares only that optimizer in :attr:`optimizer_learning_rates`."""
        self._build_world_model()
        feat_dim = self.world_model.rssm.feat_dim
        layers, units, style = self.net_args["mlp_layers"], self.net_args["mlp_units"], self.style
        self.actor = Actor(feat_dim, self.action_dim, self.discrete, layers, units, style, self.unimix)
        self.critic = ScalarHead(feat_dim, layers, units, style, self.bins)  # v_xi(s_t)
        self._init_weights()
        self.target_critic = copy.deepcopy(self.critic)
        self.target_critic.requires_grad_(False)
        self.return_normalizer = ReturnNormalizer()  # DreamerV3's return scale (unused by DreamerV2)
        self.wm_optimizer = self._optimizer(self.world_model, lr_schedule(1), self.world_model_optimizer_kwargs)
        self.actor_optimizer = self._optimizer(self.actor, self.actor_lr)
        self.critic_optimizer = self._optimizer(self.critic, self.critic_lr)

    def _build_world_model(self) -> None:
        args = self.net_args
        self.world_model = WorldModel(
            self.parts,
            self.action_dim,
            **args,
            style=self.style,
            unimix=self.unimix,
            bins=self.bins,
            learned_initial=self.learned_initial,
            latent=GaussianLatent(args["stoch_size"]) if self.latent == "gaussian" else None,
        )

    def _init_weights(self) -> None:
        """Initialise every module built so far; two-hot reward and critic heads start at exactly 0."""
        self.apply(init_weights)
        for module in self.modules():
            if isinstance(module, ScalarHead):
                module.zero_output_()

    def _optimizer(self, module: nn.Module, lr: float, overrides: dict[str, Any] | None = None) -> th.optim.Optimizer:
        """An ``optimizer_class`` over ``module``'s parameters with ``optimizer_kwargs`` (and ``overrides``)."""
        kwargs = self._with_implementation({**self.optimizer_kwargs, **(overrides or {})})
        return self.optimizer_class(module.parameters(), lr=lr, **kwargs)  # type: ignore[call-arg]

    def _with_implementation(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``fused=True`` for torch's Adam and AdamW unless ``kwargs`` picks an implementation: one
        kernel per step over all tensors, the same update up to rounding, about 3x faster than the
        per-tensor loop torch runs on CPU by default (under 1% of a DreamerV3 S update on CPU)."""
        chosen = {"fused", "foreach", "differentiable", "capturable"} & set(kwargs)
        if self.optimizer_class in (th.optim.Adam, th.optim.AdamW) and not chosen:
            return {**kwargs, "fused": True}
        return kwargs

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            self.net_args,
            lr_schedule=self._dummy_schedule,
            actor_lr=self.actor_lr,
            critic_lr=self.critic_lr,
            channels_last=self.channels_last,
            activation_fn=self.style.activation_fn,
            layer_norm=self.style.layer_norm,
            symlog_inputs=self.style.symlog_inputs,
            unimix=self.unimix,
            bins=self.bins,
            learned_initial=self.learned_initial,
            latent=self.latent,
            weight_decay=self.weight_decay,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            world_model_optimizer_kwargs=self.world_model_optimizer_kwargs,
        )
        return data

    @th.no_grad()
    def update_target_critic(self, tau: float = 1.0) -> None:
        """``target <- tau critic + (1 - tau) target``: a hard copy with ``tau`` = 1 (DreamerV2,
        every 100 gradient steps), an EMA with ``tau`` = 0.02 (DreamerV3, every step)."""
        if tau >= 1.0:
            self.target_critic.load_state_dict(self.critic.state_dict())
            return
        target = list(self.target_critic.parameters())
        th._foreach_lerp_(target, list(self.critic.parameters()), tau)

    def set_training_mode(self, mode: bool) -> None:
        parts = list(self.children())
        if mode == self.training and all(part.training == mode for part in parts):
            return  # Module.train walks every submodule: a cost on each acting step
        for part in parts:
            part.train(mode)
        self.training = mode

    # -- acting -----------------------------------------------------------------------------------
    def initial_state(self, n_envs: int) -> LatentState:
        rssm = self.world_model.rssm
        return (
            th.zeros(n_envs, rssm.deter_size, device=self.device),
            th.zeros(n_envs, rssm.stoch_dim, device=self.device),
            th.zeros(n_envs, self.action_dim, device=self.device),
        )

    def to_buffer_action(self, action: np.ndarray) -> np.ndarray:
        """Env action -> buffer format: the index (Discrete) or the action rescaled to [-1, 1] (Box)."""
        if self.discrete:
            return np.asarray(action).reshape(-1, 1)
        return self.scale_action(np.asarray(action)).reshape(len(action), -1).astype(np.float32)

    def to_env_action(self, action: th.Tensor) -> np.ndarray:
        """The actor's action -> env action (index for Discrete, rescaled to the bounds for Box)."""
        if self.discrete:
            return action.argmax(-1).cpu().numpy()
        low, high = self.action_space.low, self.action_space.high  # type: ignore[attr-defined]
        action_np = action.cpu().numpy().reshape(-1, *self.action_space.shape)  # type: ignore[misc]
        return np.clip(low + (action_np + 1.0) * 0.5 * (high - low), low, high)

    def action_to_tensor(self, buffer_action: np.ndarray) -> th.Tensor:
        """Buffer-format action (index or [-1, 1]) -> the actor's format (one-hot or [-1, 1])."""
        action = th.as_tensor(buffer_action, device=self.device)
        if self.discrete:
            return th.nn.functional.one_hot(action.long().reshape(-1), self.action_dim).float()
        return action.float().reshape(-1, self.action_dim)

    @th.no_grad()
    def step(
        self,
        observation: PyTorchObs,
        state: LatentState,
        episode_start: th.Tensor,
        deterministic: bool = False,
        action: th.Tensor | None = None,
    ) -> tuple[th.Tensor, LatentState]:
        """Filter one observation into the latent state and choose an action.

        ``state`` holds (h_{t-1}, z_{t-1}, a_{t-1}); it is zeroed where ``episode_start``.
        ``deterministic`` uses the mode of the posterior and of the actor (so repeated calls and
        saved/loaded models give identical actions). If ``action`` is given (random warm-up
        actions), it is used instead of the actor's and stored as the next previous action.
        """
        wm = self.world_model
        embed = wm.embed(as_obs_dict(observation), 1)
        deter, stoch, prev_action = state
        prev = RSSMState(deter, stoch, wm.rssm.latent.zeros_stats(len(stoch), stoch.device))
        post = wm.rssm.obs_step(prev, prev_action, embed, episode_start, sample=not deterministic)
        if action is None:
            action = self.act(post, deterministic)
        return action, (post.deter, post.stoch, action)

    def act(self, state: RSSMState, deterministic: bool = False) -> th.Tensor:
        """The action in the latent state ``state`` (the posterior of the last observation), in the
        actor's format: the actor's sample, or its mode if ``deterministic``. A planner overrides it."""
        return self.actor.act(state.feat, deterministic)

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Get the action for ``observation`` and the next recurrent state (sb3-contrib's
        ``RecurrentPPO`` contract, so ``evaluate_policy`` and ``EvalCallback`` work unchanged).

        :param observation: One observation or a batch of them (one per env)
        :param state: The last returned state, or ``None`` at the start
        :param episode_start: Which envs start a new episode (their state is reset)
        :param deterministic: Use the modes instead of sampling
        :return: (actions, next state as a tuple of numpy arrays)
        """
        self.set_training_mode(False)
        check_finite_observation(observation)
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        n_envs = len(next(iter(as_obs_dict(obs_tensor).values())))
        if state is None:
            latent = self.initial_state(n_envs)
        else:
            latent = tuple(
                th.as_tensor(np.asarray(s), dtype=th.float32, device=self.device).reshape(n_envs, -1) for s in state
            )  # type: ignore[assignment]
        if episode_start is None:
            episode_start = np.zeros(n_envs, dtype=bool) if state is not None else np.ones(n_envs, dtype=bool)
        starts = th.as_tensor(np.asarray(episode_start, dtype=np.float32).reshape(n_envs), device=self.device)
        action, new_latent = self.step(obs_tensor, latent, starts, deterministic)
        actions = self.to_env_action(action)
        new_state = tuple(s.cpu().numpy() for s in new_latent)
        if not vectorized_env:
            actions = actions.squeeze(axis=0)
        return actions, new_state

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Single-step prediction from a fresh state (no memory): use :meth:`predict` with ``state``."""
        n_envs = len(next(iter(as_obs_dict(observation).values())))
        ones = th.ones(n_envs, device=self.device)
        action, _ = self.step(observation, self.initial_state(n_envs), ones, deterministic)
        return th.as_tensor(self.to_env_action(action), device=self.device)


def check_spaces(observation_space: spaces.Space, action_space: spaces.Space, policy_kwargs: dict | None) -> None:
    """Raise ``TypeError`` naming any observation or action space the policy does not support."""
    observation_parts(observation_space, (policy_kwargs or {}).get("channels_last"))
    check_action_space(action_space)


def check_finite_observation(observation: Any, what: str = "observation") -> None:
    """Raise ``ValueError`` if a float observation holds NaN or inf."""
    values = observation.values() if isinstance(observation, dict) else [observation]
    for value in values:
        array = np.asarray(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"Dreamer got a non-finite {what} (NaN or inf): {array.flatten()[:8]}...")


#: SB3's policy names. One policy serves every supported space (a CNN for image entries of the
#: observation, an MLP for vector entries), so every name is :class:`DreamerPolicy`.
MlpPolicy = CnnPolicy = MultiInputPolicy = DreamerPolicy
POLICY_ALIASES: dict[str, type[BasePolicy]] = {
    name: DreamerPolicy for name in ("DreamerPolicy", "MlpPolicy", "CnnPolicy", "MultiInputPolicy")
}
