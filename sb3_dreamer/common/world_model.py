"""The world model: encoder, RSSM, image/observation predictor, reward and continue predictors,
and its loss, a sum of named terms weighted by the algorithm's ``loss_scales`` (DreamerV2 paper,
Eq. 2; DreamerV3 paper, Eq. 3-5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch as th
from torch import nn

from sb3_dreamer.common.diagnostics import head_errors
from sb3_dreamer.common.distributions import bernoulli_nll, symlog
from sb3_dreamer.common.encoders import ObservationDecoder, ObservationEncoder
from sb3_dreamer.common.latents import Latent
from sb3_dreamer.common.networks import V2_STYLE, NetStyle, ScalarHead, mlp
from sb3_dreamer.common.observations import ObsPart, preprocess
from sb3_dreamer.common.rssm import RSSM, RSSMState


class SequenceBatch(NamedTuple):
    """B sequences of T steps, batch-major. Row ``t`` holds ``x_t`` with the action ``a_{t-1}``
    that led to it, the reward ``r_t`` received on arriving, and the flags of ``x_t``."""

    observations: dict[str, th.Tensor]  # native dtype, (B, T, *obs_shape)
    prev_actions: th.Tensor  # (B, T, action_dim): one-hot (Discrete) or in [-1, 1] (Box); zero at is_first
    rewards: th.Tensor  # (B, T) float
    is_first: th.Tensor  # (B, T) float, 1 at episode starts and at every sequence start
    is_terminal: th.Tensor  # (B, T) float, 1 where the episode terminated (never for truncation)
    is_last: th.Tensor  # (B, T) float, 1 on the last step of an episode (terminated or truncated)


#: ``(posterior stats, prior stats) -> (KL terms by name, KL value per element)``: the KL terms
#: before their scales. Either ``dyn``, training the prior (``KL[sg(q) || p]``), and ``rep``, the
#: posterior (``KL[q || sg(p)]``), each with the algorithm's free nats (DreamerV2 Algorithm 2,
#: DreamerV3 Eq. 5), or one ``kl`` = ``KL[q || p]`` training both (DreamerV1 Eq. 10, PlaNet Eq. 3).
KLTerms = Callable[[th.Tensor, th.Tensor], tuple[dict[str, th.Tensor], th.Tensor]]

#: The terms of :meth:`WorldModel.loss` from the heads; an algorithm's ``loss_scales`` has these
#: and one scale per KL term its ``kl_terms`` returns.
HEAD_TERMS = ("reconstruction", "reward", "continue")
#: Every term's name: the heads' and the KL terms' (``dyn`` and ``rep``, or ``kl``).
LOSS_TERMS = (*HEAD_TERMS, "dyn", "rep", "kl")


class WorldModel(nn.Module):
    """Encoder, RSSM, decoder, reward and continue heads.

    :param style: Layers and input transform (:data:`~sb3_dreamer.common.networks.V2_STYLE` or ``V3_STYLE``)
    :param unimix: Uniform mix of the RSSM's categoricals (DreamerV3: 0.01)
    :param bins: Reward head: 0 = unit Gaussian (DreamerV2), N = two-hot over N symlog bins (DreamerV3)
    :param learned_initial: The RSSM starts episodes from a learned state (DreamerV3)
    :param latent: The distribution of ``z`` (:mod:`~sb3_dreamer.common.latents`); ``None``: categorical
        of ``stoch_size`` x ``classes`` with ``unimix``
    :param cnn_padding: "same" or "valid" (DreamerV1/V2's 64x64 CNN), see
        :class:`~sb3_dreamer.common.encoders.ConvEncoder`
    """

    def __init__(
        self,
        parts: list[ObsPart],
        action_dim: int,
        deter_size: int,
        hidden_size: int,
        stoch_size: int,
        classes: int,
        mlp_layers: int,
        mlp_units: int,
        cnn_depth: int,
        style: NetStyle = V2_STYLE,
        unimix: float = 0.0,
        bins: int = 0,
        learned_initial: bool = False,
        cnn_padding: str = "same",
        latent: Latent | None = None,
    ) -> None:
        super().__init__()
        self.parts, self.style = parts, style
        self.encoder = ObservationEncoder(parts, cnn_depth, mlp_layers, mlp_units, style, cnn_padding)
        self.rssm = RSSM(
            self.encoder.out_dim,
            action_dim,
            deter_size,
            hidden_size,
            stoch_size,
            classes,
            style,
            unimix,
            learned_initial,
            latent,
        )
        feat_dim = self.rssm.feat_dim
        self.decoder = ObservationDecoder(feat_dim, self.encoder, mlp_layers, mlp_units)
        self.reward_head = ScalarHead(feat_dim, mlp_layers, mlp_units, style, bins)  # p(r_t | h_t, z_t)
        self.continue_head = mlp(feat_dim, 1, mlp_layers, mlp_units, style)  # p(c_t | h_t, z_t), Bernoulli logit
        self.register_load_state_dict_pre_hook(_renamed_continue_head)

    def preprocess(self, observations: Mapping[str, th.Tensor], batch_dims: int) -> dict[str, th.Tensor]:
        """Network inputs, which are also the reconstruction targets: vectors pass through symlog
        when the style asks for it (DreamerV3), so the decoder's loss is in symlog space (Eq. 1)."""
        inputs = {p.key: preprocess(p, observations[p.key], batch_dims) for p in self.parts}
        if self.style.symlog_inputs:
            for part in self.parts:
                if not part.is_image and part.dtype == "float":
                    inputs[part.key] = symlog(inputs[part.key])
        return inputs

    def embed(self, observations: Mapping[str, th.Tensor], batch_dims: int) -> th.Tensor:
        return self.encoder(self.preprocess(observations, batch_dims))

    def reward(self, feat: th.Tensor) -> th.Tensor:
        """Mean of the predicted reward for arriving in the state ``feat``."""
        return self.reward_head.predict(feat)

    def continue_logits(self, feat: th.Tensor) -> th.Tensor:
        """Bernoulli logit of "the state ``feat`` is not terminal", in float32 (also under autocast)."""
        return self.continue_head(feat).squeeze(-1).float()

    def continue_prob(self, feat: th.Tensor, mode: bool = False) -> th.Tensor:
        """Predicted probability that the state ``feat`` is not terminal, or with ``mode`` its
        rounding to 0/1 (the Bernoulli's mode, as DreamerV3 uses in imagination)."""
        logits = self.continue_logits(feat)
        return (logits > 0).to(logits.dtype) if mode else th.sigmoid(logits)

    def loss(
        self,
        batch: SequenceBatch,
        kl_terms: KLTerms,
        loss_scales: Mapping[str, float],
        detach_decoder: bool = False,
        detach_reward: bool = False,
    ) -> tuple[th.Tensor, RSSMState, dict[str, th.Tensor]]:
        """The world-model loss, averaged over the batch and time: ``sum_k loss_scales[k] L_k`` over
        :data:`HEAD_TERMS` and the KL terms (danijar's dreamerv3 ``loss_scales``), where

        - ``reconstruction`` = ``-ln p(x_t | h_t, z_t)``, summed over each observation's dimensions
          (DreamerV2 Eq. 2, image log loss; DreamerV3 Eq. 4, decoder). A scale of 0 skips the
          decoder; with ``detach_decoder`` it learns from ``sg(h_t, z_t)``, shaping no representation;
        - ``reward`` = ``-ln p(r_t | h_t, z_t)`` (DreamerV2 Eq. 2; DreamerV3 Eq. 4); with
          ``detach_reward`` the reward head learns from ``sg(h_t, z_t)`` (DreamerV2 Figure 5's
          "no reward gradients");
        - ``continue`` = ``-ln p(c_t | h_t, z_t)``, a Bernoulli on "x_t is not terminal", which
          truncation leaves at 1 (DreamerV2 Eq. 2, discount; DreamerV3 Eq. 4);
        - ``dyn`` and ``rep``, or ``kl``: ``kl_terms`` of the posterior and the prior (DreamerV2's KL
          balancing, Algorithm 2, is ``dyn`` and ``rep`` scaled by ``beta alpha`` and
          ``beta (1 - alpha)``; DreamerV3 Eq. 5; DreamerV1's plain KL is ``kl``, see :data:`KLTerms`).

        :return: (loss, posterior states (B, T), detached metrics: ``<term>_loss`` before its scale)
        """
        missing = set(HEAD_TERMS) - set(loss_scales)
        if missing:
            raise ValueError(f"loss_scales lacks {sorted(missing)}; it needs a scale for each of {HEAD_TERMS}.")
        inputs = self.preprocess(batch.observations, 2)
        embed = self.encoder(inputs)
        post, prior = self.rssm.observe(embed, batch.prev_actions, batch.is_first)
        feat = post.feat
        terms: dict[str, th.Tensor] = {}
        if loss_scales["reconstruction"] != 0.0:
            terms["reconstruction"] = self.decoder.nll(feat.detach() if detach_decoder else feat, inputs).mean()
        reward_out = self.reward_head(feat.detach() if detach_reward else feat)
        terms["reward"] = self.reward_head.nll(reward_out, batch.rewards).mean()
        continue_logits = self.continue_logits(feat)
        terms["continue"] = bernoulli_nll(continue_logits, 1.0 - batch.is_terminal).mean()
        kl, kl_value = kl_terms(post.stats, prior)
        missing = set(kl) - set(loss_scales)
        if missing:
            raise ValueError(f"loss_scales lacks {sorted(missing)}, a KL term of the algorithm's kl_terms.")
        terms.update(kl)
        loss = sum((loss_scales[name] * term for name, term in terms.items()), th.zeros((), device=feat.device))
        metrics = {"model_loss": loss, **{f"{name}_loss": term for name, term in terms.items()}}
        latent = self.rssm.latent
        metrics.update(
            kl=kl_value.mean(),
            prior_entropy=latent.entropy(prior).mean(),
            post_entropy=latent.entropy(post.stats).mean(),
        )
        with th.no_grad():
            reward_pred = self.reward_head.mean(reward_out.detach())
            metrics.update(head_errors(reward_pred, batch.rewards, th.sigmoid(continue_logits), batch.is_terminal))
        return loss, post, {k: v.detach() for k, v in metrics.items()}


def _renamed_continue_head(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Models saved before 0.8 named the continue head ``discount_head``: load them under the new name."""
    old = f"{prefix}discount_head."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[f"{prefix}continue_head.{key[len(old) :]}"] = state_dict.pop(key)
