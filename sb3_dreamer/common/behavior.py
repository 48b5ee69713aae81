"""Behaviour learning in imagination (DreamerV2 paper, Section 2.2 "Behavior Learning").

Time convention used throughout (DreamerV3's; DreamerV2's code paired ``v(s_t)`` with the reward
for entering ``s_t``, one step late):
imagined state ``s_t`` is reached by action ``a_{t-1}``; the reward and continue heads evaluated
at ``s_{t+1}`` give ``r_{t+1}`` and ``c_{t+1}``; so

    V^lambda_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v(s_{t+1}) + lambda V^lambda_{t+1}),
    V^lambda_H = v(s_H)                                          (paper Eq. 4)

and the loss of step ``t`` is weighted by ``gamma^t prod_{k<=t} c_k``, with ``c_0`` the *real*
``1 - is_terminal`` of the posterior state the imagination started from (a start state that
is terminal in the data gets no weight, as in danijar/dreamerv2's ``imagine``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch as th
from torch import nn

from sb3_dreamer.common.distributions import (
    TanhGaussian,
    categorical_entropy,
    categorical_log_prob,
    mode_one_hot,
    sample_one_hot,
    straight_through,
    unimix_logits,
)
from sb3_dreamer.common.kernels import OneHotInput, autocast_dtype, reused_gather_tables
from sb3_dreamer.common.networks import V2_STYLE, NetStyle, ScalarHead, mlp
from sb3_dreamer.common.rssm import RSSM, RSSMState


class Actor(nn.Module):
    """p_psi(a_t | z^_t): a categorical over one-hot actions (Discrete) or a tanh-squashed
    Gaussian in [-1, 1] (Box; DreamerV1's bounded action distribution).

    ``unimix`` mixes that share of the uniform distribution into the categorical (DreamerV3: 0.01).
    """

    def __init__(
        self,
        feat_dim: int,
        action_dim: int,
        discrete: bool,
        layers: int,
        units: int,
        style: NetStyle = V2_STYLE,
        unimix: float = 0.0,
        init_std: float = 5.0,
        min_std: float = 1e-4,
        mean_scale: float = 5.0,
    ) -> None:
        super().__init__()
        self.discrete = discrete
        self.action_dim = action_dim
        self.unimix = unimix
        self.net = mlp(feat_dim, action_dim if discrete else 2 * action_dim, layers, units, style)
        self._raw_init_std = math.log(math.exp(init_std) - 1.0)
        self.min_std, self.mean_scale = min_std, mean_scale

    def logits(self, feat: th.Tensor) -> th.Tensor:
        """Logits of the (uniform-mixed) categorical over Discrete actions."""
        return unimix_logits(self.net(feat).float(), self.unimix)  # float32, also under bfloat16 autocast

    def gaussian(self, feat: th.Tensor) -> TanhGaussian:
        mean, std = self.net(feat).float().chunk(2, -1)
        mean = self.mean_scale * th.tanh(mean / self.mean_scale)
        std = nn.functional.softplus(std + self._raw_init_std) + self.min_std
        return TanhGaussian(mean, std)

    def act(self, feat: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """An action for ``feat``: straight-through one-hot (Discrete) or in [-1, 1] (Box)."""
        if deterministic:
            # (the uniform mix keeps the mode)
            return mode_one_hot(self.net(feat)) if self.discrete else self.gaussian(feat).mode()
        return self.sample(feat)[0]

    def sample(self, feat: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """A sample with a gradient path: (action, raw) where raw is the straight-through one-hot
        (Discrete) or the pre-tanh Gaussian sample (Box), as :meth:`log_prob_entropy` needs it."""
        if self.discrete:
            logits = self.logits(feat)
            action = straight_through(sample_one_hot(logits), logits)
            return action, action
        return self.gaussian(feat).rsample()

    def log_prob_entropy(self, feat: th.Tensor, raw: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(ln p(sg(action) | feat) for REINFORCE, entropy H[a | feat]), from :meth:`sample`'s ``raw``.

        Discrete: the exact entropy. Box: the squashed Gaussian has no closed form, so the entropy
        is the reparameterised one-sample estimate ``-ln p(tanh(x))``, which keeps the gradient
        path of ``x`` (a detached sample would give a score-function gradient, zero in expectation).
        """
        if self.discrete:
            logits = self.logits(feat)
            return categorical_log_prob(logits, raw.detach()), categorical_entropy(logits)
        dist = self.gaussian(feat)
        return dist.log_prob_pre_tanh(raw.detach()), -dist.log_prob_pre_tanh(raw)


#: ``actor_grad_mix`` by name: rho = 1 is REINFORCE, rho = 0 backpropagation through the dynamics
#: (DreamerV2 Sec. 2.2, Eq. 6; the "no REINFORCE" ablation of its Figure 5 is ``"dynamics"``).
ACTOR_GRADIENTS = {"reinforce": 1.0, "dynamics": 0.0}


def resolve_actor_grad_mix(value: float | str | None) -> float | None:
    """``"reinforce"``, ``"dynamics"``, a mix rho in [0, 1], or ``None`` (the action space decides)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in ACTOR_GRADIENTS:
            names = list(ACTOR_GRADIENTS)
            raise ValueError(f"actor_grad_mix must be one of {names}, a float in [0, 1] or None, got {value!r}.")
        return ACTOR_GRADIENTS[value]
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"actor_grad_mix must be in [0, 1] (or one of {list(ACTOR_GRADIENTS)}), got {value}.")
    return float(value)


class ReturnNormalizer(nn.Module):
    """DreamerV3's return scale (paper Eq. 7): ``S = max(limit, EMA(Per(R, 95)) - EMA(Per(R, 5)))``,
    the EMAs (decay 0.99) of the 5th and 95th percentiles of the imagined lambda-returns of each
    batch. Its state is part of the policy, so it is saved and loaded with the model."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("low", th.zeros(()))
        self.register_buffer("high", th.zeros(()))

    @th.no_grad()
    def update(self, returns: th.Tensor, decay: float = 0.99, percentiles: tuple[float, float] = (5.0, 95.0)) -> None:
        q = th.tensor(percentiles, device=returns.device, dtype=th.float32) / 100.0
        low, high = th.quantile(returns.detach().flatten().float(), q)
        self.low.mul_(decay).add_((1.0 - decay) * low)
        self.high.mul_(decay).add_((1.0 - decay) * high)

    def scale(self, limit: float = 1.0) -> th.Tensor:
        """``max(limit, high - low)``: returns are divided by it, so small ones are never amplified."""
        return (self.high - self.low).clamp(min=limit)


def lambda_return(rewards: th.Tensor, values: th.Tensor, discounts: th.Tensor, lambda_: float) -> th.Tensor:
    """lambda-returns (paper Eq. 4), time-major ``(H, ...)``.

    ``rewards[t] = r_{t+1}``, ``values[t] = v(s_{t+1})``, ``discounts[t] = gamma c_{t+1}``:

        R_t = rewards[t] + discounts[t] * ((1 - lambda) values[t] + lambda R_{t+1}),  R_H = values[H-1]
    """
    returns = []
    last = values[-1]
    for t in reversed(range(rewards.shape[0])):
        last = rewards[t] + discounts[t] * ((1.0 - lambda_) * values[t] + lambda_ * last)
        returns.append(last)
    return th.stack(returns[::-1], 0)


def discount_weights(first_continue: th.Tensor, continues: th.Tensor, gamma: float) -> th.Tensor:
    """Loss weights of imagined steps t = 0..H-1: ``gamma^t prod_{k<=t} c_k``.

    ``first_continue`` is the real ``1 - is_terminal`` of the start states (c_0) and
    ``continues[t] = c_{t+1}`` the predicted continuation of the imagined states, time-major.
    """
    cont = th.cat([first_continue.unsqueeze(0), continues[:-1]], 0)
    return th.cumprod(gamma * cont, 0) / gamma


#: ``lambda-returns -> the scale S that divides the advantage`` (DreamerV3's return normalisation)
ReturnScale = Callable[[th.Tensor], th.Tensor]


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Let gradients flow *through* ``modules`` without computing gradients *for* their parameters."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def imagine(
    rssm: RSSM, actor: Actor, start: RSSMState, horizon: int, keep_logits: bool = False
) -> tuple[th.Tensor | OneHotInput, th.Tensor, th.Tensor | None]:
    """Roll the prior forward ``horizon`` steps from ``start`` (flat ``(N, ...)``), acting with ``actor``.

    :param keep_logits: Without autograd and with a Discrete actor: compute the actor's logits with
        autograd while acting and return them, so that the actor loss needs no second pass of the
        actor over the imagined states
    :return: (features ``(H+1, N, F)`` of s_0..s_H, raw actions ``(H, N, A)`` with a_t taken in
        s_t, in the format of :meth:`Actor.sample`, and with ``keep_logits`` the actor's logits
        ``(H, N, A)`` at s_0..s_{H-1}, else ``None``). Without autograd and with one-hot latents,
        the features are a :class:`OneHotInput` over :meth:`RSSM.feature_buffer` (valid until the
        next imagination), which the heads' first layers read by gathering.
    """
    if keep_logits and not actor.discrete:
        raise ValueError("keep_logits needs a Discrete actor: a Box actor has no logits")
    if not th.is_grad_enabled() and rssm.latent.one_hot:  # the states fill one reused buffer, step by step
        dtype = autocast_dtype(start.deter.device.type)  # under autocast the states are stored in its dtype
        feats = rssm.feature_buffer(horizon + 1, start.deter.shape[0], start.deter, dtype)
        index = start.deter.new_empty(horizon + 1, start.deter.shape[0], rssm.stoch_size, dtype=th.long)
        feats[0] = start.feat  # (a tracked write: a graph still holding the last imagination's rows fails)
        index[0] = rssm.one_hot_index(start.stoch)
        states = OneHotInput(feats, feats[..., : rssm.deter_size], index, rssm.deter_size, rssm.stoch_dim)
        # Rows t + 1 are written through an alias autograd does not version: the logits' graph holds
        # rows 0..t, each written once before it is read.
        rows = feats.data
        deter, raws, logits = start.deter, [], []
        with reused_gather_tables(rssm, actor):
            for t in range(horizon):
                if keep_logits:
                    with th.enable_grad():
                        logits.append(actor.logits(states[t]))
                    action = raw = sample_one_hot(logits[-1])
                else:
                    action, raw = actor.sample(states[t])
                deter, index[t + 1] = rssm.img_step_into(rows[t + 1], deter, index[t], action)
                raws.append(raw)
        with th.enable_grad():
            return states, th.stack(raws, 0), th.stack(logits, 0) if keep_logits else None
    state = start
    feats, raws = [state.feat], []
    for _ in range(horizon):
        action, raw = actor.sample(feats[-1].detach())  # the policy sees sg(state): V2's actor input
        state = rssm.img_step(state, action)
        feats.append(state.feat)
        raws.append(raw)
    return th.stack(feats, 0), th.stack(raws, 0), None


