"""The world model: encoder, RSSM, image/observation predictor, reward and discount predictors,
and its loss (DreamerV2 paper, Eq. 2; seed 000, "Learning The World Model - Loss Function")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch as th
from torch import nn

from sb3_dreamer.common.distributions import balanced_kl, bernoulli_nll, unit_gaussian_nll
from sb3_dreamer.common.networks import ObservationDecoder, ObservationEncoder, ObsPart, mlp, preprocess
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


class WorldModel(nn.Module):
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
    ) -> None:
        super().__init__()
        self.parts = parts
        self.encoder = ObservationEncoder(parts, cnn_depth, mlp_layers, mlp_units)
        self.rssm = RSSM(self.encoder.out_dim, action_dim, deter_size, hidden_size, stoch_size, classes)
        feat_dim = self.rssm.feat_dim
        self.decoder = ObservationDecoder(feat_dim, self.encoder, mlp_layers, mlp_units)
        self.reward_head = mlp(feat_dim, 1, mlp_layers, mlp_units)  # p(r_t | h_t, z_t), unit Gaussian
        self.discount_head = mlp(feat_dim, 1, mlp_layers, mlp_units)  # p(gamma_t | h_t, z_t), Bernoulli logit

    def preprocess(self, observations: Mapping[str, th.Tensor], batch_dims: int) -> dict[str, th.Tensor]:
        return {p.key: preprocess(p, observations[p.key], batch_dims) for p in self.parts}

    def embed(self, observations: Mapping[str, th.Tensor], batch_dims: int) -> th.Tensor:
        return self.encoder(self.preprocess(observations, batch_dims))

    def reward(self, feat: th.Tensor) -> th.Tensor:
        """Mean of the predicted reward for arriving in the state ``feat``."""
        return self.reward_head(feat).squeeze(-1)

    def continue_prob(self, feat: th.Tensor) -> th.Tensor:
        """Predicted probability that the state ``feat`` is not terminal."""
        return th.sigmoid(self.discount_head(feat).squeeze(-1))

    def loss(
        self,
        batch: SequenceBatch,
        kl_scale: float,
        kl_balance: float,
        free_nats: float,
        discount_scale: float,
        reward_scale: float = 1.0,
    ) -> tuple[th.Tensor, RSSMState, dict[str, th.Tensor]]:
        """DreamerV2 Eq. 2, averaged over the batch and time:

        ``-ln p(x_t|h_t,z_t) - ln p(r_t|h_t,z_t) - eta_gamma ln p(gamma_t|h_t,z_t)
        + beta KL[q(z_t|h_t,x_t) || p(z_t|h_t)]`` with KL balancing (Algorithm 2).

        :return: (loss, posterior states (B, T), detached metrics)
        """
        inputs = self.preprocess(batch.observations, 2)
        embed = self.encoder(inputs)
        post, prior_logits = self.rssm.observe(embed, batch.prev_actions, batch.is_first)
        feat = post.feat
        reconstruction_loss = self.decoder.nll(feat, inputs).mean()  # -ln p(x_t | h_t, z_t)
        reward_loss = unit_gaussian_nll(self.reward(feat), batch.rewards).mean()  # -ln p(r_t | h_t, z_t)
        # -ln p(gamma_t | h_t, z_t): Bernoulli on "x_t is not terminal"; truncation keeps target 1
        discount_loss = bernoulli_nll(self.discount_head(feat).squeeze(-1), 1.0 - batch.is_terminal).mean()
        kl_loss, kl_value = balanced_kl(post.logits, prior_logits, kl_balance, free_nats)  # Algorithm 2
        loss = reconstruction_loss + reward_scale * reward_loss + discount_scale * discount_loss + kl_scale * kl_loss
        metrics = {
            "model_loss": loss,
            "reconstruction_loss": reconstruction_loss,
            "reward_loss": reward_loss,
            "discount_loss": discount_loss,
            "kl": kl_value.mean(),
            "kl_loss": kl_loss,
            "prior_entropy": _entropy(prior_logits),
            "post_entropy": _entropy(post.logits),
        }
        return loss, post, {k: v.detach() for k, v in metrics.items()}


def _entropy(logits: th.Tensor) -> th.Tensor:
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum((-2, -1)).mean()
