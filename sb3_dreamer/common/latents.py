"""The stochastic part ``z_t`` of the RSSM's state: its distribution family, given to
:class:`~sb3_dreamer.common.rssm.RSSM` as a parameter.

A latent turns the prior and posterior networks' outputs into distribution parameters
(``stats``), and owns sampling (with gradients), the mode, the KL and the entropy:

- :class:`CategoricalLatent`: ``variables`` categoricals of ``classes`` classes, sampled as one-hot
  vectors with straight-through gradients (DreamerV2 paper, Section 2.1 and Algorithm 1), with an
  optional uniform mix (DreamerV3 paper, Section 3). ``z`` is one-hot, so imagination takes the
  RSSM's gathering fast path (:meth:`RSSM.img_step_into`).
- :class:`GaussianLatent`: a diagonal Gaussian, reparameterised samples, ``std = softplus(x) +
  min_std`` (PlaNet, Hafner et al. 2019, Section 3 and its code's ``min_stddev`` 0.1; DreamerV1,
  Hafner et al. 2020, Section 3).
"""

from __future__ import annotations

import math

import torch as th
from torch import nn

from sb3_dreamer.common.distributions import (
    categorical_kl,
    mode_one_hot,
    sample_one_hot,
    straight_through,
    unimix_logits,
)


class Latent:
    """The interface: ``stats`` are the distribution parameters of ``z`` for a batch ``(..., *stats_shape)``.

    :attr size: Features of ``z`` as the networks read it (``[h_t, z_t]`` has ``deter + size``)
    :attr stats_size: Outputs of the prior and posterior networks per state
    :attr one_hot: ``z`` is a block of one-hot vectors (imagination's fast path applies)
    """

    size: int
    stats_size: int
    one_hot: bool = False

    def stats(self, raw: th.Tensor) -> th.Tensor:
        """The networks' outputs ``(..., stats_size)`` -> the distribution parameters, in float32."""
        raise NotImplementedError

    def zeros_stats(self, batch: int, device: th.device) -> th.Tensor:
        """Parameters stored for the all-zero initial state (never sampled from)."""
        raise NotImplementedError

    def sample(self, stats: th.Tensor) -> th.Tensor:
        """A sample of ``z`` ``(..., size)`` through which gradients reach ``stats``."""
        raise NotImplementedError

    def mode(self, stats: th.Tensor) -> th.Tensor:
        """The most likely ``z`` ``(..., size)``."""
        raise NotImplementedError

    def kl(self, p: th.Tensor, q: th.Tensor) -> th.Tensor:
        """``KL[p || q]`` per state, summed over the latent's dimensions."""
        raise NotImplementedError

    def entropy(self, stats: th.Tensor) -> th.Tensor:
        """The entropy per state, summed over the latent's dimensions."""
        raise NotImplementedError


class CategoricalLatent(Latent):
    """``variables`` independent categoricals of ``classes`` classes; ``stats`` are their logits
    ``(..., variables, classes)`` after the uniform mix of ``unimix`` (so sampling and the KL use
    the same mixture), and ``z`` is the flattened one-hot vectors."""

    one_hot = True

    def __init__(self, variables: int, classes: int, unimix: float = 0.0) -> None:
        self.variables, self.classes, self.unimix = variables, classes, unimix
        self.size = self.stats_size = variables * classes

    def stats(self, raw: th.Tensor) -> th.Tensor:
        return unimix_logits(raw.float().unflatten(-1, (self.variables, self.classes)), self.unimix)

    def zeros_stats(self, batch: int, device: th.device) -> th.Tensor:
        return th.zeros(batch, self.variables, self.classes, device=device)

    def sample(self, stats: th.Tensor) -> th.Tensor:
        return straight_through(sample_one_hot(stats), stats).flatten(-2)

    def mode(self, stats: th.Tensor) -> th.Tensor:
        return straight_through(mode_one_hot(stats), stats).flatten(-2)

    def kl(self, p: th.Tensor, q: th.Tensor) -> th.Tensor:
        return categorical_kl(p, q)

    def entropy(self, stats: th.Tensor) -> th.Tensor:
        log_p = stats.log_softmax(-1)
        return -(log_p.exp() * log_p).sum((-2, -1))


class GaussianLatent(Latent):
    """A diagonal Gaussian of ``size`` dimensions; ``stats`` are ``[mean, std]`` ``(..., 2 size)``
    with ``std = softplus(raw_std) + min_std`` (PlaNet's and DreamerV1's ``min_std`` 0.1)."""

    def __init__(self, size: int, min_std: float = 0.1) -> None:
        self.size, self.stats_size, self.min_std = size, 2 * size, min_std

    def stats(self, raw: th.Tensor) -> th.Tensor:
        mean, std = raw.float().chunk(2, -1)
        return th.cat([mean, nn.functional.softplus(std) + self.min_std], -1)

    def zeros_stats(self, batch: int, device: th.device) -> th.Tensor:
        return th.zeros(batch, self.stats_size, device=device)

    def sample(self, stats: th.Tensor) -> th.Tensor:
        mean, std = stats.chunk(2, -1)
        return mean + std * th.randn_like(std)  # reparameterised

    def mode(self, stats: th.Tensor) -> th.Tensor:
        return stats.chunk(2, -1)[0]

    def kl(self, p: th.Tensor, q: th.Tensor) -> th.Tensor:
        (mean_p, std_p), (mean_q, std_q) = p.chunk(2, -1), q.chunk(2, -1)
        ratio = (std_p / std_q) ** 2
        return 0.5 * (ratio + ((mean_p - mean_q) / std_q) ** 2 - 1.0 - ratio.log()).sum(-1)

    def entropy(self, stats: th.Tensor) -> th.Tensor:
        std = stats.chunk(2, -1)[1]
        return (0.5 * math.log(2.0 * math.pi * math.e) + std.log()).sum(-1)
