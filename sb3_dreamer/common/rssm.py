"""The Recurrent State-Space Model of DreamerV2 (DreamerV2 paper, Section 2.1 "World Model Learning";
PlaNet, Hafner et al. 2019, Section 3).

    Recurrent model:       h_t = f(h_{t-1}, z_{t-1}, a_{t-1})     -> :meth:`RSSM.recurrent`
    Representation model:  z_t ~ q(z_t | h_t, x_t)                 -> :meth:`RSSM.posterior`
    Transition predictor:  z^_t ~ p(z^_t | h_t)                    -> :meth:`RSSM.prior`

``z``'s distribution is a :class:`~sb3_dreamer.common.latents.Latent`: ``stoch_size`` categorical
variables of ``classes`` classes each, sampled with straight-through gradients (DreamerV2, V3), or a
diagonal Gaussian (PlaNet, DreamerV1). The model state (``feat``) is the concatenation ``[h_t, z_t]``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch as th
from torch import nn

from sb3_dreamer.common.distributions import one_hot, sample_index, unimix_probs
from sb3_dreamer.common.kernels import DeferredWeightGrads, InputLinear, OneHotInput
from sb3_dreamer.common.latents import CategoricalLatent, Latent
from sb3_dreamer.common.networks import MLP, V2_STYLE, GRUCell, NetStyle, dense


class RSSMState(NamedTuple):
    deter: th.Tensor  # h: (..., deter_size)
    stoch: th.Tensor  # z: (..., latent.size); categorical: one-hot per variable, flattened
    stats: th.Tensor  # parameters of the distribution z was drawn from (categorical: logits (..., variables, classes))

    @property
    def logits(self) -> th.Tensor:
        """``stats`` by its categorical name."""
        return self.stats

    @property
    def feat(self) -> th.Tensor:
        return th.cat([self.deter, self.stoch], -1)


class RSSM(nn.Module):
    """:param unimix: Share of the uniform distribution mixed into the prior and the posterior
    (DreamerV3: 0.01, so their KL never explodes; DreamerV2: 0). The logits the RSSM returns are
    those of the mixture, used for sampling and in the KL alike.
    :param learned_initial: Start episodes from a learned state, ``h_0 = tanh(w)`` and ``z_0`` the
    mode of ``p(z | h_0)`` (DreamerV3's ``initial: learned``), instead of zeros (DreamerV2).
    :param latent: The distribution of ``z``; ``None``: :class:`CategoricalLatent` of ``stoch_size``
        variables, ``classes`` classes and ``unimix`` (``stoch_size``, ``classes`` and ``unimix`` are
        then read from it)."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter_size: int,
        hidden_size: int,
        stoch_size: int,
        classes: int,
        style: NetStyle = V2_STYLE,
        unimix: float = 0.0,
        learned_initial: bool = False,
        latent: Latent | None = None,
    ) -> None:
        super().__init__()
        self.latent = CategoricalLatent(stoch_size, classes, unimix) if latent is None else latent
        self.deter_size, self.stoch_dim = deter_size, self.latent.size
        # (the categorical's shape, used by the one-hot fast paths)
        self.stoch_size, self.classes = getattr(self.latent, "variables", 0), getattr(self.latent, "classes", 0)
        self.unimix = getattr(self.latent, "unimix", 0.0)
        self.action_dim = action_dim
        stats_size = self.latent.stats_size
        self.img_in = MLP(*dense(self.stoch_dim + action_dim, hidden_size, style))
        self.gru = GRUCell(hidden_size, deter_size)
        self.prior_net = MLP(*dense(deter_size, hidden_size, style), nn.Linear(hidden_size, stats_size))
        self.post_net = MLP(*dense(deter_size + embed_dim, hidden_size, style), InputLinear(hidden_size, stats_size))
        self.initial_deter = nn.Parameter(th.zeros(deter_size)) if learned_initial else None
        self._workspace: th.Tensor | None = None

    @property
    def feat_dim(self) -> int:
        return self.deter_size + self.stoch_dim

    def initial(self, batch_size: int, device: th.device) -> RSSMState:
        """The all-zero state used at every episode start (danijar/dreamerv2 ``initial``)."""
        zeros = th.zeros(batch_size, self.deter_size + self.stoch_dim, device=device)
        return RSSMState(
            zeros[:, : self.deter_size], zeros[:, self.deter_size :], self.latent.zeros_stats(batch_size, device)
        )

    def _draw(self, stats: th.Tensor, sample: bool) -> th.Tensor:
        """``z`` drawn from ``stats`` with gradients (its mode when ``sample`` is False), flattened."""
        return self.latent.sample(stats) if sample else self.latent.mode(stats)

    def recurrent(self, deter: th.Tensor, stoch: th.Tensor, action: th.Tensor) -> th.Tensor:
        """h_t = f(h_{t-1}, z_{t-1}, a_{t-1})."""
        return self.gru(self.img_in(th.cat([stoch, action], -1)), deter)

    def prior(self, deter: th.Tensor) -> th.Tensor:
        """Parameters of p(z^_t | h_t) (categorical: logits ``(..., stoch_size, classes)``), in float32."""
        return self.latent.stats(self.prior_net(deter))

    def posterior(self, deter: th.Tensor, embed: th.Tensor) -> th.Tensor:
        """Parameters of q(z_t | h_t, x_t) (categorical: logits ``(..., stoch_size, classes)``), in float32."""
        return self.latent.stats(self.post_net(th.cat([deter, embed], -1)))

    def learned_start(self) -> tuple[th.Tensor, th.Tensor] | None:
        """The learned initial ``(h_0, z_0)``, or ``None`` when episodes start from zeros."""
        if self.initial_deter is None:
            return None
        deter0 = th.tanh(self.initial_deter)
        return deter0, self.latent.mode(self.prior(deter0))

    def reset(
        self,
        state: RSSMState,
        action: th.Tensor,
        is_first: th.Tensor,
        start: tuple[th.Tensor, th.Tensor] | None = None,
    ) -> tuple[RSSMState, th.Tensor]:
        """Where ``is_first``: zero the previous action, and reset the latent state to zeros or to
        the learned initial state, so no state leaks across an episode boundary inside a sequence.
        ``start`` is :meth:`learned_start`, when the caller already has it (a loop over time
        computes it once)."""
        keep = (1.0 - is_first.float()).unsqueeze(-1)
        deter, stoch = state.deter * keep, state.stoch * keep
        if start is None:
            start = self.learned_start()
        if start is not None:
            deter, stoch = deter + (1.0 - keep) * start[0], stoch + (1.0 - keep) * start[1]
        stats = state.stats * keep.reshape(*keep.shape, *(1,) * (state.stats.dim() - keep.dim()))
        return RSSMState(deter, stoch, stats), action * keep

    def obs_step(
        self, state: RSSMState, action: th.Tensor, embed: th.Tensor, is_first: th.Tensor, sample: bool = True
    ) -> RSSMState:
        """One filtering step while acting: reset at episode starts, advance ``h``, draw ``z_t``
        from the posterior (its mode when ``sample`` is False)."""
        if bool(is_first.any()):  # acting: most steps start no episode, and then the reset is the identity
            state, action = self.reset(state, action, is_first)
        deter = self.recurrent(state.deter, state.stoch, action)
        post = self.posterior(deter, embed)
        return RSSMState(deter, self._draw(post, sample), post)

    def img_step(self, state: RSSMState, action: th.Tensor, sample: bool = True) -> RSSMState:
        """One imagination step: advance ``h`` and draw ``z^_t`` from the prior."""
        deter = self.recurrent(state.deter, state.stoch, action)
        prior = self.prior(deter)
        return RSSMState(deter, self._draw(prior, sample), prior)

    def feature_buffer(self, steps: int, batch: int, like: th.Tensor, dtype: th.dtype | None = None) -> th.Tensor:
        """An uninitialised ``(steps, batch, feat_dim)`` buffer for imagination's states, reused by
        every call with the same shape: its contents last until the next call. A fresh buffer of
        this size (tens of MB) costs a page fault per 4 KiB on every update; reusing it costs none."""
        shape, dtype = (steps, batch, self.feat_dim), dtype or like.dtype
        buf = self._workspace
        if buf is None or buf.shape != shape or buf.device != like.device or buf.dtype != dtype:
            buf = self._workspace = like.new_empty(shape, dtype=dtype)
        return buf

    def _flat_index(self, classes: th.Tensor) -> th.Tensor:
        """Each variable's class ``(..., stoch_size)`` -> its position in the flattened ``z``."""
        return classes + th.arange(0, self.stoch_dim, self.classes, device=classes.device)

    def one_hot_index(self, stoch: th.Tensor) -> th.Tensor:
        """The flat positions of the ones in one-hot ``stoch`` (``(..., stoch_size)``, for :class:`OneHotInput`)."""
        return self._flat_index(stoch.unflatten(-1, (self.stoch_size, self.classes)).argmax(-1))

    @th.no_grad()
    def img_step_into(
        self, out: th.Tensor, deter: th.Tensor, index: th.Tensor, action: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """:meth:`img_step` without autograd, from ``z_{t-1}`` given by its :meth:`one_hot_index`:
        writes ``[h_t, z^_t]`` into ``out`` (``(N, feat_dim)``, a row of imagination's feature buffer),
        so no per-step concatenation or stacking is needed. For one-hot latents only (``latent.one_hot``).

        :return: ``(h_t, index of z^_t)``; ``h_t`` keeps its own dtype (float32) when ``out`` is bfloat16
        """
        deter = self.gru(self.img_in(OneHotInput(None, action, index, 0, self.stoch_dim)), deter)
        probs = unimix_probs(self.prior_net(deter).float().unflatten(-1, (self.stoch_size, self.classes)), self.unimix)
        out[:, : self.deter_size] = deter
        index = sample_index(probs)
        stoch = out[:, self.deter_size :].unflatten(-1, (self.stoch_size, self.classes))
        one_hot(index, self.classes, out.dtype, stoch)
        return deter, self._flat_index(index)

    def observe(
        self, embed: th.Tensor, prev_action: th.Tensor, is_first: th.Tensor, state: RSSMState | None = None
    ) -> tuple[RSSMState, th.Tensor]:
        """Filter a batch of sequences (batch-major, ``(B, T, ...)``).

        ``prev_action[:, t]`` is a_{t-1}, the action that led to observation ``t``.

        :return: (posterior states ``(B, T, ...)``, prior parameters ``(B, T, ...)``)
        """
        batch, length = embed.shape[:2]
        if state is None:
            state = self.initial(batch, embed.device)
        deters, stochs, post_stats = [], [], []
        start = self.learned_start()
        # The loop's linear layers leave their weight gradients to one product each after the loop
        deferred = DeferredWeightGrads([self.img_in[0], self.gru.linear, self.post_net[0], self.post_net[-1]])
        embed, deter, stoch = deferred.inputs(embed, state.deter, state.stoch)
        state = RSSMState(deter, stoch, state.stats)
        # One unbind, not a slice per step: the backward of T slices adds T full-size gradients of
        # ``embed``, the backward of an unbind stacks T slices once.
        embeds, actions, firsts = embed.unbind(1), prev_action.unbind(1), is_first.unbind(1)
        with deferred:
            for t in range(length):
                state, action = self.reset(state, actions[t], firsts[t], start)
                deter = self.recurrent(state.deter, state.stoch, action)
                stats = self.posterior(deter, embeds[t])
                state = RSSMState(deter, self._draw(stats, True), stats)
                deters.append(deter)
                stochs.append(state.stoch)
                post_stats.append(stats)
        deter = th.stack(deters, 1)
        post = RSSMState(deter, th.stack(stochs, 1), th.stack(post_stats, 1))
        return post, self.prior(deter)  # the prior only needs h_t: one batched call after the loop