def behavior_losses(
    world_model: nn.Module,
    actor: Actor,
    critic: ScalarHead,
    target_critic: ScalarHead,
    posterior: RSSMState,
    is_terminal: th.Tensor,
    horizon: int,
    gamma: float,
    lambda_: float,
    actor_grad_mix: float,
    entropy_coef: float,
    bootstrap_critic: ScalarHead | None = None,
    return_scale: ReturnScale | None = None,
    target_regularizer: float = 0.0,
    continue_mode: bool = False,
    continue_head: bool = True,
) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
    """Actor and critic losses from imagination started at every posterior state, with the world
    model frozen. DreamerV2 (paper Eq. 5-6) with the defaults; DreamerV3 (paper Eq. 6-11) with:

    :param bootstrap_critic: The critic whose values bootstrap the lambda-returns and serve as the
        baseline: ``target_critic`` when ``None`` (DreamerV2), the online ``critic`` (DreamerV3)
    :param return_scale: Called with the lambda-returns, gives the scale S the advantage is divided
        by (DreamerV3's percentile return normalisation); ``None`` = 1
    :param target_regularizer: Weight of ``-ln p(sg(v_target(s_t)) | s_t)``, the critic's
        regulariser towards the EMA target network (DreamerV3: 1.0)
    :param continue_mode: Use the continue head's 0/1 mode in imagination (DreamerV3) instead of
        its probability (DreamerV2)
    :param continue_head: ``False`` for a world model whose continue head is not trained (its
        loss scale is 0): every imagined ``c_{t+1}`` is 1, the discount is ``gamma`` alone
        (DreamerV1 and DreamerV2 on DMC, which never terminates)

    ``actor_grad_mix`` is rho: 1 = REINFORCE (Discrete), 0 = dynamics backpropagation (Box).
    """
    bootstrap = target_critic if bootstrap_critic is None else bootstrap_critic
    start = RSSMState(*(x.detach().flatten(0, 1) for x in posterior))
    # Discrete REINFORCE needs no gradient through imagination; Box actions always need the
    # reparameterised sample for their entropy estimate.
    reinforce_only = actor_grad_mix == 1.0 and actor.discrete
    # With no gradient through imagination and the online critic bootstrapping (DreamerV3, discrete
    # actions), one pass of the critic over s_0..s_H gives the returns' values, the baseline and its
    # own loss's outputs; otherwise the bootstrap network makes one frozen pass for the first two.
    shared_critic = reinforce_only and bootstrap is critic
    grad_through = not reinforce_only and th.is_grad_enabled()
    # Freezing only matters with autograd on; without it the parameters keep requires_grad, which is
    # what lets bfloat16 autocast cache their casts for all H steps instead of casting at every step.
    freeze = frozen(world_model, critic, target_critic) if grad_through else nullcontext()
    with freeze, th.set_grad_enabled(grad_through):
        feats, raw_actions, logits = imagine(world_model.rssm, actor, start, horizon, keep_logits=reinforce_only)
        rewards = world_model.reward(feats[1:])  # r_{t+1}
        if continue_head:
            continues = world_model.continue_prob(feats[1:], continue_mode)  # c_{t+1}
        else:
            continues = th.ones_like(rewards, requires_grad=False)
        if not shared_critic:
            values = bootstrap.predict(feats)  # v(s_t), t = 0..H
    critic_out = None
    if shared_critic:  # s_0..s_{H-1} get the critic's loss; s_H only bootstraps, so it needs no graph
        critic_out = critic(feats[:-1])  # the critic's own gradient only: feats carry none here
        with th.no_grad():
            values = critic.mean(th.cat([critic_out, critic(feats[-1:])], 0))
    returns = lambda_return(rewards, values[1:], gamma * continues, lambda_)  # V^lambda_t, t = 0..H-1
    with th.no_grad():
        weights = discount_weights(1.0 - is_terminal.flatten(), continues.detach(), gamma)
        baseline = values[:-1].detach()
        scale = th.ones((), device=returns.device) if return_scale is None else return_scale(returns)
    policy_feats = feats[:-1].detach()
    if logits is None:
        log_prob, entropy = actor.log_prob_entropy(policy_feats, raw_actions)
    else:  # the logits imagination computed while acting
        log_prob, entropy = categorical_log_prob(logits, raw_actions), categorical_entropy(logits)
    advantage = ((returns - baseline) / scale).detach()
    # V2 Eq. 6 / V3 Eq. 11: -rho ln p(a_t) sg((V^lambda_t - v(s_t)) / S) - (1 - rho) V^lambda_t / S - eta H[a_t | s_t]
    objective = entropy_coef * entropy
    if actor_grad_mix > 0.0:
        objective = objective + actor_grad_mix * log_prob * advantage
    if actor_grad_mix < 1.0:
        objective = objective + (1.0 - actor_grad_mix) * returns / scale
    actor_loss = -(weights * objective).mean()
    # V2 Eq. 5: 1/2 (v(s_t) - sg(V^lambda_t))^2;  V3 Eq. 10: -ln p(sg(V^lambda_t) | s_t), two-hot
    value_out = critic(policy_feats) if critic_out is None else critic_out
    critic_nll = critic.nll(value_out, returns.detach())
    if target_regularizer > 0.0:
        with th.no_grad():
            target_value = target_critic.predict(policy_feats)
        critic_nll = critic_nll + target_regularizer * critic.nll(value_out, target_value)
    critic_loss = (weights * critic_nll).mean()
    metrics = {
        "actor_loss": actor_loss.detach(),
        "critic_loss": critic_loss.detach(),
        "actor_entropy": entropy.detach().mean(),
        "imagined_return": returns[0].detach().mean(),
        "imagined_reward": rewards.detach().mean(),
        "value": critic.mean(value_out.detach()).mean(),
        # the critic's target and how far the critic is from it (does it track the imagined returns?)
        "lambda_return": returns.detach().mean(),
        "value_error": (critic.mean(value_out.detach()) - returns.detach()).abs().mean(),
    }
    if return_scale is not None:
        metrics["return_scale"] = scale
    return actor_loss, critic_loss, metrics
