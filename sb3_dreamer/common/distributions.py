"""Distribution maths used in the hot paths, written without ``torch.distributions``.

Every function works on raw network outputs (logits, means, raw standard deviations) so the
training step stays a short chain of fused tensor ops.
"""

from __future__ import annotations

import math

import torch as th
import torch.nn.functional as F


def sample_one_hot(logits: th.Tensor) -> th.Tensor:
    """Draw a one-hot sample from ``Categorical(logits)`` along the last axis (Gumbel-max)."""
    uniform = th.rand_like(logits).clamp_(1e-20, 1.0)
    index = (logits - th.log(-th.log(uniform))).argmax(-1)
    return F.one_hot(index, logits.shape[-1]).to(logits.dtype)


def mode_one_hot(logits: th.Tensor) -> th.Tensor:
    """The most likely class as a one-hot vector."""
    return F.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


def straight_through(sample: th.Tensor, logits: th.Tensor) -> th.Tensor:
    """Straight-through estimator (DreamerV2 paper, Algorithm 1).

    The forward value is the one-hot ``sample``; the backward pass uses the gradient of the
    class probabilities: ``sample + probs - sg(probs)``.
    """
    probs = logits.softmax(-1)
    return sample + probs - probs.detach()


def categorical_kl(p_logits: th.Tensor, q_logits: th.Tensor) -> th.Tensor:
    """KL[p || q] of independent categoricals, summed over the last two axes (variables x classes)."""
    p_log = p_logits.log_softmax(-1)
    q_log = q_logits.log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum((-2, -1))


def balanced_kl(
    post_logits: th.Tensor, prior_logits: th.Tensor, balance: float = 0.8, free_nats: float = 0.0
) -> tuple[th.Tensor, th.Tensor]:
    """KL balancing (DreamerV2 paper, Algorithm 2; seed 001).

    ``balance * KL[sg(post) || prior] + (1 - balance) * KL[post || sg(prior)]``: with ``balance``
    = 0.8 the prior is trained four times faster towards the posterior than the posterior is
    regularised towards the prior. Free nats are applied to the batch mean, as in
    danijar/dreamerv2 (``free_avg``).

    :return: (the loss term, the unbalanced KL value per element for logging)
    """
    value = categorical_kl(post_logits, prior_logits)
    lhs = categorical_kl(post_logits.detach(), prior_logits).mean()  # trains the prior
    rhs = categorical_kl(post_logits, prior_logits.detach()).mean()  # regularises the posterior
    if free_nats > 0.0:
        lhs = lhs.clamp(min=free_nats)
        rhs = rhs.clamp(min=free_nats)
    return balance * lhs + (1.0 - balance) * rhs, value


def categorical_log_prob(logits: th.Tensor, one_hot: th.Tensor) -> th.Tensor:
    """log p(a) of a one-hot action under ``Categorical(logits)``."""
    return (logits.log_softmax(-1) * one_hot).sum(-1)


def categorical_entropy(logits: th.Tensor) -> th.Tensor:
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum(-1)


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class TanhGaussian:
    """A diagonal Gaussian squashed by ``tanh`` into [-1, 1] (the bounded actor for Box actions).

    ``mean`` and ``std`` parameterise the pre-tanh Gaussian. The entropy of the squashed
    distribution has no closed form; :meth:`entropy` returns the one-sample estimate
    ``-log p(a)`` of the reparameterised sample, as in Dreamer (V1) and SAC.
    """

    def __init__(self, mean: th.Tensor, std: th.Tensor) -> None:
        self.mean = mean
        self.std = std

    def rsample(self) -> th.Tensor:
        return th.tanh(self.mean + self.std * th.randn_like(self.mean))

    def mode(self) -> th.Tensor:
        return th.tanh(self.mean)

    def log_prob(self, action: th.Tensor) -> th.Tensor:
        action = action.clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        pre_tanh = th.atanh(action)
        normal = -0.5 * ((pre_tanh - self.mean) / self.std) ** 2 - self.std.log() - _LOG_SQRT_2PI
        jacobian = th.log1p(-action.pow(2) + 1e-6)
        return (normal - jacobian).sum(-1)


def bernoulli_nll(logits: th.Tensor, target: th.Tensor) -> th.Tensor:
    """-log Bernoulli(target; sigmoid(logits)), elementwise."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def unit_gaussian_nll(mean: th.Tensor, target: th.Tensor) -> th.Tensor:
    """-log N(target; mean, 1) without the constant, elementwise."""
    return 0.5 * (mean - target) ** 2
